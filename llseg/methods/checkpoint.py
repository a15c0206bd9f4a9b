"""Reading llseg's self-describing checkpoints (written by ``ContinualLearner.save``)."""
from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import IO, Any

import torch

from llseg.atomic import atomic_save

CHECKPOINT_FORMAT = "llseg-checkpoint/2"
_FORMAT_1 = "llseg-checkpoint/1"  # before recipes kept their own state: "seen" and "memory" at the top
ALLOW_PICKLE_ENV = "LLSEG_ALLOW_PICKLE"  # "1": also read checkpoints that need full unpickling (can run code)


def load_weights_file(path: str | Path) -> Any:
    """``torch.load`` of ``path`` onto the CPU, restricted to tensors and plain containers
    (``weights_only=True``): a crafted file cannot run code. Files that need full unpickling (older
    torch pickles of arbitrary objects) load only with ``LLSEG_ALLOW_PICKLE=1`` (trusted files only).

    Raises:
        ValueError: unreadable, or holding other objects without the opt-in (the message names the file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    trusted = os.environ.get(ALLOW_PICKLE_ENV) == "1"
    try:
        return torch.load(path, map_location="cpu", weights_only=not trusted)
    except pickle.UnpicklingError as exc:
        blocked = [line.strip() for line in str(exc).splitlines() if "GLOBAL" in line]
        if not blocked:  # not a pickle of tensors and containers at all: damaged or another format
            detail = next((line.strip() for line in str(exc).splitlines() if line.startswith("Unsupported")), "bad pickle data")
            raise ValueError(f"{path} is not a readable checkpoint ({detail})") from None
        raise ValueError(
            f"{path} holds Python objects besides tensors and plain containers ({blocked[0]}); loading it could run "
            f"arbitrary code, so llseg refuses. If you trust its origin, rerun with {ALLOW_PICKLE_ENV}=1 and save "
            "it again with llseg to get a safe file"
        ) from None
    except Exception as exc:  # torch raises many exception types for corrupt files
        raise ValueError(f"{path} is not a readable checkpoint ({exc})") from None


def write_checkpoint(path: str | Path, checkpoint: dict[str, Any]) -> None:
    """``torch.save`` ``checkpoint`` to ``path`` atomically (temp file, fsync, rename): a kill during
    the write leaves the previous file or none, never a truncated one."""
    def save(handle: IO[bytes]) -> None:
        torch.save(checkpoint, handle)

    atomic_save(path, save)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint file onto the CPU without running code (:func:`load_weights_file`); errors
    name the file. Format 1 files are upgraded."""
    path = Path(path)
    checkpoint = load_weights_file(path)
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
