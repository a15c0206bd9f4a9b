"""``python -m tests.methods.tiny_llseg ARGS`` = ``python -m llseg ARGS`` with the tests' GroupNorm
model ``test_tiny_gn`` registered, so that torchrun's ranks can train a model whose data-parallel
steps equal one process's exactly (no BatchNorm statistics, no dropout)."""
from __future__ import annotations

import sys

from llseg.cli import main
from tests.methods.test_distributed import _register_tiny

if __name__ == "__main__":
    _register_tiny()
    sys.exit(main())
