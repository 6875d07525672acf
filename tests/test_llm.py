"""OpenAICompatLLM against the scripted OpenAI-compatible server on 127.0.0.1 (no mocks)."""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from email.utils import formatdate

import pytest

from evoforge.config import LLMConfig, ModelConfig
from evoforge.errors import ConfigError, LLMError
from evoforge.llms.base import LLMReply
from evoforge.llms.openai_compat import OpenAICompatLLM, parse_retry_after
from evoforge.testing.openai_server import (
    ChatRequest,
    OpenAITestServer,
    empty,
    empty_content,
    error,
    hang,
    malformed,
    reply,
)

MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]


def make_llm(srv: OpenAITestServer, **kw: object) -> OpenAICompatLLM:
    opts: dict[str, object] = dict(
        base_url=srv.base_url, api_key="sk-test", request_timeout=2.0, retries=3,
        backoff_base=0.001, backoff_max=0.01, proposal_deadline=10.0)
    opts.update(kw)
    models = opts.pop("models", [ModelConfig(name="m1", input_price=2.0, output_price=8.0)])
    return OpenAICompatLLM(models, **opts)  # type: ignore[arg-type]


def run_chat(llm: OpenAICompatLLM, seed: int = 0) -> LLMReply:
    async def go() -> LLMReply:
        try:
            return await llm.chat(MESSAGES, rng=random.Random(seed))
        finally:
            await llm.aclose()
    return asyncio.run(go())


def chat_error(llm: OpenAICompatLLM) -> LLMError:
    with pytest.raises(LLMError) as ei:
        run_chat(llm)
    return ei.value


def test_scripted_reply_with_usage_and_cost() -> None:
    with OpenAITestServer([reply("hello there", prompt_tokens=1000, completion_tokens=500)]) as srv:
        r = run_chat(make_llm(srv))
        assert srv.request_count == 1
        body = srv.requests[0]
        auth = srv.records[0].headers.get("authorization") or srv.records[0].headers.get(
            "Authorization")
    assert r.text == "hello there"
    assert r.model == "m1"
    assert (r.prompt_tokens, r.completion_tokens, r.attempts) == (1000, 500, 1)
    assert r.cost == pytest.approx((1000 * 2.0 + 500 * 8.0) / 1e6)
    assert r.latency > 0
    assert body["model"] == "m1"
    assert body["messages"] == MESSAGES
    assert body["temperature"] == 0.7
    assert auth == "Bearer sk-test"


def test_missing_usage_counts_zero_tokens() -> None:
    with OpenAITestServer([reply("x", prompt_tokens=None, completion_tokens=None)]) as srv:
        r = run_chat(make_llm(srv))
    assert (r.prompt_tokens, r.completion_tokens, r.cost) == (0, 0, 0.0)


def test_429_retry_after_is_honoured() -> None:
    retry_after = 0.3
    with OpenAITestServer([error(429, retry_after=retry_after), reply("ok")]) as srv:
        r = run_chat(make_llm(srv))
        times = srv.request_times
    assert r.text == "ok" and r.attempts == 2
    assert len(times) == 2
    # causal check: the client did not come back before the server said it could
    assert times[1] - times[0] >= retry_after - 0.02


def test_429_retry_after_ms_header_is_honoured() -> None:
    with OpenAITestServer([error(429, headers={"retry-after-ms": "250"}), reply("ok")]) as srv:
        r = run_chat(make_llm(srv))
        times = srv.request_times
    assert r.attempts == 2
    assert times[1] - times[0] >= 0.25 - 0.02


def test_parse_retry_after_forms() -> None:
    now = time.time()
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({"retry-after": "0.5"}) == 0.5
    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    date = formatdate(now + 20, usegmt=True)
    assert parse_retry_after({"retry-after": date}, now=now) == pytest.approx(20, abs=1.0)
    assert parse_retry_after({"retry-after": formatdate(now - 50, usegmt=True)}, now=now) == 0.0
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None


def test_retry_after_beyond_deadline_fails_fast() -> None:
    with OpenAITestServer([error(429, retry_after=60)]) as srv:
        e = chat_error(make_llm(srv, proposal_deadline=5.0))
        assert srv.request_count == 1
    assert e.retryable and e.attempts == 1
    assert "429" in str(e) and "proposal_deadline" in str(e)


def test_5xx_then_success() -> None:
    with OpenAITestServer([error(500), error(502), error(503), reply("finally")]) as srv:
        r = run_chat(make_llm(srv))
        assert srv.request_count == 4
    assert r.text == "finally" and r.attempts == 4


def test_5xx_exhausts_retries() -> None:
    with OpenAITestServer(default=error(500)) as srv:
        e = chat_error(make_llm(srv, retries=2))
        assert srv.request_count == 3
    assert e.retryable and e.attempts == 3
    assert "HTTP 500" in str(e)


def test_hanging_request_is_cut_by_request_timeout() -> None:
    # the timeout also bounds the retry, on a new connection: 0.5 s is far above a local
    # reply's latency (milliseconds), so only the hung request is cut
    with OpenAITestServer([hang(), reply("after hang")]) as srv:
        r = run_chat(make_llm(srv, request_timeout=0.5))
        assert srv.request_count == 2
    assert r.text == "after hang" and r.attempts == 2


def test_outer_deadline_bounds_a_stalled_endpoint() -> None:
    # every attempt hangs; the per-request timeout alone would allow 100 * 0.3 s
    with OpenAITestServer(default=hang()) as srv:
        e = chat_error(make_llm(srv, request_timeout=0.3, retries=100, proposal_deadline=0.8))
        n = srv.request_count
    assert e.retryable
    assert "proposal_deadline" in str(e)
    assert 1 <= e.attempts == n < 101


@pytest.mark.parametrize("action", [malformed(), malformed('{"foo": 1}'), malformed("[1, 2]")])
def test_malformed_replies_fail_after_retries(action: object) -> None:
    with OpenAITestServer(default=action) as srv:  # type: ignore[arg-type]
        e = chat_error(make_llm(srv, retries=2))
        assert srv.request_count == 3
    assert e.retryable and e.attempts == 3
    assert "malformed" in str(e)


@pytest.mark.parametrize("action", [empty(), empty_content(""), empty_content(None)])
def test_empty_replies_fail_after_retries(action: object) -> None:
    with OpenAITestServer(default=action) as srv:  # type: ignore[arg-type]
        e = chat_error(make_llm(srv, retries=1))
        assert srv.request_count == 2
    assert e.retryable and e.attempts == 2
    assert "empty reply" in str(e)


def test_malformed_then_good_reply_recovers() -> None:
    with OpenAITestServer([malformed(), empty(), reply("good")]) as srv:
        r = run_chat(make_llm(srv))
    assert r.text == "good" and r.attempts == 3


@pytest.mark.parametrize("status,fix", [
    (401, "check the API key in $MY_KEY"),
    (403, "$MY_KEY"),
    (404, "unknown model or wrong base_url"),
    (400, "check llm.models"),
    (422, "check llm.models"),
])
def test_client_errors_are_not_retried(status: int, fix: str) -> None:
    with OpenAITestServer(default=error(status)) as srv:
        e = chat_error(make_llm(srv, api_key_env="MY_KEY"))
        assert srv.request_count == 1
    assert e.retryable is False and e.attempts == 1
    assert fix in str(e) and f"HTTP {status}" in str(e)


def test_attempts_count_includes_retries_before_a_permanent_error() -> None:
    with OpenAITestServer([error(500), error(401)]) as srv:
        e = chat_error(make_llm(srv))
        assert srv.request_count == 2
    assert e.retryable is False and e.attempts == 2


def test_an_endpoint_that_never_answered_is_a_config_error() -> None:
    """Issue 9, defect 7: nothing listening at llm.base_url from the start stops the run after
    one proposal's retries (not after max_consecutive_failures proposals)."""
    srv = OpenAITestServer().start()
    url = srv.base_url
    srv.stop()  # nothing listens on that port any more
    llm = OpenAICompatLLM(["m"], base_url=url, api_key="k", retries=1, backoff_base=0.001,
                          request_timeout=1.0, proposal_deadline=5.0)
    e = chat_error(llm)
    assert not e.retryable and e.kind == "fatal" and e.attempts == 2
    assert "cannot connect" in str(e) and "has not answered once" in str(e)


def test_connection_refused_after_answers_is_retryable() -> None:
    srv = OpenAITestServer([reply("first")]).start()
    llm = OpenAICompatLLM(["m"], base_url=srv.base_url, api_key="k", retries=1,
                          backoff_base=0.001, request_timeout=1.0, proposal_deadline=5.0)

    async def go() -> LLMError:
        try:
            assert (await llm.chat(MESSAGES, rng=random.Random(0))).text == "first"
            await asyncio.to_thread(srv.stop)  # the endpoint goes away mid-run
            with pytest.raises(LLMError) as ei:
                await llm.chat(MESSAGES, rng=random.Random(0))
            return ei.value
        finally:
            await llm.aclose()

    e = asyncio.run(go())
    assert e.retryable and e.attempts == 2 and "cannot connect" in str(e)


def test_adaptive_timeout_cuts_a_hang_after_a_few_observed_latencies() -> None:
    """Issue 9, defect 7: after 8 fast answers a hung request is cut near the floor, not
    after the 30 s ceiling. The floor (1 s) is far above 4x a local reply's latency (a few
    milliseconds; tens on a loaded machine), so the timeout is the floor, and the retry after
    the hang, held to it too, answers within it."""
    with OpenAITestServer([*[reply("fast")] * 8, hang(), reply("after")]) as srv:
        llm = make_llm(srv, request_timeout=30.0, retries=1, proposal_deadline=60.0,
                       timeout_floor=1.0, hedge=False)

        async def go() -> LLMReply:
            try:
                for _ in range(8):
                    await llm.chat(MESSAGES, rng=random.Random(0))
                assert llm.attempt_timeout() == pytest.approx(1.0)  # not the 30 s ceiling
                return await llm.chat(MESSAGES, rng=random.Random(0))
            finally:
                await llm.aclose()

        r = asyncio.run(go())
    assert r.text == "after" and r.attempts == 2  # the hung attempt was cut, the retry answered


def test_adaptive_timeout_off_keeps_the_ceiling() -> None:
    with OpenAITestServer(default=reply("x")) as srv:
        llm = make_llm(srv, request_timeout=30.0, adaptive_timeout=False, timeout_floor=0.3)

        async def go() -> float:
            try:
                for _ in range(10):
                    await llm.chat(MESSAGES, rng=random.Random(0))
                return llm.attempt_timeout()
            finally:
                await llm.aclose()

        assert asyncio.run(go()) == 30.0


def test_model_weights_split_3_to_1() -> None:
    models = [ModelConfig(name="big", weight=3.0), ModelConfig(name="small", weight=1.0)]
    n = 200

    async def go(llm: OpenAICompatLLM) -> list[str]:
        rng = random.Random(1234)
        try:
            replies = await asyncio.gather(*(llm.chat(MESSAGES, rng=rng) for _ in range(n)))
        finally:
            await llm.aclose()
        return [r.model for r in replies]

    def echo_model(req: ChatRequest):  # noqa: ANN202
        return reply(f"model={req.model}")

    with OpenAITestServer(echo_model) as srv:
        # 200 requests at once: generous timeouts, so a loaded machine cannot fail them (the
        # split is what is tested)
        chosen = asyncio.run(go(make_llm(srv, models=models, request_timeout=30.0,
                                         proposal_deadline=120.0, hedge=False)))
        sent = [b["model"] for b in srv.requests]
    big = chosen.count("big")
    assert sorted(sent) == sorted(chosen)  # the reply names the model actually requested
    assert 0.68 < big / n < 0.82, big


def test_callable_script_replies_per_prompt() -> None:
    def script(req: ChatRequest):  # noqa: ANN202
        return reply(req.last_user_message.upper())

    with OpenAITestServer(script) as srv:
        r = run_chat(make_llm(srv))
    assert r.text == "HI"


def test_from_config_uses_env_key_and_settings() -> None:
    with OpenAITestServer([reply("ok")]) as srv:
        cfg = LLMConfig(base_url=srv.base_url, api_key_env="EVO_TEST_KEY", models=["mx"],
                        request_timeout=3, retries=0, temperature=0.2, top_p=0.9, max_tokens=77)
        llm = OpenAICompatLLM.from_config(cfg, env={"EVO_TEST_KEY": "sk-from-env"})
        assert (llm.retries, llm.request_timeout) == (0, 3.0)
        run_chat(llm)
        rec = srv.records[0]
    headers = {k.lower(): v for k, v in rec.headers.items()}
    assert headers["authorization"] == "Bearer sk-from-env"
    assert rec.body["model"] == "mx"
    assert (rec.body["temperature"], rec.body["top_p"], rec.body["max_tokens"]) == (0.2, 0.9, 77)


def test_from_config_without_key_warns_and_uses_placeholder(
        caplog: pytest.LogCaptureFixture) -> None:
    with OpenAITestServer([reply("ok")]) as srv:
        cfg = LLMConfig(base_url=srv.base_url, models=["m"], api_key_env="EVO_ABSENT_KEY")
        with caplog.at_level(logging.WARNING, logger="evoforge.llms.openai_compat"):
            llm = OpenAICompatLLM.from_config(cfg, env={})
        assert run_chat(llm).text == "ok"
    assert any("EVO_ABSENT_KEY" in r.getMessage() for r in caplog.records)


def test_no_models_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="llm.models"):
        OpenAICompatLLM.from_config(LLMConfig(), env={})


def test_closed_client_refuses_calls() -> None:
    llm = OpenAICompatLLM(["m"], base_url="http://127.0.0.1:9/v1", api_key="k")
    asyncio.run(llm.aclose())
    e = chat_error(llm)
    assert e.retryable is False


def test_server_stop_does_not_block_on_hanging_request() -> None:
    arrived = threading.Event()

    def script(req: ChatRequest):  # noqa: ANN202
        arrived.set()
        return hang()

    srv = OpenAITestServer(script).start()

    async def go() -> LLMError:
        llm = make_llm(srv, request_timeout=30, retries=0, proposal_deadline=30)
        task = asyncio.create_task(llm.chat(MESSAGES, rng=random.Random(0)))
        try:
            assert await asyncio.to_thread(arrived.wait, 10)
            await asyncio.to_thread(srv.stop)  # releases the hung answer: connection closed
            with pytest.raises(LLMError) as ei:
                await task
            return ei.value
        finally:
            await llm.aclose()

    e = asyncio.run(go())
    assert e.retryable and e.attempts == 1
    assert srv.request_count == 1


def test_unusable_attempts_are_billed_into_the_reply() -> None:
    """Issue 9, defect 4: tokens of empty replies count, also when a later attempt succeeds."""
    with OpenAITestServer([empty_content("", prompt_tokens=1000, completion_tokens=300),
                           empty(prompt_tokens=1000),
                           reply("fine", prompt_tokens=1000, completion_tokens=100)]) as srv:
        r = run_chat(make_llm(srv))
    assert r.text == "fine" and r.attempts == 3
    assert (r.prompt_tokens, r.completion_tokens) == (3000, 400)
    assert r.cost == pytest.approx((3000 * 2.0 + 400 * 8.0) / 1e6)


def test_a_failed_chat_carries_what_it_was_billed() -> None:
    with OpenAITestServer(default=empty_content("", prompt_tokens=500, completion_tokens=50)) as srv:
        e = chat_error(make_llm(srv, retries=2))
    assert e.retryable and e.attempts == 3
    assert (e.prompt_tokens, e.completion_tokens) == (1500, 150)
    assert e.cost == pytest.approx((1500 * 2.0 + 150 * 8.0) / 1e6)


def test_a_slow_request_gets_a_twin_and_the_first_answer_wins() -> None:
    """Issue 9, defect 7: with hedging, a hung request costs about 1.5x the p95 latency."""
    with OpenAITestServer([*[reply("fast")] * 8, hang(), reply("twin")]) as srv:
        llm = make_llm(srv, request_timeout=30.0, retries=0, proposal_deadline=60.0)

        async def go() -> LLMReply:
            try:
                for _ in range(8):
                    await llm.chat(MESSAGES, rng=random.Random(0))
                assert llm.hedge_delay() is not None
                return await llm.chat(MESSAGES, rng=random.Random(0))
            finally:
                await llm.aclose()

        r = asyncio.run(go())
        assert srv.request_count == 10
    # with retries=0 and a 30 s deadline, only the twin can have answered
    assert r.text == "twin" and r.attempts == 1 and llm.hedged == 1
