"""The LLM interface: a chat client with retries, deadlines and accounting."""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from dataclasses import dataclass


@dataclass(frozen=True)
class LLMReply:
    text: str
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    latency: float = 0.0  # seconds, first request to final reply, retries included
    attempts: int = 1


class LLM(ABC):
    @abstractmethod
    async def chat(self, messages: list[dict[str, str]], *, rng: random.Random) -> LLMReply:
        """One reply. Raises evoforge.errors.LLMError when no usable reply could be had
        within the deadline (the error carries ``retryable`` and ``attempts``)."""

    async def aclose(self) -> None:
        return None
