"""Shared helpers for the per-problem tests in this folder: loading a problem's files as modules,
evaluating candidate programs through the real executor, and a short model-free ``evolve`` run.

A plain module (not a test file): pytest puts this folder on ``sys.path`` (it has no
``__init__.py``), so the tests here import it as ``support``.
"""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from evoforge.api import evolve
from evoforge.config import build_config
from evoforge.executors.local import LocalExecutor
from evoforge.problem import Problem
from evoforge.program import EvalResult, Program, Status


def load_module(path: Path, name: str) -> ModuleType:
    """Import the Python file at ``path`` as a fresh module called ``name`` (not registered in
    ``sys.modules``, so problems' files named ``evaluator.py`` never shadow one another)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None, f"cannot import {path}"
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_evaluator(prob: Problem) -> ModuleType:
    """The problem's ``evaluator.py`` as a module, to call its checks directly."""
    return load_module(prob.evaluator, f"_test_{prob.path.name}_evaluator")


def skip_without_tools(prob: Problem) -> None:
    """Skip the calling test unless every tool the problem requires (problem.yaml) is on PATH."""
    missing = prob.missing_tools()
    if missing:
        pytest.skip(f"{', '.join(sorted(missing))} not installed "
                    f"(apt-get install {' '.join(sorted(set(missing.values())))})")


def make_executor(prob: Problem, tmp_path: Path, **evaluation: Any) -> LocalExecutor:
    """A LocalExecutor configured from the problem's own config with ``evaluation`` overrides,
    its scratch space under ``tmp_path``."""
    cfg = build_config(prob.config, {"evaluation": evaluation} if evaluation else {})
    ex = LocalExecutor.from_config(prob.path, cfg.evaluation, score_metric=cfg.objective.score_metric,
                                   program_name=prob.program_name)
    ex.scratch_root = tmp_path / "scratch"
    return ex


def evaluate_codes(prob: Problem, tmp_path: Path, codes: list[str], *, concurrent: bool = False,
                   **evaluation: Any) -> list[EvalResult]:
    """Evaluate ``codes`` through the real executor (see ``make_executor``), one after another or,
    with ``concurrent``, all at once (as many in parallel as the executor has workers); the
    executor is closed afterwards. Results are in the order of ``codes``."""
    ex = make_executor(prob, tmp_path, **evaluation)

    async def go() -> list[EvalResult]:
        try:
            if concurrent:
                return list(await asyncio.gather(*(ex.evaluate(c) for c in codes)))
            return [await ex.evaluate(c) for c in codes]
        finally:
            await ex.aclose()

    return asyncio.run(go())


def assert_times_out(prob: Problem, tmp_path: Path, code: str, **evaluation: Any) -> EvalResult:
    """Evaluate the single candidate ``code`` (see ``evaluate_codes``), assert that it timed out,
    and return its result."""
    (r,) = evaluate_codes(prob, tmp_path, [code], **evaluation)
    assert r.status is Status.TIMEOUT, (r.status, r.reason)
    return r


def replace_block(code: str, start: str, end: str, body: str) -> str:
    """``code`` with the text between the marker lines ``start`` and ``end`` replaced by ``body``."""
    head, rest = code.split(start + "\n")
    _, tail = rest.split(end)
    return f"{head}{start}\n{body}{end}{tail}"


def model_free_best(prob: Problem, tmp_path: Path, *, max_programs: int, seed: int,
                    **evaluation: Any) -> Program:
    """Run a short model-free ``evolve`` (no time limit, two workers plus ``evaluation``
    overrides) in ``tmp_path / "r"`` and return its best program."""
    cfg = build_config(prob.config, {"max_programs": max_programs, "max_time": None, "seed": seed,
                                     "evaluation": {"workers": 2, **evaluation}})
    outcome = evolve(prob, run_dir=tmp_path / "r", config=cfg)
    assert outcome.best is not None
    return outcome.best
