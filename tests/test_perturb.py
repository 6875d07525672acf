"""evoforge.testing.perturb: the test server's perturb mode reads the parent from a real prompt,
changes one numeric literal inside its EVOLVE blocks, and replies with a diff that applies."""

from __future__ import annotations

import asyncio
import random
import re

from evoforge.edit import apply_diff, check_fixed_parts, parse_diff, python_syntax_error
from evoforge.mutators.base import MutationRequest
from evoforge.mutators.llm import LLMMutator
from evoforge.program import Program, Status
from evoforge.prompting import PromptBuilder
from evoforge.testing import FunctionLLM, perturbing
from evoforge.testing.openai_server import ChatRequest, OpenAITestServer
from evoforge.testing.perturb import Literal, _diff_for, current_program, numeric_literals

PARENT = '''"""Docstring with 12.5 in it."""
import math

LIMIT = 100  # outside the block: fixed

# EVOLVE-BLOCK-START
def params():
    alpha = 0.75
    beta = -3  # comment 42
    gamma = [1.5, 2e-3, 7]
    label = "v3.14"
    return alpha, beta, gamma, label, 0x1F
# EVOLVE-BLOCK-END

SCALE = 2.5
'''

CONTEXT_CODE = PARENT.replace("alpha = 0.75", "alpha = 9.99")


def _prompt(code: str = PARENT) -> list[dict[str, str]]:
    parent = Program(id=7, code=code, generation=2, status=Status.OK, score=1.25,
                     metrics={"combined_score": 1.25})
    context = (Program(id=3, code=CONTEXT_CODE, status=Status.OK, score=0.5,
                       metrics={"combined_score": 0.5}),)
    partners = (Program(id=4, code=CONTEXT_CODE.replace("9.99", "8.88"), status=Status.OK,
                        score=0.7, metrics={"combined_score": 0.7}),)
    req = MutationRequest(parent=parent, rng=random.Random(0), context=context, others=partners,
                          task="Tune the parameters.")
    return PromptBuilder().build(req)


def _request(messages: list[dict[str, str]], index: int = 0) -> ChatRequest:
    return ChatRequest(model="m", messages=messages, body={}, index=index)


def _changed_lines(a: str, b: str) -> list[int]:
    la, lb = a.split("\n"), b.split("\n")
    assert len(la) == len(lb)
    return [i for i, (x, y) in enumerate(zip(la, lb, strict=True)) if x != y]


def test_reads_the_parent_from_a_real_prompt() -> None:
    user = _prompt()[1]["content"]
    assert current_program(user) == PARENT  # not a context program, not a partner
    assert current_program("# Task\nno program here\n") is None


def test_block_literals_only_numbers_in_code_inside_the_block() -> None:
    lits = numeric_literals(PARENT)
    assert [lit.text for lit in lits] == ["0.75", "-3", "1.5", "2e-3", "7"]
    assert [lit.is_int for lit in lits] == [False, True, False, False, True]
    assert lits[1].value == -3


def test_reply_changes_one_block_literal_and_applies() -> None:
    script = perturbing(seed=5)
    messages = _prompt()
    block_lines = {i for i, ln in enumerate(PARENT.split("\n"))
                   if any(s in ln for s in ("alpha =", "beta =", "gamma ="))}
    seen_lines = set()
    for k in range(200):
        action = script(_request(messages, k))
        assert action.kind == "reply" and action.text is not None
        assert len(parse_diff(action.text)) == 1
        child = apply_diff(PARENT, action.text)
        check_fixed_parts(PARENT, child)
        assert python_syntax_error(child) is None
        changed = _changed_lines(PARENT, child)
        assert len(changed) == 1 and changed[0] in block_lines
        seen_lines |= set(changed)
        before = [lit.text for lit in numeric_literals(PARENT)]
        after = [lit.text for lit in numeric_literals(child)]
        diffs = [(a, b) for a, b in zip(before, after, strict=True) if a != b]
        assert len(diffs) == 1
        a, b = diffs[0]
        is_int = re.fullmatch(r"-?\d+", a) is not None
        assert (re.fullmatch(r"-?\d+", b) is not None) == is_int  # ints stay ints
        assert '"v3.14"' in child and "0x1F" in child and "# comment 42" in child
    assert seen_lines == block_lines  # every literal line gets picked at some point


def test_deterministic_per_seed_and_parent_and_varied_on_repeats() -> None:
    messages = _prompt()

    def replies(seed: int) -> list[str | None]:
        script = perturbing(seed)
        return [script(_request(messages, k)).text for k in range(20)]

    a = replies(1)
    assert a == replies(1)  # same seed, same requests: same replies
    assert len(set(a)) > 15  # a parent asked for again gets a new draw
    assert replies(2) != a
    # the draw depends on the parent's code and the seed, not on the rest of the prompt
    other = [dict(m) for m in messages]
    other[1]["content"] = other[1]["content"].replace("Tune the parameters.", "Other task.")
    assert perturbing(1)(_request(other)).text == a[0]


def test_mutate_without_a_prompt_draws_what_the_prompt_would() -> None:
    via_prompt = perturbing(3)(_request(_prompt())).text
    assert via_prompt is not None
    assert perturbing(3).mutate(PARENT) == apply_diff(PARENT, via_prompt)


def test_a_repeated_line_gets_enough_context_to_be_unique() -> None:
    code = ("# EVOLVE-BLOCK-START\nx = 1.0\ny = 2\nx = 1.0\nz = 3\n# EVOLVE-BLOCK-END\n"
            "# EVOLVE-BLOCK-START\nx = 1.0\n# EVOLVE-BLOCK-END\n")
    second = Literal(line=3, start=4, end=7, text="1.0")
    child = apply_diff(code, _diff_for(code, second, "5.0"))
    assert _changed_lines(code, child) == [3]
    third = Literal(line=7, start=4, end=7, text="1.0")
    assert _diff_for(code, third, "5.0") is None  # no SEARCH can single it out
    script = perturbing(0)  # ... so it is never the literal picked
    for _ in range(50):
        child = script.mutate(code)
        assert child is not None and 7 not in _changed_lines(code, child)


def test_unary_minus_belongs_to_the_literal_and_signs_may_flip() -> None:
    code = "# EVOLVE-BLOCK-START\nv = (-0.05, 3 - 2, f(- 1))\n# EVOLVE-BLOCK-END\n"
    assert [lit.text for lit in numeric_literals(code)] == ["-0.05", "3", "2", "-1"]
    script = perturbing(0, scale=1.0)
    kids = {script.mutate(code) for _ in range(100)}
    assert all(k is not None and python_syntax_error(k) is None for k in kids)
    assert any("(0." in k or "(1." in k for k in kids if k)  # -0.05 crossed zero


def test_nothing_to_perturb_gives_a_reply_without_a_diff() -> None:
    script = perturbing(0)
    no_numbers = "# EVOLVE-BLOCK-START\nname = 'x'\n# EVOLVE-BLOCK-END\nN = 3\n"
    action = script(_request(_prompt(no_numbers)))
    assert action.kind == "reply" and action.text and not parse_diff(action.text)
    assert script.mutate(no_numbers) is None
    action = script(_request([{"role": "user", "content": "hello"}]))
    assert action.text and not parse_diff(action.text)


def test_drives_the_real_llm_mutator_through_the_test_server() -> None:
    from evoforge.llms.openai_compat import OpenAICompatLLM

    parent = Program(id=0, code=PARENT, status=Status.OK, score=1.0)
    req = MutationRequest(parent=parent, rng=random.Random(0))

    async def go(base_url: str) -> list[str | None]:
        llm = OpenAICompatLLM(models=["m"], base_url=base_url, api_key="x")
        mutator = LLMMutator(llm, PromptBuilder())
        try:
            return [(await mutator.mutate(req)).code for _ in range(3)]
        finally:
            await mutator.aclose()

    with OpenAITestServer(perturbing(0)) as srv:
        kids = asyncio.run(go(srv.base_url))
    assert all(k is not None and k != PARENT for k in kids)
    assert len(set(kids)) == 3
    # the same operator behind a FunctionLLM gives the same children in the same order
    script = perturbing(0)
    llm = FunctionLLM(lambda msgs: script(_request(msgs)).text or "")
    mutator = LLMMutator(llm, PromptBuilder())
    assert [asyncio.run(mutator.mutate(req)).code for _ in range(3)] == kids
