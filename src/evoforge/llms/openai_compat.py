"""A client for any OpenAI-compatible chat endpoint (OpenAI, vLLM, SGLang, Ollama, llama.cpp
server, OpenRouter, ...) with our own retry loop, an outer deadline, and token/cost accounting.

The openai SDK's own retries are off (``max_retries=0``); this module decides what to retry:

- retried (up to ``retries`` extra attempts): 429 (honouring ``retry-after-ms`` /
  ``Retry-After`` seconds or HTTP-date), 408/409, 5xx, timeouts, connection errors, malformed
  replies, empty replies (no choices or empty content);
- not retried: 400/401/403/404/422 (and other 4xx): ``LLMError(retryable=False)`` naming the fix.

``proposal_deadline`` bounds the whole call, retries and back-off sleeps included, so a stalled
endpoint cannot freeze the run.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import os
import random
import re
import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from evoforge.config import LLMConfig, ModelConfig
from evoforge.errors import ConfigError, LLMError
from evoforge.llms.base import LLM, LLMReply

__all__ = ["OpenAICompatLLM", "parse_retry_after", "preload_sdk"]

if TYPE_CHECKING:
    import openai


def _sdk() -> Any:
    """The openai SDK, imported on first use (it takes about half a second)."""
    import openai

    return openai


def preload_sdk() -> None:
    """Import the openai SDK in a background thread, so that it is ready by the first request
    (a run evaluates its initial program meanwhile); a later import waits for it."""
    import importlib
    import threading

    threading.Thread(target=importlib.import_module, args=("openai",), daemon=True,
                     name="evoforge-openai-import").start()

#: what endpoints say when a prompt exceeds the context window (OpenAI, vLLM, llama.cpp, ...)
_TOO_LONG = re.compile(r"context[ _-]?(length|window|size)|too (long|many tokens)|maximum "
                       r"(context|number of tokens|prompt)|exceeds? the (model|max)|prompt is "
                       r"too|input (is )?too|token limit|reduce the length", re.IGNORECASE)

log = logging.getLogger(__name__)

NO_KEY_PLACEHOLDER = "evoforge-no-key"
DEFAULT_BASE_URL = "https://api.openai.com/v1"


class _Retry(Exception):
    """One failed attempt that may be retried. ``wait`` is a server-requested delay."""

    def __init__(self, message: str, wait: float | None = None, *, prompt_tokens: int = 0,
                 completion_tokens: int = 0, unreachable: bool = False) -> None:
        super().__init__(message)
        self.wait = wait
        self.unreachable = unreachable  # nothing answered at the address (connection failed)
        self.prompt_tokens = prompt_tokens  # what the failed attempt was billed
        self.completion_tokens = completion_tokens


def parse_retry_after(headers: Mapping[str, str] | Any, *,
                      now: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP-date).
    None when absent or unparsable."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            v = float(ms) / 1000.0
            if v >= 0:
                return v
        except ValueError:
            pass
    ra = headers.get("retry-after")
    if ra is None:
        return None
    try:
        v = float(ra)
        return v if v >= 0 else None
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(ra)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


class OpenAICompatLLM(LLM):
    """Chat client for an OpenAI-compatible endpoint. The model is drawn per call by weight
    with the caller's rng. The HTTP client is created lazily and closed by :meth:`aclose`."""

    def __init__(
        self,
        models: Sequence[ModelConfig | str],
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        request_timeout: float = 120.0,
        retries: int = 3,
        backoff_base: float = 1.0,
        backoff_max: float = 30.0,
        proposal_deadline: float = 600.0,
        temperature: float | None = 0.7,
        top_p: float | None = None,
        max_tokens: int | None = 8192,
        adaptive_timeout: bool = True,
        timeout_floor: float = 15.0,
        hedge: bool = True,
    ) -> None:
        self.models = [ModelConfig.model_validate({"name": m}) if isinstance(m, str) else m
                       for m in models]
        if not self.models:
            raise ConfigError("no LLM model configured: set llm.models, e.g. "
                              "`--set llm.models=[gpt-4o-mini]` (or use the model-free mutator)")
        self.base_url = base_url or DEFAULT_BASE_URL
        self.api_key_env = api_key_env
        if not api_key:
            log.warning("$%s is not set: sending a placeholder API key (fine for local vLLM/"
                        "Ollama servers; hosted APIs will answer 401)", api_key_env)
            api_key = NO_KEY_PLACEHOLDER
        self._api_key = api_key
        self.request_timeout = float(request_timeout)
        self.retries = int(retries)
        self.backoff_base = float(backoff_base)
        self.backoff_max = float(backoff_max)
        self.proposal_deadline = float(proposal_deadline)
        self.temperature = temperature
        self.top_p = top_p
        self.max_tokens = max_tokens
        self._weights = [m.weight for m in self.models]
        self._client: openai.AsyncOpenAI | None = None
        self._closed = False
        # adaptive per-attempt deadline: a hung request is cut after a few times the observed
        # latency (at least timeout_floor, at most request_timeout), not after the ceiling
        self.adaptive_timeout = bool(adaptive_timeout)
        self.timeout_floor = float(timeout_floor)
        self._latencies: deque[float] = deque(maxlen=64)
        self._answered = False  # the endpoint has answered at least once
        self.hedge = bool(hedge)
        self.hedged = 0  # requests that got a twin

    @classmethod
    def from_config(cls, cfg: LLMConfig, env: Mapping[str, str] = os.environ) -> OpenAICompatLLM:
        return cls(
            cfg.models,
            base_url=cfg.base_url or env.get("OPENAI_BASE_URL") or None,
            api_key=env.get(cfg.api_key_env) or None,
            api_key_env=cfg.api_key_env,
            request_timeout=cfg.request_timeout,
            retries=cfg.retries,
            backoff_base=cfg.backoff_base,
            backoff_max=cfg.backoff_max,
            proposal_deadline=cfg.proposal_deadline,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            max_tokens=cfg.max_tokens,
            adaptive_timeout=cfg.adaptive_timeout,
            timeout_floor=cfg.timeout_floor,
            hedge=cfg.hedge,
        )

    # ------------------------------------------------------------------ lifecycle
    def _get_client(self) -> openai.AsyncOpenAI:
        if self._closed:
            raise LLMError("this LLM client was closed (aclose()); create a new one",
                           retryable=False, attempts=0)
        if self._client is None:
            self._client = _sdk().AsyncOpenAI(base_url=self.base_url, api_key=self._api_key,
                                              max_retries=0, timeout=self.request_timeout)
        return self._client

    async def aclose(self) -> None:
        self._closed = True
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    # ------------------------------------------------------------------ chat
    def pick_model(self, rng: random.Random) -> ModelConfig:
        if len(self.models) == 1:
            return self.models[0]
        return rng.choices(self.models, weights=self._weights, k=1)[0]

    def attempt_timeout(self) -> float:
        """The deadline of one request: ``request_timeout``, or, with ``adaptive_timeout`` and
        at least 8 answered requests, 4x their 95th-percentile latency clamped to
        [``timeout_floor``, ``request_timeout``]."""
        if not self.adaptive_timeout or len(self._latencies) < 8:
            return self.request_timeout
        ordered = sorted(self._latencies)
        p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
        return min(self.request_timeout, max(self.timeout_floor, 4.0 * p95))

    def _backoff(self, k: int, rng: random.Random) -> float:
        base = min(self.backoff_max, self.backoff_base * (2.0 ** k))
        return base * (0.5 + 0.5 * rng.random())  # "equal jitter": between base/2 and base

    async def chat(self, messages: list[dict[str, str]], *, rng: random.Random) -> LLMReply:
        model = self.pick_model(rng)
        client = self._get_client()
        start = time.monotonic()
        deadline = start + self.proposal_deadline
        attempts = 0
        last = "no attempt made"
        billed = [0, 0]  # prompt and completion tokens of every attempt, unusable ones included

        def spent() -> dict[str, Any]:
            return {"prompt_tokens": billed[0], "completion_tokens": billed[1],
                    "cost": (billed[0] * model.input_price + billed[1] * model.output_price) / 1e6}

        try:
            async with asyncio.timeout(self.proposal_deadline):
                for k in range(self.retries + 1):
                    attempts += 1
                    try:
                        text, pt, ct = await self._attempt(client, model, messages)
                    except LLMError as e:
                        e.attempts = attempts
                        e.prompt_tokens, e.completion_tokens, e.cost = spent().values()
                        raise
                    except _Retry as r:
                        billed[0] += r.prompt_tokens
                        billed[1] += r.completion_tokens
                        last = str(r)
                        if r.unreachable and not self._answered and k >= self.retries:
                            # never answered, and still nothing listening: a config problem
                            raise LLMError(
                                f"{last}; the endpoint has not answered once: is the server "
                                "running, and is llm.base_url right?", retryable=False,
                                attempts=attempts, kind="fatal", **spent()) from r
                        if k >= self.retries:
                            break
                        wait = self._backoff(k, rng)
                        if r.wait is not None:
                            wait = r.wait + 0.1 * r.wait * rng.random()
                        if time.monotonic() + wait > deadline:
                            raise LLMError(
                                f"{last}; the next attempt (in {wait:.1f}s) would pass "
                                f"llm.proposal_deadline={self.proposal_deadline:g}s",
                                retryable=True, attempts=attempts, **spent()) from r
                        log.debug("LLM attempt %d on %s failed (%s); retrying in %.2fs",
                                  attempts, model.name, last, wait)
                        await asyncio.sleep(wait)
                        continue
                    billed[0] += pt
                    billed[1] += ct
                    total = spent()
                    return LLMReply(text=text, model=model.name,
                                    prompt_tokens=total["prompt_tokens"],
                                    completion_tokens=total["completion_tokens"],
                                    cost=total["cost"], latency=time.monotonic() - start,
                                    attempts=attempts)
        except TimeoutError as e:
            raise LLMError(
                f"no usable reply from model {model.name!r} at {self.base_url} within "
                f"llm.proposal_deadline={self.proposal_deadline:g}s ({attempts} attempt(s); "
                f"last: {last}); check the endpoint or raise the deadline",
                retryable=True, attempts=attempts, **spent()) from e
        raise LLMError(
            f"model {model.name!r} at {self.base_url} gave no usable reply after {attempts} "
            f"attempt(s); last error: {last}", retryable=True, attempts=attempts, **spent())

    async def _attempt(self, client: openai.AsyncOpenAI, model: ModelConfig,
                       messages: list[dict[str, str]]) -> tuple[str, int, int]:
        kwargs: dict[str, Any] = {"model": model.name, "messages": messages}
        if self.temperature is not None:
            kwargs["temperature"] = self.temperature
        if self.top_p is not None:
            kwargs["top_p"] = self.top_p
        if self.max_tokens is not None:
            kwargs["max_tokens"] = self.max_tokens
        openai = _sdk()
        limit = self.attempt_timeout()
        why = ("llm.request_timeout" if limit >= self.request_timeout else
               "4x the observed 95th-percentile latency; llm.adaptive_timeout")
        t0 = time.monotonic()
        try:
            # httpx's timeout is per read; this bounds the whole attempt as well
            async with asyncio.timeout(limit):
                resp = await self._hedged(client, kwargs)
        except TimeoutError as e:
            raise _Retry(f"request timed out after {limit:.3g}s ({why})") from e
        except openai.APITimeoutError as e:
            raise _Retry(f"request timed out after {limit:.3g}s ({why})") from e
        except openai.APIConnectionError as e:
            # refused or unresolvable, as opposed to a connection that broke: by the name of
            # the transport's exception (httpx, or httpx2 in newer SDKs)
            refused = any(type(c).__name__ == "ConnectError" for c in (e.__cause__, e.__context__))
            raise _Retry(f"cannot connect to {self.base_url}: {e.__cause__ or e}",
                         unreachable=refused) from e
        except openai.APIStatusError as e:
            self._answered = True
            self._raise_for_status(e, model)
        except (ValueError, openai.APIResponseValidationError) as e:
            raise _Retry(f"malformed reply (not a chat completion): {e}") from e
        self._answered = True
        self._latencies.append(time.monotonic() - t0)
        return self._parse(resp)

    def hedge_delay(self) -> float | None:
        """When a second, identical request starts if the first has not answered: 1.5x the
        observed 95th-percentile latency (``llm.hedge``, after 8 answers), else None."""
        if not self.hedge or len(self._latencies) < 8:
            return None
        ordered = sorted(self._latencies)
        return 1.5 * ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]

    async def _hedged(self, client: openai.AsyncOpenAI, kwargs: dict[str, Any]) -> Any:
        """The completion; a request slower than :meth:`hedge_delay` gets a twin, the first
        answer wins and the other is cancelled (a hung request then costs about one hedge
        delay, not a whole deadline)."""
        delay = self.hedge_delay()
        tasks = {asyncio.ensure_future(client.chat.completions.create(**kwargs))}
        try:
            if delay is not None:
                done, _ = await asyncio.wait(tasks, timeout=delay)
                if not done:
                    self.hedged += 1
                    tasks.add(asyncio.ensure_future(client.chat.completions.create(**kwargs)))
            error: BaseException | None = None
            while tasks:
                done, tasks = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for t in done:
                    if t.exception() is None:
                        return t.result()
                    error = t.exception()
            assert error is not None
            raise error
        finally:
            for t in tasks:
                t.cancel()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)

    def _raise_for_status(self, e: openai.APIStatusError, model: ModelConfig) -> NoReturn:
        status = e.status_code
        detail = _detail(e)
        where = f"{self.base_url} (model {model.name!r})"
        if status == 429:
            raise _Retry(f"rate limited (HTTP 429): {detail}",
                         wait=parse_retry_after(e.response.headers)) from e
        if status in (408, 409) or status >= 500:
            raise _Retry(f"server error (HTTP {status}): {detail}",
                         wait=parse_retry_after(e.response.headers)) from e
        if status == 401:
            kind, msg = "auth", (f"authentication failed at {where} (HTTP 401): {detail}; check "
                                 f"the API key in ${self.api_key_env}")
        elif status == 403:
            kind, msg = "auth", (f"permission denied at {where} (HTTP 403): {detail}; the key in "
                                 f"${self.api_key_env} has no access to this model or project")
        elif status == 404:
            kind, msg = "model", (f"not found at {where} (HTTP 404): {detail}; unknown model or "
                                  "wrong base_url (llm.base_url usually ends in /v1; check "
                                  "llm.models)")
        elif status == 413 or (status in (400, 422) and _TOO_LONG.search(detail)):
            kind, msg = "too_long", (f"the prompt is too long for {where} (HTTP {status}): "
                                     f"{detail}")
        else:
            kind, msg = "rejected", (
                f"the endpoint rejected the request at {where} (HTTP {status}): {detail}; "
                "check llm.models, llm.max_tokens, llm.temperature and llm.top_p for this "
                "endpoint")
        raise LLMError(msg, retryable=False, attempts=1, kind=kind) from e

    @staticmethod
    def _parse(resp: Any) -> tuple[str, int, int]:
        try:
            choices = resp.choices
            usage = getattr(resp, "usage", None)
        except AttributeError as e:
            raise _Retry(f"malformed reply (not a chat completion): {type(resp).__name__}") from e
        pt = _int(getattr(usage, "prompt_tokens", 0)) if usage is not None else 0
        ct = _int(getattr(usage, "completion_tokens", 0)) if usage is not None else 0
        def unusable(why: str) -> _Retry:  # billed even when unusable
            return _Retry(why, prompt_tokens=pt, completion_tokens=ct)

        if choices is None:
            raise unusable("malformed reply: no 'choices' field")
        if not choices:
            raise unusable("empty reply (no choices)")
        try:
            content = choices[0].message.content
        except (AttributeError, IndexError, TypeError) as e:
            raise unusable("malformed reply: choice without a message") from e
        if not isinstance(content, str) or not content.strip():
            raise unusable("empty reply (empty message content)")
        return content, pt, ct


def _int(v: Any) -> int:
    try:
        return max(0, int(v or 0))
    except (TypeError, ValueError):
        return 0


def _detail(e: openai.APIStatusError) -> str:
    body = e.body
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])[:300]
        if isinstance(body.get("message"), str):
            return str(body["message"])[:300]
    text = getattr(e, "message", None) or str(e)
    return str(text)[:300]
