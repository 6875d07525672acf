"""High-level entry points: start a run, resume one, open one for inspection."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, cast

from evoforge.config import Config, Layer, build_config, override_layers
from evoforge.errors import ConfigError, EvoforgeError, StorageError
from evoforge.executors.base import Executor
from evoforge.executors.cache import with_cache
from evoforge.executors.local import LocalExecutor
from evoforge.executors.reverify import Reverifying
from evoforge.invocation import command
from evoforge.mutators.base import Mutator
from evoforge.pipeline import Pipeline, RunOutcome
from evoforge.problem import Problem, in_directory_form
from evoforge.program import Program, Status
from evoforge.registry import make_mutator, make_selector, mutator_kind
from evoforge.run import (
    DB_NAME,
    Run,
    _atomic_write,
    check_problem_unchanged,
    is_storage_reference,
    locate_run,
    require_run_dir,
    run_storage_url,
)
from evoforge.selectors.base import Selector
from evoforge.stop import AnyOf, Stop
from evoforge.stop import from_config as stop_from_config
from evoforge.storages import (
    is_postgres_url,
    open_storage,
    redact,
    resolve_storage_url,
    storage_exists,
)
from evoforge.storages.base import Storage

log = logging.getLogger("evoforge")


def _executor(problem: Problem, config: Config, run_dir: Path | None = None) -> Executor:
    hide = [run_dir] if run_dir is not None else []
    if config.executor.name == "ray":  # evaluations on a Ray cluster (evoforge.executors.ray)
        from evoforge.executors.ray import RayExecutor

        return RayExecutor.from_config(problem.path, config.executor, config.evaluation,
                                       score_metric=config.objective.score_metric,
                                       program_name=problem.program_name,
                                       evaluator=problem.evaluator.name,
                                       minimize=config.minimize, hide=hide).connect()
    return LocalExecutor.from_config(problem.path, config.evaluation,
                                     score_metric=config.objective.score_metric,
                                     program_name=problem.program_name,
                                     evaluator=problem.evaluator.name,
                                     minimize=config.minimize,  # cascade thresholds' direction
                                     hide=hide)


def prepare(problem: str | Path | Problem, *, run_dir: str | Path,
            config_file: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (),
            flags: dict[str, Any] | None = None) -> tuple[Problem, Config, Path]:
    """Load the problem and build the config with the documented precedence: the problem's
    config.yaml < ``config_file`` < ``overrides`` (``--set``) < ``flags``. A file in
    OpenEvolve's format is translated, and what it left out is logged here, once."""
    prob = problem if isinstance(problem, Problem) else Problem.load(problem)
    from evoforge.openevolve_config import read_config_file

    layers = [prob.config_layer()]
    prob.report_config()
    if config_file is not None:
        translation = read_config_file(config_file)
        translation.report()
        layers.append(translation.layer())
    layers += override_layers(overrides)
    layers += _flag_layers(flags)
    cfg = build_config(*layers, source=str(config_file or prob.path / "config.yaml"))
    return prob, cfg, Path(run_dir)


def _flag_layers(flags: dict[str, Any] | None) -> list[Layer]:
    """One layer per flag given, named after it (``evaluation.workers`` -> ``--workers``)."""
    return [Layer(_nest({k: v}), f"--{k.rsplit('.', 1)[-1].replace('_', '-')}")
            for k, v in (flags or {}).items() if v is not None]


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in flat.items():
        cur = out
        parts = key.split(".")
        for p in parts[:-1]:
            cur = cur.setdefault(p, {})
        cur[parts[-1]] = value
    return out


async def _drive(run: Run, config: Config, problem: Problem,
                 on_event: Callable[[Program], None] | None,
                 mutator: Mutator | None = None, executor: Executor | None = None,
                 built: Executor | None = None) -> RunOutcome:
    """Drive ``run`` to a stop with the given collaborators; the config builds the others
    (``built``: the config's executor, already built and connected)."""
    mutator = mutator if mutator is not None else make_mutator(config)
    if config.prompt.evolve.enabled:  # the LLM's instructions evolve too (in the run's storage)
        from evoforge.mutators.meta_prompt import with_prompt_evolution

        mutator = with_prompt_evolution(mutator, run.storage, config)
    if run.tally.done and type(mutator).restore is not Mutator.restore:  # resumed: re-learn
        mutator.restore(p for p in run.storage.programs() if p.status is not Status.PENDING)
    if executor is None:
        executor = built if built is not None else _executor(problem, config, run.run_dir)
        if config.executor.name == "ray":  # the in-flight window follows the cluster's slots
            from evoforge.executors.ray import RayExecutor

            executor = cast(RayExecutor, executor)  # what _executor builds for this name
            await executor.start()  # its actors up: they say which sandbox the nodes have
            ev = run.config.evaluation.model_copy(update={"workers": executor.slots})
            run.config = run.config.model_copy(update={"evaluation": ev})
    sandbox = getattr(executor, "sandbox", None)
    run.integrity = integrity(getattr(executor, "form", "custom"),
                              getattr(sandbox, "name", "custom"))
    if config.evaluation.reverify > 0:  # a would-be best must reproduce in fresh processes
        executor = Reverifying(executor, times=config.evaluation.reverify,
                               tolerance=config.evaluation.reverify_tolerance,
                               worth=lambda score: run.best is not None
                               and run.would_be_best(score),  # the initial program is the bar
                               noise_samples=config.evaluation.noise_samples,
                               reference=problem.initial_code)  # noise is measured on it
    # outside re-verification: a reused result is one that went through it; seeded from the
    # stored programs on resume (evoforge.executors.cache)
    executor = with_cache(executor, run, config, problem)
    earlier = run.storage.get_meta("integrity") or {}
    history = list(earlier.get("earlier_sessions", []))
    if earlier and earlier["summary"] != run.integrity["summary"]:
        history.append(earlier["summary"])  # a resume changed it: the run keeps both
    if history:
        run.integrity["earlier_sessions"] = history
    run.storage.set_meta("integrity", run.integrity)
    if run.best is not None:  # a resumed run's best.json gets this session's record too
        run.write_best()
    if not run.integrity["protected"]:
        log.warning("score integrity: %s", run.integrity["summary"])
    pipeline = Pipeline(run, mutator, executor, on_event=on_event)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed = False
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):

        def _on_sigint() -> None:
            stop.set()
            loop.remove_signal_handler(signal.SIGINT)  # a second Ctrl-C interrupts at once

        loop.add_signal_handler(signal.SIGINT, _on_sigint)
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        installed = True
    try:
        return await pipeline.execute(stop)
    finally:
        await mutator.aclose()
        if installed:
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(Exception):
                    loop.remove_signal_handler(sig)


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on the run directory: one writer per run, ever."""
    import fcntl
    import os

    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(run_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        if not os.access(run_dir, os.W_OK):
            os.close(fd)
            raise PermissionError(f"{run_dir} is read-only for this user")
    except OSError as e:
        why = f"cannot write to the run directory {run_dir} ({e.strerror or e})"
        if (run_dir / "evoforge.db").exists():
            raise ConfigError(
                f"{why}; a run is continued by a user who can write it: resume it as its owner, "
                f"or continue a copy (`cp -r {run_dir} NEWDIR && {command()} resume NEWDIR`); "
                f"`{command()} status`, `best` and `show` work read-only"
            ) from e
        raise ConfigError(f"{why}; choose a directory you can write with --out DIR") from e
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise ConfigError(f"{run_dir} is in use by another evoforge process (pid {holder}); "
                              f"wait for it to stop, or inspect it with `{command()} status`") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)


def start_run(problem: Problem, config: Config, run_dir: Path, *,
              selector: Selector | None = None, stop: Stop | Sequence[Stop] | None = None,
              storage: Storage | None = None) -> Run:
    """Create the run in ``run_dir`` (its config and storage); ``selector``, ``stop`` and
    ``storage`` as in :func:`evolve`."""
    run_dir = Path(run_dir)
    if (run_dir / DB_NAME).exists() or run_storage_url(run_dir) is not None:
        if _initial_failed(run_dir):
            raise ConfigError(f"{run_dir} already holds a run whose initial program failed (it "
                              "cannot be resumed); start the new run in another --out directory, "
                              f"or delete {run_dir} first")
        raise ConfigError(f"{run_dir} already holds a run; continue it with `{command()} resume "
                          f"{run_dir}` or choose another --out directory")
    url = resolve_storage_url(config.storage.url, run_dir)
    if storage is None and is_postgres_url(url):
        if "#run=" not in url:  # a name of its own, recorded in config.yaml for resume
            from evoforge.storages.postgres import unique_run_url

            url = unique_run_url(url, run_dir.absolute().name)
        config = config.model_copy(update={"storage": config.storage.model_copy(
            update={"url": url})})
    if storage is None and storage_exists(url):
        if is_postgres_url(url):
            raise ConfigError(f"storage.url {redact(url)!r} names a run that already exists in "
                              "that database; one run per name: choose another #run=NAME (or "
                              "leave it out for a new one)")
        raise ConfigError(f"storage.url {config.storage.url!r} names an existing database "
                          f"({url.removeprefix('sqlite:///')}); one run per database: choose a "
                          "new path")
    run_dir.mkdir(parents=True, exist_ok=True)
    import yaml

    # written first: it is how `resume` and `status` find a storage outside the run dir
    _atomic_write(run_dir / "config.yaml",
                  yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
    if storage is None:
        storage = open_storage(url, reconnect_timeout=config.storage.reconnect_timeout)
    elif storage.stats()["next_id"] != 0:
        raise ConfigError("the storage passed to evolve() already holds programs; one run per "
                          "storage: pass a new one, or continue it with resume(storage=...)")
    run = Run(problem, config, storage, selector or make_selector(config), run_dir,
              stop=_stops(config, stop))
    run.write_metadata()
    return run


def _initial_failed(run_dir: Path) -> bool:
    """Whether the run in ``run_dir`` stopped at its initial program (nothing ok, nothing else)."""
    try:
        with open_storage(require_run_dir(run_dir), readonly=True) as s:
            st = s.stats()
    except EvoforgeError:
        return False
    return st["counts"].get("ok", 0) == 0 and st["done"] == 1 and st["pending"] == 0


def _stops(config: Config, stop: Stop | Sequence[Stop] | None) -> AnyOf:
    return stop_from_config(config, stop)


def open_existing(run_dir: str | Path, *, overrides: list[str] | tuple[str, ...] = (),
                  flags: dict[str, Any] | None = None, readonly: bool = False,
                  storage: Storage | None = None) -> tuple[Config, Any]:
    """Open a run's storage (or use ``storage``) and rebuild its config (with optional
    overrides). Reads only the run directory: inspecting a run never depends on its problem
    directory. ``run_dir`` may also be a ``postgresql://...#run=NAME`` reference (a string):
    no run directory is needed then."""
    label = redact(str(run_dir)) if is_storage_reference(run_dir) else str(Path(run_dir))
    if storage is None:
        url = locate_run(run_dir)
        if not readonly and is_postgres_url(url) and not storage_exists(url):
            raise StorageError(f"{label}: its run {redact(url)} is not in that database (was it "
                               "deleted, or is storage.url in its config.yaml wrong?); nothing "
                               "to continue")
        storage = open_storage(url, readonly=readonly)
    raw = storage.get_meta("config")
    if raw is None:
        storage.close()
        raise StorageError(f"{label}: the run has no stored config (was it started by evoforge?)")
    config = build_config(Layer(raw, f"{label} (stored config)"), *override_layers(overrides),
                          *_flag_layers(flags), source=f"{label} (stored config)")
    if hasattr(storage, "reconnect_timeout"):  # PostgreSQL: this session's setting
        storage.reconnect_timeout = config.storage.reconnect_timeout
    return config, storage


def evolve(problem: str | Path | Problem, *, run_dir: str | Path,
           config: Config | None = None, on_event: Callable[[Program], None] | None = None,
           on_run: Callable[[Run], None] | None = None, mutator: Mutator | None = None,
           executor: Executor | None = None, selector: Selector | None = None,
           stop: Stop | Sequence[Stop] | None = None,
           storage: Storage | None = None) -> RunOutcome:
    """Start a new run and drive it to a stop. Blocking; use from scripts and the CLI.

    ``mutator``, ``executor``, ``selector`` and ``storage`` replace the ones the config would
    build (the run closes them when it stops; a given storage must be empty, and `resume` then
    needs it too); ``stop`` adds conditions to the config's budget (see :mod:`evoforge.stop`)."""
    prob = problem if isinstance(problem, Problem) else Problem.load(problem)
    prob.check_tools()
    if config is None:
        prob.report_config()
    cfg = config or build_config(prob.config_layer())
    own = mutator is None
    if mutator is None:  # a bad --replay or --record file fails here, before a run dir exists
        mutator = make_mutator(cfg)
    driving = False
    built: Executor | None = None
    try:
        if executor is None and cfg.executor.name == "ray":
            # an unreachable cluster fails here too, before a run dir exists
            built = _executor(prob, cfg, Path(run_dir).expanduser().absolute())
        with run_lock(Path(run_dir)):
            run = start_run(prob, cfg, Path(run_dir), selector=selector, stop=stop,
                            storage=storage)
            try:
                if on_run:
                    on_run(run)
                driving = True  # from here on, _drive closes the mutator
                return asyncio.run(_drive(run, cfg, prob, on_event, mutator, executor, built))
            finally:
                run.storage.close()
    finally:
        if not driving:
            if own:
                asyncio.run(mutator.aclose())
            if built is not None:
                asyncio.run(built.aclose())


def resume(run_dir: str | Path, *, overrides: list[str] | tuple[str, ...] = (),
           flags: dict[str, Any] | None = None, on_event: Callable[[Program], None] | None = None,
           on_run: Callable[[Run], None] | None = None, mutator: Mutator | None = None,
           executor: Executor | None = None, selector: Selector | None = None,
           stop: Stop | Sequence[Stop] | None = None,
           storage: Storage | None = None) -> RunOutcome:
    """Continue a stopped or killed run: committed work is kept, pending work is evaluated.
    ``mutator``, ``executor``, ``selector``, ``stop`` and ``storage`` as in :func:`evolve` (a
    selector is rebuilt from the stored programs)."""
    if storage is None:  # not a run: say so before the lock creates anything there
        require_run_dir(Path(run_dir))
    with run_lock(Path(run_dir)):
        return _resume(Path(run_dir), overrides, flags, on_event, on_run, mutator, executor,
                       selector, stop, storage)


def _resume(run_dir: Path, overrides: list[str] | tuple[str, ...], flags: dict[str, Any] | None,
            on_event: Callable[[Program], None] | None,
            on_run: Callable[[Run], None] | None, mutator: Mutator | None = None,
            executor: Executor | None = None, selector: Selector | None = None,
            stop: Stop | Sequence[Stop] | None = None,
            given: Storage | None = None) -> RunOutcome:
    cfg, storage = open_existing(run_dir, overrides=overrides, flags=flags, storage=given)
    try:
        ppath = storage.get_meta("problem_path")
        if not ppath or not Path(ppath).is_dir():
            raise StorageError(f"the problem directory of this run ({ppath}) no longer exists; "
                               "restore it to resume")
        files = storage.get_meta("problem_files")
        # a problem directory, not OpenEvolve's pair of files
        default = files is None or in_directory_form(ppath, files[0], files[1])
        problem = Problem.load(ppath) if default else Problem.from_files(*files)
        problem.check_tools()
        warning = check_problem_unchanged(storage, problem)
        if warning:
            log.warning(warning)
        storage.set_meta("config", cfg.model_dump(mode="json"))
        run = Run(problem, cfg, storage, selector or make_selector(cfg), run_dir,
                  stop=_stops(cfg, stop))
        run.rebuild()
        if on_run:
            on_run(run)
        return asyncio.run(_drive(run, cfg, problem, on_event, mutator, executor))
    finally:
        storage.close()


def integrity(form: str, sandbox: str) -> dict[str, Any]:
    """How well a run's scores are protected from the candidates (stored in the run's metadata
    and in best.json; shown by ``evoforge run`` and ``evoforge status``)."""
    if form == "hardened" and sandbox == "bubblewrap":
        protected, summary = True, (
            "protected: hardened evaluator, the candidate runs in its own bubblewrap sandbox and "
            "answers over a JSON channel")
    elif form == "custom":
        protected, summary = False, (
            f"unknown: a custom executor ({sandbox}); evoforge cannot vouch for how it keeps "
            "candidates from their scores")
    elif form == "hardened":
        protected, summary = False, (
            f"partial: hardened evaluator, but the {sandbox} sandbox does not keep a candidate "
            "away from the evaluator's process (install bubblewrap)")
    else:
        protected, summary = False, (
            "UNPROTECTED: plain evaluator form, the candidate runs inside the evaluator's process "
            "and can tamper with the checks; write evaluate(candidate) (README, 'Security')")
    return {"form": form, "sandbox": sandbox, "protected": protected, "summary": summary}


def describe_integrity(problem: Problem, config: Config) -> str:
    from evoforge.sandbox import make_sandbox

    return integrity(problem.form, make_sandbox(config.evaluation.sandbox).name)["summary"]


def describe_mutator(config: Config) -> str:
    kind = mutator_kind(config)
    if kind == "model_free":
        if config.llm.configured:  # chosen, though a model is configured
            return "model-free mutator (mutator.name: model_free; llm.models is not used)"
        return "model-free mutator (no LLM configured; set llm.models to use one)"
    models = ", ".join(m.name for m in config.llm.models)
    if kind == "bandit":
        arms = [f"{m} x {'/'.join(config.mutator.bandit_edit_modes)}" for m in models.split(", ")
                if m] + (["model-free"] if config.mutator.bandit_model_free or not models else [])
        from evoforge.registry import bandit_tuning_enabled

        if bandit_tuning_enabled(config):
            arms.append("constant tuning")
        return "bandit over " + ", ".join(arms)
    return f"LLM mutator: {models} at {config.llm.base_url or 'https://api.openai.com/v1'}"


@contextlib.contextmanager
def inspect_run(run_dir: str | Path) -> Iterator[tuple[Config, Any]]:
    """Open a run read-only (safe while it is running)."""
    cfg, storage = open_existing(run_dir, readonly=True)
    try:
        yield cfg, storage
    finally:
        storage.close()
