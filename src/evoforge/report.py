"""Text for people: failure reasons grouped by pattern, budgets, durations, and what to do next.

Pure functions over plain values (no console, no storage), shared by ``evoforge status``, the
live progress and the messages a run ends with. Text that candidates, evaluators or LLMs wrote
comes back unchanged (grouping only masks it); the caller makes it terminal-safe
(:func:`evoforge.termsafe.visible`) and markup-free before printing. The only shortening of
such text is :func:`shorten`, for display: once, at a word boundary, with an explicit "…".
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["NextSteps", "ReasonGroup", "budget_lines", "budget_reached", "curve_checkpoints",
           "duration", "group_reasons", "new_run_command", "next_steps", "one_line",
           "parent_choice", "pattern", "shell_word", "short_path", "shorten", "sparkline"]

ELLIPSIS = "…"

# ------------------------------------------------------------------------- lineage


def parent_choice(program: Any) -> list[str]:
    """How a child's parent was chosen (a :class:`evoforge.program.Program`), as ``evoforge
    show`` and the dashboard say it: after how many results (``mutation.view``), by an exploring
    pick or not, how many more came in before the child was made (``mutation.staleness``) and
    before its own result (``done_seq - view``); and, when the selector's pick
    (``mutation.selected``) is not the parent the child was made on (a rebased child, a tuning
    trial), both. No lines for a program with neither (the initial program, older runs)."""
    m, lines = program.mutation, []
    if m.view is not None:
        lines.append(("parent picked by an exploring pick" if m.explored else "parent picked")
                     + f" after {m.view} results"
                     + (f"; {m.staleness} more came in before the child was made"
                        if m.staleness else "")
                     + (f", {program.done_seq - m.view} before its own result"
                        if program.done_seq is not None else ""))
    if m.selected is not None and program.parent_ids:
        lines.append(f"the selector picked #{m.selected}; the child was made on "
                     f"#{program.parent_ids[0]}")
    return lines


# ------------------------------------------------------------------------- shortening


def one_line(text: str) -> str:
    """``text`` with every run of whitespace (newlines included) made one space."""
    return " ".join(text.split())


def shorten(text: str, width: int) -> str:
    """``text`` if it fits in ``width`` characters, else its beginning cut at the last word
    boundary that fits, followed by "…" (the result, "…" included, fits in ``width``). A
    single word longer than a third of ``width`` at the cut is cut inside it."""
    width = max(width, 2)
    if len(text) <= width:
        return text
    room = width - len(ELLIPSIS)
    head = text[:room + 1]  # one more: a space right after the cut is a boundary
    cut = max(head.rfind(" "), head.rfind("\n"), head.rfind("\t"))
    if cut < room * 2 // 3:
        cut = room
    return text[:cut].rstrip() + ELLIPSIS


def duration(seconds: float) -> str:
    """``45s``, ``12m 03s``, ``2h 05m``, ``3d 04h`` (rounded down; negative counts as 0)."""
    s = max(int(seconds), 0)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86400}d {s % 86400 // 3600:02d}h"


def _duration_flag(seconds: float) -> str:
    """A duration as ``--max-time`` accepts it: ``90s``, ``3m``, ``2h``, ``1.5h``."""
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


# ------------------------------------------------------------------------- failure patterns

# A quoted span: an opening quote not preceded by a word character (so "don't" and "it's" are
# prose, not quotes), a closing one not followed by one; on one line, not too long.
_QUOTED = re.compile(r"""(?<![\w\\])(['"])([^'"\n]{0,200}?)\1(?!\w)""")
_IDENT = re.compile(r"[A-Za-z_][\w.]*\Z")
_PATH = re.compile(r"(?<![\w/.<])(?:~|\.{1,2})?/[\w.@+\-]+(?:/[\w.@+\-]*)*")
_HEX = re.compile(r"\b0[xX][0-9a-fA-F]+\b|\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{8,}\b")
_NUMBERED = re.compile(r"(?<=[A-Za-z_])\d+\b")  # the index of a numbered name
_NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?![\w])")


def pattern(reason: str) -> str:
    """The shape of a failure reason: quoted identifiers become ``<id>`` (other quoted text
    ``<str>``), paths ``<path>``, hex numbers and digests ``<hex>``, numbers ``<n>``, all on
    one line. ``NameError: name 'x' is not defined`` -> ``NameError: name <id> is not
    defined``."""
    text = one_line(reason)
    if not text:
        return "(no reason given)"

    def quoted(m: re.Match[str]) -> str:
        inner = m.group(2)
        if _IDENT.match(inner):
            return "<id>"
        return "<path>" if _PATH.fullmatch(inner) else "<str>"

    text = _QUOTED.sub(quoted, text)
    text = _PATH.sub("<path>", text)
    text = _HEX.sub("<hex>", text)
    text = _NUMBER.sub("<n>", text)
    return _NUMBERED.sub("<n>", text)  # r2, r11, x0: one name per index


@dataclass
class ReasonGroup:
    """Failures whose reasons share a pattern: how many, and the first one in full."""

    status: str
    pattern: str
    count: int = 0
    example: str = ""  # the first reason of the group, whole
    example_id: int | None = None
    ids: list[int] = field(default_factory=list)


#: how much of a pattern decides its group (reasons that differ only later are grouped)
GROUP_CHARS = 200


def group_reasons(failures: Iterable[tuple[str, str, int | None]]) -> list[ReasonGroup]:
    """Group ``(status, reason, program id)`` by status and :func:`pattern` (its first
    ``GROUP_CHARS`` characters), most frequent first (ties: the group seen first first). Each
    group keeps its first reason whole."""
    groups: dict[tuple[str, str], ReasonGroup] = {}
    for status, reason, pid in failures:
        # the beginning decides: reasons alike up to there but differing later are one kind
        key = (status, shorten(pattern(reason), GROUP_CHARS))
        g = groups.get(key)
        if g is None:
            g = groups[key] = ReasonGroup(status, key[1], example=reason, example_id=pid)
        g.count += 1
        if pid is not None:
            g.ids.append(pid)
    order = {k: i for i, k in enumerate(groups)}
    return sorted(groups.values(), key=lambda g: (-g.count, order[(g.status, g.pattern)]))


# ------------------------------------------------------------------------- budgets


def _num(x: float) -> str:
    return f"{x:.10g}"


def _limit_text(key: str, value: Any) -> str:
    if key == "max_time":
        return f"max_time={_duration_flag(float(value))}"
    if key == "max_cost":
        return f"max_cost=${float(value):.2f}"
    if key == "target_score":
        return f"target_score={_num(float(value))}"
    return f"{key}={value}"


def _from_problem(key: str, value: Any, problem_config: Mapping[str, Any] | None) -> bool:
    """Whether the problem's config.yaml set ``key`` to the value in effect."""
    if not problem_config or problem_config.get(key) is None:
        return False
    raw = problem_config[key]
    if key == "max_time":
        from evoforge.config import parse_duration

        try:
            raw = parse_duration(raw)
        except ValueError:
            return False
    try:
        return float(raw) == float(value)
    except (TypeError, ValueError):
        return False


def budget_lines(config: Any, *, problem_name: str = "", problem_config: Mapping[str, Any] |
                 None = None, done: int = 0, spent: float = 0.0, resuming: bool = False,
                 uses_llm: bool = False) -> list[str]:
    """What stops the run, for the start of ``run`` and ``resume``: one line listing every
    limit (saying which come from the problem's config.yaml; max_programs and max_cost count
    the whole run, max_time each session), and a warning line when the problem's config caps
    an LLM run's time."""
    parts: list[str] = []
    from_problem: list[str] = []
    for key in ("max_time", "max_programs", "max_cost", "target_score"):
        value = getattr(config, key)
        if value is None:
            continue
        text = _limit_text(key, value)
        if key == "max_time":
            text += " (this session)" if resuming else ""
        elif key == "max_programs" and resuming:
            text += f" (whole run; {done} done)"
        elif key == "max_cost" and resuming:
            text += f" (whole run; ${spent:.2f} spent)"
        if _from_problem(key, value, problem_config):
            from_problem.append(key)
            text += f" [{problem_name or 'problem'} config.yaml]"
        parts.append(text)
    if not parts:
        lines = ["budget: none; the run goes on until Ctrl-C"]
    else:
        lines = ["budget: " + ", ".join(parts) + ("; the first reached stops the run"
                                                   if len(parts) > 1 else "")]
    if uses_llm and "max_time" in from_problem:
        secs = float(config.max_time)
        lines.append(f"note: the problem's config.yaml stops this LLM run after {duration(secs)}"
                     f" (max_time); pass --max-time 2h (or longer) to give it more time")
    return lines


def budget_reached(reason: str, config: Any, *, done: int, cost: float, elapsed: float,
                   best: float | None) -> str | None:
    """``max_programs=100 reached (100 programs)`` and the like for a budget stop; None for
    any other reason."""
    if reason == "max_programs" and config.max_programs is not None:
        return f"max_programs={config.max_programs} reached ({done} programs)"
    if reason == "max_time" and config.max_time is not None:
        return (f"max_time={_duration_flag(config.max_time)} reached ({duration(elapsed)} this "
                f"session; {done} programs)")
    if reason == "max_cost" and config.max_cost is not None:
        return f"max_cost=${config.max_cost:.2f} reached (${cost:.4f} spent; {done} programs)"
    if reason == "target_score" and config.target_score is not None:
        got = "" if best is None else f" (best {_num(best)})"
        return f"target_score={_num(config.target_score)} reached{got}"
    return None


# ------------------------------------------------------------------------- what next


def short_path(path: str | Path) -> str:
    """A path relative to the working directory when it lies below it, else as given."""
    p = str(path)
    if os.path.isabs(p):
        rel = os.path.relpath(p)
        if not rel.startswith(".."):
            p = rel
    return p


def shell_word(path: str | Path) -> str:
    """A path as a shell word, relative to the working directory when it lies below it."""
    return shlex.quote(short_path(path))


_DEFAULT_RUN_DIR = re.compile(r"(?:^|/)runs/[^/]+-\d{8}-\d{6}(?:-\d+)?/?$")


def _fresh_dir(run_dir: Path) -> Path:
    n = 2
    while Path(f"{run_dir}-{n}").exists():
        n += 1
    return Path(f"{run_dir}-{n}")


def new_run_command(ev: str, problem_path: Path, run_dir: Path,
                    builtin: Mapping[str, Path] | None = None,
                    rerun: list[str] | None = None) -> str:
    """The command starting a new run of the problem: ``rerun``, the arguments the run was
    started with (its config file, ``--set`` items, OpenEvolve's file pair ...), when known;
    else a built-in problem by its name, or its directory; ``--out`` a directory that does not
    exist yet (none when the run went to the default ``runs/NAME-TIME``, which a new run picks
    afresh)."""
    if rerun:
        cmd = f"{ev} run {' '.join(shlex.quote(a) for a in rerun)}"
    else:
        name = next((n for n, p in (builtin or {}).items()
                     if Path(p).resolve() == Path(problem_path).resolve()), None)
        cmd = f"{ev} run {shlex.quote(name) if name else shell_word(problem_path)}"
    if not _DEFAULT_RUN_DIR.search(str(run_dir)):
        cmd += f" --out {shell_word(_fresh_dir(run_dir))}"
    return cmd


@dataclass(frozen=True)
class NextSteps:
    """What to tell the user after a run stops: the resume command to offer in the ``inspect:``
    line (None when resuming as is cannot help), and lines of advice."""

    resume: str | None
    advice: list[str]


def next_steps(reason: str, config: Any, *, ev: str, run_dir: Path, problem_path: Path,
               done: int, cost: float, uses_llm: bool, last_failed_id: int | None = None,
               builtin: Mapping[str, Path] | None = None,
               rerun: list[str] | None = None, initial_status: str | None = None) -> NextSteps:
    """The resume command and advice after a stop for ``reason`` (a key of
    ``evoforge.pipeline.MESSAGES`` or a user stop's name). Never advice that repeats the
    same stop: a reached budget is raised in the command, a run that cannot continue is
    restarted after a fix. ``initial_status``: the initial program's status (a timeout gets
    advice about ``evaluation.timeout``)."""
    rd = shell_word(run_dir)
    resume = f"{ev} resume {rd}"
    if reason == "max_programs" and config.max_programs is not None:
        more = max(config.max_programs * 2, done + 1)
        return NextSteps(f"{resume} --max-programs {more}", [
            f"to continue: `{resume} --max-programs {more}` (--max-programs is the whole run's "
            f"total, not programs to add: this run has {done})"])
    if reason == "max_cost" and config.max_cost is not None:
        more = max(config.max_cost * 2, cost + 1.0)
        return NextSteps(f"{resume} --max-cost {more:.2f}", [
            f"to continue: `{resume} --max-cost {more:.2f}` (--max-cost is the whole run's "
            f"total spend, not an amount to add: this run has spent ${cost:.4f})"])
    if reason == "target_score":
        cmd = f"{resume} --set target_score=null"
        return NextSteps(cmd, [f"to keep improving past the target: `{cmd}` (or give a new "
                               "--target-score)"])
    if reason == "max_time" and config.max_time is not None:
        return NextSteps(resume, [
            f"to continue: `{resume}` (max_time counts each session: another "
            f"{duration(config.max_time)}; change it with --max-time)"])
    if reason == "initial_failed":
        where = shell_word(problem_path)
        timed_out = initial_status == "timeout" and config is not None
        fix = (f"it ran out of time (evaluation.timeout: {config.evaluation.timeout:g} s): "
               "make it faster, or give it longer with --set evaluation.timeout=SECONDS on the "
               "new run; or fix" if timed_out else "fix")
        return NextSteps(None, [
            f"{fix} the evaluator or the initial program in {where} (see "
            f"`{ev} show {rd} 0`), then start a new run: "
            f"`{new_run_command(ev, problem_path, run_dir, builtin, rerun)}` (a resume of this run "
            "keeps the failed initial program)"])
    if reason in ("llm_failures", "llm_error"):
        return NextSteps(resume, [
            f"once the endpoint answers: `{resume}`; for another endpoint or model, add "
            "--set llm.base_url=... or --set 'llm.models=[...]' to that command; to go on "
            f"without an LLM (evoforge's model-free mutator): "
            f"`{resume} --set mutator.name=model_free` (the run keeps it; "
            "--set mutator.name=auto on a later resume goes back to the LLM)"])
    if reason == "invalid_children":
        advice = []
        if last_failed_id is not None:
            advice.append(f"see why: `{ev} show {rd} {last_failed_id}`")
        if uses_llm:
            advice.append(f"a resume (`{resume}`) continues from the same programs: add "
                          "--set 'llm.models=[...]' to it to try another model")
        advice.append("check the EVOLVE-BLOCK regions of the initial program, then start a "
                      f"new run: `{new_run_command(ev, problem_path, run_dir, builtin, rerun)}`")
        return NextSteps(None, advice)
    return NextSteps(resume, [])


# ------------------------------------------------------------------------- curves

_BARS = "▁▂▃▄▅▆▇█"


def _value_at(points: list[tuple[int, float]], n: float) -> float | None:
    """The value of a step curve ``(x, value)`` (x ascending) at ``n``: the last point at or
    before it (None before the first)."""
    out = None
    for x, v in points:
        if x > n:
            break
        out = v
    return out


def sparkline(points: list[tuple[int, float]], width: int = 40) -> str:
    """A step curve ``(programs, value)`` as one line of block characters: ``width`` samples
    evenly spaced from its first to its last x (a time axis, not one bar per change), the
    lowest value ``▁``, the highest ``█``; a flat curve is all ``▄``; no points: ``""``."""
    if not points:
        return ""
    first, last = points[0][0], points[-1][0]
    width = max(1, width if last > first else 1)
    xs = [first + (last - first) * k / max(width - 1, 1) for k in range(width)]
    vals = [_value_at(points, x) for x in xs]
    nums = [v for v in vals if v is not None]
    lo, hi = min(nums), max(nums)
    if not hi > lo:
        return _BARS[3] * len(nums)
    top = len(_BARS) - 1
    return "".join(_BARS[min(top, int((v - lo) / (hi - lo) * top + 0.5))] for v in nums)


def curve_checkpoints(points: list[tuple[int, float]], rows: int = 6) -> list[tuple[int, float]]:
    """At most ``rows`` points of a step curve for a table: its first and last points and,
    between them, its value at evenly spaced x."""
    if len(points) <= rows:
        return list(points)
    first, last = points[0][0], points[-1][0]
    out = [points[0]]
    for k in range(1, rows - 1):
        x = round(first + (last - first) * k / (rows - 1))
        v = _value_at(points, x)
        if v is not None and x > out[-1][0]:
            out.append((x, v))
    out.append(points[-1])
    return out
