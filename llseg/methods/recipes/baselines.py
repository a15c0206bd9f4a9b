"""The two reference points of every continual benchmark: ``finetune`` (the lower bound that shows
forgetting) and ``joint`` (all classes at once, the upper bound)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from llseg.methods.recipe import Pair, Recipe, Row
from llseg.methods.registry import register_recipe


@register_recipe("finetune")
class Finetune(Recipe):
    """Grow the current model and train it on the new labels only."""


@register_recipe("joint")
class Joint(Recipe):
    """A fresh model on every stage's images so far with their full labels (Klingner's "Baseline"
    after the last stage). Classes the full labels show before their step get channels after
    every class group (``ContinualLearner.pending``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seen: list[Pair] = []

    @property
    def fresh_student(self) -> bool:
        return True

    def stage_pairs(self, rows: Sequence[Row]) -> list[Pair]:
        self.seen = list(dict.fromkeys([*self.seen, *((image, full) for image, full, _ in rows)]))
        return self.seen

    def state_dict(self) -> dict[str, Any]:
        return {"seen": [list(p) for p in self.seen]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.seen = [(str(i), str(f)) for i, f in state.get("seen", [])]
