"""Remove a node's training checkpoints once its outputs are stored.

The training function cannot do it itself: Kedro saves the outputs *after* the node returns, so a
run killed between the two would lose the finished training. The checkpoint callback reports the
folders of the trainings that finished (``take_finished_checkpoints``); this hook removes them
when every output of that node has been saved (``finetune.keep_checkpoints: true`` keeps them).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl

from ft_pipelines.core.training import take_finished_checkpoints
from ft_pipelines.hooks.parameters import ParametersHook

logger = logging.getLogger(__name__)


class CheckpointCleanupHook:
    def __init__(self, parameters: ParametersHook) -> None:
        self.parameters = parameters
        self.keep = False
        self.root: Path | None = None  # finetune.checkpoint_dir: emptied parents up to it go
        self.pending: dict[str, list[Path]] = {}  # node name -> its finished checkpoint folders
        self.saved: dict[str, set[str]] = {}

    @hook_impl
    def after_catalog_created(self) -> None:
        finetune = self.parameters.validated().finetune
        self.keep, self.root = finetune.keep_checkpoints, Path(finetune.checkpoint_dir).resolve()
        self.pending, self.saved = {}, {}

    @hook_impl
    def before_node_run(self) -> None:
        take_finished_checkpoints()  # forget trainings not run by a node (nothing to remove)

    @hook_impl
    def after_node_run(self, node: Any) -> None:
        folders = take_finished_checkpoints()
        if folders:
            self.pending[node.name] = folders
            self.saved[node.name] = set()
            if not node.outputs:
                self._release(node.name)

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, node: Any) -> None:
        if node.name not in self.pending:
            return
        self.saved[node.name].add(dataset_name)
        if self.saved[node.name] >= set(node.outputs):
            self._release(node.name)

    @hook_impl
    def on_node_error(self, node: Any) -> None:
        take_finished_checkpoints()
        self.pending.pop(node.name, None)  # outputs not saved: the checkpoints must stay

    def _release(self, node_name: str) -> None:
        folders = self.pending.pop(node_name)
        self.saved.pop(node_name, None)
        for folder in folders:
            if self.keep:
                logger.info("Keeping checkpoints in %s (finetune.keep_checkpoints)", folder)
            else:
                shutil.rmtree(folder, ignore_errors=True)
                self._remove_empty_parents(folder)
                logger.info("Outputs of %s saved: removed its checkpoints %s", node_name, folder)

    def _remove_empty_parents(self, folder: Path) -> None:
        """Pruning keeps ``prune-<key>/attempt-N``: the emptied ``prune-<key>`` goes too."""
        parent = folder.resolve().parent
        while self.root is not None and parent != self.root and self.root in parent.parents:
            try:
                parent.rmdir()  # only when empty
            except OSError:
                return
            parent = parent.parent
