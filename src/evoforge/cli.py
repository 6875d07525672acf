"""The ``evoforge`` command line."""

from __future__ import annotations

import difflib
import logging
import os
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from evoforge.errors import EvoforgeError
from evoforge.invocation import command, name_the_command
from evoforge.termsafe import visible

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="evoforge: LLM-guided evolutionary program search.")
problems_app = typer.Typer(no_args_is_help=True, help="The built-in problem suite.")
app.add_typer(problems_app, name="problems")
# Text from candidates, evaluators, LLMs and stored runs is hostile: it reaches a console only as
# _lit(x) (a Text: no markup, no emoji codes, no highlighting) or as _m(x) inside our own markup,
# both through termsafe.visible (no terminal controls). Rich itself passes ESC, C1 and bidi
# controls through (it strips only BEL, BS, VT, FF, CR), in Text, Table and Syntax alike.
out = Console(soft_wrap=True, emoji=False)
err = Console(stderr=True, soft_wrap=True, emoji=False)


def _lit(text: object) -> Text:
    """Untrusted text as a renderable shown literally: controls made visible, no markup."""
    return Text(visible(str(text)))


def _m(text: object) -> str:
    """Untrusted text to embed in a markup string: controls made visible, markup escaped."""
    return escape(visible(str(text)))


class _VisibleFormatter(logging.Formatter):
    """Log records can quote LLM replies and evaluator output: no terminal controls in them."""

    def format(self, record: logging.LogRecord) -> str:  # commands it suggests: as run
        return visible(name_the_command(super().format(record)))

EXIT_ERROR, EXIT_RUN_FAILED, EXIT_INTERRUPTED = 1, 3, 130

SetOpt = Annotated[list[str] | None, typer.Option(
    "--set", "-s", help="Override a config key: --set llm.concurrency=8 (repeatable).")]
MaxPrograms = Annotated[int | None, typer.Option(help="Stop after this many programs.")]
MaxTime = Annotated[str | None, typer.Option(help="Stop after this wall time: 90s, 10m, 2h.")]
MaxCost = Annotated[float | None, typer.Option(help="Stop once LLM spend reaches this (USD).")]
Target = Annotated[float | None, typer.Option(help="Stop once the best score reaches this.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No live display.")]


def _flags(max_programs: int | None, max_time: str | None, max_cost: float | None,
           target_score: float | None, **more: Any) -> dict[str, Any]:
    return {"max_programs": max_programs, "max_time": max_time, "max_cost": max_cost,
            "target_score": target_score, **more}


def _setup_logging() -> None:
    from rich.logging import RichHandler

    handler = RichHandler(console=err, show_time=False, show_path=False)
    handler.setFormatter(_VisibleFormatter("%(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[handler])


def _drive(start: Any, quiet: bool, *, show_budget: bool = False,
           rerun: list[str] | None = None) -> None:
    """Run ``start(on_run, on_event)`` with a live display; print the outcome and what to do
    next (commands that work as printed, never one that repeats the same stop); exit
    accordingly. ``show_budget``: say what will stop the run once it exists. ``rerun``: the
    arguments of ``evoforge run`` that started it (a new run is suggested with them)."""
    from evoforge import report
    from evoforge.problem import builtin_problems
    from evoforge.progress import ProgressDisplay
    from evoforge.registry import mutator_kind

    display = ProgressDisplay(err, live=False if quiet else None, interval=30 if quiet else 10)
    holder: dict[str, Any] = {}

    def on_run(run: Any) -> None:
        holder["run"] = run
        again = rerun  # the arguments of a new run of the problem (None: its directory)
        if rerun is not None:  # a new run: a resume suggests the same arguments
            run.storage.set_meta("rerun", rerun)
        else:  # a resume: the arguments the run was started with, if stored
            again = run.storage.get_meta("rerun")
            if not (isinstance(again, list) and all(isinstance(a, str) for a in again)):
                again = ([str(run.problem.initial_program), str(run.problem.evaluator)]
                         if run.problem.as_files else None)  # two files: both
        # files shown relative to here when they lie below it
        holder["rerun"] = [report.short_path(a) for a in again] if again else None
        if show_budget:
            t = run.tally
            for line in report.budget_lines(
                    run.config, problem_name=run.problem.name, problem_config=run.problem.config,
                    done=t.done, spent=t.cost + t.pending_cost, resuming=t.done > 0,
                    uses_llm=mutator_kind(run.config) == "llm"):
                err.print(_lit(f"  {line}"))
        display.attach(run)

    try:
        outcome = start(on_run, display.update)
    finally:
        display.close()
    run = holder.get("run")
    best = outcome.best
    err.print()
    style = "green" if outcome.ok else ("yellow" if outcome.reason == "interrupted" else "red")
    said = f"stopped: {outcome.message}"
    if run is not None:
        t = run.tally
        reached = report.budget_reached(outcome.reason, run.config, done=t.done,
                                        cost=t.cost + t.pending_cost, elapsed=run.elapsed(),
                                        best=best.score if best is not None else None)
        if reached is not None:  # which budget, and where the run stands against it
            said = f"stopped: {reached}" if t.done_this_session else (
                f"nothing to do: {reached} before this resume started")
    err.print(f"[{style}]{_m(said)}[/{style}]")
    if run is not None:
        t = run.tally
        counts = ", ".join(f"{k}={v}" for k, v in sorted(t.counts.items()))
        out.print(f"programs: {t.done} ({counts})")
        if t.prompt_tokens or t.completion_tokens:
            out.print(f"LLM: {t.prompt_tokens + t.completion_tokens:,} tokens, ${t.cost:.4f}")
        if best is not None:
            initial = run.initial_score
            out.print(f"best score: {best.score:.10g} (program #{best.id}, initial "
                      f"{initial if initial is None else format(initial, '.10g')})")
            out.print(_lit(f"best program written to: {run.best_path}"))
        ev = command()
        rd = report.shell_word(run.run_dir)
        steps = report.next_steps(
            outcome.reason, run.config, ev=ev, run_dir=run.run_dir,
            problem_path=run.problem.path, done=t.done, cost=t.cost + t.pending_cost,
            uses_llm=mutator_kind(run.config) == "llm",
            last_failed_id=display.last_failure[0] if display.last_failure else None,
            builtin=builtin_problems(), rerun=holder.get("rerun"),
            initial_status=(display.last_failure[1] if display.last_failure
                            and display.last_failure[0] == 0 else None))
        inspect = [f"{ev} status {rd}", f"{ev} show {rd} {best.id if best else 0}"]
        if steps.resume:  # as is, or with the reached budget raised; none if it cannot help
            inspect.append(steps.resume)
        out.print(_lit("inspect: " + "   |   ".join(inspect)))
        url = run.config.storage.url or ""
        if "#run=" in url:  # PostgreSQL: inspect it from any machine, no run directory needed
            out.print(_lit(f"from any machine: {ev} status {shlex.quote(_label(url))}"))
        for line in steps.advice:
            out.print(_lit(line))
    if outcome.reason == "interrupted":
        raise typer.Exit(EXIT_INTERRUPTED)
    if not outcome.ok:
        raise typer.Exit(EXIT_RUN_FAILED)


@app.command()
def run(
    problem: Annotated[str, typer.Argument(
        help="Problem directory, or a built-in problem name, or (OpenEvolve's form) the initial "
             "program file followed by EVALUATOR.")],
    evaluator: Annotated[Path | None, typer.Argument(
        help="With PROBLEM an initial program file: the evaluator file.", show_default=False)] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML config file.")] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", "-o", "--output",
                                                 help="Run directory.")] = None,
    set_: SetOpt = None,
    max_programs: MaxPrograms = None,
    iterations: Annotated[int | None, typer.Option(
        "--iterations", "-i", min=0,
        help="OpenEvolve's budget: this many children (--max-programs N+1).")] = None,
    max_time: MaxTime = None,
    max_cost: MaxCost = None,
    target_score: Target = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    workers: Annotated[int | None, typer.Option(help="Evaluation slots.")] = None,
    api_base: Annotated[str | None, typer.Option(
        "--api-base", help="OpenAI-compatible endpoint (llm.base_url).")] = None,
    primary_model: Annotated[str | None, typer.Option(
        "--primary-model", help="The LLM to use (llm.models); with --secondary-model, "
        "OpenEvolve's 0.8/0.2 split.")] = None,
    secondary_model: Annotated[str | None, typer.Option(
        "--secondary-model", help="A second, less used LLM.")] = None,
    record: Annotated[Path | None, typer.Option(
        "--record", help="Append every LLM exchange to this JSON Lines file.")] = None,
    replay: Annotated[Path | None, typer.Option(
        "--replay", help="Answer LLM requests from a --record file; no endpoint is called.")] = None,
    log_level: Annotated[str | None, typer.Option(
        "--log-level", help="OpenEvolve's: DEBUG, INFO, WARNING (default), ERROR or CRITICAL "
        "for evoforge's log messages.")] = None,
    checkpoint: Annotated[str | None, typer.Option(
        "--checkpoint", help="OpenEvolve's; not supported: evoforge continues a run with "
        "`evoforge resume RUN_DIR`.", show_default=False)] = None,
    quiet: Quiet = False,
) -> None:
    """Evolve PROBLEM: start a new run.

    `evoforge run DIR` and OpenEvolve's `evoforge run initial_program.py evaluator.py
    --config config.yaml --iterations 100 --output DIR` both work."""
    from evoforge import api
    from evoforge.problem import Problem

    if checkpoint is not None:
        raise typer.BadParameter(
            f"--checkpoint {checkpoint}: evoforge does not load OpenEvolve checkpoints; every "
            "evoforge run commits each result as it comes, so a stopped or killed run "
            f"continues with `{command()} resume RUN_DIR` (the directory given to --out)")
    if log_level is not None:
        level = logging.getLevelName(log_level.upper())
        if not isinstance(level, int):
            raise typer.BadParameter(f"--log-level {log_level}: use DEBUG, INFO, WARNING, "
                                     "ERROR or CRITICAL")
        logging.getLogger("evoforge").setLevel(level)
    if iterations is not None and max_programs is not None:
        raise typer.BadParameter("give --iterations (children) or --max-programs (programs, "
                                 "the initial one included), not both")
    if iterations is not None:
        max_programs = iterations + 1  # the initial program counts as one
    models = [m for m in (primary_model, secondary_model) if m]
    llm: dict[str, Any] = {"llm.base_url": api_base, "llm.record": record and str(record),
                           "llm.replay": replay and str(replay)}
    if models:
        llm["llm.models"] = [{"name": m, "weight": w} for m, w in zip(models, (0.8, 0.2),
                                                                       strict=False)]
    flags = _flags(max_programs, max_time, max_cost, target_score, seed=seed,
                   **{"evaluation.workers": workers}, **llm)
    if evaluator is not None:
        where: str | Problem = Problem.from_files(problem, evaluator)
        run_dir = out_dir or _default_run_dir(str(evaluator.resolve().parent))
    else:
        if Path(problem).is_file():
            beside = Path(problem).parent / "evaluator.py"
            if Path(problem).name == "evaluator.py":  # the problem directory was meant
                pair = f"`{command()} run {shlex.quote(str(Path(problem).parent))}`"
            elif beside.is_file():
                pair = f"`{command()} run {shlex.quote(problem)} {shlex.quote(str(beside))}`"
            else:
                pair = f"`{command()} run {shlex.quote(problem)} EVALUATOR_FILE`"
            raise typer.BadParameter(
                f"{problem} is a file: give a problem directory, or the initial program and "
                f"the evaluator ({pair})")
        where, run_dir = problem, out_dir or _default_run_dir(problem)
    prob, cfg, run_dir = api.prepare(where, run_dir=run_dir, config_file=config,
                                     overrides=set_ or [], flags=flags)
    err.print(f"evoforge: evolving [bold]{_m(prob.name)}[/bold] into {_m(run_dir)}")
    err.print(_lit(f"  {api.describe_mutator(cfg)}"))
    err.print(_lit(f"  score integrity: {api.describe_integrity(prob, cfg)}"))
    if cfg.executor.name == "ray":
        err.print(_lit(f"  evaluations on the Ray cluster at {cfg.executor.address}: as many "
                       "at once as its nodes hold"))
    else:
        err.print(_lit(f"  {cfg.evaluation.workers} evaluation slot(s)"))
    # what a new run of the same problem needs, as the user gave it (all but --out); files as
    # absolute paths (the run stores this list, and a resume may start from elsewhere)
    def _abs(path: str | Path) -> str:
        return str(Path(path).absolute()) if Path(path).exists() else str(path)

    rerun = [_abs(problem), *([_abs(evaluator)] if evaluator is not None else []),
             *(["--config", _abs(config)] if config is not None else []),
             # a new run needs a storage of its own (and a URL may hold a password)
             *[a for item in set_ or [] if not item.strip().startswith("storage.url")
               for a in ("--set", item)]]
    for flag, value in (("--max-programs", max_programs), ("--max-time", max_time),
                        ("--max-cost", max_cost), ("--target-score", target_score),
                        ("--seed", seed), ("--workers", workers), ("--api-base", api_base),
                        ("--primary-model", primary_model),
                        ("--secondary-model", secondary_model), ("--record", record),
                        ("--replay", replay)):
        if value is not None:
            rerun += [flag, _abs(value) if isinstance(value, Path) else str(value)]
    _drive(lambda on_run, on_event: api.evolve(prob, run_dir=run_dir, config=cfg,
                                               on_event=on_event, on_run=on_run), quiet,
           show_budget=True, rerun=rerun)


@app.command()
def resume(
    run_arg: Annotated[str, typer.Argument(metavar="RUN_DIR", help="A run directory.")],
    set_: SetOpt = None,
    max_programs: Annotated[int | None, typer.Option(
        help="The whole run's total: stop once it holds this many programs (not programs to "
             "add).")] = None,
    max_time: Annotated[str | None, typer.Option(
        help="Stop after this wall time of this session: 90s, 10m, 2h.")] = None,
    max_cost: Annotated[float | None, typer.Option(
        help="The whole run's total: stop once its LLM spend reaches this (USD).")] = None,
    target_score: Target = None,
    quiet: Quiet = False,
) -> None:
    """Continue a stopped or killed run where it stopped. --max-programs and --max-cost are
    totals for the whole run; --max-time counts this session."""
    from evoforge import api
    from evoforge.run import is_storage_reference

    if is_storage_reference(run_arg):
        from evoforge.storages import redact

        raise EvoforgeError(
            f"resume takes the run directory, not a database reference "
            f"({redact(run_arg)}): a run kept in PostgreSQL is continued from the directory it "
            "was started with (its config.yaml names the database); `evoforge status` takes "
            "the reference from any machine")
    run_dir = Path(run_arg)
    flags = _flags(max_programs, max_time, max_cost, target_score)
    err.print(_lit(f"evoforge: resuming {run_dir}"))
    _drive(lambda on_run, on_event: api.resume(run_dir, overrides=set_ or [], flags=flags,
                                               on_event=on_event, on_run=on_run), quiet,
           show_budget=True)


def _run_ref(arg: str) -> str | Path:
    """A run directory, or a ``postgresql://...#run=NAME`` reference (kept as text)."""
    from evoforge.run import is_storage_reference

    return arg if is_storage_reference(arg) else Path(arg)


def _label(arg: str) -> str:
    """How a run argument is shown: a storage URL without its password."""
    from evoforge.run import is_storage_reference
    from evoforge.storages import redact

    return redact(arg) if is_storage_reference(arg) else arg


def _load_all(run_dir: str) -> tuple[Any, list[Any], dict[str, Any] | None]:
    from evoforge import api

    with api.inspect_run(_run_ref(run_dir)) as (cfg, storage):
        return cfg, list(storage.programs()), storage.get_meta("integrity")


def _tree(code: str) -> dict[str, str]:
    """The files of a stored program of several files (a clean error if it is malformed)."""
    from evoforge.program_files import unpack

    try:
        return unpack(code)
    except EvoforgeError as e:
        raise EvoforgeError(f"the stored program is not a valid tree of files: {e}") from e


@app.command()
def status(
    run_dir: Annotated[str, typer.Argument(
        help="A run directory, or postgresql://USER@HOST:PORT/DB#run=NAME.")],
    top: Annotated[int, typer.Option(help="How many top programs to list.")] = 10,
    reasons: Annotated[int, typer.Option(
        help="How many failure-reason patterns to list.", min=0)] = 10,
) -> None:
    """Summarise a run: counts by status, best score over time, top programs, LLM usage,
    failure reasons grouped by pattern (numbers, paths, quoted names masked)."""
    from collections import Counter

    from evoforge.program import Status
    from evoforge.report import group_reasons, shell_word, shorten

    if _list_database_runs(run_dir):
        return
    cfg, programs, integrity = _load_all(run_dir)
    sign = -1 if cfg.minimize else 1
    counts = Counter(p.status.value for p in programs)
    out.print(f"[bold]{_m(_label(run_dir))}[/bold]: {len(programs)} programs, objective "
              f"{_m(cfg.objective.direction)} {_m(cfg.objective.score_metric)}"
              + ("; Pareto over " + ", ".join(
                  f"{_m(o.name)} ({o.direction[:3]})" for o in cfg.objective.metrics)
                 if cfg.multi_objective else ""))
    out.print("  " + "  ".join(f"{s.value}={counts.get(s.value, 0)}" for s in Status))
    if integrity:
        out.print(_lit(f"  score integrity: {integrity.get('summary', '?')}"))
        for earlier in integrity.get("earlier_sessions", []):
            out.print(_lit(f"  earlier session(s) of this run: {earlier}"))
    done = [p for p in programs if p.status is not Status.PENDING]
    oks = [p for p in done if p.status is Status.OK and p.score is not None]
    pareto, _ = _load_pareto(run_dir)
    if pareto and cfg.multi_objective:  # not a front left from before --set objective.metrics=[]
        try:
            _print_pareto(pareto, programs, top, run_dir)
        except _UNREADABLE as e:  # the rest of the status is still worth showing
            out.print(_lit(_unreadable_front(e)))
    if oks:
        hist = Table(title="best score over time", show_edge=False)
        hist.add_column("after programs", justify="right")
        hist.add_column("best", justify="right")
        hist.add_column("program", justify="right")
        best = None
        for i, p in enumerate(done, 1):
            if p.score is not None and p.status is Status.OK and (
                    best is None or sign * p.score > sign * best.score):
                best = p
                hist.add_row(str(i), f"{p.score:.10g}", f"#{p.id}")
        out.print(hist)
        tops = sorted(oks, key=lambda p: -sign * p.score)[:top]
        t = Table(title=f"top {len(tops)} programs", show_edge=False)
        for col in ("id", "score", "gen", "island", "parents", "mutator", "edit"):
            t.add_column(col)
        for p in tops:
            t.add_row(str(p.id), f"{p.score:.10g}", str(p.generation), str(p.island),
                      ",".join(map(str, p.parent_ids)) or "-", _lit(p.mutation.mutator),
                      _lit(shorten(p.mutation.edit_kind or "-", 30)))
        out.print(t)
    arms = _arm_table(programs, cfg.minimize)
    if arms is not None:
        out.print(arms)
    _print_variants(run_dir, programs)
    llm = [p for p in programs if p.mutation.mutator == "llm"]
    if llm:
        by_model: dict[str, list[float]] = {}
        for p in llm:
            m = by_model.setdefault(p.mutation.model or "?", [0, 0, 0, 0.0])
            m[0] += 1
            m[1] += p.mutation.prompt_tokens
            m[2] += p.mutation.completion_tokens
            m[3] += p.mutation.cost
        t = Table(title="LLM usage", show_edge=False)
        for col in ("model", "requests", "prompt tok", "completion tok", "cost USD"):
            t.add_column(col, justify="right")
        for name, (n, pt, ct, cost) in sorted(by_model.items()):
            t.add_row(_lit(name), str(int(n)), f"{int(pt):,}", f"{int(ct):,}", f"{cost:.4f}")
        out.print(t)
    failed = [(p.status.value, p.reason, p.id) for p in done if p.status is not Status.OK]
    if failed:
        groups = group_reasons(failed)
        ev, rd = command(), shell_word(_label(run_dir))
        out.print(f"failure reasons by pattern ({len(failed)} programs, {len(groups)} "
                  f"pattern{'s' * (len(groups) != 1)}; the first example of each in full):")
        width = max(out.width - 18, 100)
        for g in groups[:reasons]:  # the pattern, shortened for display; the example, whole
            out.print(_lit(f"  {g.count:6d}  {g.status:8s} {shorten(g.pattern, width)}"))
            example = g.example.replace("\n", "\n" + " " * 24) or "(no reason given)"
            out.print(_lit(f"                  e.g. #{g.example_id}: {example}"))
        if len(groups) > reasons:
            rest = groups[reasons:]
            out.print(_lit(f"  ... and {len(rest)} more pattern(s), {sum(g.count for g in rest)}"
                           f" programs: {ev} status {rd} --reasons {len(groups)}"))
        out.print(_lit(f"one of them in full: {ev} show {rd} {groups[0].example_id}"))
    from evoforge.executors.reverify import rejected_bests

    rejected = rejected_bests(done)
    if rejected:
        total = sum(n for _, n in rejected)
        out.print(_lit(f"would-be bests rejected as not reproducible: {total} ("
                       + "; ".join(f"{n}: {why}" for why, n in rejected) + ")"))
    from evoforge.executors.cache import saved_by_cache

    saved = saved_by_cache(done)
    if saved:
        out.print(_lit(f"{sum(saved.values())} evaluations saved by the cache ("
                       f"{saved['code']} same code, {saved['fingerprint']} same fingerprint; "
                       f"of {len(done)} programs)"))
    from evoforge.rebase import rebased

    moved = rebased(done)
    if moved:
        out.print(_lit(f"rebased children: {moved} (an edit moved onto a better descendant of "
                       "the parent picked for it, committed while it was being made; "
                       "pipeline.rebase)"))
    from evoforge.executors.ray import evaluated_on

    nodes = evaluated_on(done)
    if nodes:  # executor.name=ray: which node evaluated what
        out.print(_lit("evaluated per Ray node: " + ", ".join(
            f"{node} {n}" for node, n in sorted(nodes.items()))))


def _list_database_runs(arg: str) -> bool:
    """``status postgresql://.../DB`` (no ``#run=``): list the runs stored there."""
    from evoforge.run import is_storage_reference
    from evoforge.storages.postgres import PostgresURL, list_runs

    if not is_storage_reference(arg) or PostgresURL.parse(arg).run is not None:
        return False
    target = PostgresURL.parse(arg)
    runs = list_runs(arg)
    out.print(_lit(f"{target.url()}: {len(runs)} run(s)"))
    if runs:
        t = Table(show_edge=False)
        for col in ("run", "started", "programs", "pending", "best", "problem"):
            t.add_column(col)
        for r in runs:
            t.add_row(_lit(r["name"]), time.strftime("%Y-%m-%d %H:%M",
                                                     time.localtime(r["created_at"])),
                      str(r["done"]), str(r["pending"]),
                      "-" if r["best"] is None else f"{r['best']:.10g}", _lit(r["problem"] or "-"))
        out.print(t)
        out.print(_lit(f"one run: {command()} status "
                       f"{shlex.quote(target.url(run=runs[-1]['name']))}"))
    return True


def _load_pareto(run_dir: str) -> tuple[dict[str, Any] | None, str]:
    """A multi-objective run's front and hypervolume curve (run meta ``pareto``, None for a
    scalar run), and the suffix of its program files."""
    from evoforge import api
    from evoforge.selectors.pareto import META_KEY

    with api.inspect_run(_run_ref(run_dir)) as (_cfg, storage):
        meta = storage.get_meta(META_KEY)
        files = storage.get_meta("problem_files") or ["program.py"]
    return (meta if isinstance(meta, dict) else None), Path(str(files[0])).suffix or ".txt"


_UNREADABLE = (TypeError, ValueError, KeyError, AttributeError, IndexError)


def _unreadable_front(e: Exception) -> str:
    from evoforge.selectors.pareto import META_KEY

    return (f"Pareto front: the run's stored front (meta key {META_KEY!r}) is unreadable "
            f"({type(e).__name__}: {e}); `{command()} resume` recomputes it from the programs")


def _front_table(pareto: dict[str, Any], programs: list[Any], limit: int | None) -> Table:
    """The front's programs, each objective a column, sorted by the first objective."""
    objs = pareto.get("objectives") or []
    by_id = {p.id: p for p in programs}
    front = [by_id[i] for i in pareto.get("front") or [] if i in by_id]
    first = objs[0]["name"] if objs else None
    sign = 1 if not objs or objs[0].get("direction") == "minimize" else -1
    front.sort(key=lambda p: sign * float(p.metrics.get(first, 0.0)))
    shown = front if limit is None else front[:limit]
    t = Table(title=f"Pareto front: {len(front)} programs"
              + (f" (first {len(shown)})" if len(shown) < len(front) else ""), show_edge=False)
    t.add_column("id", justify="right")
    for o in objs:
        arrow = "min" if o.get("direction") == "minimize" else "max"
        t.add_column(_lit(f"{o.get('name')} ({arrow})"), justify="right")
    t.add_column("score", justify="right")
    t.add_column("gen", justify="right")
    for p in shown:
        vals = [p.metrics.get(o.get("name")) for o in objs]
        t.add_row(str(p.id), *(_lit("-" if v is None else f"{v:.6g}") for v in vals),
                  "-" if p.score is None else f"{p.score:.6g}", str(p.generation))
    return t


def _print_pareto(pareto: dict[str, Any], programs: list[Any], top: int, run_dir: str) -> None:
    """``status`` for a multi-objective run: the front and the hypervolume curve."""
    from evoforge.report import curve_checkpoints, shell_word, sparkline

    limit = max(top, 20)
    out.print(_front_table(pareto, programs, limit))
    n_front = len(pareto.get("front") or [])
    if n_front > limit:
        out.print(_lit(f"  ... all {n_front}: {command()} best {shell_word(_label(run_dir))} --pareto"))
    curve = [(int(n), float(v)) for n, v in pareto.get("hypervolume") or []]
    ref = pareto.get("reference_point")
    where = "" if ref is None else (f" (reference point {tuple(ref)}, from "
                                    f"{pareto.get('reference_from', '?')})")
    sched = pareto.get("schedule")
    if sched:
        at = sched.get("switched_at")
        out.print(_lit(f"schedule: {sched.get('first')} alone for the first "
                       f"{sched.get('switch_after')} programs, then the front ("
                       + (f"switched after {at} programs)" if at else "not switched yet)")))
    if not curve:
        out.print(_lit(f"hypervolume{where}: none yet (no feasible program)"))
        return
    out.print(_lit(f"hypervolume{where}: {curve[0][1]:.6g} -> {curve[-1][1]:.6g} "
                   f"(after {curve[0][0]} and {curve[-1][0]} programs)"))
    out.print(_lit(f"  {sparkline(curve)}"))
    t = Table(title="hypervolume over time", show_edge=False)
    t.add_column("after programs", justify="right")
    t.add_column("hypervolume", justify="right")
    for n, v in curve_checkpoints(curve):
        t.add_row(str(n), f"{v:.6g}")
    out.print(t)


def _arm_table(programs: list[Any], minimize: bool) -> Table | None:
    """The bandit's arm choices: pulls, children better than their parent, cost (None when
    no program records an arm)."""
    scores = {p.id: p.score for p in programs}
    rows: dict[str, list[float]] = {}
    for p in programs:
        arm = p.mutation.arm
        if not arm:
            continue
        r = rows.setdefault(arm, [0, 0, 0.0])
        r[0] += 1
        parent = scores.get(p.parent_ids[0]) if p.parent_ids else None
        if p.score is not None and parent is not None and (
                p.score < parent if minimize else p.score > parent):
            r[1] += 1
        r[2] += p.mutation.cost
    if not rows:
        return None
    t = Table(title="bandit arms (mutator.name: bandit)", show_edge=False)
    for col in ("arm", "pulls", "better than parent", "cost USD"):
        t.add_column(col, justify="right")
    for arm, (n, won, cost) in sorted(rows.items(), key=lambda kv: -kv[1][0]):
        t.add_row(_lit(arm), str(int(n)), f"{int(won)} ({won / n:.0%})", f"{cost:.4f}")
    return t


def _print_variants(run_dir: str, programs: list[Any]) -> None:
    """The prompt variants (prompt.evolve) with their fitness, fittest living first; their
    text is an LLM's: shown literally, shortened."""
    from evoforge import api
    from evoforge.mutators.meta_prompt import variant_summary
    from evoforge.report import one_line, shell_word, shorten

    with api.inspect_run(_run_ref(run_dir)) as (_cfg, storage):
        try:
            found = variant_summary(storage)
        except EvoforgeError as e:  # the rest of the status is still worth showing
            out.print(_lit(f"prompt variants: {e}"))
            return
    if found is None:
        return
    state, records = found
    t = Table(title=f"prompt variants (prompt.evolve): {int(state.get('meta_calls', 0))} "
              f"rewrite(s) asked, {int(state.get('meta_rejected', 0))} rejected",
              show_edge=False)
    for col in ("variant", "from", "alive", "programs", "better/not/failed", "fitness"):
        t.add_column(col, justify="right")
    t.add_column("instructions (system | guidance)", ratio=1, min_width=24)
    for r in sorted(records, key=lambda r: (not r.alive, -r.fitness, -r.weight)):
        text = shorten(one_line(f"{r.variant.system} | {r.variant.guidance}"), 70)
        t.add_row(_lit(r.id), _lit(r.parent or "-"), "yes" if r.alive else "retired",
                  str(r.children), f"{r.better}/{r.worse}/{r.failed}", f"{r.fitness:+.4f}",
                  _lit(text))
    out.print(t)
    fittest = min(records, key=lambda r: (not r.alive, -r.fitness, -r.weight))
    made = next((p.id for p in reversed(programs) if p.mutation.prompt_variant == fittest.id),
                None)
    if made is not None:
        out.print(_lit(f"the fittest, {fittest.id}, in full: {command()} show "
                       f"{shell_word(_label(run_dir))} {made} --prompt"))
    if state.get("last_rejection"):
        out.print(_lit(f"last rewrite rejected: {state['last_rejection']}"))


@app.command()
def best(
    run_dir: Annotated[str, typer.Argument(
        help="A run directory, or postgresql://USER@HOST:PORT/DB#run=NAME.")],
    write: Annotated[Path | None, typer.Option(
        "--write", "-w", help="Write the code here (a directory for a program of several "
        "files, and with --pareto).")] = None,
    pareto: Annotated[bool, typer.Option(
        "--pareto", help="A multi-objective run: list the Pareto front's programs (with "
        "--write DIR, write each one's code there).")] = False,
) -> None:
    """Print the best program (or write it to a file, or its files into a directory);
    --pareto: the front of a multi-objective run."""
    from evoforge import api
    from evoforge.program import Status

    with api.inspect_run(_run_ref(run_dir)) as (cfg, storage):
        programs = list(storage.programs())
        multi = bool(storage.get_meta("multi_file"))
    if pareto:
        _best_pareto(run_dir, cfg, programs, write, multi)
        return
    oks = [p for p in programs if p.status is Status.OK and p.score is not None]
    if not oks:
        raise EvoforgeError(f"{_label(run_dir)} has no program that evaluated ok yet")
    pick = (min if cfg.minimize else max)(oks, key=lambda p: p.score)
    err.print(f"best: program #{pick.id}, score {pick.score:.10g}, generation {pick.generation}")
    if write and multi:
        from evoforge.program_files import write_tree

        files = _tree(pick.code)
        try:
            write_tree(write, files)  # byte for byte, paths checked, no symlink followed
        except OSError as e:
            raise EvoforgeError(f"--write {write}: cannot write the program's files "
                                f"({e.strerror or e}); choose a writable directory") from e
        err.print(_lit(f"{len(files)} files written to {write}/: {', '.join(files)}"))
    elif write:
        try:
            write.write_bytes(pick.code.encode("utf-8"))  # the stored code, byte for byte
        except OSError as e:
            raise EvoforgeError(f"--write {write}: cannot write the program ({e.strerror or e}); "
                                "choose a writable path") from e
        err.print(_lit(f"written to {write}"))
    elif multi:
        for path, text in _tree(pick.code).items():
            sys.stdout.write(visible(f"==> {path} <==\n{text}"))
            if text and not text.endswith("\n"):
                sys.stdout.write("\n")
        sys.stdout.flush()
    else:  # stdout may end on a terminal (`| cat`, `| less -R`): control characters are shown,
        # not obeyed; --write is the byte-exact path (written directly: rich would drop CR)
        sys.stdout.write(visible(pick.code))
        sys.stdout.flush()


def _best_pareto(run_dir: str, cfg: Any, programs: list[Any], write: Path | None,
                 multi: bool) -> None:
    import json

    from evoforge.report import shell_word

    meta, suffix = _load_pareto(run_dir)
    shown = shell_word(_label(run_dir))
    if meta is None or not cfg.multi_objective:
        raise EvoforgeError(f"{_label(run_dir)} is a single-objective run (no objective.metrics): "
                            f"it has no Pareto front; `{command()} best {shown}` shows its best "
                            "program")
    by_id = {p.id: p for p in programs}
    front = [by_id[i] for i in meta.get("front") or [] if i in by_id]
    try:
        out.print(_front_table(meta, programs, None))
    except _UNREADABLE as e:
        raise EvoforgeError(_unreadable_front(e)) from e
    if write is None:
        out.print(_lit(f"write their code: {command()} best {shown} --pareto --write DIR"))
        return
    try:
        write.mkdir(parents=True, exist_ok=True)
        index = []
        for p in front:
            path = write / (f"program_{p.id}" if multi else f"program_{p.id}{suffix}")
            if multi:  # a program of several files: its tree in a directory of its own
                from evoforge.program_files import write_tree

                if path.is_symlink():
                    raise EvoforgeError(f"--write {write}: {path.name} is a symbolic link; "
                                        "it is not followed: remove it or choose another "
                                        "directory")
                write_tree(path, _tree(p.code))
            else:
                _write_nofollow(path, p.code, write)  # the stored code, byte for byte
            index.append({"id": p.id, "file": path.name, "metrics": p.metrics,
                          "score": p.score})
        _write_nofollow(write / "front.json", json.dumps(
            {"objectives": meta.get("objectives"), "programs": index}, indent=2,
            allow_nan=False), write)
    except OSError as e:
        raise EvoforgeError(f"--write {write}: cannot write the front's programs "
                            f"({e.strerror or e}); choose a writable directory") from e
    err.print(_lit(f"{len(front)} programs written to {write}/ (program_ID{suffix}, and "
                   "front.json with their metrics)"))


def _write_nofollow(path: Path, text: str, write: Path) -> None:
    """Write ``text`` (UTF-8, byte for byte) to ``path`` inside the directory ``write``,
    never through a symbolic link planted there."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as e:
        if path.is_symlink():
            raise EvoforgeError(f"--write {write}: {path.name} is a symbolic link; it is not "
                                "followed: remove it or choose another directory") from e
        raise
    with os.fdopen(fd, "wb") as f:
        f.write(text.encode("utf-8"))


@app.command()
def show(
    run_dir: Annotated[str, typer.Argument(
        help="A run directory, or postgresql://USER@HOST:PORT/DB#run=NAME.")],
    program_id: Annotated[int, typer.Argument(help="Program id (see `evoforge status`).")],
    prompt: Annotated[bool, typer.Option(
        "--prompt", help="Print the prompt (system and user) the LLM was sent for it.")] = False,
    reply: Annotated[bool, typer.Option(
        "--reply", help="Print the LLM's raw reply and what became of it.")] = False,
) -> None:
    """Show one program: code, metrics, feedback, diff against its parent, lineage."""
    from evoforge import api
    from evoforge.program import Status
    from evoforge.report import parent_choice

    with api.inspect_run(_run_ref(run_dir)) as (_cfg, storage):
        multi = bool(storage.get_meta("multi_file"))
        p = storage.get(program_id)
        exchange = storage.exchange(program_id)
        variant = None
        if p.mutation.prompt_variant is not None:
            from evoforge.mutators.meta_prompt import describe_variant

            variant = describe_variant(storage, p.mutation.prompt_variant)
        parent = storage.get(p.parent_ids[0]) if p.parent_ids else None
        lineage = [p]
        while lineage[-1].parent_ids and len(lineage) < 200:
            lineage.append(storage.get(lineage[-1].parent_ids[0]))
    if prompt or reply:
        if exchange is None:
            err.print(f"program #{p.id} was not made by an LLM (made by: "
                      f"{_m(p.mutation.mutator or '-')}), or its run predates stored exchanges")
            raise typer.Exit(EXIT_ERROR)
        if variant is not None:
            out.print(_lit(f"built with {variant}"))
        _print_exchange(exchange, prompt=prompt, reply=reply)
        return
    score = "-" if p.score is None else f"{p.score:.10g}"
    out.print(f"[bold]program #{p.id}[/bold]  status={p.status.value}  score={score}  "
              f"generation={p.generation}  island={p.island}")
    if p.reason:
        out.print(_lit(f"reason: {p.reason}"))
    m = p.mutation
    out.print(_lit(f"made by: {m.mutator}" + (f" ({m.model})" if m.model else "")
                   + (f", edit {m.edit_kind}" if m.edit_kind else "")
                   + (f", {m.prompt_tokens}+{m.completion_tokens} tokens, ${m.cost:.5f}"
                      if m.prompt_tokens or m.completion_tokens else "")
                   + (f", {m.latency:.2f}s" if m.latency else "")
                   + (f", {m.attempts} request(s)" if m.attempts else "")))
    for line in parent_choice(p):  # how stale the parent choice was; a rebased child's pick
        out.print(_lit(line))
    if variant is not None:
        out.print(_lit(f"made with {variant}"))
    if m.note:
        out.print(_lit(f"note: {m.note}"))
    if p.metrics:
        out.print(_lit("metrics: " + ", ".join(
            f"{k}={v:.6g}" if isinstance(v, int | float) and not isinstance(v, bool) else f"{k}={v}"
            for k, v in p.metrics.items())))
    for key, text in p.artifacts.items():
        out.print(f"[bold]-- {_m(key)} --[/bold]")
        out.print(_lit(text))
    out.print("lineage: " + " <- ".join(
        f"#{q.id}({'-' if q.score is None else format(q.score, '.6g')})" for q in lineage))
    ev = command()
    if p.status is Status.INVALID:
        # no child was made: a diff would show the parent deleted; show what the LLM said
        if exchange is not None:
            _print_exchange(exchange, prompt=False, reply=True)
            out.print(_lit(f"the prompt: {ev} show {shlex.quote(_label(run_dir))} {p.id} --prompt"))
        return
    if parent is not None:
        if multi:  # one diff per changed file
            from evoforge.program_files import tree_diff

            diff = tree_diff(_tree(parent.code), _tree(p.code), f"program #{parent.id}",
                             f"program #{p.id}")
        else:
            diff = "".join(difflib.unified_diff(parent.code.splitlines(True),
                                                p.code.splitlines(True),
                                                f"program #{parent.id}", f"program #{p.id}"))
        out.print("[bold]-- diff against parent --[/bold]")
        # Syntax passes ESC, C1 and bidi controls straight through: sanitise what it is given
        out.print(Syntax(visible(diff or "(identical)\n"), "diff", theme="ansi_dark"))
    if multi:
        from evoforge.program_files import language_of

        for path, text in _tree(p.code).items():
            out.print(f"[bold]-- {_m(path)} --[/bold]")
            out.print(Syntax(visible(text), language_of(path), line_numbers=True,
                             theme="ansi_dark"))
    else:
        out.print("[bold]-- code --[/bold]")
        out.print(Syntax(visible(p.code), "python", line_numbers=True, theme="ansi_dark"))
    if exchange is not None:
        out.print(_lit(f"the LLM exchange: {ev} show {shlex.quote(_label(run_dir))} {p.id} "
                       "--prompt | --reply"))


def _print_exchange(exchange: dict[str, Any], *, prompt: bool, reply: bool) -> None:
    """A stored LLM exchange, literally (its text is an LLM's and a candidate's)."""
    if prompt:
        for msg in exchange.get("messages") or []:
            out.print(f"[bold]-- {_m(msg.get('role', '?'))} --[/bold]")
            out.print(_lit(msg.get("content", "")))
        if not exchange.get("messages"):
            out.print("(no prompt was sent)")
    if reply:
        model = exchange.get("model") or "-"
        out.print(f"[bold]-- reply[/bold] (model {_m(model)}, {_m(exchange.get('attempts', 0))} "
                  "request(s)) [bold]--[/bold]")
        text = exchange.get("reply")
        out.print(_lit(text) if text is not None else "(no reply)")
        out.print(_lit(f"outcome: {exchange.get('outcome', '')}"))
        for t in exchange.get("tried") or []:
            out.print(_lit(f"before: {t}"))
    meta = exchange.get("meta")
    if isinstance(meta, dict) and (prompt or reply):  # prompt.evolve: a rewrite was asked too
        out.print(f"[bold]-- meta call: a rewrite of prompt variant {_m(meta.get('rewrites'))}"
                  " --[/bold]")
        if prompt:
            for msg in meta.get("messages") or []:
                out.print(f"[bold]-- meta {_m(msg.get('role', '?'))} --[/bold]")
                out.print(_lit(msg.get("content", "")))
        if reply:
            text = meta.get("reply")
            out.print("[bold]-- meta reply --[/bold]")
            out.print(_lit(text) if text is not None else "(no reply)")
        out.print(_lit(f"meta outcome: {meta.get('outcome', '')}"))


@app.command()
def dashboard(
    runs: Annotated[list[str], typer.Argument(
        help="Run directories or postgresql://USER@HOST:PORT/DB#run=NAME references.")],
    port: Annotated[int, typer.Option(help="TCP port (0: any free port).")] = 8765,
    host: Annotated[str, typer.Option(help="Address to listen on; other than loopback "
                                      "needs a token.")] = "127.0.0.1",
    token: Annotated[str | None, typer.Option(help="Require this token (generated when "
                                              "--host is not loopback).")] = None,
) -> None:
    """Serve a live, read-only web view of runs (needs: pip install 'evoforge\\[dashboard]')."""
    from evoforge.dashboard.server import serve

    serve(runs, host=host, port=port, token=token, echo=lambda line: err.print(_lit(line)))


@app.command()
def init(
    name: Annotated[Path, typer.Argument(help="Directory to create.")],
) -> None:
    """Scaffold a new problem directory with a working example evaluator."""
    src = Path(__file__).parent / "templates" / "problem"
    if name.exists() and any(name.iterdir()):
        raise EvoforgeError(f"{name} exists and is not empty; choose a new directory name")
    shutil.copytree(src, name, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out.print(_lit(f"created {name}/ with initial_program.py, evaluator.py, config.yaml, README.md"))
    out.print(_lit(f"try it: {command()} run {shlex.quote(str(name))} --max-programs 50"))


@app.command()
def doctor(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML config file.")] = None,
    set_: SetOpt = None,
) -> None:
    """Prove each protection by attacking the host from a real sandbox; exit 1 if any the
    configuration asks for is missing."""
    from evoforge import doctor as doc
    from evoforge.config import load_config

    cfg = load_config(config, overrides=set_ or [])
    checks = doc.checks(cfg.evaluation)
    out.print(_lit(doc.render(checks)))
    if doc.failed(checks):
        out.print("protections the configuration asks for are MISSING on this machine (FAIL "
                  "above): do not evaluate untrusted code here")
        raise typer.Exit(EXIT_ERROR)


@problems_app.command("list")
def problems_list() -> None:
    """List the built-in problems: objective, direction, best-known value and its source."""
    from evoforge.problem import builtin_problems, missing_tools, problem_meta

    rows = []
    for pname, path in builtin_problems().items():
        meta = problem_meta(path)
        if not meta:
            readme = path / "README.md"
            meta = {"objective": readme.read_text().splitlines()[0].lstrip("# ")
                    if readme.is_file() else ""}
        best = meta.get("best_known")
        missing = missing_tools(meta)
        rows.append([pname, str(meta.get("objective", "")), str(meta.get("direction", "maximize")),
                     "-" if best is None else f"{best:.10g}" if isinstance(best, float) else str(best),
                     str(meta.get("best_known_source", "-")),
                     "-" if meta.get("baseline") is None else f"{meta['baseline']:.6g}",
                     f"{', '.join(sorted(missing))}: apt-get install "
                     + " ".join(sorted(set(missing.values()))) if missing else ""])
    cols = ["name", "objective", "direction", "best known", "source", "initial", "missing tools"]
    if not any(r[-1] for r in rows):
        cols.pop()
    t = Table(show_edge=False)
    for col in cols:
        t.add_column(col, overflow="fold", no_wrap=col in ("name", "best known", "direction"))
    for r in rows:
        t.add_row(*map(_lit, r[:len(cols)]))
    out.print(t)
    out.print(f"run one with `{command()} run NAME`; each problem's README.md has the exact "
              "definition")


config_app = typer.Typer(no_args_is_help=True,
                         help="Config files: translate an OpenEvolve config.yaml.")
app.add_typer(config_app, name="config")
EXIT_USAGE = 2


@config_app.command("translate")
def config_translate(
    file: Annotated[Path, typer.Argument(help="A config file (OpenEvolve's or evoforge's).")],
) -> None:
    """Print FILE in evoforge's schema (an OpenEvolve config translated key by key) on stdout;
    what evoforge has no equivalent for goes to stderr."""
    import yaml

    from evoforge.config import build_config
    from evoforge.errors import ConfigError
    from evoforge.openevolve_config import read_config_file

    try:
        translation = read_config_file(file)
        build_config(translation.layer(), source=str(file))  # what it became must validate
    except ConfigError as e:
        err.print(f"[red]error:[/red] {_m(name_the_command(str(e)))}", highlight=False)
        raise typer.Exit(EXIT_USAGE) from None
    for warning in translation.warnings:
        err.print(_lit(f"warning: {warning}"))
    how = ("translated from OpenEvolve's format" if translation.openevolve
           else "already in evoforge's schema")
    text = yaml.safe_dump(translation.config, sort_keys=False) if translation.config else "{}\n"
    sys.stdout.write(visible(f"# {file}: {how}\n{text}"))
    sys.stdout.flush()


def _usage_error(e: BaseException) -> int | None:
    """The exit code of a command-line usage error (shown to the user here), or None.

    typer raises click's exceptions, or (typer >= 0.2x, without click) its own vendored copies:
    recognised by shape and name, not by importing click."""
    names = {cls.__name__ for cls in type(e).__mro__}
    if "Abort" in names:
        return EXIT_INTERRUPTED
    show, code = getattr(e, "show", None), getattr(e, "exit_code", None)
    if ("ClickException" in names or "TyperException" in names) and callable(show) \
            and isinstance(code, int):
        show()
        return code
    return None


def _default_run_dir(problem: str) -> Path:
    """``runs/NAME-TIMESTAMP`` in the working directory, NAME the problem's directory name
    (also for ``evoforge run .``); never inside the problem directory itself (a run there
    would be copied into every evaluation's view of the problem), but beside it."""
    from evoforge.problem import resolve_problem_path

    stamp = time.strftime("%Y%m%d-%H%M%S")
    try:
        where = resolve_problem_path(problem)
    except EvoforgeError:
        return Path("runs") / f"{Path(problem).name or 'run'}-{stamp}"  # reported by prepare
    base = Path("runs")
    if Path.cwd().resolve().is_relative_to(where):
        base = where.parent / "runs"
    out, n = base / f"{where.name}-{stamp}", 1
    while out.exists():  # two runs started in the same second
        n += 1
        out = base / f"{where.name}-{stamp}-{n}"
    return out


def main() -> None:
    _setup_logging()
    try:
        rc = app(prog_name="evoforge", standalone_mode=False)  # returns typer.Exit's code here
        sys.exit(rc if isinstance(rc, int) else 0)
    except EvoforgeError as e:  # the commands it suggests name the evoforge that was run
        err.print(f"[red]error:[/red] {_m(name_the_command(str(e)))}", highlight=False)
        sys.exit(EXIT_ERROR)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(EXIT_INTERRUPTED)
    except Exception as e:  # usage errors come through here in non-standalone mode
        code = _usage_error(e)
        if code is None:
            sys.exit(_internal_error(e))
        sys.exit(code)


def _internal_error(e: BaseException) -> int:
    """An error evoforge did not foresee: one line for the user, the traceback in a file (or on
    stderr with EVOFORGE_DEBUG=1), never a traceback dumped on the terminal by default."""
    import os
    import tempfile
    import traceback

    text = "".join(traceback.format_exception(type(e), e, e.__traceback__))
    if os.environ.get("EVOFORGE_DEBUG"):
        err.print(_lit(text))
        return EXIT_ERROR
    where = "(could not be saved)"
    try:
        fd, where = tempfile.mkstemp(prefix="evoforge-error-", suffix=".txt")
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
    except OSError:
        pass
    if isinstance(e, OSError):
        err.print(f"[red]error:[/red] {_m(e)}", highlight=False)
    else:
        err.print(f"[red]internal error:[/red] {_m(type(e).__name__)}: {_m(e)}", highlight=False)
        err.print(_lit(f"this is a bug in evoforge; please report it with the traceback saved "
                       f"in {where} (or rerun with EVOFORGE_DEBUG=1 to see it)"))
    return EXIT_ERROR


if __name__ == "__main__":
    main()
