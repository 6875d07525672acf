"""NoveltyFilter: a mutator wrapper that re-asks, then rejects, children too similar to their
parent or to recent programs, before any evaluation is spent on them.

Similarity is the cosine of two code vectors: embeddings from an OpenAI-compatible
``/v1/embeddings`` endpoint when ``novelty.embedding_model`` is set, else a local measure (counts
of the code's token bigrams, comments and layout ignored), which needs nothing. A child whose
closest neighbour is at or above ``novelty.threshold`` is asked again (``novelty.retries`` times,
each attempt's tokens and cost counted) and then stored ``invalid`` with the neighbour named.
A constant-tuning trial (``mutation.edit_kind == "tune"``, e.g. from a bandit's tuning arm) passes
unfiltered: it differs from its base only in literal values by design.

The filter is transparent to what it wraps: results (``observe``), resume (``restore``) and
closing (``aclose``) reach ``inner``, so a learning mutator inside it learns and resumes as
without it.
"""

from __future__ import annotations

import asyncio
import io
import math
import random
import tokenize
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from evoforge.errors import ConfigError
from evoforge.mutators.base import MutationOutcome, MutationRequest, Mutator
from evoforge.program import MutationInfo, Program, Status

if TYPE_CHECKING:
    from evoforge.config import Config

__all__ = ["NoveltyFilter", "OpenAIEmbedder", "cosine", "local_vector"]

Vector = dict[Any, float]  # sparse (local measure) or dense as {index: value} (embeddings)
Embedder = Callable[[list[str]], Awaitable[list[list[float]]]]

_SKIP = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
         tokenize.ENCODING, tokenize.ENDMARKER}


def _tokens(code: str) -> list[str]:
    try:
        return [t.string for t in tokenize.generate_tokens(io.StringIO(code).readline)
                if t.type not in _SKIP]
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return code.split()  # not Python (or broken): whitespace-separated words


def local_vector(code: str) -> Vector:
    """Counts of the code's token bigrams (and unigrams): layout and comments do not count."""
    toks = _tokens(code)
    vec: Counter[Any] = Counter(toks)
    vec.update(zip(toks, toks[1:], strict=False))
    return {k: float(v) for k, v in vec.items()}


def cosine(a: Vector, b: Vector) -> float:
    if len(a) > len(b):
        a, b = b, a
    dot = sum(v * b.get(k, 0.0) for k, v in a.items())
    na = math.sqrt(sum(v * v for v in a.values()))
    nb = math.sqrt(sum(v * v for v in b.values()))
    return dot / (na * nb) if na and nb else (1.0 if not na and not nb else 0.0)


class OpenAIEmbedder:
    """Embeddings from any OpenAI-compatible endpoint (``client.embeddings.create``)."""

    def __init__(self, client: Any, model: str) -> None:
        self.client = client
        self.model = model
        self.tokens = 0  # what the endpoint reported using

    @classmethod
    def from_config(cls, cfg: Config) -> OpenAIEmbedder:
        import os

        try:
            import openai
        except ImportError as e:  # pragma: no cover - a dependency
            raise ConfigError("novelty.embedding_model needs the openai package: pip install "
                              "openai") from e
        key = os.environ.get(cfg.llm.api_key_env) or "evoforge-no-key"
        client = openai.AsyncOpenAI(base_url=cfg.llm.base_url, api_key=key,
                                    timeout=cfg.llm.request_timeout, max_retries=cfg.llm.retries)
        return cls(client, str(cfg.novelty.embedding_model))

    async def __call__(self, texts: list[str]) -> list[list[float]]:
        resp = await self.client.embeddings.create(model=self.model, input=texts)
        usage = getattr(resp, "usage", None)
        self.tokens += int(getattr(usage, "prompt_tokens", 0) or 0)
        return [list(d.embedding) for d in sorted(resp.data, key=lambda d: d.index)]

    async def aclose(self) -> None:
        await self.client.close()


class NoveltyFilter(Mutator):
    """Wraps ``inner``: a child at or above ``threshold`` similarity to its parent or to one of
    the last ``window`` ok programs is asked for again (``retries`` times, with a new random
    stream), then rejected (``code=None``, the neighbour named in the note). Without
    ``embedder``, the local token-bigram measure is used; an embedder that fails falls back to
    it for that child (said in the note), so a flaky embeddings endpoint never stops a run."""

    def __init__(self, inner: Mutator, *, threshold: float = 0.99, window: int = 32,
                 retries: int = 1, embedder: Embedder | None = None) -> None:
        if not 0 < threshold <= 1:
            raise ConfigError(f"novelty.threshold must be in (0, 1], got {threshold}")
        self.inner = inner
        self.name = inner.name
        self.uses_llm = inner.uses_llm
        self.threshold = float(threshold)
        self.retries = int(retries)
        self.embedder = embedder
        self.recent: deque[tuple[int, str]] = deque(maxlen=max(int(window), 0))
        self._vectors: dict[tuple[str, str], Vector] = {}  # (kind, code) -> vector, bounded
        self.rejected = 0  # children turned away (for status and tests)
        self.reasked = 0

    def observe(self, program: Program) -> None:
        if program.status is Status.OK and self.recent.maxlen:
            self.recent.append((program.id, program.code))
        self.inner.observe(program)

    def restore(self, programs: Iterable[Program]) -> None:
        """On resume: the recent window is refilled from the stored programs, and ``inner``
        (a bandit, ...) relearns from them."""
        done = list(programs)
        if self.recent.maxlen:
            self.recent.extend((p.id, p.code) for p in done if p.status is Status.OK)
        self.inner.restore(done)

    async def _vectors_of(self, codes: Sequence[str]) -> tuple[list[Vector], str]:
        kind = "local"
        if self.embedder is not None:
            missing = [c for c in dict.fromkeys(codes) if ("emb", c) not in self._vectors]
            try:
                if missing:
                    got = await self.embedder(list(missing))
                    for c, dense in zip(missing, got, strict=True):
                        self._vectors[("emb", c)] = dict(enumerate(dense))
                kind = "emb"
            except Exception as e:  # noqa: BLE001 - a flaky endpoint: measure locally instead
                kind = f"local (embeddings failed: {type(e).__name__})"
        key = "emb" if kind == "emb" else "local"
        out: list[Vector] = []
        for c in codes:
            v = self._vectors.get((key, c))
            if v is None:
                v = local_vector(c)
                self._vectors[(key, c)] = v
            out.append(v)
        if len(self._vectors) > 4 * (self.recent.maxlen or 1) + 64:  # keep the memo small
            keep = {c for _, c in self.recent} | set(codes)
            self._vectors = {k: v for k, v in self._vectors.items() if k[1] in keep}
        return out, kind

    async def closest(self, code: str, parent: Program) -> tuple[float, int, str]:
        """(similarity, program id, measure) of the nearest of the parent and recent programs."""
        others = [(parent.id, parent.code), *((i, c) for i, c in self.recent if i != parent.id)]
        vecs, kind = await self._vectors_of([code, *(c for _, c in others)])
        best, who = -1.0, parent.id
        for (pid, _), v in zip(others, vecs[1:], strict=True):
            sim = cosine(vecs[0], v)
            if sim > best:
                best, who = sim, pid
        return best, who, kind

    async def mutate(self, request: MutationRequest) -> MutationOutcome:
        spent = [0, 0, 0.0, 0, 0.0]  # prompt, completion tokens, cost, attempts, latency
        req = request
        for attempt in range(self.retries + 1):
            out = await self.inner.mutate(req)
            info = out.info
            if out.code is None or info.edit_kind == "tune":  # a tuning trial: not filtered
                return replace(out, info=_add(info, spent)) if attempt else out
            sim, who, kind = await self.closest(out.code, request.parent)
            if sim < self.threshold:
                note = f"{info.note}; novelty: nearest #{who} at {sim:.3f} ({kind})"
                return replace(out, info=replace(_add(info, spent), note=note))
            spent = [spent[0] + info.prompt_tokens, spent[1] + info.completion_tokens,
                     spent[2] + info.cost, spent[3] + info.attempts, spent[4] + info.latency]
            if attempt < self.retries:
                self.reasked += 1
                req = replace(request, rng=random.Random(request.rng.random()))
        self.rejected += 1
        why = (f"too similar to #{who}: similarity {sim:.4f} >= novelty.threshold "
               f"{self.threshold:g} ({kind}), after {self.retries + 1} attempt(s)")
        # the arm (a bandit inside) and the prompt variant are kept: they made the duplicate
        rejected = replace(_add(MutationInfo(mutator=info.mutator, model=info.model,
                                             edit_kind=info.edit_kind, arm=info.arm,
                                             prompt_variant=info.prompt_variant), spent),
                           note=why)
        return MutationOutcome(code=None, info=rejected, exchange=out.exchange)

    async def aclose(self) -> None:
        try:
            await self.inner.aclose()
        finally:
            close = getattr(self.embedder, "aclose", None)
            if close is not None:
                await asyncio.shield(close())


def _add(info: MutationInfo, spent: list[Any]) -> MutationInfo:
    """``info`` plus what earlier (rejected) attempts of the same proposal cost."""
    if not any(spent):
        return info
    return replace(info, prompt_tokens=info.prompt_tokens + int(spent[0]),
                   completion_tokens=info.completion_tokens + int(spent[1]),
                   cost=info.cost + float(spent[2]), attempts=info.attempts + int(spent[3]),
                   latency=info.latency + float(spent[4]))
