"""evoforge.testing's function-backed fakes behave like the real parts they stand for."""

from __future__ import annotations

import asyncio
import random

import pytest

from evoforge.mutators.base import MutationRequest
from evoforge.mutators.llm import LLMMutator
from evoforge.program import Program, Status
from evoforge.prompting import PromptBuilder
from evoforge.testing import FunctionExecutor, FunctionLLM, FunctionMutator

PARENT = "# EVOLVE-BLOCK-START\nx = 1\n# EVOLVE-BLOCK-END\n"
DIFF = "<<<<<<< SEARCH\nx = 1\n=======\nx = 2\n>>>>>>> REPLACE\n"


def _request() -> MutationRequest:
    return MutationRequest(parent=Program(id=0, code=PARENT, status=Status.OK, score=1.0),
                           rng=random.Random(0))


def test_function_llm_drives_the_real_llm_mutator() -> None:
    llm = FunctionLLM(lambda messages: DIFF)
    outcome = asyncio.run(LLMMutator(llm, PromptBuilder()).mutate(_request()))
    assert outcome.code is not None and "x = 2" in outcome.code
    assert len(llm.requests) == 1 and "x = 1" in llm.requests[0][-1]["content"]


def test_function_mutator_none_means_no_child_and_bad_types_are_errors() -> None:
    assert asyncio.run(FunctionMutator(lambda r: None).mutate(_request())).code is None
    with pytest.raises(TypeError, match="return code"):
        asyncio.run(FunctionMutator(lambda r: 3).mutate(_request()))


@pytest.mark.parametrize(("returned", "status", "score"), [
    (2.5, Status.OK, 2.5),
    ({"combined_score": 1.0, "other": 3.0}, Status.OK, 1.0),
    ({"other": 3.0}, Status.OK, 3.0),
    ({"a": 1.0, "b": 2.0}, Status.FAILED, None),
    ({"combined_score": float("nan")}, Status.FAILED, None),
    ("text", Status.FAILED, None),
])
def test_function_executor_maps_returns_to_results(returned, status, score) -> None:
    r = asyncio.run(FunctionExecutor(lambda code: returned).evaluate("x"))
    assert r.status is status and r.score == score


def test_function_executor_exceptions_are_failed_results() -> None:
    def boom(code: str) -> float:
        raise ValueError("no good")

    r = asyncio.run(FunctionExecutor(boom).evaluate("x"))
    assert r.status is Status.FAILED and "ValueError: no good" in r.reason


def test_the_llm_error_policy_is_an_object_the_mutator_asks() -> None:
    """A custom policy changes what a refusal means (issue 9: the LLM error policy is its own
    object): here every refusal stops the run instead of skipping the proposal."""
    from evoforge.errors import LLMError
    from evoforge.llms.policy import ErrorPolicy

    def refuse(messages):
        raise LLMError("HTTP 422: nope", retryable=False, kind="rejected")

    default = LLMMutator(FunctionLLM(refuse), PromptBuilder())
    outcome = asyncio.run(default.mutate(_request()))
    assert outcome.code is None and "HTTP 422" in outcome.info.note  # skipped

    class Strict(ErrorPolicy):
        def decide(self, error):
            return "stop"

    strict = LLMMutator(FunctionLLM(refuse), PromptBuilder(), policy=Strict())
    with pytest.raises(LLMError, match="HTTP 422"):
        asyncio.run(strict.mutate(_request()))
