"""Live progress: a rich panel on a terminal, periodic log lines otherwise."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from evoforge.program import Program, Status
from evoforge.run import Run
from evoforge.termsafe import visible


def fmt_score(x: float | None) -> str:
    return "-" if x is None else f"{x:.6g}"


class ProgressDisplay:
    """Call ``attach(run)`` once the run exists, then ``update(program)`` after each result."""

    def __init__(self, console: Console | None = None, *, live: bool | None = None,
                 interval: float = 10.0) -> None:
        self.console = console or Console(stderr=True)
        self.live_mode = self.console.is_terminal if live is None else live
        self.interval = interval
        self.run: Run | None = None
        self._live: Live | None = None
        self._last_line = 0.0
        self._session_start = time.monotonic()
        self._done_at_start = 0
        self._initial: float | None = None

    def attach(self, run: Run) -> None:
        self.run = run
        self._session_start = time.monotonic()
        self._done_at_start = run.tally.done
        if self.live_mode:
            self._live = Live(self._render(), console=self.console, refresh_per_second=4,
                              get_renderable=self._render, transient=False)
            self._live.start()

    def update(self, program: Program) -> None:
        if self._initial is None and program.id == 0 and program.score is not None:
            self._initial = program.score
        if self._live is None and self.run is not None:
            now = time.monotonic()
            new_best = self.run.best is program
            if now - self._last_line >= self.interval or new_best and now - self._last_line > 1:
                self._last_line = now
                self.console.print(self._line(), highlight=False, markup=False)

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def snapshot(self) -> dict[str, Any]:
        assert self.run is not None
        run, t = self.run, self.run.tally
        elapsed = time.monotonic() - self._session_start
        done_now = t.done - self._done_at_start
        return {
            "done": t.done, "budget": run.config.max_programs, "elapsed": elapsed,
            "rate": done_now / elapsed if elapsed > 0 else 0.0,
            "best": run.best.score if run.best else None,
            "best_id": run.best.id if run.best else None,
            "counts": dict(t.counts), "tokens": t.prompt_tokens + t.completion_tokens,
            "cost": t.cost,
            # while proposals keep failing: why (endpoint text, shown inert)
            "llm_error": (visible(t.last_llm_error)[:200]
                          if t.consecutive_llm_failures > 0 else ""),
        }

    def _line(self) -> str:
        s = self.snapshot()
        fails = " ".join(f"{k}={v}" for k, v in sorted(s["counts"].items()) if k != "ok")
        budget = f"/{s['budget']}" if s["budget"] else ""
        tok = f" tokens={s['tokens']} cost=${s['cost']:.4f}" if s["tokens"] else ""
        err = f"  last LLM error: {s['llm_error']}" if s["llm_error"] else ""
        return (f"[{s['elapsed']:6.0f}s] programs {s['done']}{budget}  best {fmt_score(s['best'])}"
                f" (#{s['best_id']})  {s['rate']:.2f}/s  ok={s['counts'].get('ok', 0)} {fails}{tok}"
                f"{err}")

    def _render(self) -> Table:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold cyan")
        table.add_column()
        if self.run is None:
            table.add_row("evoforge", "starting")
            return table
        s = self.snapshot()
        budget = f" / {s['budget']}" if s["budget"] else ""
        table.add_row("programs", f"{s['done']}{budget}")
        best = fmt_score(s["best"])
        if self._initial is not None and s["best"] is not None:
            best += f"  (initial {fmt_score(self._initial)})"
        table.add_row("best score", f"{best}  program #{s['best_id']}")
        table.add_row("rate", f"{s['rate']:.2f} programs/s   elapsed {s['elapsed']:.0f}s")
        table.add_row("by status", "  ".join(f"{st.value}={s['counts'].get(st.value, 0)}"
                                             for st in Status if st is not Status.PENDING))
        if s["tokens"]:
            table.add_row("LLM", f"{s['tokens']:,} tokens   ${s['cost']:.4f}")
        if s["llm_error"]:
            table.add_row("last LLM error", Text(s["llm_error"], style="yellow"))
        return table
