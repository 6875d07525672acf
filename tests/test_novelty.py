"""Novelty rejection before evaluation: near-duplicates are asked again, then rejected, by the
local measure and by a real /v1/embeddings endpoint (the test server's); costs of every attempt
are kept; a failing embeddings endpoint falls back to the local measure."""

from __future__ import annotations

import asyncio
import random

import pytest

from evoforge.config import build_config
from evoforge.mutators.base import MutationOutcome, MutationRequest
from evoforge.mutators.novelty import NoveltyFilter, OpenAIEmbedder, cosine, local_vector
from evoforge.program import MutationInfo, Program, Status
from evoforge.testing import FunctionMutator
from evoforge.testing.openai_server import OpenAITestServer

PARENT = """# EVOLVE-BLOCK-START
def f(x):
    total = 0
    for i in range(10):
        total += i * x
    return total
# EVOLVE-BLOCK-END
"""
# the same program, reformatted and commented: a duplicate
SAME = PARENT.replace("total += i * x", "total += i*x   # accumulate").replace("def f(x):",
                                                                                "def f(x):\n")
OTHER = """# EVOLVE-BLOCK-START
def f(x):
    import math
    return sum(math.sin(k) * x ** 2 for k in range(25)) / (1 + abs(x))
# EVOLVE-BLOCK-END
"""


def _request(seed: int = 0) -> MutationRequest:
    parent = Program(id=7, code=PARENT, status=Status.OK, score=1.0, done_seq=0)
    return MutationRequest(parent=parent, rng=random.Random(seed))


def _scripted(*codes: str) -> FunctionMutator:
    answers = iter(codes)

    def fn(req: MutationRequest) -> MutationOutcome:
        return MutationOutcome(next(answers), MutationInfo(
            mutator="llm", prompt_tokens=100, completion_tokens=10, cost=0.01, attempts=1))

    return FunctionMutator(fn)


def test_local_measure_ignores_layout_and_comments():
    assert cosine(local_vector(PARENT), local_vector(SAME)) == pytest.approx(1.0)
    assert cosine(local_vector(PARENT), local_vector(OTHER)) < 0.7


def test_a_duplicate_is_asked_again_then_rejected_with_every_attempt_billed():
    f = NoveltyFilter(_scripted(SAME, SAME), threshold=0.99, retries=1)
    out = asyncio.run(f.mutate(_request()))
    assert out.code is None and "too similar to #7" in out.info.note
    assert (out.info.prompt_tokens, out.info.cost, out.info.attempts) == (200, 0.02, 2)
    assert (f.reasked, f.rejected) == (1, 1)


def test_a_retry_that_is_novel_passes_with_the_cost_of_both():
    f = NoveltyFilter(_scripted(SAME, OTHER), threshold=0.99, retries=1)
    out = asyncio.run(f.mutate(_request()))
    assert out.code == OTHER and out.info.cost == pytest.approx(0.02)
    assert "novelty: nearest #7" in out.info.note and f.rejected == 0


def test_recent_programs_count_not_only_the_parent():
    f = NoveltyFilter(_scripted(OTHER, OTHER), threshold=0.99, retries=1, window=4)
    f.observe(Program(id=3, code=OTHER, status=Status.OK, score=2.0, done_seq=1))
    out = asyncio.run(f.mutate(_request()))
    assert out.code is None and "too similar to #3" in out.info.note


def _embedder(base_url: str) -> OpenAIEmbedder:
    cfg = build_config({"llm": {"base_url": base_url, "models": ["m"], "retries": 0,
                                "request_timeout": 5, "api_key_env": "EVOFORGE_NO_SUCH_KEY"},
                        "novelty": {"enabled": True, "embedding_model": "test-embedding"}})
    return OpenAIEmbedder.from_config(cfg)


def test_embeddings_from_the_test_server_decide():
    with OpenAITestServer() as srv:
        async def go():
            near = PARENT.replace("    return total", "\n    return total")  # a blank line
            f = NoveltyFilter(_scripted(near, near, OTHER), threshold=0.99, retries=1,
                              embedder=_embedder(srv.base_url))
            try:
                first = await f.mutate(_request())
                second = await f.mutate(_request(1))
            finally:
                await f.aclose()
            return first, second

        first, second = asyncio.run(go())
        asked = list(srv.embedding_inputs)
    assert first.code is None and "(emb)" in first.info.note
    assert second.code == OTHER and "(emb)" in second.info.note
    assert PARENT in asked and OTHER in asked  # the endpoint was asked


def test_a_dead_embeddings_endpoint_falls_back_to_the_local_measure():
    with OpenAITestServer() as srv:
        url = srv.base_url
    # the server is stopped: the embeddings call fails, the child is still judged
    async def go():
        f = NoveltyFilter(_scripted(SAME, SAME), threshold=0.99, retries=1,
                          embedder=_embedder(url))
        try:
            return await f.mutate(_request())
        finally:
            await f.aclose()

    out = asyncio.run(go())
    assert out.code is None and "embeddings failed" in out.info.note


def test_novelty_enabled_in_the_config_filters_a_whole_run(tmp_path):
    from pathlib import Path

    from evoforge import api
    from evoforge.storages import SQLiteStorage

    quad = Path(__file__).parent / "fixtures" / "problems" / "quadratic"
    cfg = build_config({"max_programs": 40, "seed": 3, "evaluation": {"reverify": 0, "workers": 1},
                        "novelty": {"enabled": True, "threshold": 0.9, "retries": 0}})
    outcome = api.evolve(quad, run_dir=tmp_path / "r", config=cfg)
    assert outcome.ok, outcome.message
    with SQLiteStorage(tmp_path / "r" / "evoforge.db", readonly=True) as s:
        progs = list(s.programs())
    rejected = [p for p in progs if p.reason.startswith("too similar to #")]
    assert rejected and all(p.status is Status.INVALID for p in rejected)
    assert any(p.status is Status.OK and p.id > 0 for p in progs)  # novel ones went through


def test_a_tuning_trial_passes_unfiltered():
    def fn(req: MutationRequest) -> MutationOutcome:
        return MutationOutcome(SAME, MutationInfo(mutator="tune", edit_kind="tune"))

    f = NoveltyFilter(FunctionMutator(fn), threshold=0.5, retries=1)
    out = asyncio.run(f.mutate(_request()))
    assert out.code == SAME and (f.reasked, f.rejected) == (0, 0)


def test_a_learning_mutator_inside_the_filter_resumes_as_without_it(tmp_path):
    """observe and restore reach the wrapped mutator: a bandit inside the filter rebuilds its
    counts from every stored program on resume, not only from this session's."""
    import re
    from pathlib import Path

    from evoforge import api
    from evoforge.mutators.bandit import BanditMutator
    from evoforge.storages import SQLiteStorage
    from evoforge.testing import FunctionExecutor

    def value(code: str) -> float:
        m = re.search(r"^VALUE = (\S+)$", code, re.M)
        return float(m.group(1)) if m else 0.0

    def arm(p_good: float) -> FunctionMutator:
        def fn(req: MutationRequest) -> MutationOutcome:
            step = 1.0 if req.rng.random() < p_good else -1.0
            code = re.sub(r"\nVALUE = \S+$", "", req.parent.code.rstrip("\n"), flags=re.M)
            return MutationOutcome(code + f"\nVALUE = {value(req.parent.code) + step!r}\n",
                                   MutationInfo(mutator="llm", cost=0.01, attempts=1))
        return FunctionMutator(fn)

    def filtered() -> tuple[NoveltyFilter, BanditMutator]:
        bandit = BanditMutator({"good": arm(0.7), "bad": arm(0.1)})
        return NoveltyFilter(bandit, threshold=1.0, retries=0, window=8), bandit

    quad = Path(__file__).parent / "fixtures" / "problems" / "quadratic"
    cfg = build_config({"max_programs": 30, "seed": 5, "selector": {"num_islands": 1},
                        "evaluation": {"workers": 1, "reverify": 0}})
    first, live = filtered()
    assert api.evolve(quad, run_dir=tmp_path / "r", config=cfg, mutator=first,
                      executor=FunctionExecutor(value)).ok
    again, resumed = filtered()
    assert api.resume(tmp_path / "r", flags={"max_programs": 45}, mutator=again,
                      executor=FunctionExecutor(value)).ok
    with SQLiteStorage(tmp_path / "r" / "evoforge.db", readonly=True) as s:
        progs = list(s.programs())
    stored = {a: sum(p.mutation.arm == a for p in progs) for a in ("good", "bad")}
    assert sum(stored.values()) == 44  # a rejected child counts against its arm too
    assert any(p.reason.startswith("too similar") for p in progs)
    assert {a: s.pulls for a, s in resumed.stats.items()} == stored  # 29 of them restored
    assert {a: s.pulls for a, s in live.stats.items()} != stored
    assert [i for i, _ in again.recent] == [p.id for p in progs if p.status is Status.OK][-8:]
