"""Turing machines for binary increment and binary addition (see the task text).

machine(task) returns the transition table of a one-tape Turing machine. The tables are built
from rules (state, read, write, move, next_state) with integer states (state 0 starts, HALT
halts) and moves -1 (left), 0 (stay), +1 (right).
"""

# EVOLVE-BLOCK-START
HALT = 3


def increment_rules():
    """Binary increment: the input is written MSB-first, the head starts on its first digit."""
    rules = []
    rules.append((0, "0", "0", 1, 0))  # scan right to the end of the number
    rules.append((0, "1", "1", 1, 0))
    rules.append((0, "_", "_", -1, 1))  # past the end: back onto the last digit, carry 1
    rules.append((1, "1", "0", -1, 1))  # 1 + carry = 0, the carry moves left
    rules.append((1, "0", "1", -1, 2))  # 0 + carry = 1: done, rewind to the left end
    rules.append((1, "_", "1", 0, HALT))  # carry out of the top digit: a new leading 1
    rules.append((2, "0", "0", -1, 2))  # rewind
    rules.append((2, "1", "1", -1, 2))
    rules.append((2, "_", "_", 1, HALT))
    return rules


def add_rules():
    """Binary addition of "a+b". Partial: it only erases "+b", so it is right only when b = 0."""
    rules = []
    rules.append((0, "0", "0", 1, 0))  # skip over a
    rules.append((0, "1", "1", 1, 0))
    rules.append((0, "+", "_", 1, 1))  # erase "+" ...
    rules.append((1, "0", "_", 1, 1))  # ... and b
    rules.append((1, "1", "_", 1, 1))
    rules.append((1, "_", "_", 0, HALT))
    return rules
# EVOLVE-BLOCK-END


def _move(m):
    return "L" if m < 0 else "R" if m > 0 else "S"


def machine(task):
    if task == "increment":
        rules = increment_rules()
    elif task == "add":
        rules = add_rules()
    else:
        raise ValueError(f"unknown task {task!r}")
    states = sorted({r[0] for r in rules} | {r[4] for r in rules} | {0, HALT})
    return {
        "states": states,
        "start": 0,
        "halt": HALT,
        "blank": "_",
        "rules": [[q, a, w, _move(m), p] for q, a, w, m, p in rules],
    }
