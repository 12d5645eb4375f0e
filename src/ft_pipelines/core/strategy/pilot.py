"""Pilot trials: check the matrix's recommendation on the validation split.

Each candidate strategy is set up exactly as its plan says (surgery, regulariser, learning
rates) and trained by the project's own ``finetune_model`` for a short budget; successive
halving (Jamieson & Talwalkar 2016) keeps the better half after every round, on validation
top-1 only (the test split is never looked at). Ties go to the matrix's recommendation, then to
the cheaper strategy. On a small training split the winner then retrains from the pretrained
weights for its full budget, as a single training would (the pilot only chooses); on a larger
one it continues from its pilot weights for the rest of its budget
(``strategy.pilot.restart_max_train_images``). Every decision (survivors, restart) is rank 0's,
broadcast, so ranks of a torchrun world that measured differently still agree.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from typing import Any

from torch import nn

from ft_pipelines.core.data import ImageData
from ft_pipelines.core.models import apply_surgery
from ft_pipelines.core.strategy.decision_matrix import STRATEGIES
from ft_pipelines.core.strategy.recipe import apply_recipe
from ft_pipelines.core.strategy.settings import PilotSettings
from ft_pipelines.core.training import finetune_model, rank0_decides

logger = logging.getLogger(__name__)


def resolve_mode(mode: str, plan: dict[str, Any], pilot_max_train_images: int
                 ) -> tuple[str, str]:
    """(``matrix`` | ``pilot``, why) for ``strategy.mode``; ``auto`` runs the pilot when the
    training split is small: there the matrix errs most and the trials cost seconds."""
    if mode != "auto":
        return mode, f"strategy.mode={mode}"
    images, limit = int(plan["size"]["train_images"]), pilot_max_train_images
    per_class = int(plan["size"]["min_train_per_class"])
    if images <= limit:
        return "pilot", (f"strategy.mode=auto -> pilot: {images} training images <= "
                         f"strategy.auto.pilot_max_train_images {limit} (short trials are cheap "
                         f"here and the matrix errs most on small data; head_only, a linear "
                         f"probe of the frozen features, is a candidate: {per_class} images in "
                         "the smallest class)")
    return "matrix", (f"strategy.mode=auto -> matrix: {images} training images > "
                      f"strategy.auto.pilot_max_train_images {limit} (trials would cost about "
                      "half the training they check)")


def pilot_candidates(plan: dict[str, Any], params: PilotSettings | dict[str, Any]
                     ) -> tuple[list[str], list[str]]:
    """(candidates in cost order, reasons for the ones left out)."""
    params = PilotSettings.model_validate(params) if isinstance(params, dict) else params
    wanted = params.candidates
    candidates = list(STRATEGIES) if wanted == "auto" else [s for s in STRATEGIES if s in wanted]
    skipped = []
    need = params.from_scratch_min_per_class
    have = int(plan["size"]["min_train_per_class"])
    if wanted == "auto" and have < need:
        candidates.remove("from_scratch")
        skipped.append(f"from_scratch left out: {have} training images in the smallest class < "
                       f"strategy.pilot.from_scratch_min_per_class {need}")
    if plan["recommended"] not in candidates:  # the prior is always checked
        candidates = [s for s in STRATEGIES if s in {*candidates, plan["recommended"]}]
    return candidates, skipped


def probe_name(drop: int) -> str:
    """The candidate name of a head-only probe ``drop`` blocks earlier."""
    return f"head_only_drop{drop}"


def add_probe_candidates(plans: dict[str, dict[str, Any]], pilot: PilotSettings | dict[str, Any],
                         blocks: int) -> list[str]:
    """Add (in place) one head-only candidate per ``strategy.pilot.probe_drop_blocks`` entry k:
    the head on the features k blocks earlier, i.e. the head-only plan with k more blocks
    dropped (surgery's ``drop_last_blocks``: a real, shorter network every later stage handles).
    Returns the reasons for entries left out. Far from the pretraining data and with few images,
    earlier features can separate the classes better than the last ones (Head2Toe, Evci et al.
    2022); when head_only wins the halving, ``run_pilot`` lets validation choose the depth."""
    pilot = PilotSettings.model_validate(pilot) if isinstance(pilot, dict) else pilot
    if "head_only" not in plans:
        return []
    base, skipped = plans["head_only"], []
    for k in sorted(set(pilot.probe_drop_blocks)):
        drop = int(base["drop_last_blocks"]) + k
        if drop >= blocks:
            skipped.append(f"{probe_name(k)} left out: the backbone has {blocks} blocks, "
                           f"dropping {drop} would leave none")
            continue
        plan = copy.deepcopy(base)
        plan.update(candidate=probe_name(k), candidate_kind="probe", drop_last_blocks=drop)
        plan["reasons"].append(f"probe candidate {probe_name(k)}: the head on block {blocks - drop}"
                               f" of {blocks} (the last {drop} dropped; strategy.pilot."
                               "probe_drop_blocks)")
        plans[probe_name(k)] = plan
    return skipped


def add_recipe_variants(plans: dict[str, dict[str, Any]], pilot: PilotSettings | dict[str, Any],
                        recommended: str) -> None:
    """Add (in place) one candidate per ``strategy.pilot.recipe_variants`` entry: the matrix's
    recommendation, its plan's recipe with the variant's ingredient values on top (``source:
    pilot``). The halving then compares them as it compares strategies; on a tie the plain
    recommendation wins. Call after each plan has its recipe."""
    pilot = PilotSettings.model_validate(pilot) if isinstance(pilot, dict) else pilot
    for variant, values in pilot.recipe_variants.items():
        name = f"{recommended}+{variant}"
        plan = copy.deepcopy(plans[recommended])
        plan.update(candidate=name, candidate_kind="recipe variant")
        for ingredient, value in values.items():
            plan["recipe"][ingredient] = {
                "value": value, "source": "pilot",
                "reason": f"{ingredient}={value!r}: strategy.pilot.recipe_variants.{variant}"}
        plan["reasons"].append(f"recipe variant {name}: {values} (strategy.pilot.recipe_variants)")
        plans[name] = plan


def _rank_key(trial: dict[str, Any], recommended: str) -> tuple:
    """Best validation first; ties: the matrix's recommendation, the cheaper strategy, then the
    shorter network (a probe on earlier features costs less to train and to run)."""
    strategy = trial["strategy"]
    return (-trial["val_top1"], trial.get("candidate", strategy) != recommended,
            STRATEGIES.index(strategy), -int(trial.get("drop_last_blocks", 0)))


class _Arm:
    """One candidate: its plan, its (partly trained) model and the anchor it started from."""

    def __init__(self, pretrained: nn.Module, plan: dict[str, Any], num_classes: int, seed: int):
        self.plan = plan
        self.model = apply_surgery(copy.deepcopy(pretrained), num_classes,
                                   plan["trainable_blocks"], plan["drop_last_blocks"],
                                   plan["reinitialize"], seed)
        self.anchor = copy.deepcopy(self.model)  # pretrained weights, surgered: L2-SP's anchor
        self.epochs_done, self.val_top1, self.round_seconds = 0, -1.0, 0.0

    def train(self, epochs: int, splits: dict[str, ImageData], finetune: dict[str, Any],
              runtime: dict[str, Any] | None = None) -> None:
        before = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        started = time.perf_counter()
        # each candidate trains with its own plan's recipe (the user's finetune.* included)
        settings = {**apply_recipe(finetune, self.plan.get("recipe")), "epochs": epochs,
                    "progress": False}
        _, history = finetune_model(self.model, splits, self.plan, settings, runtime=runtime,
                                    anchor=self.anchor)
        self.round_seconds = time.perf_counter() - started
        self.epochs_done += epochs
        val = float(history["val_acc"].max())
        if val < self.val_top1:  # a continued round that did worse keeps the earlier weights
            self.model.load_state_dict(before)
        self.val_top1 = max(self.val_top1, val)


def _trial(arm: _Arm, name: str, epochs: int, round_index: int, splits: dict[str, ImageData],
           finetune: dict[str, Any], runtime: dict[str, Any]) -> dict[str, Any]:
    """Train ``arm`` ``epochs`` more epochs; the trial's row."""
    plan = arm.plan
    per_epoch = plan["budget"]["steps_per_epoch"]
    arm.train(epochs, splits, finetune, runtime)
    logger.info("Pilot round %d: %s %d steps, val top-1 %.4f", round_index, name,
                arm.epochs_done * per_epoch, arm.val_top1)
    return {"round": round_index, "strategy": plan.get("strategy", name), "candidate": name,
            "drop_last_blocks": plan["drop_last_blocks"],
            "regularizer": plan["regularizer"]["name"], "steps": epochs * per_epoch,
            "total_steps": arm.epochs_done * per_epoch, "val_top1": arm.val_top1,
            "seconds": round(arm.round_seconds, 2)}


def run_pilot(pretrained: nn.Module, splits: dict[str, ImageData], plans: dict[str, dict],
              recommended: str, pilot: dict[str, Any], finetune: dict[str, Any], seed: int,
              runtime: dict[str, Any] | None = None
              ) -> tuple[str, nn.Module, list[dict[str, Any]], int]:
    """Successive halving over the strategies of ``plans`` (candidate name -> plan), then, when
    ``head_only`` wins and ``plans`` has head-only probes (``add_probe_candidates``), the probe
    depth (``_probe_depth``); (winner's name, its model, trials, epochs it trained). The halving's
    steps in all <= budget_fraction x the recommendation's steps.

    Trials run on ``runtime``'s device and precision, in this process: each is a few epochs,
    shorter than spawning ``runtime.distributed.processes`` ranks for it would take."""
    runtime = {k: v for k, v in (runtime or {}).items() if k in ("device", "precision")}
    budget = float(pilot["budget_fraction"]) * plans[recommended]["budget"]["steps"]
    probes = {n: p for n, p in plans.items() if p.get("candidate_kind") == "probe"}
    survivors = [n for n in plans if n not in probes]
    rounds = max(1, math.ceil(math.log2(len(survivors))))
    arms = {s: _Arm(pretrained, plans[s], plans[s]["num_classes"], seed) for s in survivors}
    trials = []
    for round_index in range(rounds):
        arm_steps = budget / rounds / len(survivors)
        for name in survivors:
            per_epoch = plans[name]["budget"]["steps_per_epoch"]
            epochs = max(1, math.floor(arm_steps / per_epoch))
            trials.append({**_trial(arms[name], name, epochs, round_index + 1, splits,
                                    finetune, runtime), "stage": "halving"})
        keep = 1 if round_index == rounds - 1 else math.ceil(len(survivors) / 2)
        ranked = sorted(trials[-len(survivors):], key=lambda t: _rank_key(t, recommended))
        # rank 0's survivors: under torchrun every rank runs the pilot and must train the same
        survivors = rank0_decides([t["candidate"] for t in ranked][:keep])
    winner = survivors[0]
    if winner == "head_only" and probes:
        depth = {"head_only": plans["head_only"], **probes}
        winner, arm, more = _probe_depth(pretrained, depth, recommended, rounds + 1, seed,
                                         (splits, finetune, runtime))
        trials += more
        arms[winner] = arm
    return winner, arms[winner].model, trials, arms[winner].epochs_done


def _probe_depth(pretrained: nn.Module, plans: dict[str, dict], recommended: str,
                 round_index: int, seed: int, training: tuple
                 ) -> tuple[str, _Arm, list[dict[str, Any]]]:
    """Head-only won: which depth? Each head-only plan (the last block's features and the
    probes on earlier blocks) trains its whole budget from the pretrained weights -- a frozen
    backbone makes that cheap (with the frozen-prefix cache a step is one matrix product per
    batch) -- and the best on validation is kept (rank 0's choice). Whole budgets, because a
    probe on earlier features converges slowly: on digits with 6 per class 40-50 % validation
    after 9-27 steps, 70-90 % after 100; short trials would always keep the last block. Ties:
    the matrix's recommendation (the last block when it recommended head_only), else the
    shorter network."""
    trials, arms = [], {}
    for name, plan in plans.items():
        arms[name] = _Arm(pretrained, plan, plan["num_classes"], seed)
        trials.append({**_trial(arms[name], name, int(plan["epochs"]), round_index, *training),
                       "stage": "probe depth"})
    ranked = sorted(trials, key=lambda t: _rank_key(t, recommended))
    winner = rank0_decides(ranked[0]["candidate"])
    return winner, arms[winner], trials


def explain_pilot(winner: str, recommended: str, trials: list[dict[str, Any]]) -> str:
    """Plain words: did the pilot confirm the matrix, and if not, by how much on validation."""
    best = {t.get("candidate", t["strategy"]): t for t in trials}  # each candidate's last trial
    won = best[winner]
    if winner == recommended:
        return (f"the pilot confirms the matrix: {winner} reached the best validation top-1 "
                f"({won['val_top1']:.1%} after {won['total_steps']} steps)")
    prior = best[recommended]
    return (f"the pilot overrules the matrix: {winner} reached {won['val_top1']:.1%} validation "
            f"top-1 after {won['total_steps']} steps, the recommended {recommended} "
            f"{prior['val_top1']:.1%} after {prior['total_steps']} steps; the matrix's rule of "
            "thumb does not hold on this data at this budget")


def restart_after_pilot(plan: dict[str, Any], pilot: PilotSettings | dict[str, Any]
                        ) -> tuple[bool, str]:
    """(retrain the winner from the pretrained weights?, why): yes at or below
    ``restart_max_train_images`` training images. There the pilot's share was seconds, and the
    continued run (partly trained weights, a restarted warm-up and cosine) was measured worse
    than one training from the pretrained weights (docs/strategy.md, "After the pilot")."""
    pilot = PilotSettings.model_validate(pilot) if isinstance(pilot, dict) else pilot
    images, limit = int(plan["size"]["train_images"]), pilot.restart_max_train_images
    restart = rank0_decides(images <= limit)  # one choice for every rank of a torchrun world
    relation = "<=" if images <= limit else ">"
    return restart, (f"{images} training images {relation} "
                     f"strategy.pilot.restart_max_train_images {limit}")


def plan_after_pilot(recommendation: dict[str, Any], winner: str, trials: list[dict[str, Any]],
                     epochs_done: int, skipped: list[str], pilot: dict[str, Any]
                     ) -> dict[str, Any]:
    """The winner's plan (its full budget from the pretrained weights, or its remaining epochs
    from the pilot weights: ``restart_after_pilot``) and the pilot's record (``trials``,
    ``pilot``)."""
    plans = recommendation["candidate_plans"]
    plan = {k: v for k, v in plans[winner].items() if k != "candidate_plans"}
    plan["candidate"] = winner
    restart, restart_why = restart_after_pilot(plan, pilot)
    remaining = plan["epochs"] if restart else max(1, plan["epochs"] - epochs_done)
    why = explain_pilot(winner, recommendation["recommended"], trials)
    per_epoch = plan["budget"]["steps_per_epoch"]
    plan.update({
        "mode": "pilot",
        "decided_by": "pilot",
        "start_from": "pretrained" if restart else "pilot",
        "epochs": remaining,
        "trials": trials,
        "pilot": {
            "winner": winner,
            "matrix_recommendation": recommendation["recommended"],
            "why": why,
            "candidates": list(plans),
            "left_out": skipped,
            "budget_fraction": float(pilot["budget_fraction"]),
            "budget_steps": int(float(pilot["budget_fraction"])
                                * plans[recommendation["recommended"]]["budget"]["steps"]),
            "steps_run": int(sum(t["steps"] for t in trials)),
            "seconds": round(sum(t["seconds"] for t in trials), 2),
            "winner_steps_done": epochs_done * per_epoch,
            "restart": restart,
            "remaining_steps": remaining * per_epoch,
        },
    })
    if restart:
        then = (f"fine-tuning retrains {winner} from the pretrained weights for its full budget "
                f"({remaining} epochs, {remaining * per_epoch} steps): {restart_why} (the pilot "
                "only chooses)")
    else:
        then = (f"fine-tuning continues from the pilot weights for {remaining} more epochs "
                f"({remaining * per_epoch} steps; {epochs_done * per_epoch} done): {restart_why}")
    plan["reasons"] = [*plan["reasons"], f"pilot: {why}", then]
    return plan

