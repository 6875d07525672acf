"""Rebasing: a stale child's edit moved onto the better descendant of its parent that arrived
while the edit was being made.

With several LLM requests in flight, a parent picked for refinement is often no longer the best
of its line by the time the reply comes back: a child of it (or of that child) scored better
meanwhile. A (1+1) hill climber never has that problem (one request at a time), and at equal
LLM calls it beat engines with four in flight on refinement problems. Rebasing takes back part
of that at no LLM cost: when the reply to an exploiting pick of program P arrives and a better
descendant Q of P in the same island was committed after the pick, the reply's edit (the hunks
between P and the child) is applied to Q instead, if none of them touches lines that changed
between P and Q. The child is then Q's child (``parent_ids`` names Q, ``mutation.selected``
names P, its note says so); when the hunks conflict, or the edit is already in Q, the child
stays P's. Explored picks are never rebased (they chose a program other than the best on
purpose), nor crossovers (a partner is a parent too), nor children a mutator already gave a
parent of its own (a tuning trial).

Measured with ``benchmarks/discovery.py`` (docs/benchmarks.md, "Rebasing stale children"): in
40 paired full-run seeds it raised the deceptive trap's gain by about 0.05 at both budgets and
was within noise on the refinement problems, where picks come in bursts of four of one parent
and a reply rarely sees a sibling's result. ``pipeline.rebase: false`` turns it off.
"""

from __future__ import annotations

import difflib
from collections import deque
from collections.abc import Callable, Iterable

from evoforge.program import Program, Status
from evoforge.selectors.base import Selection

__all__ = ["REBASED", "Rebaser", "rebased", "transplant"]

#: how a rebased child's ``mutation.note`` starts
REBASED = "rebased: "
_MAX_DEPTH = 64  # how far up a candidate's first parents the picked parent is looked for


def _lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def _opcodes(a: list[str], b: list[str]) -> list[tuple[str, int, int, int, int]]:
    """difflib's opcodes from ``a`` to ``b``, the common head and tail set aside first (an
    edit is local: what is left to match is small) and difflib's junk heuristic on, so a
    program of tens of thousands of lines costs milliseconds, not minutes."""
    head = 0
    while head < min(len(a), len(b)) and a[head] == b[head]:
        head += 1
    tail = 0
    while tail < min(len(a), len(b)) - head and a[-1 - tail] == b[-1 - tail]:
        tail += 1
    ops: list[tuple[str, int, int, int, int]] = [("equal", 0, head, 0, head)] if head else []
    mid = difflib.SequenceMatcher(None, a[head:len(a) - tail], b[head:len(b) - tail])
    ops += [(tag, i1 + head, i2 + head, j1 + head, j2 + head)
            for tag, i1, i2, j1, j2 in mid.get_opcodes()]
    if tail:
        ops.append(("equal", len(a) - tail, len(a), len(b) - tail, len(b)))
    return ops


def transplant(base: str, child: str, newer: str) -> str | None:
    """``newer`` with the edit ``base -> child`` applied, or None when that is not clean: a
    hunk of the edit overlaps a region of ``base`` that changed between ``base`` and
    ``newer`` (or one side inserts inside the other's change, or both insert at one place),
    the edit is empty, or the result is ``newer`` itself (the edit is already there). Unlike a
    line-based three-way merge, changes to adjacent lines do not conflict: edits here are
    usually one-line changes of neighbouring constants."""
    b, c, n = _lines(base), _lines(child), _lines(newer)
    ours = [op for op in _opcodes(b, c) if op[0] != "equal"]
    if not ours:
        return None
    towards_newer = _opcodes(b, n)
    theirs = [(i1, i2) for tag, i1, i2, _, _ in towards_newer if tag != "equal"]
    for _, i1, i2, _, _ in ours:
        for k1, k2 in theirs:
            if (i1 < k2 and k1 < i2  # overlapping ranges of base lines
                    or i1 == i2 and (k1 < i1 < k2 or k1 == k2 == i1)  # inserted inside theirs,
                    or k1 == k2 and i1 < k1 < i2):  # or they inserted inside ours
                return None
    at: dict[int, int] = {}  # line of base -> the same line in newer (where unchanged)
    for tag, i1, i2, j1, _ in towards_newer:
        if tag == "equal":
            at.update((i1 + k, j1 + k) for k in range(i2 - i1))
    out = list(n)
    for _, i1, i2, j1, j2 in reversed(ours):  # from the end: earlier positions stay valid
        if i1 < i2:
            if i1 not in at or i2 - 1 not in at:
                return None
            start, end = at[i1], at[i2 - 1] + 1
        elif i1 == 0:
            start = end = 0
        elif i1 - 1 in at:  # after the line it followed
            start = end = at[i1 - 1] + 1
        elif i1 in at:  # that line changed: before the line it preceded
            start = end = at[i1]
        elif i1 == len(b):
            start = end = len(n)
        else:
            return None
        out[start:end] = c[j1:j2]
    moved = "".join(out)
    return None if moved == newer else moved


def rebased(programs: Iterable[Program]) -> int:
    """How many of ``programs`` are rebased children (``evoforge status`` shows it)."""
    return sum(1 for p in programs if p.mutation.note.startswith(REBASED))


class Rebaser:
    """Remembers the run's lineage and its recent ok programs, and says where a child's edit
    goes and what it becomes there (:meth:`rebase`; the program alone: :meth:`target`).

    ``better(a, b)``: whether score ``a`` is better than ``b`` in the run's direction.
    ``recent``: how many of the latest ok programs are candidates (a child is rebased only
    onto a program committed after its proposal; ``pipeline.staleness`` bounds how many that
    can be). The lineage costs one entry per ok program (a dict of ints: about 10 MB at
    100,000 programs)."""

    def __init__(self, better: Callable[[float, float], bool], recent: int = 256) -> None:
        self.better = better
        self._parent: dict[int, int] = {}  # ok program -> its first parent
        self._recent: deque[Program] = deque(maxlen=recent)

    def observe(self, program: Program) -> None:
        """A committed program (in commit order; on resume, the stored ones replayed)."""
        if program.status is not Status.OK or program.score is None:
            return
        if program.parent_ids:
            self._parent[program.id] = program.parent_ids[0]
        self._recent.append(program)

    def _descends(self, program: Program, ancestor: int) -> bool:
        pid = program.id
        for _ in range(_MAX_DEPTH):
            nxt = self._parent.get(pid)
            if nxt is None:
                return False
            if nxt == ancestor:
                return True
            pid = nxt
        return False

    def target(self, parent: Program, view: int, island: int) -> Program | None:
        """The best program of ``island`` committed at or after ``view`` (``done_seq``) that
        descends from ``parent`` and scores better than it; None if there is none."""
        if parent.score is None:
            return None
        best: Program | None = None
        for q in reversed(self._recent):
            if q.done_seq is None or q.done_seq < view:
                break  # committed in order: the rest are older
            if (q.island == island and q.score is not None
                    and self.better(q.score, parent.score)
                    and (best is None or self.better(q.score, best.score))  # type: ignore[arg-type]
                    and self._descends(q, parent.id)):
                best = q
        return best

    def rebase(self, selection: Selection, child_code: str,
               view: int) -> tuple[str, Program] | None:
        """Where the child of ``selection`` (picked when ``view`` results were committed)
        goes instead of its parent, and its code there; None: it stays. Only picks the
        selector says exploited (``explored`` False: not explored or warm-up picks, nor
        selectors that do not say, such as the baselines), not crossovers."""
        if selection.explored is not False or selection.others:
            return None
        onto = self.target(selection.parent, view, selection.island)
        if onto is None:
            return None
        moved = transplant(selection.parent.code, child_code, onto.code)
        return None if moved is None else (moved, onto)
