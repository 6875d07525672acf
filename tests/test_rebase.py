"""Rebasing (evoforge.rebase, ``pipeline.rebase``): the edit a stale exploiting pick's reply
made is moved onto the better descendant of its parent that was committed meanwhile."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from evoforge import api
from evoforge.config import build_config
from evoforge.mutators.base import MutationOutcome
from evoforge.problem import Problem
from evoforge.program import EvalResult, MutationInfo, Program, Status
from evoforge.rebase import Rebaser, transplant
from evoforge.run import Proposal, Run
from evoforge.selectors.base import Selection
from evoforge.storages import SQLiteStorage
from evoforge.testing.openai_server import OpenAITestServer
from evoforge.testing.perturb import perturbing

QUAD = Path(__file__).parent / "fixtures" / "problems" / "quadratic"
BASE = "def f():\n    a = 1.0\n    b = 2.0\n    c = 3.0\n    return a + b + c\n"


def test_transplant_moves_an_edit_onto_lines_the_other_side_left_alone():
    child = BASE.replace("a = 1.0", "a = 1.5")
    newer = BASE.replace("c = 3.0", "c = 3.5")  # the next line but one changed meanwhile
    assert transplant(BASE, child, newer) == BASE.replace("a = 1.0", "a = 1.5").replace(
        "c = 3.0", "c = 3.5")
    # adjacent lines are separate hunks (a line-based three-way merge would call it a conflict)
    assert transplant(BASE, child, BASE.replace("b = 2.0", "b = 2.5")) == BASE.replace(
        "a = 1.0", "a = 1.5").replace("b = 2.0", "b = 2.5")
    # lines inserted and deleted on the other side shift the edit's place
    grown = BASE.replace("def f():\n", "import math\n\n\ndef f():\n").replace(
        "    c = 3.0\n", "")
    moved = transplant(BASE, child, grown)
    assert moved == grown.replace("a = 1.0", "a = 1.5")
    # an insertion by the edit lands at its place in the newer program
    ins = BASE.replace("    b = 2.0\n", "    b = 2.0\n    d = 4.0\n")
    assert transplant(BASE, ins, newer) == newer.replace("    b = 2.0\n",
                                                         "    b = 2.0\n    d = 4.0\n")


def test_transplant_refuses_conflicts_and_no_ops():
    child = BASE.replace("a = 1.0", "a = 1.5")
    assert transplant(BASE, child, BASE.replace("a = 1.0", "a = 0.5")) is None  # same line
    assert transplant(BASE, child, child) is None  # the edit is already there
    assert transplant(BASE, BASE, BASE.replace("c = 3.0", "c = 3.5")) is None  # no edit
    # an insertion where the other side inserted too: which goes first is not known
    mine = BASE.replace("    b = 2.0\n", "    b = 2.0\n    d = 4.0\n")
    theirs = BASE.replace("    b = 2.0\n", "    b = 2.0\n    e = 5.0\n")
    assert transplant(BASE, mine, theirs) is None


def _random_edit(lines: list[str], rng) -> list[str]:
    out = list(lines)
    for _ in range(rng.randint(1, 3)):
        k, op = rng.randrange(len(out) + 1), rng.choice("rid")
        if op == "r" and k < len(out):
            out[k] = f"r{rng.random():.9f}\n"
        elif op == "i":
            out.insert(k, f"i{rng.random():.9f}\n")
        elif op == "d" and k < len(out) and len(out) > 1:
            del out[k]
    return out


def test_transplant_is_a_symmetric_merge():
    """On random line edits (replacements, insertions, deletions) of one base: moving A onto B
    gives the same program as moving B onto A whenever both are clean, and one direction is
    refused exactly when the other is (the edit-free and equal-edit cases aside)."""
    import random

    rng = random.Random(11)
    merged = 0
    for _ in range(3000):
        base = [f"line {i}\n" for i in range(rng.randint(1, 12))]
        b, x, y = "".join(base), "".join(_random_edit(base, rng)), "".join(_random_edit(base, rng))
        if len({b, x, y}) < 3:
            continue
        xy, yx = transplant(b, x, y), transplant(b, y, x)
        assert (xy is None) == (yx is None), (b, x, y)
        if xy is not None:
            merged += 1
            assert xy == yx, (b, x, y)
    assert merged > 1000  # most random pairs of edits merge


def _prog(pid, score, parent=None, *, island=0, done_seq=None, code=BASE, status=Status.OK):
    return Program(id=pid, code=code, parent_ids=() if parent is None else (parent,),
                   island=island, status=status, score=score,
                   done_seq=pid if done_seq is None else done_seq)


@pytest.mark.parametrize("minimize", [False, True])
def test_target_is_the_best_newer_descendant_in_the_island(minimize):
    sign = -1 if minimize else 1

    def better(a, b):
        return a < b if minimize else a > b

    r = Rebaser(better)
    parent = _prog(1, sign * 1.0, 0)
    for p in (_prog(0, 0.0), parent,  # committed in this order (done_seq = position)
              _prog(3, sign * 2.0, 1, done_seq=2),  # a child of the parent
              _prog(2, sign * 5.0, 0, done_seq=3),  # better still, but a sibling line
              _prog(4, sign * 3.0, 3),  # a grandchild: the best descendant
              _prog(5, sign * 9.0, 4, island=1),  # in another island
              _prog(6, sign * 0.5, 4),  # a descendant, worse than the parent
              _prog(7, None, 4, status=Status.FAILED)):
        r.observe(p)
    assert r.target(parent, view=2, island=0).id == 4
    assert r.target(parent, view=2, island=1).id == 5
    assert r.target(parent, view=3, island=0).id == 4
    assert r.target(parent, view=5, island=0) is None  # only 6 and 7 came after the pick
    assert r.target(_prog(8, None, 1, status=Status.FAILED), view=0, island=0) is None


def _run(tmp_path, **pipeline) -> Run:
    prob = Problem.load(QUAD)
    cfg = build_config(prob.config, {"pipeline": pipeline})
    tmp_path.mkdir(exist_ok=True)
    storage = SQLiteStorage(tmp_path / "evoforge.db")
    from evoforge.registry import make_selector

    return Run(prob, cfg, storage, make_selector(cfg), tmp_path)


def _commit(run: Run, code: str, score: float, parent: Program | None) -> Program:
    pid = run._take_id()
    p = Program(id=pid, code=code, parent_ids=() if parent is None else (parent.id,),
                generation=0 if parent is None else parent.generation + 1)
    run.storage.add_program(p)
    return run.tell(p, EvalResult(status=Status.OK, score=score, metrics={"combined_score": score}))


@pytest.mark.parametrize("explored", [False, True, None])
def test_record_child_rebases_only_exploiting_picks(tmp_path, explored):
    run = _run(tmp_path)
    p0 = _commit(run, BASE, 1.0, None)
    proposal = Proposal(id=run._take_id(), view=run.tally.done,
                        selection=Selection(parent=p0, explored=explored))
    newer = _commit(run, BASE.replace("c = 3.0", "c = 3.5"), 2.0, p0)  # arrives meanwhile
    child = BASE.replace("a = 1.0", "a = 1.5")
    stored = run.record_child(proposal, MutationOutcome(
        code=child, info=MutationInfo(mutator="llm", note="moved a")))
    if explored is False:
        assert stored.parent_ids == (newer.id,) and stored.mutation.selected == p0.id
        assert stored.code == transplant(BASE, child, newer.code)
        assert stored.generation == newer.generation + 1 and stored.mutation.explored is False
        assert f"#{p0.id}" in stored.mutation.note and "moved a" in stored.mutation.note
    else:  # explored on purpose, or a pick the selector did not call exploiting
        assert stored.parent_ids == (p0.id,) and stored.code == child
        assert stored.mutation.selected is None and "rebased" not in stored.mutation.note
    run.storage.close()


def test_record_child_keeps_the_parent_when_rebasing_is_off_or_conflicts(tmp_path):
    run = _run(tmp_path / "off", rebase=False)
    assert run.rebaser is None
    run.storage.close()
    run = _run(tmp_path)
    p0 = _commit(run, BASE, 1.0, None)
    sel = Selection(parent=p0, explored=False)
    proposal = Proposal(id=run._take_id(), view=run.tally.done, selection=sel)
    _commit(run, BASE.replace("a = 1.0", "a = 0.5"), 2.0, p0)
    child = BASE.replace("a = 1.0", "a = 1.5")  # the same line: a conflict
    stored = run.record_child(proposal, MutationOutcome(code=child))
    assert stored.parent_ids == (p0.id,) and stored.code == child
    # a mutator's own parent (a tuning trial) is kept as it is
    proposal = Proposal(id=run._take_id(), view=1, selection=sel)
    _commit(run, BASE.replace("c = 3.0", "c = 3.5"), 3.0, p0)
    stored = run.record_child(proposal, MutationOutcome(code=child, parent=p0))
    assert stored.parent_ids == (p0.id,) and stored.code == child
    run.storage.close()


def test_llm_run_rebases_stale_exploiting_picks(tmp_path, monkeypatch):
    """A real LLM run (perturbing test server, 4 requests in flight, replies (0.5 s) slower
    than evaluations, so results commit while a reply is on its way): children whose reply came
    after a better descendant of their parent are stored on that descendant; with
    ``pipeline.rebase: false`` none is."""
    monkeypatch.setenv("EVOFORGE_TEST_KEY", "sk-test-key")
    found = {}
    for rebase in (True, False):
        with OpenAITestServer(perturbing(seed=2), latency=0.5) as srv:
            cfg = build_config(Problem.load(QUAD).config, {
                "max_programs": 48, "seed": 2,
                "mutator": {"name": "llm", "edit_mode": "diff"},
                "llm": {"base_url": srv.base_url, "models": ["test-model"], "concurrency": 4,
                        "api_key_env": "EVOFORGE_TEST_KEY", "hedge": False},
                "evaluation": {"workers": 2, "timeout": 20, "reverify": 0},
                "pipeline": {"rebase": rebase}})
            outcome = api.evolve(QUAD, run_dir=tmp_path / f"r{rebase}", config=cfg)
        assert outcome.ok and outcome.reason == "max_programs", outcome.message
        with SQLiteStorage(tmp_path / f"r{rebase}" / "evoforge.db", readonly=True) as s:
            progs = {p.id: p for p in s.programs()}
        moved = [p for p in progs.values() if p.mutation.selected is not None]
        found[rebase] = len(moved)
        if rebase:
            moved_true = moved
        for p in moved:
            picked, onto = progs[p.mutation.selected], progs[p.parent_ids[0]]
            assert onto.score > picked.score and onto.done_seq >= p.mutation.view
            assert p.mutation.explored is False and onto.island == p.island
            a = onto
            while a.id != picked.id:  # onto descends from the pick
                a = progs[a.parent_ids[0]]
    assert found[True] >= 1 and found[False] == 0, found
    child = next(p for p in moved_true if p.mutation.selected is not None)
    sh = subprocess.run([sys.executable, "-m", "evoforge.cli", "show", str(tmp_path / "rTrue"),
                         str(child.id)], capture_output=True, text=True)
    assert sh.returncode == 0, sh.stderr
    assert (f"the selector picked #{child.mutation.selected}; the child was made on "
            f"#{child.parent_ids[0]}") in sh.stdout and "rebased" in sh.stdout
    st = subprocess.run([sys.executable, "-m", "evoforge.cli", "status", str(tmp_path / "rTrue")],
                        capture_output=True, text=True)
    assert st.returncode == 0 and f"rebased children: {found[True]} " in st.stdout, st.stdout
    st = subprocess.run([sys.executable, "-m", "evoforge.cli", "status",
                         str(tmp_path / "rFalse")], capture_output=True, text=True)
    assert st.returncode == 0 and "rebased" not in st.stdout, st.stdout


def test_lineage_is_rebuilt_on_resume(tmp_path):
    """A resumed run knows the stored lineage: a grandchild committed before the resume is a
    target for a pick of its grandparent made after it."""
    run = _run(tmp_path)
    p0 = _commit(run, BASE, 1.0, None)
    p1 = _commit(run, BASE.replace("c = 3.0", "c = 3.5"), 2.0, p0)
    p2 = _commit(run, BASE.replace("c = 3.0", "c = 3.7"), 3.0, p1)
    run.storage.close()
    run = _run(tmp_path)
    run.rebuild()
    assert run.rebaser.target(p0, view=1, island=0).id == p2.id
    proposal = Proposal(id=run._take_id(), view=1, selection=Selection(parent=p0, explored=False))
    stored = run.record_child(proposal, MutationOutcome(code=BASE.replace("a = 1.0", "a = 1.5")))
    assert stored.parent_ids == (p2.id,) and "a = 1.5" in stored.code and "c = 3.7" in stored.code
    run.storage.close()
