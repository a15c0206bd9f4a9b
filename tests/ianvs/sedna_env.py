"""Whether KubeEdge Sedna is importable here; tests that need it are skipped with the reason."""
from __future__ import annotations

from pathlib import Path

import pytest

from llseg.ianvs import registry

REPO = Path(__file__).resolve().parents[2]


def sedna_missing() -> str | None:
    try:
        factory = registry.sedna_class_factory()
    except ImportError as exc:
        return f"the installed 'sedna' is not KubeEdge Sedna: {exc}"
    return None if factory else "KubeEdge Sedna is not installed (Ianvs bundles sedna-0.6.0.1-py3-none-any.whl)"


needs_sedna = pytest.mark.skipif(sedna_missing() is not None, reason=str(sedna_missing()))
