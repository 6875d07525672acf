"""Evaluator for turing_machine: simulate candidate Turing machines for binary increment and addition.

The candidate's ``machine(task)`` returns a transition table as plain JSON; this module checks its
schema strictly, simulates it (stdlib only) on a fixed instance set (the same in every evaluation,
so scores are comparable and reproducible) and on fresh random instances (a gate against machines
that only work on the fixed set), and scores correctness first, then fewer states and steps.

Score, per task t in (increment, add):
    task_score = 100 * fraction of fixed instances correct
               + bonus, only if every fixed AND every fresh instance is correct:
                 bonus = max(0, 50 - n_states - 10 * log10(mean steps over the fixed instances))
combined_score = sum of the two task scores (higher is better; at most 300).
"""

from __future__ import annotations

import math
import random
import secrets
from typing import Any

from evoforge.evaluation_result import EvaluationResult

TASKS = ("increment", "add")
BLANK = "_"
MAX_STATES = 32
MAX_RULES = 256
MAX_SYMBOLS = 12  # distinct tape symbols, blank, 0, 1 and + included
MAX_NAME = 40  # characters in a string state name
KEYS = ("states", "start", "halt", "blank", "rules")
MOVES = {"L": -1, "R": 1, "S": 0}
FIXED_SEED = 20250614  # the fixed instance set; fixed for comparability between evaluations
N_FRESH = 20
CALL_TIMEOUT = 5.0


def step_limit(tape_input: str) -> int:
    """Steps allowed on one input: 1000 + 10 * len(input)**2 (quadratic algorithms fit easily)."""
    return 1000 + 10 * len(tape_input) ** 2


# -- instances --------------------------------------------------------------------------------


def _b(n: int) -> str:
    return format(n, "b")


def fixed_instances(task: str) -> list[tuple[str, int]]:
    """(tape input, expected value): exhaustive small cases, then seeded larger ones (100 total)."""
    rng = random.Random(f"{FIXED_SEED}-{task}")
    out: list[tuple[str, int]] = []
    if task == "increment":
        out += [(_b(n), n + 1) for n in range(64)]
        for _ in range(36):
            bits = rng.randint(7, 24)
            n = rng.getrandbits(bits) | 1 << (bits - 1)
            out.append((_b(n), n + 1))
    else:
        out += [(f"{_b(a)}+{_b(b)}", a + b) for a in range(8) for b in range(8)]
        for _ in range(36):
            a, b = rng.getrandbits(rng.randint(1, 12)), rng.getrandbits(rng.randint(1, 12))
            out.append((f"{_b(a)}+{_b(b)}", a + b))
    return out


def fresh_instances(task: str, rng: random.Random, n: int = N_FRESH) -> list[tuple[str, int]]:
    """Fresh random instances (longer than the fixed ones), including runs of trailing ones."""
    out: list[tuple[str, int]] = []
    for i in range(n):
        if task == "increment":
            bits = rng.randint(25, 48)
            x = (1 << bits) - 1 if i % 5 == 0 else rng.getrandbits(bits) | 1 << (bits - 1)
            out.append((_b(x), x + 1))
        else:
            a, b = rng.getrandbits(rng.randint(1, 20)), rng.getrandbits(rng.randint(1, 20))
            out.append((f"{_b(a)}+{_b(b)}", a + b))
    return out


# -- schema -----------------------------------------------------------------------------------


def _state(v: Any, what: str) -> str | int:
    if type(v) is int:
        return v
    if type(v) is str and 0 < len(v) <= MAX_NAME:
        return v
    raise ValueError(f"{what} must be an int or a non-empty string of at most {MAX_NAME} "
                     f"characters, got {type(v).__name__} {str(v)[:50]!r}")


def _symbol(v: Any, what: str) -> str:
    if type(v) is not str or len(v) != 1 or not v.isprintable() or v.isspace():
        raise ValueError(f"{what} must be one printable, non-space character, got {str(v)[:20]!r}")
    return v


def check_machine(m: Any) -> dict[str, Any]:
    """Validate a machine; return {"start", "halt", "n_states", "delta"} with
    delta[(state, read)] = (write, move, next). Raise ValueError naming the first problem."""
    if type(m) is not dict:
        raise ValueError(f"machine() must return a dict, got {type(m).__name__}")
    if set(m) != set(KEYS):
        extra, missing = sorted(set(m) - set(KEYS)), sorted(set(KEYS) - set(m))
        raise ValueError(f"machine() must return exactly the keys {list(KEYS)}; "
                         f"missing {missing}, unexpected {extra}")
    states_raw = m["states"]
    if type(states_raw) is not list or not 1 <= len(states_raw) <= MAX_STATES:
        raise ValueError(f"'states' must be a list of 1..{MAX_STATES} states, got "
                         f"{type(states_raw).__name__} of length "
                         f"{len(states_raw) if type(states_raw) is list else '-'}")
    states = [_state(s, f"state {i}") for i, s in enumerate(states_raw)]
    if len(set(states)) != len(states):
        raise ValueError("'states' contains duplicates")
    known = set(states)
    start, halt = _state(m["start"], "'start'"), _state(m["halt"], "'halt'")
    for name, s in (("start", start), ("halt", halt)):
        if s not in known:
            raise ValueError(f"'{name}' state {s!r} is not in 'states'")
    if m["blank"] != BLANK or type(m["blank"]) is not str:
        raise ValueError(f"'blank' must be {BLANK!r}, got {str(m['blank'])[:20]!r}")
    rules = m["rules"]
    if type(rules) is not list or len(rules) > MAX_RULES:
        raise ValueError(f"'rules' must be a list of at most {MAX_RULES} rules")
    delta: dict[tuple[str | int, str], tuple[str, int, str | int]] = {}
    symbols = {BLANK, "0", "1", "+"}
    for i, r in enumerate(rules):
        if type(r) is not list or len(r) != 5:
            raise ValueError(f"rule {i} must be a list [state, read, write, move, next_state], "
                             f"got {str(r)[:80]}")
        q = _state(r[0], f"rule {i} state")
        a, w = _symbol(r[1], f"rule {i} read symbol"), _symbol(r[2], f"rule {i} write symbol")
        if type(r[3]) is not str or r[3] not in MOVES:
            raise ValueError(f"rule {i} move must be 'L', 'R' or 'S', got {str(r[3])[:20]!r}")
        p = _state(r[4], f"rule {i} next state")
        for s in (q, p):
            if s not in known:
                raise ValueError(f"rule {i} uses state {s!r}, which is not in 'states'")
        if q == halt:
            raise ValueError(f"rule {i} leaves the halt state {halt!r}; the halt state has no rules")
        if (q, a) in delta:
            raise ValueError(f"rule {i}: a second rule for (state {q!r}, read {a!r}); "
                             "the machine must be deterministic")
        delta[(q, a)] = (w, MOVES[r[3]], p)
        symbols.update((a, w))
    if len(symbols) > MAX_SYMBOLS:
        raise ValueError(f"{len(symbols)} tape symbols used; at most {MAX_SYMBOLS} "
                         f"(blank, 0, 1 and + included)")
    return {"start": start, "halt": halt, "n_states": len(states), "delta": delta}


# -- simulation -------------------------------------------------------------------------------


def run_machine(spec: dict[str, Any], tape_input: str) -> tuple[str | None, int, str]:
    """Run on ``tape_input`` (head on its first symbol). Returns (output or None, steps, why):
    the output is the tape from the leftmost to the rightmost non-blank cell."""
    delta, halt = spec["delta"], spec["halt"]
    tape = dict(enumerate(tape_input))
    pos, state, steps, limit = 0, spec["start"], 0, step_limit(tape_input)
    get = tape.get
    while state != halt:
        if steps >= limit:
            return None, steps, f"no halt within the step limit of {limit}"
        sym = get(pos, BLANK)
        rule = delta.get((state, sym))
        if rule is None:
            return None, steps, f"stuck: no rule for (state {state!r}, read {sym!r})"
        write, move, state = rule
        tape[pos] = write
        pos += move
        steps += 1
    cells = [p for p, s in tape.items() if s != BLANK]
    if not cells:
        return "", steps, "halted"
    lo, hi = min(cells), max(cells)
    return "".join(tape.get(p, BLANK) for p in range(lo, hi + 1)), steps, "halted"


def check_output(out: str | None, expected: int) -> str | None:
    """None if ``out`` is binary (leading zeros allowed) for ``expected``; else why not."""
    if out is None:
        return "did not halt properly"
    if not out or any(c not in "01" for c in out):
        return f"the tape holds {out[:60]!r}, not a binary number (only 0/1, no gaps)"
    if int(out, 2) != expected:
        return f"the tape holds {out[:60]!r} = {int(out, 2)}, expected {_b(expected)} = {expected}"
    return None


def score_task(m: Any, task: str, fresh: list[tuple[str, int]] | None = None) -> dict[str, Any]:
    """Check and score one machine on one task (see the module docstring)."""
    spec = check_machine(m)
    correct, total_steps, failures = 0, 0, []
    fixed = fixed_instances(task)
    for tape_input, expected in fixed:
        out, steps, why = run_machine(spec, tape_input)
        err = check_output(out, expected) if why == "halted" else why
        if err is None:
            correct += 1
            total_steps += steps
        else:
            failures.append(f"{task} on {tape_input!r}: {err}")
    frac = correct / len(fixed)
    mean_steps = total_steps / correct if correct else 0.0
    fresh_ok = True
    if correct == len(fixed):
        for tape_input, expected in fresh or []:
            out, _steps, why = run_machine(spec, tape_input)
            err = check_output(out, expected) if why == "halted" else why
            if err is not None:
                fresh_ok = False
                failures.append(f"{task} on fresh input {tape_input!r}: {err}")
                break
    all_ok = correct == len(fixed) and fresh_ok
    bonus = max(0.0, 50.0 - spec["n_states"] - 10.0 * math.log10(max(mean_steps, 1.0))) if all_ok else 0.0
    return {"score": 100.0 * frac + bonus, "fraction_correct": frac, "bonus": bonus,
            "n_states": spec["n_states"], "mean_steps": mean_steps, "all_correct": all_ok,
            "failures": failures}


def evaluate(candidate) -> EvaluationResult:
    rng = random.Random(secrets.randbits(64))
    metrics: dict[str, float] = {}
    lines: list[str] = []
    total = 0.0
    for task in TASKS:
        m = candidate.call("machine", task, timeout=CALL_TIMEOUT, max_bytes=1 << 20)
        try:
            r = score_task(m, task, fresh_instances(task, rng))
        except ValueError as e:
            raise ValueError(f"machine({task!r}): {e}") from None
        total += r["score"]
        metrics[f"{task}_score"] = r["score"]
        metrics[f"{task}_fraction_correct"] = r["fraction_correct"]
        metrics[f"{task}_states"] = float(r["n_states"])
        metrics[f"{task}_mean_steps"] = r["mean_steps"]
        lines.append(f"{task}: {100 * r['fraction_correct']:.0f}% of the fixed instances correct, "
                     f"{r['n_states']} states, mean steps {r['mean_steps']:.1f}, "
                     f"bonus {r['bonus']:.2f}, score {r['score']:.3f}")
        lines += [f"  {f}" for f in r["failures"][:3]]
    metrics["combined_score"] = total
    return EvaluationResult(metrics=metrics, artifacts={"feedback": "\n".join(lines)})
