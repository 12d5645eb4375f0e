"""``surgery``: carrying out the plan on the pretrained network."""

from __future__ import annotations

from ft_pipelines.core.utils.schema import Schema, Seed


class SurgeryParams(Schema):
    seed: Seed = 0                          # for re-initialisation (from_scratch)
