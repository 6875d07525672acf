"""LLMMutator: prompt -> LLM -> edit (SEARCH/REPLACE diff or full rewrite) -> child code."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from evoforge.edit import apply_diff, apply_rewrite, parse_diff, python_syntax_error
from evoforge.errors import ConfigError, EditError, LLMError
from evoforge.llms.base import LLM, LLMReply
from evoforge.mutators.base import MutationOutcome, MutationRequest, Mutator
from evoforge.program import MutationInfo
from evoforge.prompting import PromptBuilder

if TYPE_CHECKING:
    from evoforge.config import Config

__all__ = ["LLMMutator"]

EDIT_MODES = ("diff", "rewrite")
_NOTE_CHARS = 500


def _clip(text: str, n: int = _NOTE_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 3] + "..."


class LLMMutator(Mutator):
    """Builds the prompt, asks the LLM, applies the edit inside the EVOLVE blocks.

    A bad reply or an edit that does not apply gives ``code=None`` with the reason in
    ``info.note`` (tokens and cost still counted). A retryable :class:`LLMError` (after the
    client's own retries) does the same with a note starting ``"llm: "``; a permanent one
    (authentication, unknown model) is re-raised so the run stops with that reason.
    """

    name = "llm"
    uses_llm = True

    def __init__(self, llm: LLM, prompts: PromptBuilder, edit_mode: str = "diff") -> None:
        if edit_mode not in EDIT_MODES:
            raise ConfigError(f"unknown mutator.edit_mode {edit_mode!r}; valid: "
                              f"{', '.join(EDIT_MODES)}")
        self.llm = llm
        self.prompts = prompts
        self.edit_mode = edit_mode

    @classmethod
    def from_config(cls, cfg: Config) -> LLMMutator:
        from evoforge.llms.openai_compat import OpenAICompatLLM

        return cls(OpenAICompatLLM.from_config(cfg.llm), PromptBuilder.from_config(cfg),
                   edit_mode=cfg.mutator.edit_mode)

    async def mutate(self, request: MutationRequest) -> MutationOutcome:
        messages = self.prompts.build(request, edit_mode=self.edit_mode)
        start = time.monotonic()
        try:
            reply = await self.llm.chat(messages, rng=request.rng)
        except LLMError as e:
            if not e.retryable:
                raise
            info = MutationInfo(mutator=self.name, edit_kind=self.edit_mode,
                                latency=time.monotonic() - start, attempts=e.attempts,
                                prompt_tokens=e.prompt_tokens,
                                completion_tokens=e.completion_tokens, cost=e.cost,
                                note=_clip(f"llm: {e}"))
            return MutationOutcome(code=None, info=info)
        code, note = self._apply(request, reply)
        info = self._info(reply, note)
        return MutationOutcome(code=code, info=info)

    def _apply(self, request: MutationRequest, reply: LLMReply) -> tuple[str | None, str]:
        parent = request.parent.code
        try:
            if self.edit_mode == "diff":
                child = apply_diff(parent, reply.text)
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

    def _info(self, reply: LLMReply, note: str) -> MutationInfo:
        return MutationInfo(
            mutator=self.name,
            model=reply.model,
            edit_kind=self.edit_mode,
            prompt_tokens=reply.prompt_tokens,
            completion_tokens=reply.completion_tokens,
            cost=reply.cost,
            latency=reply.latency,
            attempts=reply.attempts,
            note=note,
        )

    async def aclose(self) -> None:
        await self.llm.aclose()
