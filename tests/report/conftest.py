"""The runner tests' repository fixtures (a temporary repo root with test doubles), shared here."""
from tests.runner.conftest import _restore_environ, repo  # noqa: F401
