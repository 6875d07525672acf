"""The public API is pinned: adding or removing an export is a deliberate change to this list."""

from __future__ import annotations

import subprocess
import sys

import evoforge

EXPECTED = {
    "Config", "ConfigError", "EditError", "EvalResult", "EvaluationResult", "EvoforgeError",
    "LLMError", "MutationInfo", "Problem", "ProblemError", "Program", "Proposal", "Run",
    "Status", "StorageError", "__version__", "build_config", "evolve", "load_config", "resume",
}


def test_exports_are_pinned_and_importable():
    assert set(evoforge.__all__) == EXPECTED
    for name in evoforge.__all__:
        assert getattr(evoforge, name) is not None


def test_errors_share_one_root():
    for name in ("ConfigError", "EditError", "LLMError", "ProblemError", "StorageError"):
        assert issubclass(getattr(evoforge, name), evoforge.EvoforgeError)


def test_import_is_light():
    """`import evoforge` must not pull in the heavy libraries (the CLI and workers start fast)."""
    code = ("import sys, evoforge; heavy = [m for m in ('openai', 'pydantic', 'rich', 'jinja2') "
            "if m in sys.modules]; print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
