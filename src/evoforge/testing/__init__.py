"""Test helpers that ship with evoforge: real components on loopback, no mocks.

``evoforge.testing.openai_server`` is a scripted OpenAI-compatible chat server used by the
test suite and the throughput benchmarks; ``evoforge.testing.fakes`` has function-backed
collaborators (``FunctionMutator``, ``FunctionExecutor``, ``FunctionLLM``);
``evoforge.testing.perturb`` has ``perturbing(seed)``, a server script that answers like a model
nudging one number of the parent (for benchmarks of the search itself). Names are imported lazily so that
``python -m evoforge.testing.openai_server`` runs the module only once.
"""

from __future__ import annotations

import importlib
from typing import Any

_FAKES = ("FunctionExecutor", "FunctionLLM", "FunctionMutator")
_PERTURB = ("Perturbing", "perturbing")
__all__ = [
    "Action",
    "ChatRequest",
    "FunctionExecutor",
    "FunctionLLM",
    "FunctionMutator",
    "OpenAITestServer",
    "Perturbing",
    "RecordedRequest",
    "empty",
    "empty_content",
    "error",
    "hang",
    "malformed",
    "perturbing",
    "reply",
]


def __getattr__(name: str) -> Any:
    if name in _FAKES:
        return getattr(importlib.import_module("evoforge.testing.fakes"), name)
    if name in _PERTURB:
        return getattr(importlib.import_module("evoforge.testing.perturb"), name)
    if name in __all__:
        return getattr(importlib.import_module("evoforge.testing.openai_server"), name)
    raise AttributeError(f"module 'evoforge.testing' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
