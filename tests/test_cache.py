"""No evaluation twice (issue 11): the same code (formatting and comments aside) or the same
evaluator fingerprint gets the earlier result instead of an evaluation; duplicates in flight wait
for the first; re-verification still guards the best; resume keeps the cache; a hostile
candidate cannot claim a good program's fingerprint in the hardened form."""

from __future__ import annotations

import asyncio
import hashlib
import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from evoforge import api
from evoforge.cli import app
from evoforge.config import build_config
from evoforge.executors.base import Executor
from evoforge.executors.cache import Caching, code_key, saved_by_cache
from evoforge.executors.local import LocalExecutor
from evoforge.executors.reverify import Reverifying
from evoforge.problem import Problem
from evoforge.program import EvalResult, Program, Status
from evoforge.storages import SQLiteStorage
from evoforge.testing import FunctionExecutor, FunctionMutator

FIXTURES = Path(__file__).parent / "fixtures" / "evaluators"

PROGRAM = "def f(x):\n    return x * x  # square it\n"
REFORMATTED = '# the same program, restyled\n\ndef f( x ):\n    return (x*x)\n\n\n'


def counting(fn: Any = lambda code: float(len(code.split()))) -> tuple[FunctionExecutor, list[str]]:
    calls: list[str] = []

    def counted(code: str) -> Any:
        calls.append(code)
        return fn(code)

    return FunctionExecutor(counted, slots=4), calls


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# -- the code key ------------------------------------------------------------------------------


def test_a_reformatted_duplicate_is_a_hit_and_is_not_evaluated() -> None:
    inner, calls = counting(lambda code: 7.0)
    cache = Caching(inner)

    async def go() -> tuple[EvalResult, EvalResult]:
        return (await cache.evaluate(PROGRAM, program_id=12),
                await cache.evaluate(REFORMATTED, program_id=13))

    first, again = run(go())
    assert calls == [PROGRAM]  # the duplicate never reached the evaluator
    assert again.status is Status.OK and again.score == 7.0
    assert again.artifacts["cached"].startswith("same code as #12: ")
    assert "cached" not in first.artifacts and again.eval_time == 0.0
    assert cache.saved == {"code": 1}


@pytest.mark.parametrize("other", [
    "def f(x):\n    return x * x + 1\n",  # another constant
    "def f(x):\n    return x * x * 1.0\n",  # 1 and 1.0 are different values
    "def f(y):\n    return y * y\n",  # another name
    'def f(x):\n    """Square."""\n    return x * x\n',  # a docstring is a value
])
def test_a_semantically_different_program_is_evaluated(other: str) -> None:
    inner, calls = counting()
    cache = Caching(inner)

    async def go() -> EvalResult:
        await cache.evaluate(PROGRAM, program_id=1)
        return await cache.evaluate(other, program_id=2)

    r = run(go())
    assert calls == [PROGRAM, other] and "cached" not in r.artifacts and not cache.saved


def test_code_keys_by_language_and_mode() -> None:
    assert code_key(PROGRAM) == code_key(REFORMATTED)
    assert code_key(PROGRAM, mode="exact") != code_key(REFORMATTED, mode="exact")
    assert code_key(PROGRAM, mode="exact") == code_key(PROGRAM, mode="exact")
    c = "int f(int x) {\n  return x * x;\n}\n"
    assert code_key(c, "c") == code_key("int f(int x) {   \n\n  return x * x;\t\n}", "c")
    assert code_key(c, "c") != code_key(c.replace("  return", "return"), "c")  # not reflowed
    assert code_key("a\n\nb\n", "text") != code_key("a\nb\n", "text")  # text: exact
    assert code_key("x = 1\n", "python") != code_key("x = 1\n", "c")
    broken = "def f(:\n"  # no syntax tree: exact text
    assert code_key(broken) == code_key(broken) != code_key(broken + "\n")
    assert code_key("s = '\\d'\n") == code_key("s = '\\d'  # a regex\n")  # no warning either
    latin = "# -*- coding: latin-1 -*-\ns = 'é'\n"  # the declaration changes how it is read
    assert code_key(latin) != code_key(latin.replace("latin-1", "utf-8"))


def test_concurrent_duplicates_wait_for_the_first_and_share_its_result() -> None:
    release = asyncio.Event()
    calls: list[str] = []

    async def slow(code: str) -> float:
        calls.append(code)
        await release.wait()
        return 3.0

    cache = Caching(FunctionExecutor(slow, slots=4))

    async def go() -> list[EvalResult]:
        tasks = [asyncio.ensure_future(cache.evaluate(code, program_id=i))
                 for i, code in enumerate([PROGRAM, REFORMATTED, PROGRAM + "\n# again\n"], 1)]
        while not calls:
            await asyncio.sleep(0)  # one step of the loop: the first is evaluating
        for _ in range(5):
            await asyncio.sleep(0)
        assert len(calls) == 1  # the duplicates are waiting, not evaluating
        release.set()
        return await asyncio.gather(*tasks)

    results = run(go())
    assert len(calls) == 1
    assert [r.score for r in results] == [3.0, 3.0, 3.0]
    assert [r.artifacts.get("cached", "")[:15] for r in results] == \
        ["", "same code as #1", "same code as #1"]
    assert cache.saved == {"code": 2}


@pytest.mark.parametrize("status", [Status.TIMEOUT, Status.CRASHED])
def test_timeouts_and_crashes_are_evaluated_again(status: Status) -> None:
    outcomes = iter([EvalResult(status, reason="slow machine"), EvalResult(Status.OK, score=1.0),
                     EvalResult(Status.OK, score=9.0)])
    inner, calls = counting(lambda code: next(outcomes))
    cache = Caching(inner)

    async def go() -> list[EvalResult]:
        return [await cache.evaluate(PROGRAM, program_id=i) for i in (1, 2, 3)]

    results = run(go())
    assert [r.status for r in results] == [status, Status.OK, Status.OK]
    assert len(calls) == 2 and results[2].score == 1.0  # the third reuses the second
    assert results[2].artifacts["cached"].startswith("same code as #2")


def test_when_the_first_times_out_one_waiting_duplicate_evaluates() -> None:
    release = asyncio.Event()
    calls: list[str] = []

    async def fn(code: str) -> Any:
        calls.append(code)
        if len(calls) == 1:
            await release.wait()
            return EvalResult(Status.TIMEOUT, reason="exceeded")
        return 2.0

    cache = Caching(FunctionExecutor(fn, slots=4))

    async def go() -> list[EvalResult]:
        tasks = [asyncio.ensure_future(cache.evaluate(PROGRAM, program_id=i)) for i in (1, 2, 3)]
        while not calls:
            await asyncio.sleep(0)
        release.set()
        return await asyncio.gather(*tasks)

    first, second, third = run(go())
    assert len(calls) == 2  # the first, then one of the waiting two; the other reuses it
    assert first.status is Status.TIMEOUT and second.score == third.score == 2.0
    assert third.artifacts["cached"].startswith("same code as #2")


def test_a_cancelled_first_lets_a_waiting_duplicate_evaluate() -> None:
    calls: list[str] = []
    hold = asyncio.Event()

    async def fn(code: str) -> float:
        calls.append(code)
        if len(calls) == 1:
            await hold.wait()  # never set: the first is cancelled
        return 4.0

    cache = Caching(FunctionExecutor(fn, slots=4))

    async def go() -> EvalResult:
        first = asyncio.ensure_future(cache.evaluate(PROGRAM, program_id=1))
        while not calls:
            await asyncio.sleep(0)
        second = asyncio.ensure_future(cache.evaluate(REFORMATTED, program_id=2))
        await asyncio.sleep(0)
        first.cancel()
        return await second

    r = run(go())
    assert r.score == 4.0 and "cached" not in r.artifacts and len(calls) == 2


def test_only_recent_results_are_held_older_ones_are_read_back() -> None:
    """With a loader (a run's storage), memory holds the last ``keep`` results; a duplicate of
    an older one reads it back, and one whose stored result is gone is evaluated."""
    stored: dict[int, EvalResult] = {}
    reads: list[int] = []

    def load(pid: int) -> EvalResult | None:
        reads.append(pid)
        return stored.get(pid)

    inner, calls = counting(lambda code: float(len(code)))
    cache = Caching(inner, load=load, keep=2)

    async def go(codes: dict[int, str]) -> dict[int, EvalResult]:
        out = {}
        for pid, code in codes.items():
            out[pid] = await cache.evaluate(code, program_id=pid)
            stored.setdefault(pid, out[pid])  # the run commits it
        return out

    codes = {i: f"x = {i}\n" for i in range(1, 5)}
    run(go(codes))
    assert [e.result is None for e in cache._by_code.values()] == [True, True, False, False]
    again = run(go({5: "x = (1)\n", 6: "x = 4  # held\n"}))
    assert reads == [1] and len(calls) == 4  # #1 read back, #4 still held
    assert again[5].artifacts["cached"].startswith("same code as #1")
    del stored[2]
    run(go({7: "x = 2\n"}))
    assert reads == [1, 2] and len(calls) == 5  # no stored result: evaluated


# -- re-verification ---------------------------------------------------------------------------


def test_a_duplicate_of_a_reverified_best_reuses_the_verified_result() -> None:
    """The cache wraps re-verification: the would-be best is evaluated twice (once more to
    reproduce), its duplicate not at all, and carries the verification it reuses."""
    inner, calls = counting(lambda code: 5.0)
    cache = Caching(Reverifying(inner, times=1, tolerance=1e-6, worth=lambda s: s > 1))

    async def go() -> tuple[EvalResult, EvalResult]:
        return (await cache.evaluate(PROGRAM, program_id=1),
                await cache.evaluate(REFORMATTED, program_id=2))

    best, dup = run(go())
    assert len(calls) == 2
    assert best.artifacts["reverify"] == dup.artifacts["reverify"] == \
        "reproduced 1x in fresh processes: 5, 5"
    assert dup.artifacts["cached"].startswith("same code as #1")


def test_a_concurrent_duplicate_of_a_would_be_best_shares_its_verification() -> None:
    release = asyncio.Event()
    calls: list[str] = []

    async def fn(code: str) -> float:
        calls.append(code)
        await release.wait()
        return 5.0

    cache = Caching(Reverifying(FunctionExecutor(fn, slots=4), times=1, tolerance=1e-6,
                                worth=lambda s: True))

    async def go() -> list[EvalResult]:
        tasks = [asyncio.ensure_future(cache.evaluate(code, program_id=i))
                 for i, code in ((1, PROGRAM), (2, REFORMATTED))]
        while not calls:
            await asyncio.sleep(0)
        release.set()
        return await asyncio.gather(*tasks)

    first, dup = run(go())
    assert len(calls) == 2  # one evaluation and its re-verification: none for the duplicate
    assert "reproduced 1x" in first.artifacts["reverify"] and "reverify" in dup.artifacts


def test_a_result_reverification_rejected_is_not_reused() -> None:
    scores = iter([10.0, 1.0, 10.0, 10.0])
    inner, calls = counting(lambda code: next(scores))
    cache = Caching(Reverifying(inner, times=1, tolerance=1e-6, worth=lambda s: s > 5))

    async def go() -> tuple[EvalResult, EvalResult]:
        return (await cache.evaluate(PROGRAM, program_id=1),
                await cache.evaluate(REFORMATTED, program_id=2))

    flaky, again = run(go())
    assert flaky.status is Status.FAILED and flaky.reason.startswith("not reproducible:")
    assert len(calls) == 4  # evaluated and re-verified again: a non-reproducible verdict
    assert again.status is Status.OK and "cached" not in again.artifacts


def test_a_reused_score_never_beats_the_best_so_it_is_never_reverified(tmp_path: Path) -> None:
    """In a run, duplicates of would-be bests (a greedy search makes many) are answered from
    the cache; every evaluation the executor saw was the first of its code, and every best was
    re-verified in its own evaluation."""
    problem = _problem(tmp_path)
    inner, calls = counting(lambda code: float(code.split("X = ")[1].split("\n")[0]))
    cfg = build_config({"max_programs": 16, "selector": {"name": "greedy"},
                        "evaluation": {"workers": 2}})
    outcome = api.evolve(problem, run_dir=tmp_path / "r", config=cfg,
                         mutator=FunctionMutator(_count_up), executor=inner)
    programs = _stored(tmp_path / "r")
    cached = [p for p in programs if "cached" in p.artifacts]
    assert cached, "a greedy run with two slots proposes duplicates"
    evaluated = [p for p in programs if "cached" not in p.artifacts]
    reverified = [p for p in evaluated if "reverify" in p.artifacts]
    assert len(calls) == len(evaluated) + len(reverified)
    assert outcome.best is not None
    assert outcome.best.artifacts["reverify"].startswith("reproduced 1x")
    for p in cached:
        origin = int(p.artifacts["cached"].split("#")[1].split(":")[0])
        assert next(o for o in programs if o.id == origin).score == p.score


# -- runs: resume, status, config --------------------------------------------------------------

INITIAL = "# EVOLVE-BLOCK-START\nX = 0\n# EVOLVE-BLOCK-END\n"


def _problem(tmp_path: Path) -> Problem:
    d = tmp_path / "problem"
    d.mkdir(exist_ok=True)
    (d / "initial_program.py").write_text(INITIAL)
    (d / "evaluator.py").write_text("def evaluate(p):\n    return {'combined_score': 0.0}\n")
    return Problem.load(d)


def _count_up(request: Any) -> str:
    x = int(request.parent.code.split("X = ")[1].split("\n")[0])
    return INITIAL.replace("X = 0", f"X = {x + 1}")


def _stored(run_dir: Path) -> list[Program]:
    with SQLiteStorage(run_dir / "evoforge.db", readonly=True) as s:
        return list(s.programs())


def _scripted(codes: dict[int, str]) -> FunctionMutator:
    return FunctionMutator(lambda request: codes[request.proposal_id])


SCRIPT = {1: INITIAL.replace("X = 0", "X = 1"), 2: INITIAL.replace("X = 0", "X = 2"),
          3: INITIAL.replace("X = 0", "X  =  1   # one again"),  # duplicates of #1 and #2
          4: INITIAL.replace("X = 0", "X = (2)\n\n"), 5: INITIAL.replace("X = 0", "X = 3")}


def _score(code: str) -> float:
    return float(code.split("X")[1].split("=")[1].split("#")[0].strip().strip("()"))


def test_resume_keeps_the_cache_and_status_counts_what_it_saved(tmp_path: Path) -> None:
    problem = _problem(tmp_path)
    cfg = build_config({"max_programs": 3, "evaluation": {"workers": 1, "reverify": 0}})
    first, calls = counting(_score)
    api.evolve(problem, run_dir=tmp_path / "r", config=cfg, mutator=_scripted(SCRIPT),
               executor=first)
    assert calls == [INITIAL, SCRIPT[1], SCRIPT[2]]
    second, calls = counting(_score)
    api.resume(tmp_path / "r", flags={"max_programs": 6}, mutator=_scripted(SCRIPT),
               executor=second)
    assert calls == [SCRIPT[5]]  # #3 and #4 came from the stored #1 and #2
    programs = {p.id: p for p in _stored(tmp_path / "r")}
    assert programs[3].artifacts["cached"].startswith("same code as #1:")
    assert programs[4].artifacts["cached"].startswith("same code as #2:")
    assert (programs[3].score, programs[4].score, programs[5].score) == (1.0, 2.0, 3.0)
    assert saved_by_cache(programs.values()) == {"code": 2}
    shown = CliRunner().invoke(app, ["status", str(tmp_path / "r")])
    assert shown.exit_code == 0, shown.output
    assert "2 evaluations saved by the cache (2 same code, 0 same fingerprint; of 6 " \
        "programs)" in " ".join(shown.output.split())


@pytest.mark.parametrize("change", [["objective.score_metric=other"],
                                    ["evaluation.timeout=30"], ["evaluation.cache=exact"]])
def test_a_resume_with_other_settings_starts_the_cache_afresh(tmp_path: Path,
                                                              change: list[str]) -> None:
    problem = _problem(tmp_path)
    cfg = build_config({"max_programs": 3, "evaluation": {"workers": 1, "reverify": 0}})
    api.evolve(problem, run_dir=tmp_path / "r", config=cfg, mutator=_scripted(SCRIPT),
               executor=counting(_score)[0])
    second, calls = counting(lambda code: {"other": _score(code)})
    api.resume(tmp_path / "r", overrides=change, flags={"max_programs": 5},
               mutator=_scripted(SCRIPT), executor=second)
    if change == ["evaluation.cache=exact"]:  # the same context: reused by exact text only
        assert calls == [SCRIPT[3], SCRIPT[4]]  # the restyled duplicates are not exact
    else:
        assert calls == [SCRIPT[3], SCRIPT[4]]  # results of another context are not reused
        # and a later resume in the new context reuses what it evaluated
        third, calls = counting(lambda code: {"other": _score(code)})
        more = {**SCRIPT, 5: SCRIPT[3], 6: SCRIPT[4]}
        api.resume(tmp_path / "r", overrides=change, flags={"max_programs": 7},
                   mutator=_scripted(more), executor=third)
        assert calls == []


def test_the_cache_can_be_turned_off(tmp_path: Path) -> None:
    problem = _problem(tmp_path)
    inner, calls = counting(_score)
    cfg = build_config({"max_programs": 5, "evaluation": {"workers": 1, "reverify": 0,
                                                          "cache": False}})
    api.evolve(problem, run_dir=tmp_path / "r", config=cfg, mutator=_scripted(SCRIPT),
               executor=inner)
    assert len(calls) == 5 and not saved_by_cache(_stored(tmp_path / "r"))


# -- fingerprints ------------------------------------------------------------------------------


def fp_of(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


class Probing(Executor):
    """An in-process executor with fingerprints: ``probe(code)`` is the fingerprint value."""

    fingerprints = True

    def __init__(self, probe: Any) -> None:
        self.probe = probe
        self.full: list[str] = []
        self.release = asyncio.Event()
        self.release.set()

    @property
    def slots(self) -> int:
        return 8

    async def evaluate(self, code: str, *, program_id: int = 0,
                       fingerprint: Any = None) -> EvalResult:
        fp = fp_of(self.probe(code))
        if fingerprint is not None:
            ask = asyncio.ensure_future(fingerprint(fp))
            await asyncio.sleep(0)  # a known fingerprint is answered at once
            if ask.done() and ask.result() is not None:
                return ask.result()
            work = asyncio.ensure_future(self._full(code))
            done, _ = await asyncio.wait([ask, work], return_when=asyncio.FIRST_COMPLETED)
            if ask in done and ask.result() is not None:
                work.cancel()
                return ask.result()
            result = await work
            ask.cancel()
            return EvalResult(Status.OK, score=result, artifacts={"fingerprint": fp})
        return EvalResult(Status.OK, score=await self._full(code))

    async def _full(self, code: str) -> float:
        self.full.append(code)
        await self.release.wait()
        return float(len(code))


def test_equal_fingerprints_reuse_and_different_ones_do_not() -> None:
    inner = Probing(lambda code: code.count("a"))
    cache = Caching(inner)

    async def go() -> list[EvalResult]:
        return [await cache.evaluate(code, program_id=i)
                for i, code in enumerate(["x = 'a'", "y = 'a'", "z = 'aa'"], 1)]

    a, same, other = run(go())
    assert inner.full == ["x = 'a'", "z = 'aa'"]
    assert same.score == a.score and same.artifacts["cached"].startswith(
        "same fingerprint as #1: its result reused, not evaluated in full")
    assert "cached" not in other.artifacts and cache.saved == {"fingerprint": 1}


def test_a_fingerprint_in_flight_is_waited_for_while_the_second_keeps_running() -> None:
    inner = Probing(lambda code: 1)
    inner.release.clear()
    cache = Caching(inner)

    async def go() -> list[EvalResult]:
        first = asyncio.ensure_future(cache.evaluate("a = 1", program_id=1))
        second = asyncio.ensure_future(cache.evaluate("b = 1", program_id=2))
        while len(inner.full) < 2:
            await asyncio.sleep(0)  # both are running: the second waits and works
        inner.release.set()
        return await asyncio.gather(first, second)

    first, second = run(go())
    assert first.score == 5.0 and second.score == 5.0  # whichever ended first answered


def test_resume_keeps_the_fingerprints() -> None:
    stored = Program(id=7, code="q = 1", status=Status.OK, score=2.5, done_seq=3,
                     artifacts={"fingerprint": fp_of([1, 4, 9])})
    inner = Probing(lambda code: [1, 4, 9])
    cache = Caching(inner)
    assert cache.seed([stored, Program(id=8, code="pending")]) == 1
    r = run(cache.evaluate("def f(): pass", program_id=9))
    assert inner.full == [] and r.score == 2.5
    assert r.artifacts["cached"].startswith("same fingerprint as #7")


# -- fingerprints through the worker -----------------------------------------------------------


def local(tmp_path: Path, evaluator: str, **kw: Any) -> LocalExecutor:
    kw.setdefault("timeout", 30.0)
    return LocalExecutor(FIXTURES, evaluator=evaluator, scratch_root=tmp_path / "scratch", **kw)


SQUARE = "def f(x):\n    return x * x\n"
# the same on the probes (1, 2, 3), hangs on every other input: only a reuse answers for it
SQUARE_ON_PROBES = textwrap.dedent("""\
    import select
    HANG = True
    def f(x):
        if x in (1, 2, 3):
            return x ** 2
        select.select([], [], [])
    """)
CUBE = "def f(x):\n    return x * x * x\n"


def _each(ex: Executor, codes: list[str]) -> list[EvalResult]:
    async def go() -> list[EvalResult]:
        try:
            return [await ex.evaluate(code, program_id=i) for i, code in enumerate(codes, 1)]
        finally:
            await ex.aclose()

    return run(go())


@pytest.mark.parametrize(("evaluator", "persistent"), [
    ("fingerprint_plain.py", True),
    ("fingerprint_hardened.py", True),
    ("fingerprint_hardened.py", False),
])
def test_a_worker_fingerprint_cuts_the_evaluation_short(tmp_path: Path, evaluator: str,
                                                        persistent: bool) -> None:
    ex = local(tmp_path, evaluator, persistent_evaluator=persistent, warm_pool=False)
    cache = Caching(ex)
    square, same, cube, after = _each(cache, [SQUARE, SQUARE_ON_PROBES, CUBE, SQUARE + "#\n"])
    assert square.status is Status.OK, square.reason
    assert square.artifacts["fingerprint"] == fp_of([1, 4, 9])  # computed by the evaluator
    # the second hangs in its evaluation: only the fingerprint's reuse answers for it
    assert same.status is Status.OK, same.reason
    assert same.metrics["nonce"] == square.metrics["nonce"]  # the first one's result
    assert same.artifacts["cached"].startswith("same fingerprint as #1")
    assert same.eval_time < 25
    assert cube.status is Status.OK and cube.metrics["nonce"] != square.metrics["nonce"]
    assert cube.artifacts["fingerprint"] == fp_of([1, 8, 27]) and "cached" not in cube.artifacts
    assert after.artifacts["cached"].startswith("same code as #1")
    assert cache.saved == {"fingerprint": 1, "code": 1}
    # one process per evaluation (plain), or one candidate each (hardened): none extra
    evaluations = 3  # the fourth was never sent to a worker
    spawned = {("fingerprint_plain.py", True): evaluations,
               ("fingerprint_hardened.py", True): evaluations + 1,  # + the one evaluator
               ("fingerprint_hardened.py", False): 2 * evaluations}[(evaluator, persistent)]
    assert ex._seq == spawned


def test_the_hardened_evaluator_serves_on_after_a_reuse(tmp_path: Path) -> None:
    ex = local(tmp_path, "fingerprint_hardened.py", warm_pool=False)
    cache = Caching(ex)
    results = _each(cache, [SQUARE, SQUARE_ON_PROBES, CUBE, CUBE + "\n"])
    assert [r.status for r in results] == [Status.OK] * 4
    assert ex._seq == 4  # one evaluator served all three evaluations: its candidate was killed


def test_without_a_hook_or_a_fingerprint_nothing_changes(tmp_path: Path) -> None:
    plain = _each(local(tmp_path, "fingerprint_plain.py"), [SQUARE])[0]
    assert plain.status is Status.OK and "fingerprint" not in plain.artifacts  # not asked
    ex = local(tmp_path, "evaluator.py", warm_pool=False)
    runs = "def run():\n    return {'combined_score': 1.5}\n"
    cache = Caching(ex)
    first, restyled = _each(cache, [runs, runs.replace("1.5", "1.50")])
    assert first.status is Status.OK and "fingerprint" not in first.artifacts
    assert restyled.artifacts["cached"].startswith("same code as #1")
    assert ex._seq == 1  # no fingerprint: no process but the evaluation's own
    module = textwrap.dedent("""\
        NO_FINGERPRINT = True
        def f(x):
            return x
        """)
    one, two = _each(Caching(local(tmp_path, "fingerprint_plain.py")),
                      [module, module.replace("x\n", "x + 0\n")])
    assert "fingerprint" not in one.artifacts and "cached" not in two.artifacts  # None: no key


# -- a hostile candidate cannot claim a good program's fingerprint (hardened form) -------------

FORGER = textwrap.dedent("""\
    import os, sys
    GOOD = %r
    line = ("#fp " + GOOD + "\\n").encode()
    sys.stdout.write("#fp " + GOOD + "\\n")
    sys.stderr.write("#fp " + GOOD + "\\n")
    def f(x):
        os.write(1, line)
        return x + 1
    """)
# it writes the line to every descriptor it has: its channel to the evaluator among them
FD_WRITER = FORGER.replace("def f(x):", textwrap.dedent("""\
    for fd in range(3, 1024):
        try:
            os.write(fd, line)
        except OSError:
            pass
    def f(x):"""))


@pytest.mark.parametrize("persistent", [True, False])
def test_a_hostile_candidate_cannot_forge_a_fingerprint(tmp_path: Path, persistent: bool) -> None:
    good = fp_of([1, 4, 9])
    ex = local(tmp_path, "fingerprint_hardened.py", persistent_evaluator=persistent)
    cache = Caching(ex)
    square, forger, writer, after = _each(cache, [SQUARE, FORGER % good, FD_WRITER % good,
                                                  "def f(x):\n    return x ** 2\n"])
    assert square.artifacts["fingerprint"] == good
    assert forger.status is Status.OK, forger.reason
    assert forger.metrics["nonce"] != square.metrics["nonce"]  # its own evaluation
    assert forger.score == float(sum(x + 1 for x in range(10)))
    assert forger.artifacts["fingerprint"] == fp_of([2, 3, 4])  # its answers, hashed by us
    # writing to every descriptor garbles only its own replies: its own failure
    assert writer.status is Status.FAILED, writer.reason
    assert any(m in writer.reason for m in ("malformed reply", "more than max_bytes"))
    assert "fingerprint" not in writer.artifacts
    assert "cached" not in forger.artifacts and "cached" not in writer.artifacts
    # and the evaluator (persistent or not) still works, fingerprints included
    assert after.artifacts["cached"].startswith("same fingerprint as #1")
    assert cache.saved == {"fingerprint": 1}


def test_a_run_reuses_by_fingerprint_through_reverification(tmp_path: Path) -> None:
    """The whole stack a run builds (cache, re-verification, local executor): a program that
    answers the probes like the initial one gets its result; status counts it."""
    import shutil

    d = tmp_path / "problem"
    d.mkdir()
    shutil.copy(FIXTURES / "fingerprint_plain.py", d / "evaluator.py")
    shutil.copy(FIXTURES / "_load.py", d / "_load.py")
    (d / "initial_program.py").write_text(SQUARE)
    script = {1: SQUARE_ON_PROBES, 2: CUBE, 3: "def f(x):\n    return x * x * x  # again\n"}
    cfg = build_config({"max_programs": 4, "evaluation": {"workers": 1, "timeout": 30,
                                                          "sandbox": "process"}})
    api.evolve(Problem.load(d), run_dir=tmp_path / "r", config=cfg, mutator=_scripted(script))
    programs = {p.id: p for p in _stored(tmp_path / "r")}
    assert programs[1].status is Status.OK, programs[1].reason  # it would hang if evaluated
    assert programs[1].artifacts["cached"].startswith("same fingerprint as #0")
    assert programs[1].metrics["nonce"] == programs[0].metrics["nonce"]
    assert "cached" not in programs[2].artifacts
    assert "reverify" in programs[2].artifacts  # a new best: re-verified in full
    assert programs[3].artifacts["cached"].startswith("same code as #2")
    shown = CliRunner().invoke(app, ["status", str(tmp_path / "r")])
    assert "2 evaluations saved by the cache (1 same code, 1 same fingerprint; of 4 " \
        "programs)" in " ".join(shown.output.split()), shown.output
