"""c_sort: the evaluator's checks on known answers, hostile programs through the real executor,
and a short model-free run that improves on the initial program (its insertion-sort cut-off)."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest
import support

from evoforge.problem import Problem
from evoforge.program import Status


@pytest.fixture(autouse=True)
def _tools() -> None:
    support.skip_without_tools(Problem.load("c_sort"))


@pytest.fixture(scope="module")
def prob() -> Problem:
    return Problem.load("c_sort")


@pytest.fixture(scope="module")
def ev(prob: Problem) -> ModuleType:
    return support.load_evaluator(prob)


def with_block(prob: Problem, body: str) -> str:
    """The initial program with its EVOLVE block replaced by ``body``."""
    return support.replace_block(prob.initial_code, "/* EVOLVE-BLOCK-START */", "/* EVOLVE-BLOCK-END */",
                                 body)


# -- pure checks ---------------------------------------------------------------------------


def test_known_answers_pass_the_checks(ev: ModuleType) -> None:
    arrays = [[], [5], [3, -1, 3, -2**31, 2**31 - 1]]
    out = ev.expected_output(arrays)
    assert out == "\n5\n-2147483648 -1 3 3 2147483647\n"
    ev.compare_output(arrays, out, "t")  # no error
    assert ev.encode_input(arrays) == "3\n0\n1 5\n5 3 -1 3 -2147483648 2147483647\n"
    log = "==12== Events    : Ir\n==12== Collected : 4071150\n==12==\n"
    assert ev.parse_instructions(log, "events: Ir\nsummary: 4071150\ntotals: 4071150\n") == 4071150
    ev.check_object(["malloc", "free"], ["sort_ints"], [".text", ".data"], "0:\tmov %rdi,%rax\n")


def test_wrong_answers_are_named(ev: ModuleType) -> None:
    arrays = [[1, 2], [2, 1, 1]]
    with pytest.raises(ValueError, match=r"wrong result for an array of length 3 .*got '2 1 1'"):
        ev.compare_output(arrays, "1 2\n2 1 1\n", "t")
    with pytest.raises(ValueError, match="got nothing"):
        ev.compare_output(arrays, "1 2\n", "t")
    with pytest.raises(ValueError, match="extra output"):
        ev.compare_output(arrays, "1 2\n1 1 2\n9\n", "t")


def test_forged_counts_are_rejected(ev: ModuleType) -> None:
    log = "==12== Collected : 100\n"
    with pytest.raises(ValueError, match="disagree"):
        ev.parse_instructions(log, "summary: 4071150\n")
    with pytest.raises(ValueError, match="exactly one"):
        ev.parse_instructions(log + "==13== Collected : 5\n", "summary: 100\n")
    with pytest.raises(ValueError, match="exactly one"):
        ev.parse_instructions("", "summary: 100\n")


@pytest.mark.parametrize(("args", "reason"), [
    ((["printf"], ["sort_ints"], [], ""), "references printf"),
    (([], ["sort_ints", "helper"], [], ""), "declare every helper"),
    (([], ["sort"], [], ""), "does not define a global function sort_ints"),
    (([], ["sort_ints"], [".text", ".init_array"], ""), "constructor"),
    (([], ["sort_ints"], [], "0:\tsyscall \n"), "raw `syscall`"),
    (([], ["sort_ints"], [], "0:\trol    $0x3,%rdi\n4:\trol    $0xd,%rdi\n"), "client request"),
])
def test_object_checks(ev: ModuleType, args: tuple, reason: str) -> None:
    with pytest.raises(ValueError, match=reason.replace("$", r"\$")):
        ev.check_object(*args)


def test_entry_point_checks(ev: ModuleType) -> None:
    own = "0000000000000110 g     F .text\t0000000000000005 sort_ints\n"
    local = "0000000000000000 l     F .text\t0000000000000103 quick_sort\n"
    section = "0000000000000000 l    d  .text\t0000000000000000 .text\n"
    ev.check_entry(ev.parse_symtab(local + section + own))
    alias = local.replace("quick_sort", "impl") + own.replace("0110", "0000")
    with pytest.raises(ValueError, match="shares its address with impl"):
        ev.check_entry(ev.parse_symtab(section + alias))
    with pytest.raises(ValueError, match="ordinary C function"):
        ev.check_entry(ev.parse_symtab(own.replace(" F ", " O ")))


def test_benchmark_is_fixed_and_checks_are_fresh(ev: ModuleType) -> None:
    import random

    assert ev.benchmark_arrays() == ev.benchmark_arrays()
    a, b = (ev.correctness_arrays(random.Random(s)) for s in (1, 2))
    assert a != b
    lengths = {len(x) for x in a}
    assert {0, 1, ev.MAX_N} <= lengths


# -- through the real executor ---------------------------------------------------------------

FAST = """\
enum { SMALL = 16 };

static void insertion_sort(int *a, int n)
{
    for (int i = 1; i < n; i++) {
        int v = a[i], j = i;
        while (j > 0 && a[j - 1] > v) { a[j] = a[j - 1]; j--; }
        a[j] = v;
    }
}

static void quick_sort(int *a, int n)
{
    while (n >= SMALL) {
        int pivot = a[n / 2], i = 0, j = n - 1;
        while (i <= j) {
            while (a[i] < pivot) i++;
            while (a[j] > pivot) j--;
            if (i <= j) { int t = a[i]; a[i] = a[j]; a[j] = t; i++; j--; }
        }
        if (j + 1 < n - i) { quick_sort(a, j + 1); a += i; n -= i; }
        else { quick_sort(a + i, n - i); n = j + 1; }
    }
    insertion_sort(a, n);
}

void sort_ints(int *a, int n) { quick_sort(a, n); }
"""

HOSTILE = {
    "compile": ("void sort_ints(int *a, int n) { return a }\n", "does not compile"),
    "wrong": ("void sort_ints(int *a, int n) { if (n > 1 && a[0] > a[1]) { int t = a[0]; "
              "a[0] = a[1]; a[1] = t; } }\n", "wrong result for an array"),
    "crash": ("void sort_ints(int *a, int n) { (void)a; (void)n; *(volatile int *)0 = 1; }\n",
              "exited with status"),
    "io": ("#include <stdio.h>\nvoid sort_ints(int *a, int n) { (void)a; (void)n; "
           "FILE *f = fopen(\"cg.out\", \"w\"); fputs(\"summary: 1\\n\", f); }\n",
           "references fopen"),
    "global_helper": ("void helper(int *a) { (void)a; }\n"
                      "void sort_ints(int *a, int n) { (void)n; helper(a); }\n",
                      "declare every helper"),
    "constructor": ("static volatile int x;\n__attribute__((constructor)) static void early(void) "
                    "{ x = 1; }\nvoid sort_ints(int *a, int n) { (void)a; (void)n; x++; }\n",
                    "constructor"),
    "syscall": ("void sort_ints(int *a, int n) { (void)a; (void)n; "
                "__asm__ volatile(\"syscall\" ::: \"rax\", \"rcx\", \"r11\"); }\n", "raw `syscall`"),
    "client_request": ("#include <valgrind/callgrind.h>\n"
                       "void sort_ints(int *a, int n) { CALLGRIND_TOGGLE_COLLECT; (void)a; (void)n; }\n",
                       "client request"),
    "alias": ("static void impl(int *a, int n) { for (int i = 1; i < n; i++) { int v = a[i], j = i; "
              "while (j > 0 && a[j - 1] > v) { a[j] = a[j - 1]; j--; } a[j] = v; } }\n"
              "extern void sort_ints(int *a, int n) __attribute__((alias(\"impl\")));\n",
              "shares its address with impl"),
    "interpose": ("#include <stddef.h>\nsize_t fread(void *p, size_t s, size_t n, void *f) "
                  "{ (void)p; (void)s; (void)n; (void)f; return 0; }\n"
                  "void sort_ints(int *a, int n) { (void)a; (void)n; }\n", "global symbols fread"),
}


def test_known_programs_through_the_executor(prob: Problem, tmp_path: Path) -> None:
    codes = [prob.initial_code, with_block(prob, FAST)]
    codes += [with_block(prob, code) for code, _ in HOSTILE.values()]
    results = support.evaluate_codes(prob, tmp_path, codes, concurrent=True)
    initial, fast, *hostile = results
    assert initial.status is Status.OK, (initial.reason, initial.artifacts)
    assert initial.score == 1.0
    assert initial.metrics["instructions"] == initial.metrics["reference_instructions"] > 0
    assert fast.status is Status.OK, (fast.reason, fast.artifacts)
    m = fast.metrics
    assert m["reference_instructions"] == initial.metrics["instructions"]
    assert fast.score == m["reference_instructions"] / m["instructions"]
    assert 1.2 < fast.score < 1.45  # a cut-off of 16 instead of 2: about 1.31 with gcc 12
    for (name, (_, reason)), r in zip(HOSTILE.items(), hostile, strict=True):
        assert r.status is Status.FAILED, (name, r.status, r.reason)
        assert reason in r.reason, (name, r.reason)


def test_a_hanging_sort_times_out(prob: Problem, tmp_path: Path) -> None:
    code = with_block(
        prob, "void sort_ints(int *a, int n) { volatile int *p = a; (void)n; for (;;) *p += 1; }\n")
    support.assert_times_out(prob, tmp_path, code, timeout=3)


# -- a short model-free run -----------------------------------------------------------------------


def test_model_free_run_improves(prob: Problem, tmp_path: Path) -> None:
    """Raising the insertion-sort cut-off SMALL (one of about 25 literals) makes the sort cheaper.
    Seed 15 does so in the first generation (proposal 3: SMALL 2 -> 4, 1.092x), which every run
    proposes from the initial program, so the outcome does not depend on timing. A short
    evaluation timeout ends children whose literal edit makes the sort loop forever sooner."""
    best = support.model_free_best(prob, tmp_path, max_programs=5, seed=15, timeout=5)
    assert best.score is not None and best.score > prob.meta["baseline"]
