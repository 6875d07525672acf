"""A reply mode of the test server that perturbs one numeric literal: a stand-in LLM for benchmarks.

``OpenAITestServer(perturbing(seed))`` answers every chat request like a (very dull) model would
in diff mode: it reads the program shown in the prompt (the parent: the first fenced code block
under ``# Current program`` in the last user message), picks one numeric literal inside its
EVOLVE blocks at random, moves it by a Gaussian step and replies with a SEARCH/REPLACE diff of
that line::

    with OpenAITestServer(perturbing(seed=1, scale=0.1)) as srv:
        ...  # llm.base_url = srv.base_url, mutator.edit_mode = diff

The step is ``gauss(0, scale * max(|v|, floor))``: relative to the literal's magnitude, with a
floor so that a 0 (or a tiny value) still moves. Integers stay integers and always move by at
least 1; a float keeps 6 significant digits and is written as a float literal (``2.0``, not
``2``). A unary minus belongs to its literal (``-3`` may become ``1``). Context programs and
crossover partners in the prompt are ignored: this operator only ever mutates the parent.

Randomness is a function of ``seed``, the parent's code and how many times this operator has
been asked to perturb that code before, nothing else: the same run (same proposals in the same
order) gets the same replies, and a parent chosen many times (a random-sampling baseline always
picks the initial program) gets a different child each time. :meth:`Perturbing.mutate` applies the
same operator to code directly (no prompt, no server), for a reference search outside evoforge
that shares the operator and its random stream.

A prompt without a program, or a program with no numeric literal in its blocks, gets a reply with
no diff (the mutator then stores an invalid child, as for a useless real reply).
"""

from __future__ import annotations

import hashlib
import io
import keyword
import random
import re
import threading
import tokenize
from dataclasses import dataclass

from evoforge.edit import apply_diff, find_blocks, python_syntax_error
from evoforge.errors import EditError
from evoforge.testing.openai_server import Action, ChatRequest, reply

__all__ = ["Literal", "Perturbing", "current_program", "numeric_literals", "perturbing"]

_HEADER = re.compile(r"^#\s*Current program\s*$")
_FENCE = re.compile(r"^\s*(`{3,}|~{3,})")
_INT = re.compile(r"^[0-9](?:_?[0-9])*$")
_FLOAT = re.compile(r"^(?:[0-9](?:_?[0-9])*)?\.?(?:[0-9](?:_?[0-9])*)?(?:[eE][+-]?[0-9](?:_?[0-9])*)?$")
# language-neutral fallback when the code does not tokenize as Python
_NUM_FALLBACK = re.compile(r"(?<![\w.])-?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?(?![\w.])")
# a minus after one of these is unary (part of the literal)
_UNARY_AFTER = {"(", "[", "{", ",", "=", ":", "+", "-", "*", "/", "//", "%", "**", "<", ">",
                "<=", ">=", "==", "!=", "+=", "-=", "*=", "/=", "->", "@", "|", "&", "^",
                "~", "<<", ">>", ";", ":="}


def current_program(prompt: str) -> str | None:
    """The code of the first fenced block after the ``# Current program`` heading of an
    evoforge prompt (the parent), without the fences; None when there is none."""
    lines = prompt.replace("\r\n", "\n").split("\n")
    start = next((i for i, ln in enumerate(lines) if _HEADER.match(ln)), None)
    if start is None:
        return None
    for i in range(start + 1, len(lines)):
        m = _FENCE.match(lines[i])
        if m:
            fence = m.group(1)
            body: list[str] = []
            for ln in lines[i + 1:]:
                t = ln.strip()
                if len(t) >= len(fence) and set(t) == {fence[0]}:
                    break
                body.append(ln)
            return "\n".join(body) + "\n"
    return None


@dataclass(frozen=True)
class Literal:
    """One numeric literal of a program: 0-based ``line``, the column span ``[start, end)`` of
    its text (a unary minus included) and the text itself."""

    line: int
    start: int
    end: int
    text: str

    @property
    def is_int(self) -> bool:
        return _INT.match(self.text.lstrip("-")) is not None

    @property
    def value(self) -> float | int:
        t = self.text.replace("_", "")
        return int(t) if self.is_int else float(t)


def _evolvable_lines(code: str) -> set[int]:
    """0-based indexes of the lines inside EVOLVE blocks (every line without markers)."""
    blocks = find_blocks(code)
    n = len(code.split("\n"))
    if not blocks:
        return set(range(n))
    return {i for b in blocks for i in range(b.start + 1, b.end)}


def numeric_literals(code: str) -> list[Literal]:
    """The decimal int and float literals inside ``code``'s EVOLVE blocks (the whole program
    without markers), in order. Python code is tokenized (literals in strings, comments and
    names are not numbers); code that does not tokenize falls back to a regular expression.
    Hex/octal/binary and imaginary literals are left alone."""
    inside = _evolvable_lines(code)
    try:
        return _python_literals(code, inside)
    except (tokenize.TokenError, IndentationError, SyntaxError):
        out = []
        for i, line in enumerate(code.split("\n")):
            if i in inside:
                out += [Literal(i, m.start(), m.end(), m.group()) for m in _NUM_FALLBACK.finditer(line)]
        return out


def _python_literals(code: str, inside: set[int]) -> list[Literal]:
    out: list[Literal] = []
    prev: list[tokenize.TokenInfo] = []  # the last two significant tokens
    skip = {tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT, tokenize.INDENT, tokenize.DEDENT}
    for tok in tokenize.generate_tokens(io.StringIO(code).readline):
        if tok.type in skip:
            if tok.type == tokenize.NEWLINE:
                prev = []
            continue
        if tok.type == tokenize.NUMBER and tok.start[0] - 1 in inside:
            text = tok.string
            ok = _INT.match(text) or (_FLOAT.match(text) and any(c.isdigit() for c in text))
            if ok and tok.start[0] == tok.end[0]:
                row, c0, c1 = tok.start[0] - 1, tok.start[1], tok.end[1]
                if prev and prev[-1].type == tokenize.OP and prev[-1].string == "-" \
                        and prev[-1].start[0] == tok.start[0] and _unary(prev[:-1]):
                    c0 = prev[-1].start[1]
                    text = "-" + text
                    line = code.split("\n")[row]
                    if line[c0:c1].replace(" ", "").replace("\t", "") != text:
                        c0 = tok.start[1]  # something odd between: leave the sign alone
                        text = tok.string
                out.append(Literal(row, c0, c1, text))
        prev = (prev + [tok])[-2:]
    return out


def _unary(before: list[tokenize.TokenInfo]) -> bool:
    if not before:
        return True
    t = before[-1]
    if t.type == tokenize.OP:
        return t.string in _UNARY_AFTER
    return t.type == tokenize.NAME and keyword.iskeyword(t.string) and t.string not in (
        "True", "False", "None")


def _format_float(x: float) -> str:
    return repr(float(f"{x:.6g}"))


def _new_text(lit: Literal, rng: random.Random, scale: float, floor: float) -> str | None:
    v = lit.value
    sigma = scale * max(abs(float(v)), floor)
    for _ in range(32):
        if lit.is_int:
            step = round(rng.gauss(0.0, sigma))
            if step == 0:
                step = rng.choice((-1, 1))
            new = str(int(v) + step)
        else:
            x = float(v) + rng.gauss(0.0, sigma)
            if x != x or abs(x) == float("inf"):
                continue
            new = _format_float(x)
            if float(new) == float(v):
                continue
        if new != lit.text:
            return new
    return None


def _window(blocks: list[list[str]], b: int, i: int) -> tuple[int, int] | None:
    """The smallest run of lines around line ``i`` of block ``b`` that occurs once, as whole
    lines, across all blocks (so a SEARCH of it can only match there); None if even the whole
    block occurs elsewhere too."""
    lines = blocks[b]
    lo, hi = i, i + 1
    while True:
        want = lines[lo:hi]
        n = sum(1 for blk in blocks for k in range(len(blk) - len(want) + 1)
                if blk[k:k + len(want)] == want)
        if n <= 1:
            return lo, hi
        if lo == 0 and hi == len(lines):
            return None
        if hi < len(lines):
            hi += 1
        if lo > 0:
            lo -= 1


def _diff_for(code: str, lit: Literal, new: str) -> str | None:
    """A SEARCH/REPLACE of the line holding ``lit`` (more lines if that line is not unique);
    None when no SEARCH can single it out (its whole block repeats an earlier one)."""
    lines = code.split("\n")
    blocks = find_blocks(code)
    spans = [(b.start + 1, b.end) for b in blocks] if blocks else [(0, len(lines))]
    contents = [lines[a:z] for a, z in spans]
    b = next(k for k, (a, z) in enumerate(spans) if a <= lit.line < z)
    at = lit.line - spans[b][0]
    span = _window(contents, b, at)
    if span is None:
        return None
    lo, hi = span
    old = contents[b][lo:hi]
    changed = list(old)
    line = changed[at - lo]
    changed[at - lo] = line[:lit.start] + new + line[lit.end:]
    return ("<<<<<<< SEARCH\n" + "\n".join(old) + "\n=======\n" + "\n".join(changed)
            + "\n>>>>>>> REPLACE\n")


class Perturbing:
    """The callable script (see the module docstring); build it with :func:`perturbing`."""

    def __init__(self, seed: int, scale: float = 0.1, *, floor: float = 1.0,
                 python: bool = True) -> None:
        if scale <= 0 or floor <= 0:
            raise ValueError("perturbing: scale and floor must be positive")
        self.seed = int(seed)
        self.scale = float(scale)
        self.floor = float(floor)
        self.python = python  # check that the child compiles as Python (retry if not)
        self._seen: dict[str, int] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"perturbing(seed={self.seed}, scale={self.scale}, floor={self.floor})"

    def _rng(self, code: str) -> random.Random:
        key = code.rstrip("\n")  # the prompt shows the code without its trailing newlines
        with self._lock:
            k = self._seen.get(key, 0)
            self._seen[key] = k + 1
        digest = hashlib.sha256(f"{self.seed}\0{k}\0{key}".encode()).digest()
        return random.Random(int.from_bytes(digest[:8], "big"))

    def diff(self, code: str) -> str | None:
        """A SEARCH/REPLACE reply perturbing one block literal of ``code``; None if it has
        none. Each call draws the next perturbation of this code."""
        rng = self._rng(code)
        lits = numeric_literals(code)
        for _ in range(8):
            if not lits:
                return None
            lit = lits[rng.randrange(len(lits))]
            new = _new_text(lit, rng, self.scale, self.floor)
            if new is None:
                continue
            text = _diff_for(code, lit, new)
            if text is None:
                lits = [x for x in lits if x.line != lit.line]
                continue
            if self.python:
                try:
                    if python_syntax_error(apply_diff(code, text)) is not None:
                        continue
                except EditError:
                    continue
            return text
        return None

    def mutate(self, code: str) -> str | None:
        """The child this operator makes of ``code`` without a prompt (the same draw a
        prompt showing ``code`` would get); None if it has no literal to perturb."""
        text = self.diff(code)
        return None if text is None else apply_diff(code, text)

    def __call__(self, request: ChatRequest) -> Action:
        code = current_program(request.last_user_message)
        if code is None:
            return reply("There is no '# Current program' code block in this prompt.")
        text = self.diff(code)
        if text is None:
            return reply("The current program has no numeric literal to change.")
        return reply("Nudging one constant.\n\n" + text, prompt_tokens=max(
            1, len(request.last_user_message) // 4), completion_tokens=max(1, len(text) // 4))


def perturbing(seed: int, scale: float = 0.1, *, floor: float = 1.0) -> Perturbing:
    """A test-server script perturbing one numeric literal of the parent per request (see the
    module docstring). ``scale``: the Gaussian step relative to the literal's magnitude;
    ``floor``: the magnitude below which the step stops shrinking."""
    return Perturbing(seed, scale, floor=floor)

