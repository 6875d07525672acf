"""LLMMutator end to end: PromptBuilder -> OpenAICompatLLM -> scripted server -> edit."""

from __future__ import annotations

import asyncio
import random

import pytest

from evoforge.config import ModelConfig, build_config
from evoforge.errors import LLMError
from evoforge.llms.openai_compat import OpenAICompatLLM
from evoforge.mutators.base import MutationOutcome, MutationRequest
from evoforge.mutators.llm import LLMMutator
from evoforge.program import Program, Status
from evoforge.prompting import PromptBuilder
from evoforge.testing.openai_server import ChatRequest, OpenAITestServer, error, reply

PARENT = """import math

# EVOLVE-BLOCK-START
def area(r):
    return 3.14 * r * r
# EVOLVE-BLOCK-END

print(area(2))
"""

GOOD_DIFF = """Use the exact constant.

<<<<<<< SEARCH
    return 3.14 * r * r
=======
    return math.pi * r * r
>>>>>>> REPLACE
"""

EXPECTED_CHILD = PARENT.replace("3.14 * r * r", "math.pi * r * r")


def make_mutator(srv: OpenAITestServer, edit_mode: str = "diff", **kw: object) -> LLMMutator:
    opts: dict[str, object] = dict(base_url=srv.base_url, api_key="sk-test", retries=1,
                                   request_timeout=2.0, backoff_base=0.001, backoff_max=0.01,
                                   proposal_deadline=10.0)
    opts.update(kw)
    llm = OpenAICompatLLM([ModelConfig(name="coder", input_price=1.0, output_price=4.0)],
                          **opts)  # type: ignore[arg-type]
    return LLMMutator(llm, PromptBuilder(edit_mode=edit_mode), edit_mode=edit_mode)


def request() -> MutationRequest:
    parent = Program(id=1, code=PARENT, status=Status.OK, score=12.56,
                     metrics={"combined_score": 12.56})
    return MutationRequest(parent=parent, rng=random.Random(7), task="Compute areas exactly.")


def mutate(m: LLMMutator) -> MutationOutcome:
    async def go() -> MutationOutcome:
        try:
            return await m.mutate(request())
        finally:
            await m.aclose()
    return asyncio.run(go())


def test_scripted_diff_yields_expected_child() -> None:
    with OpenAITestServer([reply(GOOD_DIFF, prompt_tokens=1000, completion_tokens=100)]) as srv:
        out = mutate(make_mutator(srv))
        sent = srv.requests[0]["messages"]
    assert out.code == EXPECTED_CHILD
    info = out.info
    assert (info.mutator, info.model, info.edit_kind) == ("llm", "coder", "diff")
    assert (info.prompt_tokens, info.completion_tokens, info.attempts) == (1000, 100, 1)
    assert info.cost == pytest.approx((1000 * 1.0 + 100 * 4.0) / 1e6)
    assert "1 SEARCH/REPLACE block(s) applied" in info.note
    # the prompt that went over the wire is the builder's
    assert sent == PromptBuilder().build(request())
    assert "Compute areas exactly." in sent[1]["content"]


def test_diff_that_does_not_apply_counts_tokens() -> None:
    bad = "<<<<<<< SEARCH\n    return 2 * r\n=======\n    return 3 * r\n>>>>>>> REPLACE\n"
    with OpenAITestServer([reply(bad, prompt_tokens=900, completion_tokens=40)]) as srv:
        out = mutate(make_mutator(srv))
    assert out.code is None
    assert out.info.note.startswith("edit did not apply:")
    assert "SEARCH text not found" in out.info.note
    assert (out.info.prompt_tokens, out.info.completion_tokens) == (900, 40)
    assert out.info.cost > 0 and out.info.model == "coder"


def test_reply_without_diff_blocks() -> None:
    with OpenAITestServer([reply("I would use math.pi.")]) as srv:
        out = mutate(make_mutator(srv))
    assert out.code is None and "no SEARCH/REPLACE blocks" in out.info.note


def test_diff_touching_marker_is_rejected() -> None:
    diff = ("<<<<<<< SEARCH\n# EVOLVE-BLOCK-END\n=======\n# gone\n>>>>>>> REPLACE\n")
    with OpenAITestServer([reply(diff)]) as srv:
        out = mutate(make_mutator(srv))
    assert out.code is None and "marker" in out.info.note


def test_syntax_error_makes_child_invalid() -> None:
    diff = ("<<<<<<< SEARCH\n    return 3.14 * r * r\n=======\n    return (3.14 * r\n"
            ">>>>>>> REPLACE\n")
    with OpenAITestServer([reply(diff, prompt_tokens=5, completion_tokens=6)]) as srv:
        out = mutate(make_mutator(srv))
    assert out.code is None
    assert out.info.note.startswith("syntax error in child: line ")
    assert out.info.completion_tokens == 6


def test_rewrite_mode() -> None:
    new = PARENT.replace("3.14", "math.pi")
    text = f"Here it is:\n```python\n{new}```\n"
    with OpenAITestServer([reply(text)]) as srv:
        out = mutate(make_mutator(srv, edit_mode="rewrite"))
        user = srv.requests[0]["messages"][1]["content"]
    assert out.code == new
    assert out.info.edit_kind == "rewrite" and out.info.note == "rewrite applied"
    assert "complete new program" in user and "<<<<<<< SEARCH" not in user


def test_rewrite_that_changes_fixed_code_is_rejected() -> None:
    new = PARENT.replace("print(area(2))", "print('hacked')")
    with OpenAITestServer([reply(f"```python\n{new}```\n")]) as srv:
        out = mutate(make_mutator(srv, edit_mode="rewrite"))
    assert out.code is None and out.info.note.startswith("edit did not apply:")


def test_unchanged_program_is_not_a_child() -> None:
    same = "<<<<<<< SEARCH\n    return 3.14 * r * r\n=======\n    return 3.14 * r * r\n" \
           ">>>>>>> REPLACE\n"
    with OpenAITestServer([reply(same)]) as srv:
        out = mutate(make_mutator(srv))
    assert out.code is None and "unchanged" in out.info.note


def test_retryable_llm_error_becomes_a_note() -> None:
    with OpenAITestServer(default=error(503)) as srv:
        out = mutate(make_mutator(srv, retries=2))
        assert srv.request_count == 3
    assert out.code is None
    assert out.info.note.startswith("llm: ") and "HTTP 503" in out.info.note
    assert out.info.attempts == 3 and out.info.mutator == "llm"


def test_permanent_llm_error_is_raised() -> None:
    with OpenAITestServer(default=error(401)) as srv:
        with pytest.raises(LLMError) as ei:
            mutate(make_mutator(srv))
        assert srv.request_count == 1
    assert ei.value.retryable is False and "API key" in str(ei.value)


def test_replies_per_prompt_with_callable_script() -> None:
    def script(req: ChatRequest):  # noqa: ANN202
        user = req.messages[-1]["content"]
        return reply(GOOD_DIFF if "Compute areas exactly." in user else "no idea")

    with OpenAITestServer(script) as srv:
        out = mutate(make_mutator(srv))
    assert out.code == EXPECTED_CHILD


def test_from_config_and_flags() -> None:
    with OpenAITestServer([reply(GOOD_DIFF)]) as srv:
        cfg = build_config({"llm": {"base_url": srv.base_url, "models": ["m"],
                                    "api_key_env": "EVO_UNSET_KEY_FOR_TEST"},
                            "mutator": {"name": "llm", "edit_mode": "diff"}})
        m = LLMMutator.from_config(cfg)
        assert m.name == "llm" and m.uses_llm is True and m.edit_mode == "diff"
        out = mutate(m)
    assert out.code == EXPECTED_CHILD
