"""evoforge: LLM-guided evolutionary program search.

Heavy submodules are imported lazily so that ``import evoforge`` (and the CLI) start fast.
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # typing is not imported at run time: it costs ms in every worker
if TYPE_CHECKING:
    from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Config": "evoforge.config",
    "load_config": "evoforge.config",
    "EvaluationResult": "evoforge.evaluation_result",
    "EvoforgeError": "evoforge.errors",
    "ConfigError": "evoforge.errors",
    "ProblemError": "evoforge.errors",
    "EditError": "evoforge.errors",
    "StorageError": "evoforge.errors",
    "LLMError": "evoforge.errors",
    "Program": "evoforge.program",
    "Status": "evoforge.program",
    "EvalResult": "evoforge.program",
    "MutationInfo": "evoforge.program",
    "Problem": "evoforge.problem",
    "Run": "evoforge.run",
    "Proposal": "evoforge.run",
    "build_config": "evoforge.config",
    "evolve": "evoforge.api",
    "resume": "evoforge.api",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError(f"module 'evoforge' has no attribute {name!r}")
    return getattr(importlib.import_module(mod), name)


def __dir__() -> list[str]:
    return __all__
