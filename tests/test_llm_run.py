"""Whole runs through the LLM path against a real OpenAI-compatible server on 127.0.0.1 with
scripted replies and injected faults. No mocks of the client."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from evoforge import api
from evoforge.config import build_config
from evoforge.problem import Problem
from evoforge.program import Status
from evoforge.storages import SQLiteStorage
from evoforge.testing.openai_server import (
    OpenAITestServer,
    empty,
    error,
    hang,
    malformed,
    reply,
)

QUAD = Path(__file__).parent / "fixtures" / "problems" / "quadratic"
# whole lines (SEARCH matches whole lines only), and still there after it applied: re-appliable,
# each application raises f() by 1.0
GOOD = ("I will raise the value a little.\n<<<<<<< SEARCH\n    b = 2.0\n=======\n"
        "    b = 2.0\n    a = a + 0.5\n>>>>>>> REPLACE\n")
MISSING = "<<<<<<< SEARCH\nthis line does not exist\n=======\nx = 1\n>>>>>>> REPLACE\n"


def _config(server: OpenAITestServer, **over):
    base = {
        "max_programs": 12, "seed": 1,
        "llm": {"base_url": server.base_url, "models": [
            {"name": "test-model", "input_price": 1.0, "output_price": 2.0}],
            # a generous request timeout: a reply slowed by a loaded machine is not cut (and
            # retried, shifting a scripted server's answers); the test of a hung request
            # gives its own, short one
            "concurrency": 1, "retries": 1, "request_timeout": 10, "backoff_base": 0.01,
            "backoff_max": 0.05, "proposal_deadline": 20, "api_key_env": "EVOFORGE_TEST_KEY"},
        "evaluation": {"workers": 2, "timeout": 10},
        # one island, always exploit: the parent is the best, so each good diff climbs
        "selector": {"num_islands": 1, "exploitation_ratio": 1.0, "exploration_ratio": 0.0,
                     "crossover_rate": 0.0},
    }
    return build_config(Problem.load(QUAD).config, base, over)


def test_llm_run_survives_every_fault_and_finishes_its_budget(tmp_path, monkeypatch):
    monkeypatch.setenv("EVOFORGE_TEST_KEY", "sk-test-key")
    script = [
        error(429, retry_after=0.2), reply(GOOD),  # proposal 1: rate limited, then ok
        error(500), error(500),                    # proposal 2: fails after its retry
        hang(), malformed(),                       # proposal 3: timeout, then garbage
        empty(), reply(GOOD),                      # proposal 4: empty, then ok
        reply("The code looks fine to me.", prompt_tokens=50, completion_tokens=7),  # no diff
        reply(MISSING, prompt_tokens=60, completion_tokens=9),  # diff that does not apply
    ]
    with OpenAITestServer(script, default=reply(GOOD)) as srv:
        # the hang() is cut by the request timeout: 1 s, far above a local reply's latency
        # (milliseconds), so only the hung request is cut
        cfg = _config(srv, llm={"request_timeout": 1.0, "proposal_deadline": 5})
        outcome = api.evolve(QUAD, run_dir=tmp_path / "r", config=cfg)
        records = srv.records
    assert outcome.ok and outcome.reason == "max_programs", outcome.message
    with SQLiteStorage(tmp_path / "r" / "evoforge.db", readonly=True) as s:
        progs = {p.id: p for p in s.programs()}
        assert s.check() == []
    assert len(progs) == 12 and all(p.status is not Status.PENDING for p in progs.values())
    # the 429 was honoured: the retry came after Retry-After
    assert records[1].received_at - records[0].received_at >= 0.2 - 0.02
    assert progs[1].status is Status.OK and progs[1].mutation.attempts == 2
    assert progs[2].status is Status.INVALID and progs[2].reason.startswith("llm:")
    assert progs[3].status is Status.INVALID and progs[3].reason.startswith("llm:")
    assert progs[4].status is Status.OK
    assert progs[5].status is Status.INVALID and "SEARCH" in progs[5].reason
    assert progs[6].status is Status.INVALID and "not found" in progs[6].reason
    # tokens of replies that did not apply still count, with their cost
    assert progs[5].mutation.prompt_tokens == 50 and progs[5].mutation.completion_tokens == 7
    assert progs[6].mutation.cost == (60 * 1.0 + 9 * 2.0) / 1e6
    # the good diffs climbed: the best beats the initial program
    assert outcome.best is not None and outcome.best.score > progs[0].score
    assert outcome.best.mutation.model == "test-model"
    # the API key went to the server, and the prompt carried the parent's code
    assert records[0].headers.get("authorization", records[0].headers.get("Authorization")) \
        == "Bearer sk-test-key"
    prompt = records[-1].body["messages"][-1]["content"]
    assert "EVOLVE-BLOCK-START" in prompt and "a * b" in prompt


def test_every_llm_call_failing_stops_the_run_with_a_reason(tmp_path):
    with OpenAITestServer(default=error(500)) as srv:
        cfg = _config(srv, max_programs=100, llm={"retries": 0, "max_consecutive_failures": 4})
        outcome = api.evolve(QUAD, run_dir=tmp_path / "r", config=cfg)
    assert not outcome.ok and outcome.reason == "llm_failures"
    assert "500" in outcome.message
    with SQLiteStorage(tmp_path / "r" / "evoforge.db", readonly=True) as s:
        stats = s.stats()
    assert stats["counts"]["invalid"] == 4 and stats["done"] == 5


def test_auth_error_stops_at_once_and_cli_exits_nonzero(tmp_path):
    with OpenAITestServer(default=error(401)) as srv:
        r = subprocess.run(
            [sys.executable, "-m", "evoforge.cli", "run", str(QUAD), "--out", str(tmp_path / "r"),
             "-q", "--set", f"llm.base_url={srv.base_url}", "--set", "llm.models=[m]",
             "--set", "llm.retries=3", "--set", "llm.concurrency=1"],
            capture_output=True, text=True, timeout=60)
        assert srv.request_count == 1  # 401 is not retried
    assert r.returncode == 3, r.stderr
    assert "API key" in r.stderr


def test_pending_llm_children_are_evaluated_on_resume_without_new_llm_calls(tmp_path):
    """A child stored as pending (LLM tokens spent) is evaluated on resume, not asked again."""
    with OpenAITestServer(default=reply(GOOD)) as srv:
        cfg = _config(srv, max_programs=4)
        outcome = api.evolve(QUAD, run_dir=tmp_path / "r", config=cfg)
        assert outcome.ok
        calls = srv.request_count
    # simulate a kill between storing a child and committing its result
    db = tmp_path / "r" / "evoforge.db"
    import sqlite3

    con = sqlite3.connect(db)
    con.execute("UPDATE programs SET status='pending', done_seq=NULL, score=NULL, "
                "evaluated_at=NULL WHERE id=(SELECT max(id) FROM programs)")
    con.commit()
    con.close()
    with OpenAITestServer(default=reply(GOOD)) as srv2:
        res = api.resume(tmp_path / "r", overrides=[f"llm.base_url={srv2.base_url}"])
        assert res.ok and srv2.request_count == 0
    assert calls == 3
    with SQLiteStorage(db, readonly=True) as s:
        assert s.stats()["pending"] == 0 and s.stats()["done"] == 4


def test_max_cost_stops_the_run_at_its_budget(tmp_path):
    # each reply costs (1000 * 1.0 + 500 * 2.0) / 1e6 = 0.002 USD
    with OpenAITestServer(default=reply(GOOD, prompt_tokens=1000, completion_tokens=500)) as srv:
        cfg = _config(srv, max_programs=1000, max_cost=0.01)
        outcome = api.evolve(QUAD, run_dir=tmp_path / "r", config=cfg)
    assert outcome.ok and outcome.reason == "max_cost"
    with SQLiteStorage(tmp_path / "r" / "evoforge.db", readonly=True) as s:
        stats = s.stats()
    # stops once the money spent (evaluated or not) reaches the budget: at most the requests
    # already sent overshoot it
    assert 0.01 <= stats["cost"] <= 0.01 + 0.002 * cfg.llm.concurrency + 1e-12
    assert stats["done"] < 1000


def test_billed_but_unusable_replies_count_toward_max_cost(tmp_path, monkeypatch):
    """Issue 9, defect 4: an endpoint that bills every request but never gives usable content
    ends the run at max_cost, and the run's record, status and best.json agree on the spend."""
    monkeypatch.setenv("EVOFORGE_TEST_KEY", "sk-test-key")
    from evoforge.testing.openai_server import empty_content

    # each request: 100k prompt + 50k completion tokens at $1/$2 per million = $0.20
    with OpenAITestServer(default=empty_content("", prompt_tokens=100_000,
                                                completion_tokens=50_000)) as srv:
        outcome = api.evolve(QUAD, run_dir=tmp_path / "r",
                             config=_config(srv, max_programs=1000, max_cost=1.0))
        requests = srv.request_count
    assert outcome.reason == "max_cost", outcome.message
    with SQLiteStorage(tmp_path / "r" / "evoforge.db", readonly=True) as s:
        stored = sum(p.mutation.cost for p in s.programs())
    assert stored == pytest.approx(requests * 0.20)  # every billed request is on record
    # each proposal is two billed attempts ($0.40): stopped within one proposal of the budget,
    # never past it (calls are counted at their mean cost before they are made)
    assert 1.0 - 0.40 - 1e-9 <= stored <= 1.0 + 1e-9, stored
    status = subprocess.run([sys.executable, "-m", "evoforge", "status", str(tmp_path / "r")],
                            capture_output=True, text=True, check=False)
    assert f"{stored:.4f}" in status.stdout or f"{stored:.2f}" in status.stdout, status.stdout


TOO_LONG = {"error": {"message": "This model's maximum context length is 8192 tokens. However, "
                                 "your messages resulted in 9001 tokens.",
                      "type": "invalid_request_error", "code": "context_length_exceeded"}}


def test_a_too_long_prompt_is_shrunk_and_other_4xx_skip_one_proposal(tmp_path, monkeypatch):
    """Issue 9, defect 3: HTTP 400 for a long prompt rebuilds it smaller and sends it again;
    another 4xx skips that proposal; neither stops the run."""
    monkeypatch.setenv("EVOFORGE_TEST_KEY", "sk-test-key")
    script = [
        *[reply(GOOD)] * 6,                            # children, so later prompts have context
        error(400, body=TOO_LONG), error(413), reply(GOOD),  # shrunk twice, then accepted
        error(422, body={"error": {"message": "temperature must be <= 1"}}),  # skipped
    ]
    with OpenAITestServer(script, default=reply(GOOD)) as srv:
        cfg = _config(srv, max_programs=14, evaluation={"workers": 1, "timeout": 10},
                      selector={"num_islands": 1, "num_context": 2})
        outcome = api.evolve(QUAD, run_dir=tmp_path / "r", config=cfg)
        sizes = [sum(len(m["content"]) for m in body["messages"]) for body in srv.requests]
    assert outcome.ok and outcome.reason == "max_programs", outcome.message
    assert sizes[7] <= sizes[6] and sizes[8] <= sizes[7], sizes  # never larger
    assert sizes[8] < sizes[6], sizes  # the context programs are gone
    with SQLiteStorage(tmp_path / "r" / "evoforge.db", readonly=True) as s:
        progs = sorted(s.programs(), key=lambda p: p.id)
    shrunk = [p for p in progs if "prompt shrunk to the parent alone" in p.mutation.note]
    assert len(shrunk) == 1 and shrunk[0].status is not Status.INVALID
    assert shrunk[0].mutation.attempts == 3
    skipped = [p for p in progs if "HTTP 422" in p.mutation.note]
    assert len(skipped) == 1 and skipped[0].status is Status.INVALID


def test_an_oversized_program_is_sent_alone_or_skipped(tmp_path, monkeypatch):
    monkeypatch.setenv("EVOFORGE_TEST_KEY", "sk-test-key")
    with OpenAITestServer(default=reply(GOOD)) as srv:
        cfg = _config(srv, max_programs=4, prompt={"max_chars": 1000})
        outcome = api.evolve(QUAD, run_dir=tmp_path / "r", config=cfg)
        requests = srv.request_count
    assert outcome.ok, outcome.message
    with SQLiteStorage(tmp_path / "r" / "evoforge.db", readonly=True) as s:
        children = [p for p in s.programs() if p.id > 0]
    assert children and requests == 0  # the quadratic prompt is over 1000 chars at every level
    assert all("over prompt.max_chars=1,000" in p.mutation.note for p in children)


def test_authentication_errors_still_stop_the_run(tmp_path, monkeypatch):
    monkeypatch.setenv("EVOFORGE_TEST_KEY", "sk-test-key")
    with OpenAITestServer(default=error(401)) as srv:
        outcome = api.evolve(QUAD, run_dir=tmp_path / "r", config=_config(srv))
    assert outcome.reason == "llm_error" and "authentication failed" in outcome.message


def test_progress_shows_the_last_llm_error_inert(tmp_path, monkeypatch):
    """Issue 9, defect 7: while proposals fail, the progress says why (endpoint text shown
    with control characters spelled out and markup literal)."""
    import io

    from rich.console import Console

    from evoforge.progress import ProgressDisplay

    monkeypatch.setenv("EVOFORGE_TEST_KEY", "sk-test-key")
    body = {"error": {"message": "overloaded \x1b[2J [bold]now[/bold]"}}
    out = io.StringIO()
    display = ProgressDisplay(Console(file=out, force_terminal=False, width=400), live=False,
                              interval=0.0)
    with OpenAITestServer([reply(GOOD), error(500, body=body), error(500, body=body)],
                          default=reply(GOOD)) as srv:
        outcome = api.evolve(QUAD, run_dir=tmp_path / "r", config=_config(srv, max_programs=5),
                             on_run=display.attach, on_event=display.update)
    display.close()
    text = out.getvalue()
    assert outcome.ok, outcome.message
    assert "last LLM error: llm: " in text and "HTTP 500" in text, text
    assert "\x1b" not in text and "\\x1b[2J" in text and "[bold]now[/bold]" in text


def test_staleness_bound_holds_with_a_slow_reply(tmp_path, monkeypatch):
    """Issue 9, defect 6: one LLM reply much slower than the rest; every child records how many
    results committed between its proposal and itself, and none exceeds pipeline.staleness."""
    monkeypatch.setenv("EVOFORGE_TEST_KEY", "sk-test-key")
    from evoforge.testing.openai_server import ChatRequest

    def script(req: ChatRequest):
        return reply(GOOD, delay=2.0 if req.index == 3 else 0.0)

    with OpenAITestServer(script) as srv:
        cfg = _config(srv, max_programs=40, llm={"concurrency": 4, "retries": 0,
                                                  "request_timeout": 30, "hedge": False},
                      evaluation={"workers": 2, "timeout": 10},
                      pipeline={"max_in_flight": 6, "staleness": 8})
        outcome = api.evolve(QUAD, run_dir=tmp_path / "r", config=cfg)
    assert outcome.ok, outcome.message
    with SQLiteStorage(tmp_path / "r" / "evoforge.db", readonly=True) as s:
        children = [p for p in s.programs() if p.id > 0]
    ages = [p.mutation.staleness for p in children]
    assert all(a is not None for a in ages)
    assert max(ages) <= 8, sorted(ages)[-5:]


def test_max_cost_counts_calls_in_flight(tmp_path, monkeypatch):
    """Issue 9: with 8 LLM calls allowed at once, max_cost is not overshot by the calls already
    in flight: each is counted at the mean cost per call before another is asked."""
    monkeypatch.setenv("EVOFORGE_TEST_KEY", "sk-test-key")
    # every reply costs $0.20 (100k prompt + 50k completion tokens at $1/$2 per million)
    with OpenAITestServer(default=reply(GOOD, prompt_tokens=100_000, completion_tokens=50_000,
                                        delay=0.05)) as srv:
        cfg = _config(srv, max_programs=1000, max_cost=1.0,
                      llm={"concurrency": 8}, evaluation={"workers": 2, "timeout": 10})
        outcome = api.evolve(QUAD, run_dir=tmp_path / "r", config=cfg)
    assert outcome.reason == "max_cost", outcome.message
    with SQLiteStorage(tmp_path / "r" / "evoforge.db", readonly=True) as s:
        spent = sum(p.mutation.cost for p in s.programs())
    assert 0.8 - 1e-9 <= spent <= 1.0 + 1e-9, spent


def _gated_run(tmp_path, monkeypatch, initial_ok: bool, early: bool = True):
    """The initial program's evaluation returns only once the server has received a request
    (or after a guard): an event, not a sleep, decides the order."""
    import threading

    from evoforge.testing import FunctionExecutor

    monkeypatch.setenv("EVOFORGE_TEST_KEY", "sk-test-key")
    asked = threading.Event()
    seen_prompt: list[str] = []

    def script(req):
        seen_prompt.append(req.last_user_message)
        asked.set()
        return reply(GOOD)

    async def evaluate(code: str):
        import asyncio

        if "a = a + 0.5" not in code:  # the initial program
            waited = await asyncio.to_thread(asked.wait, 30 if early else 3)  # 3: a guard
            if not initial_ok:
                raise RuntimeError("the initial program is broken")
            return {"combined_score": 1.0, "asked_while_evaluating": float(waited)}
        return {"combined_score": 2.0}

    with OpenAITestServer(script) as srv:
        cfg = _config(srv, max_programs=3, pipeline={"early_proposal": early})
        outcome = api.evolve(QUAD, run_dir=tmp_path / "r", config=cfg,
                             executor=FunctionExecutor(evaluate))
        requests = srv.request_count
    with SQLiteStorage(tmp_path / "r" / "evoforge.db", readonly=True) as s:
        progs = list(s.programs())
    return outcome, progs, requests, seen_prompt


def test_first_llm_request_goes_out_while_the_initial_program_is_evaluated(tmp_path, monkeypatch):
    outcome, progs, _, prompts = _gated_run(tmp_path, monkeypatch, initial_ok=True)
    assert outcome.ok, outcome.message
    initial = next(p for p in progs if p.id == 0)
    assert initial.metrics["asked_while_evaluating"] == 1.0  # the request came first
    assert "not known yet" in prompts[0]  # and its prompt says the score is not known
    assert next(p for p in progs if p.id == 1).parent_ids == (0,)


def test_without_early_proposal_the_first_request_waits_for_the_initial_result(
        tmp_path, monkeypatch):
    outcome, progs, _, prompts = _gated_run(tmp_path, monkeypatch, initial_ok=True, early=False)
    assert outcome.ok, outcome.message
    assert next(p for p in progs if p.id == 0).metrics["asked_while_evaluating"] == 0.0
    assert "not known yet" not in prompts[0]


def test_early_proposal_of_a_failing_initial_program_stores_no_child(tmp_path, monkeypatch):
    outcome, progs, requests, _ = _gated_run(tmp_path, monkeypatch, initial_ok=False)
    assert outcome.reason == "initial_failed"
    assert requests == 1  # one call at most was spent on it
    assert [p.id for p in progs] == [0]  # and its child was never stored


@pytest.mark.parametrize("slow_start", [True, False])
def test_slow_start_does_not_spend_the_first_window_on_the_initial_program(
        tmp_path, monkeypatch, slow_start):
    """Issue 11: with 8 LLM calls allowed at once and every reply an improvement, a full first
    window would make 8 children of the initial program before any result is known; the slow
    start opens the window with the population (2 at first), so later proposals already use
    the improved children."""
    monkeypatch.setenv("EVOFORGE_TEST_KEY", "sk-test-key")
    with OpenAITestServer(default=reply(GOOD, delay=0.05)) as srv:
        cfg = _config(srv, max_programs=24, llm={"concurrency": 8, "hedge": False,
                                                  "request_timeout": 10},
                      pipeline={"slow_start": slow_start})
        outcome = api.evolve(QUAD, run_dir=tmp_path / "r", config=cfg)
    assert outcome.ok, outcome.message
    with SQLiteStorage(tmp_path / "r" / "evoforge.db", readonly=True) as s:
        children = [p for p in s.programs() if p.id > 0]
    of_initial = sum(p.parent_ids == (0,) for p in children)
    if slow_start:
        assert of_initial <= 3, of_initial
    else:
        assert of_initial >= 8, of_initial
