"""Optional TensorBoard event files (config key ``tensorboard``: the folder they go to).

Rank 0 writes, through ``torch.utils.tensorboard`` (needs the ``tensorboard`` package, the extra
``llseg[tensorboard]``): per training epoch ``train/loss``, ``train/<term>`` (the recipe's loss
terms), ``train/lr`` and ``train/images_per_s`` at step = epochs trained so far over all stages;
per evaluation ``eval/<metric>`` (mIoU_*, hIoU, accuracy) at step = the stage (round) number.
"""
from __future__ import annotations

import importlib.util
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from llseg import distributed
from llseg.errors import ConfigError

INSTALL_HINT = "pip install 'llseg[tensorboard]' (or pip install tensorboard), or drop the key tensorboard"


def check_available() -> None:
    """Raise ``ConfigError`` when the ``tensorboard`` package is not installed."""
    if importlib.util.find_spec("tensorboard") is None:
        raise ConfigError(f"tensorboard: writing event files needs the tensorboard package; {INSTALL_HINT}")


class EventLog:
    """Scalars to TensorBoard event files in ``folder`` on rank 0; a no-op when ``folder`` is None.
    The writer (one new event file) is opened at the first write."""

    def __init__(self, folder: str | None) -> None:
        self.folder = folder
        self.writer: Any = None

    def scalars(self, values: Mapping[str, float | None], step: int) -> None:
        """Write the finite ``values`` (tag -> number) at ``step`` and flush."""
        if self.folder is None or not distributed.is_main():
            return
        if self.writer is None:
            from torch.utils.tensorboard import SummaryWriter

            Path(self.folder).mkdir(parents=True, exist_ok=True)
            self.writer = SummaryWriter(log_dir=self.folder)
        for tag, value in values.items():
            if value is not None and math.isfinite(value):
                self.writer.add_scalar(tag, value, step)
        self.writer.flush()
