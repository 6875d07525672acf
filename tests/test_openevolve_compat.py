"""OpenEvolve-format evaluators run unchanged (issue 10): ``from openevolve.evaluation_result
import EvaluationResult`` works without OpenEvolve installed, under both sandboxes."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

import pytest

from evoforge.executors.local import LocalExecutor
from evoforge.program import Status
from evoforge.sandbox import bubblewrap_problem

EVALUATOR = textwrap.dedent('''
    import importlib.util
    from openevolve.evaluation_result import EvaluationResult

    def evaluate(program_path):
        spec = importlib.util.spec_from_file_location("program", program_path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        value = module.f()
        return EvaluationResult(metrics={"combined_score": value},
                                artifacts={"stdout_note": f"f() returned {value}"})
''')

SANDBOXES = ["process"] + (["bubblewrap"] if bubblewrap_problem() is None else [])


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_openevolve_evaluation_result_import_works_without_openevolve(tmp_path: Path,
                                                                     sandbox: str) -> None:
    (tmp_path / "evaluator.py").write_text(EVALUATOR)
    ex = LocalExecutor(tmp_path, sandbox=sandbox, timeout=30, warm_pool=False)

    async def go():
        try:
            return await ex.evaluate("def f():\n    return 0.75\n")
        finally:
            await ex.aclose()

    r = asyncio.run(go())
    assert r.status is Status.OK, (r.status, r.reason, r.artifacts)
    assert r.score == 0.75 and r.artifacts["stdout_note"] == "f() returned 0.75"


def test_other_missing_modules_still_fail_to_import(tmp_path: Path) -> None:
    (tmp_path / "evaluator.py").write_text("import openevolve.controller\n"
                                           "def evaluate(p):\n    return {'combined_score': 1}\n")
    ex = LocalExecutor(tmp_path, sandbox="process", timeout=30, warm_pool=False)

    async def go():
        try:
            return await ex.evaluate("x = 1\n")
        finally:
            await ex.aclose()

    r = asyncio.run(go())
    assert r.status is Status.FAILED and "openevolve.controller" in r.reason
