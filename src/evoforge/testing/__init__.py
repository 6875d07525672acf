"""Test helpers that ship with evoforge: real components on loopback, no mocks.

``evoforge.testing.openai_server`` is a scripted OpenAI-compatible chat server used by the
test suite and the throughput benchmarks.
"""

from __future__ import annotations

from evoforge.testing.openai_server import (
    Action,
    ChatRequest,
    OpenAITestServer,
    RecordedRequest,
    empty,
    empty_content,
    error,
    hang,
    malformed,
    reply,
)

__all__ = [
    "Action",
    "ChatRequest",
    "OpenAITestServer",
    "RecordedRequest",
    "empty",
    "empty_content",
    "error",
    "hang",
    "malformed",
    "reply",
]
