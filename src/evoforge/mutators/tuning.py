"""TuningMutator: constant tuning. The numeric literals of a good program's EVOLVE blocks are a
vector; a black-box optimiser (Optuna's CMA-ES or TPE sampler, ask/tell) improves them.

It wraps any mutator (``inner``: model-free, LLM, ...). A share of the proposals
(``share``, drawn from each request's seeded RNG) becomes a *tuning trial*; the rest go to
``inner``. Without ``inner`` it is the tuning arm of a bandit (evoforge.mutators.bandit): the
bandit decides which proposals are trials and asks :meth:`TuningMutator.trial`, which may
decline (None: no trial can be made now), the proposal then going to another arm. A trial is
a program with its literals set to the point the sampler asked for, an ordinary child:
evaluated by the run's executor in the sandbox and stored with ``mutation.edit_kind == "tune"``
(``mutation.mutator == "tune"``), its note naming the session, the tuned program and the
literals it changed. Its result reaches the sampler through
:meth:`TuningMutator.observe` (matched by program id, which is the proposal id): the score, or,
for a failed, timed-out or invalid trial, a value worse than any the session has seen (samplers
compare ranks). Several trials may be outstanding at once: CMA-ES and TPE (with a constant liar)
sample with results pending.

Sessions. A session tunes one base: the best program observed (or the request's parent if that
is better). It asks trials until ``trials_per_session``; until ``patience`` results in a row made
no noticeable progress (an improvement by at least 1/1000 of the session's gain so far: creeping
along a bound or polishing the last digits does not count); or until two generations' results had
the best at the edge of the search box. Once its outstanding trials are back, the next session
starts on the then-best at the step size the sampler had adapted to, twice as wide after an edge,
half as wide after a session that found nothing (see :meth:`TuningMutator._finish`). A session
draws its sampler seed from the request that starts it, so a run is deterministic given its seed
(with one evaluation slot, like the model-free mutator). Long sessions matter in many dimensions:
CMA-ES needs generations to adapt its covariance (offline on circle_packing_26's 52 coordinates,
3000 trials: sessions ended by patience alone reached 2.29-2.33, sessions capped at 300 trials
2.25-2.26).

Lineage. A trial's parent must be the program it was made from. Where the run takes a child's
parent from the outcome (``MutationOutcome.parent``, :data:`TRIAL_LINEAGE`), any proposal can
become a trial of the base. Otherwise (the run records the proposal's selection as the parents)
a trial is only made when the selected parent is of the base's *family*: the base itself, or a
program that differs from it only in the values of the tuned literals (its earlier trials, a
literal edit of one); the trial is then that parent with its literals set, which is the same
program as the base with them set. No trial is made from a crossover proposal (the partner would
be recorded as a parent). When the selector picks no program of the family for 32 tuning
proposals in a row, the session ends and the next one tunes the selected parent's family.

Which literals (Python, by the AST of each block; the text is replaced in place, so comments and
layout stay):

- floats, outside subscripts. Range: ``value +/- spread * scale``, ``scale`` being ``|value|``,
  or, for a literal in a table (a list/tuple/set/dict display with at least 3 float literals,
  nested displays included, e.g. a list of (x, y) pairs), the mean ``|value|`` of the table's
  floats: coordinates near 0 move as far as those near 1. A lone 0.0 has no scale: left alone.
  CMA-ES starts with a standard deviation of a third of that half-width and may search 4 times
  as far (its bounds); TPE samples the range itself.
- ints stay ints: ``value +/- max(1, round(spread * |value|))``, never crossing zero. Left
  alone: 0, 1 and -1 (identities, indices, signs), ints in subscripts, arguments of ``range()``,
  operands of comparisons (``i < 26``), exponents (``x ** 2``) and seeds (``seed(...)``,
  ``seed=``, ``random_state=``): they look like counts, sizes and indices, whose change breaks a
  program rather than tunes it.
- at most ``max_params`` literals per session (a seeded random subset of a larger set).

Other languages: decimal floats (with a point or an exponent) outside comment lines, by a regex;
ints are not tuned, and values stay non-negative as their sign is not known. In a program of
several files each block is read by the rules of its own file's language.

Resume: the sampler state is not persisted. A session in progress is dropped; its trials still
pending are evaluated on resume as ordinary programs (their results go to no sampler), and a new
session starts on the run's best (:meth:`TuningMutator.restore`, which ``inner`` gets too; as a
bandit's arm, the bandit's restore replays the stored programs through ``observe``, to the
same effect).

Cost: optuna is imported at the first session (about 0.5 s), with one BLAS thread if numpy is
not loaded yet; a CMA-ES trial over 52 literals takes about 3 ms of the controller's CPU.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import importlib.util
import math
import os
import random
import re
import statistics
import sys
import textwrap
import warnings
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from evoforge.edit import block_contents, find_blocks, python_syntax_error
from evoforge.errors import ConfigError, EditError
from evoforge.mutators.base import MutationOutcome, MutationRequest, Mutator
from evoforge.program import MutationInfo, Program, Status
from evoforge.program_files import MULTI_FILE, language_of, unpack

__all__ = ["TRIAL_LINEAGE", "Literal", "TuningMutator", "check_installed", "find_literals",
           "render"]

SAMPLERS = ("cmaes", "tpe")
_PYTHON = {"python", "py", "python3"}
_MIN_REL_IMPROVEMENT = 1e-9
_PROGRESS = 1e-3  # of the session's gain: see _Session.tell
_MIN_SPREAD_FACTOR = 1 / 64  # the narrowest session width, relative to ``spread``
_MAX_SPREAD_FACTOR = 8  # the widest
_CMA_REACH = 4  # CMA-ES bounds: this many times each literal's range
_WAIT_LIMIT = 16  # proposals given to ``inner`` while a finished session's trials return
_MISS_LIMIT = 32  # tuning proposals in a row whose parent is not of the session's base: move on
_NOTE_CHARS = 600
_INSTALL = "pip install 'optuna>=4,<5' 'cmaes>=0.10,<1'"
_BLAS_THREADS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
_SEED_CALLS = {"seed", "manual_seed", "default_rng", "RandomState", "Random"}
_SEED_KEYWORDS = {"seed", "random_state", "random_seed", "rng"}
#: Whether a mutator can name the program a child was made from (``MutationOutcome.parent``, for
#: the run to record as the child's parent): then any proposal can become a trial of the base;
#: else only one whose parent is of the base's family (see the module docstring).
TRIAL_LINEAGE = "parent" in {f.name for f in dataclasses.fields(MutationOutcome)}

# --------------------------------------------------------------------------- literals


@dataclass(frozen=True)
class Literal:
    """One tunable numeric literal of a program: ``code[start:end]`` is its text."""

    start: int
    end: int
    line: int  # 1-based program line
    value: float | int  # signed value the text denotes
    is_int: bool
    scale: float  # the magnitude its range is built from
    wrap: bool  # a bare positive literal: a negative value needs parentheses
    unsigned: bool = False  # non-Python: the value must stay >= 0

    def bounds(self, spread: float) -> tuple[float, float] | tuple[int, int]:
        v = self.value
        if self.is_int:
            w = max(1, round(spread * abs(v)))
            lo, hi = int(v) - w, int(v) + w
            if v > 0:
                lo = max(lo, 1)
            elif v < 0:
                hi = min(hi, -1)
            return lo, hi
        half = spread * self.scale
        lo_f, hi_f = float(v) - half, float(v) + half
        if self.unsigned:
            lo_f = max(lo_f, 0.0)
        return lo_f, hi_f


def _fmt(value: float | int, lit: Literal) -> str:
    if lit.is_int:
        text = str(int(value))
    else:
        text = f"{float(value):.10g}"
        if not any(c in text for c in ".eE"):
            text += ".0"
    if lit.wrap and text.startswith("-"):
        text = f"({text})"
    return text


def render(code: str, lits: list[Literal], values: list[float | int]) -> str:
    """``code`` with each literal's text replaced by its new value (right to left)."""
    out = code
    for lit, v in sorted(zip(lits, values, strict=True), key=lambda p: -p[0].start):
        out = out[: lit.start] + _fmt(v, lit) + out[lit.end :]
    return out


def _block_spans(code: str) -> list[tuple[int, int, str]]:
    """(offset of the block's content in ``code``, first program line (1-based), content)."""
    blocks = find_blocks(code)
    contents = block_contents(code)
    if not blocks:
        return [(0, 1, code)]
    lines = code.split("\n")
    starts = [0]
    for ln in lines:
        starts.append(starts[-1] + len(ln) + 1)
    return [(starts[b.start + 1], b.start + 2, c) for b, c in zip(blocks, contents, strict=True)]


def find_literals(code: str, language: str = "python") -> list[Literal]:
    """The tunable literals of ``code``'s EVOLVE blocks (see the module docstring)."""
    out: list[Literal] = []
    python = language.lower() in _PYTHON
    try:
        spans = _block_spans(code)
        # a program of several files: each block by its own file's language
        langs = ([language_of(p) for p, text in unpack(code).items() for _ in find_blocks(text)]
                 if language == MULTI_FILE else [language] * len(spans))
    except EditError:
        return []
    for (offset, first_line, content), lang in zip(spans, langs, strict=True):
        if python or lang in _PYTHON:
            out += _python_literals(content, offset, first_line)
        else:
            out += _text_literals(content, offset, first_line)
    return out


def _broken(code: str, language: str) -> bool:
    """Whether ``code`` (or, in a program of several files, one of its Python files) does not
    parse as Python."""
    if language.lower() in _PYTHON:
        return python_syntax_error(code) is not None
    if language != MULTI_FILE:
        return False
    try:
        files = unpack(code)
    except EditError:
        return True
    return any(language_of(p) in _PYTHON and python_syntax_error(t) is not None
               for p, t in files.items())


def _parents(tree: ast.AST) -> dict[int, ast.AST]:
    return {id(child): node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def _is_number(node: ast.AST) -> bool:
    return (isinstance(node, ast.Constant) and isinstance(node.value, int | float)
            and not isinstance(node.value, bool))


_DISPLAYS = (ast.List, ast.Tuple, ast.Set, ast.Dict)


def _python_literals(content: str, offset: int, first_line: int) -> list[Literal]:
    source = textwrap.dedent(content)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return []  # a fragment: nothing tuned in this block
    parent = _parents(tree)
    orig_lines = content.split("\n")
    ded_lines = source.split("\n")
    line_starts = [0]
    for ln in orig_lines:
        line_starts.append(line_starts[-1] + len(ln) + 1)

    def up(node: ast.AST) -> ast.AST | None:
        return parent.get(id(node))

    def excluded(site: ast.AST, is_int: bool) -> bool:
        node: ast.AST | None = up(site)
        child: ast.AST = site
        while node is not None:
            if isinstance(node, ast.Subscript) and child is node.slice:
                return True
            if isinstance(node, ast.Slice):
                return True
            if is_int:
                if isinstance(node, ast.Compare):
                    return True
                if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow) and (
                        child is node.right):
                    return True
                if isinstance(node, ast.Call):
                    name = (node.func.id if isinstance(node.func, ast.Name) else
                            node.func.attr if isinstance(node.func, ast.Attribute) else "")
                    if name == "range" or name in _SEED_CALLS:
                        return True
                if isinstance(node, ast.keyword) and node.arg in _SEED_KEYWORDS:
                    return True
            if isinstance(node, ast.stmt):
                return False
            child = node
            node = up(node)
        return False

    def table_of(site: ast.AST) -> ast.AST | None:
        node, root = up(site), None
        while isinstance(node, _DISPLAYS):
            root = node
            node = up(node)
        return root

    # (site node, constant, sign)
    sites: list[tuple[ast.AST, ast.Constant, int]] = []
    seen: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and _is_number(
                node.operand):
            assert isinstance(node.operand, ast.Constant)
            sites.append((node, node.operand, -1))
            seen.add(id(node.operand))
    for node in ast.walk(tree):
        if _is_number(node) and id(node) not in seen:
            assert isinstance(node, ast.Constant)
            sites.append((node, node, 1))

    tables: dict[int, list[float]] = {}
    for site, const, _ in sites:
        if isinstance(const.value, float):
            t = table_of(site)
            if t is not None:
                tables.setdefault(id(t), []).append(abs(float(const.value)))

    out: list[Literal] = []
    for site, const, sign in sites:
        raw = const.value
        assert isinstance(raw, int | float)
        value = sign * raw
        is_int = isinstance(raw, int)
        if is_int and abs(value) <= 1:
            continue
        if excluded(site, is_int):
            continue
        if is_int:
            scale = float(abs(value))
        else:
            t = table_of(site)
            mags = tables.get(id(t), []) if t is not None else []
            if len(mags) >= 3 and any(mags):
                nonzero = [m for m in mags if m]
                scale = sum(nonzero) / len(nonzero)
            else:
                scale = abs(float(value))
            if not scale or not math.isfinite(scale):
                continue
        lineno = getattr(site, "lineno", None)
        end_lineno = getattr(site, "end_lineno", None)
        col = getattr(site, "col_offset", None)
        end_col = getattr(site, "end_col_offset", None)
        if lineno is None or end_lineno != lineno or col is None or end_col is None:
            continue
        ded = ded_lines[lineno - 1].encode("utf-8")
        c0 = len(ded[:col].decode("utf-8", errors="replace"))
        c1 = len(ded[:end_col].decode("utf-8", errors="replace"))
        orig = orig_lines[lineno - 1]
        shift = len(orig) - len(ded_lines[lineno - 1])
        if shift < 0 or orig[shift + c0 : shift + c1] != ded_lines[lineno - 1][c0:c1]:
            continue  # the dedent was not a plain prefix cut here: leave it alone
        start = offset + line_starts[lineno - 1] + shift + c0
        out.append(Literal(start=start, end=start + (c1 - c0), line=first_line + lineno - 1,
                           value=value, is_int=is_int, scale=scale, wrap=sign == 1))
    out.sort(key=lambda lit: lit.start)
    return out


_FLOAT = re.compile(r"(?<![\w.])(\d+\.\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+)"
                    r"(?![\w.])")
_COMMENT_LEAD = ("#", "//", "--", ";", "%", "/*", "*")


def _text_literals(content: str, offset: int, first_line: int) -> list[Literal]:
    out: list[Literal] = []
    pos = 0
    for i, line in enumerate(content.split("\n")):
        if not line.lstrip().startswith(_COMMENT_LEAD):
            for m in _FLOAT.finditer(line):
                v = float(m.group(1))
                if v and math.isfinite(v):
                    s = offset + pos + m.start(1)
                    out.append(Literal(start=s, end=s + len(m.group(1)), line=first_line + i,
                                       value=v, is_int=False, scale=abs(v), wrap=False,
                                       unsigned=True))
        pos += len(line) + 1
    return out


# --------------------------------------------------------------------------- optuna


def check_installed(sampler: str) -> None:
    missing = [m for m in ("optuna", "cmaes" if sampler == "cmaes" else "")
               if m and importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(f"constant tuning (mutator.tuning) needs {' and '.join(missing)}: "
                          f"{_INSTALL}; or turn it off with --set mutator.tuning.enabled=false")


def _import_optuna() -> Any:
    """Import optuna. If numpy is not loaded yet, it loads with one BLAS thread: the tuning
    matrices are small, and this process shares the cores with the evaluation workers (a
    multi-threaded eigendecomposition of a 52x52 matrix was 9x slower on 2 cores)."""
    saved = {k: os.environ.get(k) for k in _BLAS_THREADS}
    if "numpy" not in sys.modules:
        for k in _BLAS_THREADS:
            os.environ.setdefault(k, "1")
    try:
        import optuna
    except ImportError as e:  # checked at construction; a broken install still says what to do
        raise ConfigError(f"constant tuning (mutator.tuning) needs optuna: {_INSTALL}") from e
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return optuna


@contextlib.contextmanager
def _quiet(optuna: Any) -> Iterator[None]:
    """Optuna logs every trial at INFO to its own stderr handler, and warns that some samplers'
    options are experimental: silence both while we call it."""
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            # sigma0 is deprecated since optuna 4.9 (to be removed in 6; we require < 5)
            warnings.filterwarnings("ignore", message=".*sigma0.*", category=FutureWarning)
            yield
    finally:
        optuna.logging.set_verbosity(level)


def popsize(dims: int) -> int:
    """CMA-ES's default population size for ``dims`` parameters."""
    return 4 + int(3 * math.log(max(dims, 1)))


@dataclass
class _Session:
    number: int
    base: Program
    lits: list[Literal]  # the literals tuned, of the base
    index: list[int]  # their positions among all the base's literals
    total: int  # how many literals the base has
    language: str
    spread: float
    study: Any
    dists: dict[str, Any]
    cap: int
    patience: int
    minimize: bool
    gens: int  # the population size: trials per CMA-ES generation
    asked: int = 0
    told: int = 0
    best: float = 0.0
    best_values: list[float | int] | None = None  # the literals of the session's best trial
    start: float = 0.0  # the base's score
    mark: float = 0.0  # the best at the last noticeable progress
    edged: int = 0  # results in a row with the best at the edge of the range
    worst: float = 0.0
    since: int = 0  # results in a row without improving ``best``
    pending: set[int] = field(default_factory=set)
    waited: int = 0
    superseded: bool = False  # ended early: the selector did not pick the base's family
    recent: deque[list[float | int]] = field(default_factory=deque)  # last points asked
    misses: int = 0  # tuning proposals in a row whose parent did not match the base
    _norm: str | None = None
    _matches: dict[int, list[Literal] | None] = field(default_factory=dict)

    def match(self, parent: Program) -> list[Literal] | None:
        """The parent's literals at the tuned positions if the parent is the base up to the
        values of those literals (the base itself, one of this session's trials, or a child
        of either that only changed them), else None: a trial is made from such a parent by
        setting those literals, so it is truly the parent's child, and the base's point."""
        if parent.id == self.base.id:
            return self.lits
        if parent.id in self._matches:
            return self._matches[parent.id]
        found: list[Literal] | None = None
        lits = find_literals(parent.code, self.language)
        if len(lits) == self.total:
            sub = [lits[i] for i in self.index]
            if all(a.is_int == b.is_int and a.wrap == b.wrap
                   for a, b in zip(sub, self.lits, strict=True)):
                values = [lit.value for lit in self.lits]
                if self._norm is None:
                    self._norm = render(self.base.code, self.lits, values)
                if render(parent.code, sub, values) == self._norm:
                    found = sub
        if len(self._matches) < 4096:
            self._matches[parent.id] = found
        return found

    def step(self) -> float | None:
        """The width the sampler has adapted to: 3 x the median over literals of the standard
        deviation of its last two generations of points, relative to each literal's scale
        (a session that did not adapt gives back its own width). None: too few points."""
        if len(self.recent) < max(4, self.gens):
            return None
        rel = [statistics.pstdev([float(p[i]) for p in self.recent]) / lit.scale
               for i, lit in enumerate(self.lits)]
        return 3 * statistics.median(rel)

    def better(self, a: float, b: float, margin: float = 0.0) -> bool:
        margin = max(margin, _MIN_REL_IMPROVEMENT * max(abs(b), 1e-12))
        return a < b - margin if self.minimize else a > b + margin

    @property
    def improved(self) -> bool:
        return self.best_values is not None

    @property
    def exhausted(self) -> bool:
        return (self.asked >= self.cap or self.since >= self.patience
                or self.edged >= 2 * self.gens)

    def at_edge(self) -> bool:
        """Whether the best trial has at least half of its literals at (within 5% of) an edge
        of their range: the optimum may lie beyond. (Any one literal would nearly always be,
        with dozens of them.)"""
        if self.best_values is None:
            return False
        edges = 0
        for i, v in enumerate(self.best_values):
            lo, hi = self.dists[f"x{i}"].low, self.dists[f"x{i}"].high
            margin = 0.05 * (hi - lo)
            edges += v <= lo + margin or v >= hi - margin
        return 2 * edges >= len(self.lits)

    def bad_value(self) -> float:
        """A value worse than any seen in the session (samplers only compare ranks)."""
        gap = abs(self.worst) + 1.0
        return self.worst + gap if self.minimize else self.worst - gap

    def tell(self, trial: Any, values: list[float | int], program: Program) -> None:
        ok = program.status is Status.OK and program.score is not None
        value = float(program.score) if ok else self.bad_value()  # type: ignore[arg-type]
        self.study.tell(trial, value)
        self.told += 1
        if ok:
            if (value > self.worst) if self.minimize else (value < self.worst):
                self.worst = value
            if self.better(value, self.best):
                self.best, self.best_values = value, values
                # progress counts (for patience) when it is a noticeable part of the session's
                # gain: creeping along the edge of the range, or polishing the last digits,
                # ends the session, and the next one re-centres (and widens, at an edge)
                gain = abs(self.best - self.start)
                if self.better(value, self.mark, _PROGRESS * gain):
                    self.mark, self.since = value, 0
                    self._count_edge()
                    return
        self.since += 1
        self._count_edge()

    def _count_edge(self) -> None:
        """Two generations' results with the best at the edge end the session: the next one
        is centred there, and wider."""
        self.edged = self.edged + 1 if self.at_edge() else 0


class TuningMutator(Mutator):
    """Wraps ``inner``; a ``share`` of proposals become tuning trials (see the module docstring).

    ``sampler``: ``"cmaes"`` or ``"tpe"``. ``trials_per_session`` / ``patience``: None for 50 /
    10 CMA-ES generations' worth of trials (``popsize(d)`` = 4 + 3 ln d for d literals).
    ``spread``: half-width of each literal's range relative to its scale. ``minimize``: the
    run's direction (a lower score is better)."""

    def __init__(self, inner: Mutator | None, *, share: float = 0.8, sampler: str = "cmaes",
                 trials_per_session: int | None = None, patience: int | None = None,
                 spread: float = 0.2, max_params: int = 100, minimize: bool = False) -> None:
        if not 0 <= share <= 1:
            raise ConfigError(f"mutator.tuning.share must be in [0, 1], got {share}")
        if sampler not in SAMPLERS:
            raise ConfigError(f"unknown mutator.tuning.sampler {sampler!r}; valid: "
                              f"{', '.join(SAMPLERS)}")
        if not (spread > 0 and math.isfinite(spread)) or max_params < 1:
            raise ConfigError("mutator.tuning.spread must be > 0 and max_params >= 1")
        if share > 0 or inner is None:
            check_installed(sampler)
        self.inner = inner
        self.name = inner.name if inner is not None else "tune"
        self.uses_llm = inner.uses_llm if inner is not None else False
        self.share = float(share) if inner is not None else 1.0
        self.sampler = sampler
        self.trials_per_session = trials_per_session
        self.patience = patience
        self.spread = float(spread)
        self.max_params = int(max_params)
        self.minimize = minimize
        self.best: Program | None = None  # the best ok program observed
        self.session: _Session | None = None
        self.sessions = 0  # started (for notes and tests)
        # program id -> (session, optuna trial, the literal values it tried)
        self._trials: dict[int, tuple[_Session, Any, list[float | int]]] = {}
        self._width: dict[int, float] = {}  # program id -> width of its next session
        self._carry = self.spread  # the width the next session starts with
        self._done: set[int] = set()  # programs tuned out (or with nothing to tune)
        self._optuna: Any = None
        self._avoid: int | None = None  # a base whose family the selector did not pick

    # ----------------------------------------------------------------- feedback

    def _better(self, a: float, b: float) -> bool:
        return a < b if self.minimize else a > b

    def observe(self, program: Program) -> None:
        if program.status is Status.OK and program.score is not None and (
                self.best is None or self._better(program.score, self.best.score)):  # type: ignore[arg-type]
            self.best = program
        entry = self._trials.pop(program.id, None)
        if entry is not None:
            session, trial, values = entry
            session.pending.discard(program.id)
            with _quiet(self._optuna):
                session.tell(trial, values, program)
        if self.inner is not None:
            self.inner.observe(program)

    def restore(self, programs: Iterable[Program]) -> None:
        """On resume: the run's best becomes the next session's base; ``inner`` relearns too.
        (Sessions are not restored: see the module docstring.)"""
        done = list(programs)
        for p in done:
            if p.status is Status.OK and p.score is not None and (
                    self.best is None or self._better(p.score, self.best.score)):  # type: ignore[arg-type]
                self.best = p
        if self.inner is not None:
            self.inner.restore(done)

    # ----------------------------------------------------------------- proposals

    async def mutate(self, request: MutationRequest) -> MutationOutcome:
        if self.inner is None:  # standalone: every proposal is a trial if one can be made
            return self.trial(request) or MutationOutcome(None, MutationInfo(
                mutator="tune", edit_kind="tune", note="tune: no trial can be made now (no "
                "program with tunable literals, or a session's results are still out)"))
        if self.share > 0 and (self.share >= 1 or request.rng.random() < self.share):
            outcome = self._trial(request)
            if outcome is not None:
                return outcome
        return await self.inner.mutate(request)

    def trial(self, request: MutationRequest) -> MutationOutcome | None:
        """A tuning trial for this proposal, or None when none can be made now (nothing to
        tune, or a finished session's last results are still out): for a caller that decides
        itself which proposals are trials (a bandit's tuning arm)."""
        return self._trial(request)

    def _base_for(self, request: MutationRequest) -> Program | None:
        """The best program observed (or restored), or the request's parent if it is better."""
        parent = request.parent
        parent_ok = parent.status is Status.OK and parent.score is not None
        best = self.best
        if best is None or (parent_ok and self._better(parent.score, best.score)):  # type: ignore[arg-type]
            return parent if parent_ok else None
        return best

    def _trial(self, request: MutationRequest) -> MutationOutcome | None:
        s = self.session
        if s is not None and s.misses >= _MISS_LIMIT and not s.pending:
            s.cap = min(s.cap, s.asked)  # the selector does not pick its family: move on
            s.superseded = True
            self._avoid = s.base.id
        if s is not None and s.exhausted:
            if s.pending and s.waited < _WAIT_LIMIT:
                s.waited += 1
                return None  # its last results are on the way: the next base is not known yet
            self._finish(s)
            s = self.session = None
        if s is None:
            base = self._base_for(request)
            if base is not None and base.id == self._avoid:
                parent = request.parent  # the best's family is not picked: tune the parent's
                base = parent if parent.status is Status.OK and parent.score is not None else None
            if base is None or base.id in self._done:
                return None
            s = self.session = self._start(base, request)
            if s is None:
                return None
        if TRIAL_LINEAGE:
            return self._ask(s, request, None)
        # the run records the selection's partners as parents too: no trial from a crossover
        lits = None if request.others else s.match(request.parent)
        if lits is None:
            s.misses += 1
            return None
        s.misses = 0
        return self._ask(s, request, lits)

    def _start(self, base: Program, request: MutationRequest) -> _Session | None:
        every = find_literals(base.code, request.language)
        if not every:
            self._done.add(base.id)
            return None
        if self._optuna is None:
            self._optuna = _import_optuna()
        optuna = self._optuna
        seed = request.rng.getrandbits(31)
        index = list(range(len(every)))
        if len(every) > self.max_params:
            index = sorted(random.Random(seed).sample(index, self.max_params))
        lits = [every[i] for i in index]
        spread = self._width.get(base.id, self._carry)
        # CMA-ES: bounds _CMA_REACH times the range, the initial step a third of the range
        # (sigma0 is in [0, 1]-scaled units): the search may go well beyond the range when the
        # optimum lies there. TPE samples the whole box: the range itself.
        reach = _CMA_REACH if self.sampler == "cmaes" else 1
        dists: dict[str, Any] = {}
        for i, lit in enumerate(lits):
            lo, hi = lit.bounds(spread * reach)
            if lit.is_int:
                dists[f"x{i}"] = optuna.distributions.IntDistribution(int(lo), int(hi))
            else:
                dists[f"x{i}"] = optuna.distributions.FloatDistribution(float(lo), float(hi))
        with _quiet(optuna):
            if self.sampler == "cmaes":
                sampler = optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=1,
                                                       sigma0=1 / (6 * reach))
            else:
                sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True,
                                                     constant_liar=True)
            study = optuna.create_study(
                direction="minimize" if self.minimize else "maximize", sampler=sampler)
            # The base's own score, told up front: the sampler starts from it, not at random.
            study.add_trial(optuna.trial.create_trial(
                params={f"x{i}": lit.value for i, lit in enumerate(lits)}, distributions=dists,
                value=float(base.score)))  # type: ignore[arg-type]
        gens = popsize(len(lits))
        self.sessions += 1
        score = float(base.score)  # type: ignore[arg-type]
        return _Session(number=self.sessions, base=base, lits=lits, index=index,
                        total=len(every), language=request.language, spread=spread, study=study,
                        dists=dists, cap=self.trials_per_session or 50 * gens,
                        patience=self.patience or 10 * gens, minimize=self.minimize, gens=gens,
                        best=score, worst=score, start=score, mark=score,
                        recent=deque(maxlen=2 * gens))

    def _finish(self, s: _Session) -> None:
        """The width of the next session (a trust region): the step size the sampler had
        adapted to (:meth:`_Session.step`); at least twice the session's width when its best
        lies at the edge of its range (the optimum may be beyond); at most half its width, on
        the same base, when it did not improve (unless it ended as the selector did not pick
        its family). Widths stay within [1/64, 8] x ``spread``; a base whose session did not improve
        at the narrowest is given up to ``inner``."""
        lo, hi = self.spread * _MIN_SPREAD_FACTOR, self.spread * _MAX_SPREAD_FACTOR
        measured = s.step()
        width = s.spread if measured is None else measured
        if s.improved and s.at_edge():
            width = max(width, 2 * s.spread)
        elif not s.improved and not s.superseded:
            if s.spread / 2 < lo:
                self._done.add(s.base.id)
                self._carry = self.spread
                return
            width = min(width, s.spread / 2)
            self._width[s.base.id] = max(width, lo)
        self._carry = min(max(width, lo), hi)

    def _ask(self, s: _Session, request: MutationRequest,
             lits: list[Literal] | None) -> MutationOutcome | None:
        """A trial: the base, or the request's parent if ``lits`` are its tuned literals (a
        program of the base's family), with those literals set to the sampler's next point."""
        parent = s.base if lits is None else request.parent
        lits = s.lits if lits is None else lits
        with _quiet(self._optuna):
            for _ in range(3):
                trial = s.study.ask(s.dists)
                s.asked += 1
                params = trial.params
                values = [params[f"x{i}"] for i in range(len(s.lits))]
                code = render(parent.code, lits, values)
                if code != parent.code:
                    break
                s.study.tell(trial, float(parent.score))  # type: ignore[arg-type]
                s.told += 1
                s.since += 1
            else:
                return None
            if _broken(code, request.language):  # never expected: the literal texts are ours
                s.study.tell(trial, s.bad_value())
                s.told += 1
                return None
        self._trials[request.proposal_id] = (s, trial, values)
        s.recent.append(values)
        s.pending.add(request.proposal_id)
        changes = []
        for lit, v in zip(lits, values, strict=True):
            old, new = parent.code[lit.start : lit.end], _fmt(v, lit)
            if old != new:
                changes.append(f"line {lit.line} {old} -> {new}")
        on = f"#{s.base.id}" if parent.id == s.base.id else f"#{s.base.id} (from #{parent.id})"
        note = (f"tune: session {s.number} ({self.sampler}, width {s.spread:g}) trial {s.asked} "
                f"of {on}: {len(changes)} of {len(lits)} literals changed: " + ", ".join(changes))
        if len(note) > _NOTE_CHARS:
            note = note[: _NOTE_CHARS - 5].rsplit(",", 1)[0] + ", ..."
        info = MutationInfo(mutator="tune", edit_kind="tune", note=note)
        if TRIAL_LINEAGE:
            return MutationOutcome(code, info, parent=parent)  # type: ignore[call-arg]
        return MutationOutcome(code, info)

    async def aclose(self) -> None:
        if self.inner is not None:
            await self.inner.aclose()
