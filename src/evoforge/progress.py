"""Live progress: a rich panel on a terminal, periodic log lines otherwise.

What it shows: programs done (against max_programs when that is the limit the run will reach
first), the time left when the run has a max_time, the spend against max_cost, the best score
(``none yet`` before the first ok program), counts by status, the last failure reason and the
last LLM error. Text from candidates and LLMs is shown inert (:func:`evoforge.termsafe.visible`,
never as markup) and shortened once, here, at a word boundary with "…"; the stored text is whole.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from evoforge.program import Program, Status
from evoforge.report import duration, one_line, shorten
from evoforge.run import Run
from evoforge.stop import MaxPrograms, MaxTime
from evoforge.termsafe import visible

#: characters of a failure reason or LLM error on a progress line (the panel uses its width)
LINE_TEXT = 300


def fmt_score(x: float | None) -> str:
    return "none yet" if x is None else f"{x:.6g}"


class ProgressDisplay:
    """Call ``attach(run)`` once the run exists, then ``update(program)`` after each result."""

    def __init__(self, console: Console | None = None, *, live: bool | None = None,
                 interval: float = 10.0) -> None:
        self.console = console or Console(stderr=True, emoji=False)
        self.live_mode = self.console.is_terminal if live is None else live
        self.interval = interval
        self.run: Run | None = None
        self._live: Live | None = None
        self._last_line = 0.0
        self._session_start = time.monotonic()
        self._done_at_start = 0
        self._initial: float | None = None
        #: the last program that did not evaluate ok: (id, status, reason), reason whole
        self.last_failure: tuple[int, str, str] | None = None

    def attach(self, run: Run) -> None:
        self.run = run
        self._session_start = time.monotonic()
        self._done_at_start = run.tally.done
        if run.initial_score is not None:
            self._initial = run.initial_score
        if self.live_mode:
            self._live = Live(self._render(), console=self.console, refresh_per_second=4,
                              get_renderable=self._render, transient=False)
            self._live.start()

    def update(self, program: Program) -> None:
        if self._initial is None and program.id == 0 and program.score is not None:
            self._initial = program.score
        if program.status not in (Status.OK, Status.PENDING):
            self.last_failure = (program.id, program.status.value, program.reason)
        if self._live is None and self.run is not None:
            now = time.monotonic()
            new_best = self.run.best is program
            if now - self._last_line >= self.interval or new_best and now - self._last_line > 1:
                self._last_line = now
                self.console.print(self._line(), highlight=False, markup=False, emoji=False,
                                   soft_wrap=True)

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def snapshot(self) -> dict[str, Any]:
        """The numbers shown, and the texts (inert, whole: shortened only when drawn)."""
        assert self.run is not None
        run, t = self.run, self.run.tally
        elapsed = time.monotonic() - self._session_start
        done_now = t.done - self._done_at_start
        rate = done_now / elapsed if elapsed > 0 else 0.0
        limits = [s.n for s in run.stop.stops if isinstance(s, MaxPrograms)]
        max_programs = min(limits) if limits else None
        time_left = run.stop.remaining(run)
        if max_programs is not None and time_left is not None:
            # the total is shown only when it, not the clock, will stop the run, as far as a
            # settled rate (10 s, 5 programs into the session) tells
            settled = elapsed >= 10 and done_now >= 5
            if not settled or (max_programs - t.done) / rate > time_left:
                max_programs = None
        failure = ""
        if self.last_failure is not None:
            pid, status, reason = self.last_failure
            if reason != t.last_llm_error:  # that one is shown as the last LLM error
                failure = visible(f"#{pid} {status}: {reason or '(no reason given)'}")
        return {
            "done": t.done, "budget": max_programs, "elapsed": elapsed, "rate": rate,
            "time_left": None if time_left is None else max(time_left, 0.0),
            "max_time": min((s.seconds for s in run.stop.stops if isinstance(s, MaxTime)),
                            default=None),
            "best": run.best.score if run.best else None,
            "best_id": run.best.id if run.best else None,
            "counts": dict(t.counts), "tokens": t.prompt_tokens + t.completion_tokens,
            "cost": t.cost, "spent": t.cost + t.pending_cost, "max_cost": run.config.max_cost,
            "llm_error": visible(t.last_llm_error) if t.last_llm_error else "",
            "llm_failures": t.consecutive_llm_failures,
            "failure": failure,
        }

    def _line(self) -> str:
        s = self.snapshot()
        fails = " ".join(f"{k}={v}" for k, v in sorted(s["counts"].items()) if k != "ok")
        budget = f"/{s['budget']}" if s["budget"] else ""
        left = f", {duration(s['time_left'])} left" if s["time_left"] is not None else ""
        best = "none yet" if s["best"] is None else f"{fmt_score(s['best'])} (#{s['best_id']})"
        cost = ""
        if s["tokens"] or s["max_cost"] is not None:
            of = f"/${s['max_cost']:.2f}" if s["max_cost"] is not None else ""
            cost = f" tokens={s['tokens']} cost=${s['spent']:.4f}{of}"
        text = ""
        if s["failure"]:
            text += f"  last failure: {shorten(one_line(s['failure']), LINE_TEXT)}"
        if s["llm_error"]:
            streak = f" ({s['llm_failures']} in a row)" if s["llm_failures"] > 1 else ""
            text += f"  last LLM error: {shorten(one_line(s['llm_error']), LINE_TEXT)}{streak}"
        return (f"[{s['elapsed']:6.0f}s] programs {s['done']}{budget}{left}  best {best}"
                f"  {s['rate']:.2f}/s  ok={s['counts'].get('ok', 0)} {fails}{cost}{text}")

    def _render(self) -> Table:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold cyan", no_wrap=True)
        table.add_column()
        if self.run is None:
            table.add_row("evoforge", "starting")
            return table
        s = self.snapshot()
        width = max(self.console.width - 18, 40)
        budget = f" / {s['budget']}" if s["budget"] else ""
        table.add_row("programs", f"{s['done']}{budget}")
        if s["time_left"] is not None:
            table.add_row("time", f"{duration(s['time_left'])} left "
                                  f"(max_time {duration(s['max_time'] or 0)})")
        if s["best"] is None:
            table.add_row("best score", "none yet")
        else:
            best = fmt_score(s["best"])
            if self._initial is not None:
                best += f"  (initial {fmt_score(self._initial)})"
            table.add_row("best score", f"{best}  program #{s['best_id']}")
        table.add_row("rate", f"{s['rate']:.2f} programs/s   elapsed {duration(s['elapsed'])}")
        table.add_row("by status", "  ".join(f"{st.value}={s['counts'].get(st.value, 0)}"
                                             for st in Status if st is not Status.PENDING))
        if s["tokens"] or s["max_cost"] is not None:
            of = f" of ${s['max_cost']:.2f}" if s["max_cost"] is not None else ""
            table.add_row("LLM", f"{s['tokens']:,} tokens   ${s['spent']:.4f}{of}")
        if s["failure"]:
            table.add_row("last failure", Text(shorten(one_line(s["failure"]), width)))
        if s["llm_error"]:
            streak = f" ({s['llm_failures']} in a row)" if s["llm_failures"] > 1 else ""
            table.add_row("last LLM error", Text(shorten(one_line(s["llm_error"]), width)
                                                 + streak, style="yellow"))
        return table
