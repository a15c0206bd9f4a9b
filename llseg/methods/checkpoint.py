"""Reading llseg's self-describing checkpoints (written by ``ContinualLearner.save``)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

CHECKPOINT_FORMAT = "llseg-checkpoint/2"
_FORMAT_1 = "llseg-checkpoint/1"  # before recipes kept their own state: "seen" and "memory" at the top


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint file onto the CPU; errors name the file. Format 1 files are upgraded."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many exception types for corrupt files
        raise ValueError(f"{path} is not a readable checkpoint ({exc})") from None
    if isinstance(checkpoint, dict) and checkpoint.get("format") == _FORMAT_1:
        return _upgrade(checkpoint)
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not an llseg checkpoint (expected format {CHECKPOINT_FORMAT})")
    return checkpoint


def _upgrade(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """Format 1 -> 2: the recipe's state moves under ``recipe_state``, and the hyperparameters keep
    only the recipe's own options (format 1 stored every recipe's, at their defaults)."""
    from llseg.methods.config import SHARED_KEYS
    from llseg.methods.registry import get_recipe

    recipe = get_recipe(checkpoint["recipe"])
    own = set(recipe.Options.__dataclass_fields__)
    hps = {k: v for k, v in checkpoint["hyperparameters"].items() if k in SHARED_KEYS or k in own}
    hps["recipe"] = recipe.name
    state = {"seen": checkpoint.pop("seen", []), "memory": checkpoint.pop("memory", [])}
    return {**checkpoint, "format": CHECKPOINT_FORMAT, "hyperparameters": hps, "recipe_state": state}
