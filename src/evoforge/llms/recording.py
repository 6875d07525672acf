"""Record every LLM exchange to a JSON Lines file, and replay a recording with no endpoint.

A recording holds one line per request: its key (a hash of the prompt messages), the messages
and either the reply (text, model, tokens, cost, latency, attempts) or the error it ended in.
No API key or endpoint address is written (error messages quoting them are
redacted): recordings are safe to share. Replay answers each
prompt with the next recorded reply for the same messages; a prompt the recording does not
hold is an error that names it (the run stops: answering something else would be a different
run). With the same config, seed and ``pipeline.max_in_flight=1`` a replayed run asks the same
prompts in the same order and so makes the same programs.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from evoforge.errors import ConfigError, LLMError
from evoforge.llms.base import LLM, LLMReply
from evoforge.program import scrub

__all__ = ["FORMAT", "RecordingLLM", "ReplayLLM", "exchange_key"]

FORMAT = "evoforge-llm-recording/1"
_REPLY_FIELDS = {f for f in LLMReply.__dataclass_fields__}


def exchange_key(messages: list[dict[str, str]]) -> str:
    """A stable hash of the prompt messages (roles and contents, in order)."""
    canon = json.dumps([[m.get("role", ""), m.get("content", "")] for m in messages],
                       ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(scrub(canon).encode()).hexdigest()


def _clean_messages(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{"role": scrub(m.get("role", "")), "content": scrub(m.get("content", ""))}
            for m in messages]


class RecordingLLM(LLM):
    """Passes every request to ``inner`` and appends the exchange to ``path`` (one line each,
    flushed and fsynced as written, so a killed run keeps what it was answered)."""

    def __init__(self, inner: LLM, path: str | Path, *, redact: Sequence[str | None] = ()) -> None:
        self.inner = inner
        # the endpoint's address and the key, wherever an error message quotes them
        self.redact = sorted({r for r in redact if r and len(r) >= 4}, key=len, reverse=True)
        self.path = Path(path).expanduser()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = self.path.open("a", encoding="utf-8")
        except OSError as e:
            raise ConfigError(f"--record {self.path}: cannot write the recording ({e}); choose a "
                              "writable path") from e
        self._lock = threading.Lock()

    def _write(self, entry: dict[str, Any]) -> None:
        line = json.dumps(entry, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        with self._lock:
            self._fh.write(line + "\n")
            self._fh.flush()
            os.fsync(self._fh.fileno())

    async def chat(self, messages: list[dict[str, str]], *, rng: random.Random) -> LLMReply:
        base = {"format": FORMAT, "key": exchange_key(messages),
                "messages": _clean_messages(messages)}
        try:
            reply = await self.inner.chat(messages, rng=rng)
        except LLMError as e:
            message = scrub(str(e))
            for secret in self.redact:
                message = message.replace(secret, "[endpoint]")
            await asyncio.to_thread(self._write, {**base, "error": {
                "message": message, "kind": e.kind, "retryable": e.retryable,
                "attempts": e.attempts, "prompt_tokens": e.prompt_tokens,
                "completion_tokens": e.completion_tokens, "cost": e.cost}})
            raise
        fields = asdict(reply)
        fields["text"] = scrub(reply.text)
        await asyncio.to_thread(self._write, {**base, "reply": fields})
        return reply

    async def aclose(self) -> None:
        try:
            await self.inner.aclose()
        finally:
            self._fh.close()


class ReplayLLM(LLM):
    """Answers from a recording made by :class:`RecordingLLM`; calls no endpoint."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        self._by_key: dict[str, deque[dict[str, Any]]] = {}
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError as e:
            raise ConfigError(f"--replay {self.path}: no such recording (make one with "
                              "`evoforge run ... --record FILE`)") from e
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"--replay {self.path}: cannot read the recording ({e})") from e
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                if not isinstance(entry, dict) or entry.get("format") != FORMAT:
                    raise ValueError(f"not a {FORMAT} line")
                key = entry["key"]
                if "reply" in entry:
                    LLMReply(**{k: v for k, v in entry["reply"].items() if k in _REPLY_FIELDS})
                elif not isinstance(entry.get("error"), dict):
                    raise ValueError("neither a reply nor an error")
            except (ValueError, KeyError, TypeError) as e:
                raise ConfigError(f"--replay {self.path}: line {n} is not a recorded exchange "
                                  f"({e}); was the file written by `--record`?") from e
            self._by_key.setdefault(str(key), deque()).append(entry)
        self.replayed = 0

    async def chat(self, messages: list[dict[str, str]], *, rng: random.Random) -> LLMReply:
        key = exchange_key(messages)
        queue = self._by_key.get(key)
        if not queue:
            last = messages[-1].get("content", "") if messages else ""
            seen = "asked more often than recorded" if queue is not None else "not recorded"
            raise LLMError(
                f"--replay {self.path}: the prompt with key {key[:16]} ({len(messages)} messages, "
                f"{len(last):,} characters in the last, beginning {scrub(last[:80])!r}) is "
                f"{seen}; replay needs the config and seed of the recorded run (and "
                "pipeline.max_in_flight=1 when it was recorded so, for the same order)",
                retryable=False, kind="fatal")
        entry = queue.popleft()
        self.replayed += 1
        if "error" in entry:
            e = entry["error"]
            raise LLMError(str(e.get("message", "recorded error")),
                           retryable=bool(e.get("retryable", True)),
                           attempts=int(e.get("attempts", 1)),
                           prompt_tokens=int(e.get("prompt_tokens", 0)),
                           completion_tokens=int(e.get("completion_tokens", 0)),
                           cost=float(e.get("cost", 0.0)), kind=e.get("kind"))
        return LLMReply(**{k: v for k, v in entry["reply"].items() if k in _REPLY_FIELDS})
