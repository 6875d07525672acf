"""The LLM error policy: what a failed LLM request means for the run.

The client retries transient faults itself (rate limits, 5xx, timeouts, broken connections)
within its deadline; what is left when it gives up is an :class:`~evoforge.errors.LLMError` with a
``kind``, and the policy maps it to an action:

- ``"stop"``: the run stops with the error as its reason (nothing will work until the config
  changes: authentication, an unknown model, a client used after close);
- ``"shrink"``: send a smaller prompt for the same proposal (the prompt was too long);
- ``"skip"``: give up on this proposal only (stored ``invalid`` with the reason).

Pass your own to :class:`~evoforge.mutators.llm.LLMMutator` (``policy=``) to change it, e.g. to
stop on any refusal.
"""

from __future__ import annotations

from typing import Literal

from evoforge.errors import LLMError

__all__ = ["Action", "ErrorPolicy"]

Action = Literal["stop", "shrink", "skip"]


class ErrorPolicy:
    """The default policy: stop on ``LLMError.FATAL_KINDS``, shrink on ``too_long``, else skip."""

    def decide(self, error: LLMError) -> Action:
        if error.retryable:
            return "skip"  # the client's retries and deadline are spent
        if error.kind in LLMError.FATAL_KINDS:
            return "stop"
        if error.kind == "too_long":
            return "shrink"
        return "skip"
