"""LLMMutator: prompt -> LLM -> edit (SEARCH/REPLACE diff or full rewrite) -> child code."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from evoforge.edit import apply_diff, apply_rewrite, parse_diff, python_syntax_error
from evoforge.errors import ConfigError, EditError, LLMError
from evoforge.llms.base import LLM, LLMReply
from evoforge.llms.policy import ErrorPolicy
from evoforge.mutators.base import MutationOutcome, MutationRequest, Mutator
from evoforge.program import MutationInfo, scrub
from evoforge.prompting import PromptBuilder

if TYPE_CHECKING:
    from evoforge.config import Config, LLMConfig

__all__ = ["LLMMutator"]

EDIT_MODES = ("diff", "rewrite")
_NOTE_CHARS = 500


def _clip(text: str, n: int = _NOTE_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 3] + "..."


def llm_from_config(cfg: LLMConfig) -> LLM:
    """The LLM client ``llm.*`` describes: the endpoint, or a recording (``llm.replay``),
    recorded to ``llm.record`` if set."""
    from evoforge.llms.recording import RecordingLLM, ReplayLLM

    llm: LLM
    if cfg.replay:
        llm = ReplayLLM(cfg.replay)  # no endpoint at all
    else:
        from evoforge.llms.openai_compat import OpenAICompatLLM, preload_sdk

        preload_sdk()  # ready by the first request; the initial program is evaluated meanwhile
        llm = OpenAICompatLLM.from_config(cfg)
    if cfg.record:
        import os

        llm = RecordingLLM(llm, cfg.record, redact=[cfg.base_url, os.environ.get(cfg.api_key_env)])
    return llm


def _exchange(messages: list[dict[str, str]] | None, reply: str | None, info: MutationInfo,
              outcome: str, tried: list[str], level: str | None) -> dict[str, Any]:
    """What is kept of one proposal's LLM exchange (see Storage.add_exchange): the prompt last
    sent, the raw reply, the model and attempts, and what became of it, all whole."""
    return {
        "messages": [{"role": scrub(m.get("role", "")), "content": scrub(m.get("content", ""))}
                     for m in messages or []],
        "reply": None if reply is None else scrub(reply),
        "model": info.model,
        "attempts": info.attempts,
        "prompt_level": level,
        "outcome": scrub(outcome),  # "diff: 2 SEARCH/REPLACE block(s) applied", or why not
        "tried": [scrub(t) for t in tried],  # prompt levels that failed before, and why
    }


class LLMMutator(Mutator):
    """Builds the prompt, asks the LLM, applies the edit inside the EVOLVE blocks.

    A bad reply or an edit that does not apply gives ``code=None`` with the reason in
    ``info.note`` (tokens and cost still counted). A retryable :class:`LLMError` (after the
    client's own retries) or a refusal of this request (another HTTP 4xx) does the same with a
    note starting ``"llm: "``; a prompt over ``prompt.max_chars``, or refused as too long, is
    rebuilt smaller (see :meth:`_prompts`) and sent again; a permanent failure (authentication,
    unknown model) is re-raised so the run stops with that reason. Which failure is which is
    ``policy``'s decision (:class:`evoforge.llms.policy.ErrorPolicy`).
    """

    name = "llm"
    uses_llm = True

    def __init__(self, llm: LLM, prompts: PromptBuilder, edit_mode: str = "diff",
                 max_chars: int = 400_000, policy: ErrorPolicy | None = None) -> None:
        if edit_mode not in EDIT_MODES:
            raise ConfigError(f"unknown mutator.edit_mode {edit_mode!r}; valid: "
                              f"{', '.join(EDIT_MODES)}")
        self.llm = llm
        self.prompts = prompts
        self.edit_mode = edit_mode
        self.max_chars = int(max_chars)
        self.policy = policy or ErrorPolicy()  # what an LLM failure means (evoforge.llms.policy)

    @classmethod
    def from_config(cls, cfg: Config, *, llm_config: LLMConfig | None = None,
                    edit_mode: str | None = None) -> LLMMutator:
        """The mutator the config describes; ``llm_config`` (e.g. one model of several) and
        ``edit_mode`` override the config's."""
        return cls(llm_from_config(llm_config or cfg.llm), PromptBuilder.from_config(cfg),
                   edit_mode=edit_mode or cfg.mutator.edit_mode, max_chars=cfg.prompt.max_chars)

    def _prompts(self, request: MutationRequest) -> Iterator[tuple[str, list[dict[str, str]]]]:
        """The prompt at each size level, built when needed: as configured; without context
        programs and with feedback cut to 500 characters; the parent alone without feedback."""
        cap = self.prompts.feedback_chars
        levels: list[tuple[str, MutationRequest, int | None]] = [
            ("full", request, None),
            ("no context programs, feedback cut", replace(request, context=()), min(cap, 500)),
            ("the parent alone", replace(request, context=(), others=()), 0),
        ]
        for name, r, c in levels:
            yield name, self.prompts.build(r, edit_mode=self.edit_mode, feedback_chars=c)

    async def mutate(self, request: MutationRequest) -> MutationOutcome:
        start = time.monotonic()
        spent = [0, 0, 0.0, 0]  # prompt tokens, completion tokens, cost, attempts
        note = ""
        tried: list[str] = []  # what each prompt level came to, for the stored exchange
        sent: list[dict[str, str]] | None = None
        for level, (name, messages) in enumerate(self._prompts(request)):
            size = sum(len(m["content"]) for m in messages)
            if size > self.max_chars:
                note = (f"the prompt is {size:,} characters with {name}, over prompt.max_chars="
                        f"{self.max_chars:,}")
                tried.append(f"{name}: not sent ({note})")
                continue
            sent = messages
            try:
                reply = await self.llm.chat(messages, rng=request.rng)
            except LLMError as e:
                spent = [spent[0] + e.prompt_tokens, spent[1] + e.completion_tokens,
                         spent[2] + e.cost, spent[3] + e.attempts]
                tried.append(f"{name}: {e}")
                action = self.policy.decide(e)
                if action == "stop":
                    raise  # nothing will work until the config changes: the run stops
                if action == "shrink":
                    note = f"llm: {e}"
                    continue  # a shorter prompt may fit
                note = f"llm: {e}" + (f" (prompt: {name})" if level else "")
                break  # skip this proposal
            code, applied = self._apply(request, reply)
            if level:
                applied += f" (prompt shrunk to {name}: {note})"
            info = self._info(reply, applied, spent)
            return MutationOutcome(code=code, info=info, exchange=_exchange(
                sent, reply.text, info, applied, tried, name))
        info = MutationInfo(mutator=self.name, edit_kind=self.edit_mode,
                            latency=time.monotonic() - start, attempts=int(spent[3]),
                            prompt_tokens=int(spent[0]), completion_tokens=int(spent[1]),
                            cost=float(spent[2]), note=_clip(note or "llm: no reply"))
        return MutationOutcome(code=None, info=info, exchange=_exchange(
            sent, None, info, note or "llm: no reply", tried, None))

    def _apply(self, request: MutationRequest, reply: LLMReply) -> tuple[str | None, str]:
        parent = request.parent.code
        try:
            if self.edit_mode == "diff":
                child = apply_diff(parent, reply.text, request.language)
            else:
                child = apply_rewrite(parent, reply.text, request.language)
        except EditError as e:
            return None, _clip(f"edit did not apply: {e}")
        if child == parent:
            return None, "edit did not apply: the reply left the program unchanged"
        if request.language.lower() in ("python", "py", "python3"):
            err = python_syntax_error(child)
            if err is not None:
                return None, _clip(f"syntax error in child: {err}")
        if self.edit_mode == "diff":
            return child, f"diff: {len(parse_diff(reply.text))} SEARCH/REPLACE block(s) applied"
        return child, "rewrite applied"

    def _info(self, reply: LLMReply, note: str,
              spent: list[Any] | None = None) -> MutationInfo:
        before = spent or [0, 0, 0.0, 0]  # what refused longer prompts were billed
        return MutationInfo(
            mutator=self.name,
            model=reply.model,
            edit_kind=self.edit_mode,
            prompt_tokens=reply.prompt_tokens + int(before[0]),
            completion_tokens=reply.completion_tokens + int(before[1]),
            cost=reply.cost + float(before[2]),
            latency=reply.latency,
            attempts=reply.attempts + int(before[3]),
            note=_clip(note),
        )

    async def aclose(self) -> None:
        await self.llm.aclose()
