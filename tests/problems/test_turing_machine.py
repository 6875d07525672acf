"""turing_machine: reference machines score their known values, invalid tables are rejected with a
reason (through the real executor), and a short model-free run improves the initial program."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import support

from evoforge.problem import Problem
from evoforge.program import Status

PROB = Problem.load("turing_machine")
tm = support.load_evaluator(PROB)

INC = [
    ["s", "0", "0", "R", "s"], ["s", "1", "1", "R", "s"], ["s", "_", "_", "L", "c"],
    ["c", "1", "0", "L", "c"], ["c", "0", "1", "S", "h"], ["c", "_", "1", "S", "h"],
]
ADD = [
    ["R", "0", "0", "R", "R"], ["R", "1", "1", "R", "R"], ["R", "x", "x", "R", "R"],
    ["R", "y", "y", "R", "R"], ["R", "+", "+", "R", "R"], ["R", "_", "_", "L", "T"],
    ["T", "0", "_", "L", "C0"], ["T", "1", "_", "L", "C1"], ["T", "+", "_", "L", "F"],
    ["C0", "0", "0", "L", "C0"], ["C0", "1", "1", "L", "C0"], ["C0", "+", "+", "L", "A0"],
    ["C1", "0", "0", "L", "C1"], ["C1", "1", "1", "L", "C1"], ["C1", "+", "+", "L", "A1"],
    ["A0", "x", "x", "L", "A0"], ["A0", "y", "y", "L", "A0"], ["A0", "0", "x", "R", "R"],
    ["A0", "1", "y", "R", "R"], ["A0", "_", "x", "R", "R"],
    ["A1", "x", "x", "L", "A1"], ["A1", "y", "y", "L", "A1"], ["A1", "0", "y", "R", "R"],
    ["A1", "1", "x", "L", "P"], ["A1", "_", "y", "R", "R"],
    ["P", "1", "0", "L", "P"], ["P", "0", "1", "R", "R"], ["P", "_", "1", "R", "R"],
    ["F", "x", "0", "L", "F"], ["F", "y", "1", "L", "F"], ["F", "0", "0", "L", "F"],
    ["F", "1", "1", "L", "F"], ["F", "_", "_", "S", "H"],
]


def mk(rules: list[list[str]], start: str, halt: str) -> dict:
    states = sorted({r[0] for r in rules} | {r[4] for r in rules})
    return {"states": states, "start": start, "halt": halt, "blank": "_", "rules": rules}


REFERENCE = {"increment": mk(INC, "s", "h"), "add": mk(ADD, "R", "H")}


def program_returning(tables: dict) -> str:
    return (f"TABLES = {json.dumps(tables)}\n\n\ndef machine(task):\n    return TABLES[task]\n")


def test_reference_machines_score_their_known_values() -> None:
    rng = random.Random(7)
    inc = tm.score_task(REFERENCE["increment"], "increment", tm.fresh_instances("increment", rng, 100))
    add = tm.score_task(REFERENCE["add"], "add", tm.fresh_instances("add", rng, 100))
    assert inc["all_correct"] and add["all_correct"], (inc["failures"], add["failures"])
    assert (inc["n_states"], add["n_states"]) == (3, 9)
    assert inc["score"] + add["score"] == pytest.approx(PROB.meta["best_known"], abs=1e-6)


def test_simulation_and_output_checks() -> None:
    spec = tm.check_machine(REFERENCE["add"])
    out, steps, why = tm.run_machine(spec, "1011+111")
    assert why == "halted" and int(out, 2) == 0b1011 + 0b111 and steps > 0
    assert tm.check_output("0010", 2) is None  # leading zeros are fine
    assert "not a binary number" in tm.check_output("1_1", 5)
    assert "not a binary number" in tm.check_output("1x", 2)
    assert "expected" in tm.check_output("11", 4)
    looping = mk([["a", "0", "0", "S", "a"]], "a", "h")
    looping["states"] = ["a", "h"]
    assert "step limit" in tm.run_machine(tm.check_machine(looping), "0")[2]
    assert "stuck" in tm.run_machine(tm.check_machine(looping), "1")[2]


def test_fresh_instances_gate_the_bonus() -> None:
    """A machine that is right on every fixed instance but wrong on a longer fresh one: no bonus."""
    fixed_only = mk(INC, "s", "h")
    r_ok = tm.score_task(fixed_only, "increment", [("101", 6)])
    r_bad = tm.score_task(fixed_only, "increment", [("101", 7)])
    assert r_ok["bonus"] > 0 and r_bad["bonus"] == 0 and r_bad["fraction_correct"] == 1.0
    assert "fresh input" in r_bad["failures"][0]


@pytest.mark.parametrize(("mutate", "reason"), [
    (lambda m: m.pop("blank"), "exactly the keys"),
    (lambda m: m.__setitem__("extra", 1), "exactly the keys"),
    (lambda m: m.__setitem__("blank", " "), "'blank' must be"),
    (lambda m: m.__setitem__("start", "nowhere"), "not in 'states'"),
    (lambda m: m["rules"].append(["s", "0", "1", "R", "s"]), "deterministic"),
    (lambda m: m["rules"].append(["h", "0", "1", "R", "s"]), "halt state"),
    (lambda m: m["rules"].append(["c", "+", "+", "X", "s"]), "move must be"),
    (lambda m: m["rules"].append(["c", "ab", "+", "R", "s"]), "read symbol"),
    (lambda m: m["rules"].append(["c", "+", "+", "R"]), "must be a list"),
    (lambda m: m["rules"].append(["c", "+", "+", "R", True]), "int or a non-empty string"),
    (lambda m: m["rules"].append(["c", "+", "+", "R", "q9"]), "not in 'states'"),
    (lambda m: m.__setitem__("states", [*m["states"], *range(40)]), "list of 1..32"),
    (lambda m: m.__setitem__("states", [*m["states"], "s"]), "duplicates"),
    (lambda m: m["rules"].extend(["c", s, s, "R", "c"] for s in "abcdefghij"), "tape symbols"),
])
def test_invalid_tables_are_rejected(mutate, reason) -> None:
    m = json.loads(json.dumps(REFERENCE["increment"]))
    mutate(m)
    with pytest.raises(ValueError, match=reason):
        tm.check_machine(m)


def test_through_the_executor(tmp_path: Path) -> None:
    bad_type = REFERENCE | {"add": {**REFERENCE["add"], "states": "RTH"}}
    nan = "def machine(task):\n    return {'states': [float('nan')]}\n"
    codes = [program_returning(REFERENCE), program_returning(bad_type), nan]
    results = support.evaluate_codes(PROB, tmp_path, codes)
    good, typed, nonfinite = results
    assert good.status is Status.OK, (good.reason, good.artifacts)
    assert good.score == pytest.approx(PROB.meta["best_known"], abs=1e-6)
    assert typed.status is Status.FAILED and "machine('add')" in typed.reason
    assert "'states' must be a list" in typed.reason
    assert nonfinite.status is Status.FAILED and "non-finite" in nonfinite.reason


def test_a_hanging_machine_times_out(tmp_path: Path) -> None:
    hang = "def machine(task):\n    while True:\n        pass\n"
    support.assert_times_out(PROB, tmp_path, hang, timeout=2)


def test_model_free_run_improves(tmp_path: Path) -> None:
    best = support.model_free_best(PROB, tmp_path, max_programs=24, seed=3)
    print("turing_machine model-free best:", best.score)
    assert best.score > PROB.meta["baseline"] + 1e-6
