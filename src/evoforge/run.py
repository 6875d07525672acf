"""Run: one search. ``ask()`` gives a Proposal, ``tell()`` records a result.

The Run is the single writer to Storage. It keeps the Selector index in memory and rebuilds it
from Storage on resume by replaying every committed program in commit order.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from evoforge import __version__
from evoforge.config import Config
from evoforge.errors import StorageError
from evoforge.invocation import command
from evoforge.mutators.base import MutationOutcome, MutationRequest
from evoforge.problem import Problem
from evoforge.program import EvalResult, MutationInfo, Program, Status
from evoforge.rebase import REBASED, Rebaser
from evoforge.selectors.base import Selection, Selector
from evoforge.stop import AnyOf, Stop
from evoforge.stop import from_config as stop_from_config
from evoforge.storages.base import Storage

DB_NAME = "evoforge.db"


def derive_rng(seed: int, *parts: object) -> random.Random:
    """A component RNG derived from the run seed (string seeding is stable across processes)."""
    return random.Random(":".join(str(p) for p in (seed, *parts)))


@dataclass(frozen=True)
class Proposal:
    id: int
    selection: Selection
    view: int  # results committed when the proposal was made (for staleness accounting)


@dataclass
class Tally:
    """Live counters for progress and stop conditions (rebuilt from Storage on resume)."""

    counts: Counter[str] = field(default_factory=Counter)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    pending_cost: float = 0.0  # LLM cost of children stored but not evaluated yet (already spent)
    done: int = 0
    done_this_session: int = 0
    consecutive_llm_failures: int = 0
    last_llm_error: str = ""
    llm_calls: int = 0  # LLM proposals answered (or given up) this session
    llm_call_cost: float = 0.0  # ... and what they were billed
    best_history: list[tuple[int, float]] = field(default_factory=list)  # (done_seq, score)


class Run:
    def __init__(self, problem: Problem, config: Config, storage: Storage, selector: Selector,
                 run_dir: Path, stop: Stop | None = None, rebaser: Rebaser | None = None) -> None:
        self.problem = problem
        self.config = config
        #: when to stop (the config's budget unless given; see evoforge.stop)
        self.stop: AnyOf = stop if isinstance(stop, AnyOf) else stop_from_config(config, stop)
        self.storage = storage
        self.selector = selector
        self.run_dir = Path(run_dir)
        self.tally = Tally()
        #: moves stale children's edits onto better descendants of their parents (evoforge.rebase)
        self.rebaser = rebaser if rebaser is not None else (
            Rebaser(self.better) if config.pipeline.rebase else None)
        self._best: Program | None = None
        self.initial_score: float | None = None
        stats = storage.stats()
        self._next_id: int = stats["next_id"]
        self._next_done: int = stats["next_done_seq"]
        self.started = time.monotonic()
        self.integrity: dict[str, Any] | None = None  # set by the driver once the executor exists
        self.llm_in_flight = 0  # LLM calls outstanding (kept by the pipeline, for cost limits)

    # ---------------------------------------------------------------- setup / resume
    def write_metadata(self) -> None:
        s = self.storage
        s.set_meta("evoforge_version", __version__)
        s.set_meta("problem_path", str(self.problem.path))
        s.set_meta("problem_files", [str(self.problem.initial_program),  # resume finds them
                                     str(self.problem.evaluator)])
        s.set_meta("problem_fingerprint", self.problem.fingerprint())
        if self.problem.multi_file:  # its programs are packed trees (evoforge.program_files)
            s.set_meta("multi_file", True)
        s.set_meta("config", self.config.model_dump(mode="json"))
        s.set_meta("created_at", time.time())

    def rebuild(self) -> None:
        """Replay committed programs into the selector and counters (resume)."""
        for p in self.storage.programs():
            if p.status is Status.PENDING:
                self.tally.pending_cost += p.mutation.cost
                continue
            self._account(p)
            self.selector.add(p)
            if self.rebaser is not None:
                self.rebaser.observe(p)
            self._maybe_best(p, write=False)
        self._save_selector_meta()
        if self._best is not None:
            self._write_best(self._best)

    def pending(self) -> list[Program]:
        """Programs whose child code is stored but whose evaluation was never committed."""
        return list(self.storage.programs(status=Status.PENDING))

    def add_initial(self) -> Program:
        p = Program(id=self._take_id(), code=self.problem.initial_code, created_at=time.time(),
                    mutation=MutationInfo(mutator="initial"))
        self.storage.add_program(p)
        return p

    # ---------------------------------------------------------------- ask / tell
    def ask(self) -> Proposal:
        pid = self._take_id()
        sel = self.selector.select(derive_rng(self.config.seed, "select", pid))
        return Proposal(id=pid, selection=sel, view=self.tally.done)

    def ask_with(self, parent: Program) -> Proposal:
        """A proposal with ``parent`` chosen by the caller, not the selector (the initial
        program, while the selector is still empty)."""
        return Proposal(id=self._take_id(), selection=Selection(parent=parent),
                        view=self.tally.done)

    def mutation_request(self, proposal: Proposal) -> MutationRequest:
        sel = proposal.selection
        return MutationRequest(parent=sel.parent, others=sel.others, context=sel.context,
                               rng=derive_rng(self.config.seed, "mutate", proposal.id),
                               task=self.problem.task, language=self.problem.language,
                               proposal_id=proposal.id)

    def record_child(self, proposal: Proposal, outcome: MutationOutcome) -> Program:
        """Store the child: pending (to be evaluated) or, when no usable child was made, invalid."""
        sel = proposal.selection
        base = outcome.parent if outcome.parent is not None else sel.parent
        parents = ((base.id,) if outcome.parent is not None
                   else (sel.parent.id, *(o.id for o in sel.others)))
        info = replace(outcome.info, view=proposal.view,
                       staleness=self.tally.done - proposal.view,
                       selected=sel.parent.id if base.id != sel.parent.id else None,
                       explored=sel.explored if base.id == sel.parent.id else None)
        code, island = outcome.code, base.island if outcome.parent is not None else sel.island
        # a mutator's own parent (a tuning trial) is kept; else a stale exploiting pick's
        # edit may move onto a better descendant of its parent (evoforge.rebase)
        moved = (self.rebaser.rebase(sel, code, proposal.view)
                 if self.rebaser is not None and code is not None and outcome.parent is None
                 else None)
        if moved is not None:  # the same pick, made on the better descendant
            code, base = moved
            parents = (base.id,)
            note = (f"{REBASED}the edit of #{sel.parent.id} moved onto #{base.id}, its "
                    f"better descendant committed meanwhile; {info.note}").rstrip("; ")
            info = replace(info, selected=sel.parent.id, explored=sel.explored, note=note)
        p = Program(id=proposal.id, code=code or "", parent_ids=parents, island=island,
                    generation=base.generation + 1, mutation=info,
                    created_at=time.time())
        if outcome.info.mutator == "llm":
            self.tally.llm_calls += 1
            self.tally.llm_call_cost += outcome.info.cost
            if outcome.code is None and outcome.info.note.startswith("llm:"):
                self.tally.consecutive_llm_failures += 1
                self.tally.last_llm_error = outcome.info.note
            else:
                self.tally.consecutive_llm_failures = 0
        reason = ""
        if outcome.code is None:
            reason = outcome.info.note or "the mutator produced no child"
        elif code == base.code:
            reason = "child is identical to its parent (nothing changed)"
        if reason:
            done = self.tell(p, EvalResult(status=Status.INVALID, reason=reason), insert=True)
        else:
            self.storage.add_program(p)
            self.tally.pending_cost += p.mutation.cost
            done = p
        if outcome.exchange is not None:  # after the program: a crash between loses only this
            self.storage.add_exchange(p.id, outcome.exchange)
        return done

    def tell(self, program: Program, result: EvalResult, *, insert: bool = False) -> Program:
        """Commit a result (one transaction), then index it. Returns the committed program.
        ``insert``: the program was never stored as pending (an invalid child): insert it
        with its result instead of recording the result of the stored pending program."""
        done = program.with_result(result, done_seq=self._next_done, evaluated_at=time.time())
        if done.status is Status.OK:
            done = replace(done, features=self.selector.features(done))
        if insert:
            self.storage.add_program(done)
        else:
            self.storage.record_result(done)
            self.tally.pending_cost = max(self.tally.pending_cost - program.mutation.cost, 0.0)
        self._next_done += 1
        self._account(done)
        self.tally.done_this_session += 1
        self.selector.add(done)
        if self.rebaser is not None:
            self.rebaser.observe(done)
        self._save_selector_meta()
        self._maybe_best(done, write=True)
        return done

    # ---------------------------------------------------------------- queries
    @property
    def best(self) -> Program | None:
        return self._best

    def would_be_best(self, score: float) -> bool:
        return self._best is None or self.better(score, self._best.score)  # type: ignore[arg-type]

    def better(self, a: float, b: float) -> bool:
        return a < b if self.config.minimize else a > b

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def mean_call_cost(self) -> float | None:
        """What an LLM proposal has cost on average this session (None before the first)."""
        t = self.tally
        return t.llm_call_cost / t.llm_calls if t.llm_calls else None

    def can_afford_call(self) -> bool:
        """Whether one more LLM call fits ``max_cost`` with the calls in flight, each counted
        at the mean cost so far (until a first call has returned, one call at a time)."""
        budget = self.config.max_cost
        if budget is None:
            return True
        mean = self.mean_call_cost()
        if mean is None:
            return self.llm_in_flight == 0
        spent = self.tally.cost + self.tally.pending_cost
        return spent + (self.llm_in_flight + 1) * mean <= budget

    def stop_reason(self, in_flight: int = 0) -> str | None:
        """Why no new proposal should be made now (None: keep going). The one place that
        asks the run's stop conditions."""
        return self.stop.reason(self, in_flight)

    # ---------------------------------------------------------------- internals
    def _take_id(self) -> int:
        pid = self._next_id
        self._next_id += 1
        return pid

    def _save_selector_meta(self) -> None:
        """Keep what the selector publishes (a Pareto front and its hypervolume) in the run's
        metadata; replay rebuilds it, so a crash between a result and this loses nothing."""
        state = self.selector.run_meta()
        if state is not None:
            self.storage.set_meta(*state)

    def _account(self, p: Program) -> None:
        t = self.tally
        t.counts[p.status.value] += 1
        t.done += 1
        t.prompt_tokens += p.mutation.prompt_tokens
        t.completion_tokens += p.mutation.completion_tokens
        t.cost += p.mutation.cost

    def _maybe_best(self, p: Program, *, write: bool) -> None:
        if p.status is not Status.OK or p.score is None:
            return
        if p.id == 0:
            self.initial_score = p.score
        if self._best is None or self.better(p.score, self._best.score):  # type: ignore[arg-type]
            self._best = p
            self.tally.best_history.append((p.done_seq or 0, p.score))
            if write:
                self._write_best(p)

    def write_best(self) -> None:
        """(Re)write best_program.* and best.json for the current best, if there is one."""
        if self._best is not None:
            self._write_best(self._best)

    def _write_best(self, p: Program) -> None:
        """Atomically write the best program and its record beside the database."""
        path = self.best_path
        if self.problem.multi_file:
            _atomic_write_tree(path, p.code)
        else:
            _atomic_write(path, p.code)
        info: dict[str, Any] = {"id": p.id, "score": p.score, "metrics": p.metrics,
                                "generation": p.generation, "parent_ids": list(p.parent_ids)}
        if self.integrity is not None:
            info["integrity"] = self.integrity
        _atomic_write(self.run_dir / "best.json", json.dumps(info, indent=2, allow_nan=False))

    @property
    def best_path(self) -> Path:
        """``best_program.py`` (the initial program's suffix), or the directory
        ``best_program/`` for a program of several files."""
        if self.problem.multi_file:
            return self.run_dir / "best_program"
        return self.run_dir / ("best_program" + self.problem.initial_program.suffix)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _atomic_write_tree(path: Path, code: str) -> None:
    """Write the packed tree ``code`` as the directory ``path``, replacing it whole: built
    beside it, then swapped in by two renames (a reader sees the old tree, the new one, or for
    the instant between the renames none; never a mix). Anything at ``path`` other than a
    directory (a file, a symlink) is an error naming it, not replaced."""
    import shutil

    from evoforge.program_files import unpack, write_tree

    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise StorageError(f"{path} exists and is not a directory; move it away so the best "
                           "program's files can be written there")
    tmp = path.with_name(f".{path.name}.tmp")
    old = path.with_name(f".{path.name}.old")
    for d in (tmp, old):
        shutil.rmtree(d, ignore_errors=True)
    write_tree(tmp, unpack(code))
    if path.is_dir():
        os.replace(path, old)
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)


def check_problem_unchanged(storage: Storage, problem: Problem) -> str | None:
    """A warning when the problem's files changed since the run started."""
    old = storage.get_meta("problem_fingerprint")
    if old and old != problem.fingerprint():
        return (f"the problem at {problem.path} changed since this run started (initial program or "
                "evaluator differ); scores before and after may not be comparable")
    return None


def _recorded_storage_url(run_dir: Path) -> str | None:
    """The ``storage.url`` a run directory's ``config.yaml`` records, if any."""
    import yaml

    try:
        data = yaml.safe_load((Path(run_dir) / "config.yaml").read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError):
        return None
    storage = data.get("storage") if isinstance(data, dict) else None
    url = storage.get("url") if isinstance(storage, dict) else None
    return url if isinstance(url, str) and url.strip() else None


def run_storage_url(run_dir: Path) -> str | None:
    """Where the run in ``run_dir`` is stored: its ``evoforge.db``, or the storage its
    ``config.yaml`` names (a custom ``storage.url``), if that exists; else None. A PostgreSQL
    URL is returned as recorded (with its ``#run=NAME``): whether the run is in that database
    is for opening it to tell."""
    from evoforge.storages import is_postgres_url, resolve_storage_url, sqlite_path

    if (Path(run_dir) / DB_NAME).is_file():
        return resolve_storage_url(None, run_dir)
    url = _recorded_storage_url(run_dir)
    if url is None:
        return None
    try:
        resolved = resolve_storage_url(url, run_dir)
    except StorageError:
        return None
    if is_postgres_url(resolved):
        return resolved if "#run=" in resolved else None
    return resolved if Path(sqlite_path(resolved)).is_file() else None


def is_storage_reference(ref: str | Path) -> bool:
    """Whether ``ref`` (a command-line argument) is a storage URL rather than a run directory."""
    from evoforge.storages import is_postgres_url

    return isinstance(ref, str) and is_postgres_url(ref)


def locate_run(ref: str | Path) -> str:
    """The storage URL of a run given as a run directory or as a
    ``postgresql://...#run=NAME`` reference (which needs no run directory)."""
    if is_storage_reference(ref):
        from evoforge.storages import redact, resolve_storage_url

        url = resolve_storage_url(str(ref), Path.cwd())
        if "#run=" not in url:
            raise StorageError(f"{redact(str(ref))} names a database, not a run: add #run=NAME "
                               f"(`{command()} status {redact(str(ref))}` lists its runs)")
        return url
    return require_run_dir(Path(ref))


def require_run_dir(run_dir: Path) -> str:
    """The storage URL of the run in ``run_dir``, or a StorageError saying it holds none."""
    url = run_storage_url(run_dir)
    if url is None:
        raise StorageError(f"{run_dir} is not a run directory (no {DB_NAME}, and no config.yaml "
                           f"naming an existing storage); start one with "
                           f"`{command()} run PROBLEM --out DIR`")
    return url
