"""Evaluator for c_sort: a C ``sort_ints`` checked exactly, timed by callgrind instruction counts.

Every step runs inside the candidate's sandbox through ``candidate.run``:

1. ``gcc -O2 -std=c11 -c program.c``: the candidate alone, to an object file that is inspected
   before anything of it runs (see ``check_object``): it may call only a few memory functions
   (no I/O, no system calls), define no global symbol but ``sort_ints``, have no constructors,
   and contain no raw ``syscall``/``int`` instruction or valgrind client request.
2. The evaluator's harness (random file names per evaluation) is linked with that object,
   statically (valgrind then starts in a third of the time, and no shared libc is loaded).
3. Correctness: fresh random arrays (lengths 0 .. 100,000, duplicates, negatives, INT_MIN/INT_MAX,
   sorted, reversed, few distinct values) through stdin; the output must equal Python's
   ``sorted()`` exactly.
4. Speed: ``valgrind --tool=callgrind --collect-atstart=no --toggle-collect=sort_ints`` on a FIXED
   benchmark input (fixed so scores are comparable across programs): only instructions executed
   inside ``sort_ints`` (and everything it calls) count, not the harness's I/O. The count is read
   from valgrind's log, written to a file name drawn with ``secrets`` per evaluation, and
   cross-checked with the callgrind output file's ``summary:`` line. The benchmark's output is
   checked too. The same measurement is made for the reference (this directory's
   ``initial_program.c``) in the same sandbox, so the score is exactly 1.0 for the initial program
   on any machine and compiler.

combined_score = reference_instructions / candidate_instructions (higher is better).
"""

from __future__ import annotations

import random
import re
import secrets
from pathlib import Path

from evoforge.candidate import CandidateTimeout
from evoforge.evaluation_result import EvaluationResult

MAX_N = 100_000
INT_MIN, INT_MAX = -(2**31), 2**31 - 1
BENCHMARK_SEED = 20250614
COMPILE_TIMEOUT = 30.0
TOOL_TIMEOUT = 15.0
CHECK_TIMEOUT = 10.0  # native run on the correctness input (about 200,000 numbers)
BENCH_TIMEOUT = 40.0  # callgrind run on the benchmark input (about 45,000 numbers)
GCC = ["gcc", "-O2", "-std=c11"]
REFERENCE = Path(__file__).with_name("initial_program.c")

# What the candidate's object may reference: memory helpers only (and what gcc emits for them).
ALLOWED_CALLS = frozenset({
    "memcpy", "memmove", "memset", "memcmp", "malloc", "calloc", "realloc", "free", "qsort",
    "abort", "__stack_chk_fail", "__memcpy_chk", "__memmove_chk", "__memset_chk",
    "__assert_fail", "_GLOBAL_OFFSET_TABLE_",
})
FORBIDDEN_SECTIONS = (".init_array", ".fini_array", ".preinit_array", ".ctors", ".dtors",
                      ".init", ".fini")

HARNESS = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sort_ints(int *a, int n);

static char *in;
static size_t in_len, in_pos;

static int next_int(long long *out)
{
    while (in_pos < in_len && (in[in_pos] == ' ' || in[in_pos] == '\n')) in_pos++;
    int neg = 0;
    if (in_pos < in_len && in[in_pos] == '-') { neg = 1; in_pos++; }
    if (in_pos >= in_len || in[in_pos] < '0' || in[in_pos] > '9') return 0;
    long long v = 0;
    while (in_pos < in_len && in[in_pos] >= '0' && in[in_pos] <= '9') {
        v = v * 10 + (in[in_pos++] - '0');
        if (v > 4294967296LL) return 0;
    }
    *out = neg ? -v : v;
    return 1;
}

static char *out;
static size_t out_len, out_cap;

static void put(const char *s, size_t k)
{
    if (out_len + k > out_cap) {
        while (out_len + k > out_cap) out_cap = out_cap ? out_cap * 2 : 1 << 16;
        out = realloc(out, out_cap);
        if (!out) exit(4);
    }
    memcpy(out + out_len, s, k);
    out_len += k;
}

static void put_int(long long v)
{
    char tmp[24];
    int k = 24, neg = v < 0;
    unsigned long long u = neg ? (unsigned long long)(-v) : (unsigned long long)v;
    do { tmp[--k] = (char)('0' + u % 10); u /= 10; } while (u);
    if (neg) tmp[--k] = '-';
    put(tmp + k, (size_t)(24 - k));
}

int main(void)
{
    size_t cap = 1 << 16;
    in = malloc(cap);
    if (!in) return 4;
    for (;;) {
        if (in_len == cap) {
            cap *= 2;
            in = realloc(in, cap);
            if (!in) return 4;
        }
        size_t r = fread(in + in_len, 1, cap - in_len, stdin);
        if (r == 0) break;
        in_len += r;
    }
    long long t, n, v;
    if (!next_int(&t) || t < 0) return 3;
    for (long long k = 0; k < t; k++) {
        if (!next_int(&n) || n < 0 || n > MAXN) return 3;
        int *a = malloc(((size_t)n + 1) * sizeof *a);
        if (!a) return 4;
        for (long long i = 0; i < n; i++) {
            if (!next_int(&v) || v < -2147483648LL || v > 2147483647LL) return 3;
            a[i] = (int)v;
        }
        sort_ints(a, (int)n);
        for (long long i = 0; i < n; i++) {
            if (i) put(" ", 1);
            put_int(a[i]);
        }
        put("\n", 1);
        free(a);
    }
    if (out_len && fwrite(out, 1, out_len, stdout) != out_len) return 5;
    return fflush(stdout) ? 5 : 0;
}
""".replace("MAXN", str(MAX_N))


# --------------------------------------------------------------------------- inputs


def encode_input(arrays: list[list[int]]) -> str:
    parts = [str(len(arrays))]
    for arr in arrays:
        parts.append(f"{len(arr)} " + " ".join(map(str, arr)) if arr else "0")
    return "\n".join(parts) + "\n"


def expected_output(arrays: list[list[int]]) -> str:
    return "".join(" ".join(map(str, sorted(arr))) + "\n" for arr in arrays)


def correctness_arrays(rng: random.Random) -> list[list[int]]:
    """Fresh random test arrays: edge cases, duplicates, negatives, extremes, order patterns."""
    def full(k: int) -> list[int]:
        bits = rng.getrandbits
        return [bits(32) + INT_MIN for _ in range(k)]

    arrays: list[list[int]] = [[], [rng.randint(INT_MIN, INT_MAX)], [INT_MAX, INT_MIN],
                               [INT_MIN, INT_MAX, 0, -1, 1, INT_MIN, INT_MAX]]
    for _ in range(150):  # short arrays of every length, small value ranges: many duplicates
        k = rng.randint(0, 70)
        span = rng.choice((1, 3, 10, 1000))
        arrays.append([rng.randint(-span, span) for _ in range(k)])
    for _ in range(20):
        arrays.append(full(rng.randint(2, 300)))
    k = rng.randint(2000, 4000)
    arrays.append(sorted(full(k)))
    arrays.append(sorted(full(k), reverse=True))
    arrays.append([rng.randint(-3, 3)] * rng.randint(1000, 3000))
    half = sorted(full(rng.randint(1000, 2000)))
    arrays.append(half + half[::-1])  # organ pipe
    arrays.append([rng.randint(0, 3) for _ in range(rng.randint(15_000, 25_000))])
    arrays.append(full(rng.randint(20_000, 40_000)))
    arrays.append(full(MAX_N))
    rng.shuffle(arrays)
    return arrays


def benchmark_arrays() -> list[list[int]]:
    """The fixed benchmark (same for every program, so instruction counts are comparable)."""
    rng = random.Random(BENCHMARK_SEED)
    arrays = [[rng.randint(INT_MIN, INT_MAX) for _ in range(12_000)],
              sorted(rng.randint(-10**6, 10**6) for _ in range(3000)),
              sorted((rng.randint(-10**6, 10**6) for _ in range(3000)), reverse=True),
              [rng.randint(0, 15) for _ in range(6000)]]
    for _ in range(400):
        arrays.append([rng.randint(-1000, 1000) for _ in range(rng.randint(0, 40))])
    return arrays


# --------------------------------------------------------------------------- checks


def check_object(undefined: list[str], defined_globals: list[str], sections: list[str],
                 disassembly: str) -> None:
    """Reject an object file that could escape the measurement; ValueError naming the reason."""
    bad = sorted(set(undefined) - ALLOWED_CALLS)
    if bad:
        raise ValueError(
            f"the program references {', '.join(bad[:8])}: sort_ints may only call "
            f"{', '.join(sorted(s for s in ALLOWED_CALLS if not s.startswith('_')))} "
            "(no I/O, no system calls)")
    extra = sorted(set(defined_globals) - {"sort_ints"})
    if "sort_ints" not in defined_globals:
        raise ValueError("the program does not define a global function sort_ints(int *a, int n)")
    if extra:
        raise ValueError(f"the program defines global symbols {', '.join(extra[:8])}: declare every "
                         "helper function and variable `static` (only sort_ints may be global)")
    found = sorted({s for s in sections if s in FORBIDDEN_SECTIONS or
                    any(s.startswith(f + ".") for f in FORBIDDEN_SECTIONS)})
    if found:
        raise ValueError(f"the program has constructor/destructor sections ({', '.join(found)}): "
                         "code may only run inside sort_ints")
    insns = [m.group(1).strip() for m in re.finditer(r"^\s*[0-9a-f]+:\t(.*)$", disassembly, re.MULTILINE)]
    for i, ins in enumerate(insns):
        op = ins.split()[0] if ins.split() else ""
        if op in ("syscall", "sysenter", "int", "int1", "int3"):
            raise ValueError(f"the program contains a raw `{ins}` instruction (system calls and "
                             "traps are not allowed)")
        if re.fullmatch(r"rol\s+\$0x3,%rdi", ins) and i + 1 < len(insns) and re.fullmatch(
                r"rol\s+\$0xd,%rdi", insns[i + 1]):
            raise ValueError("the program contains a valgrind client request (inline assembly that "
                             "talks to the instruction counter is not allowed)")


def parse_symtab(text: str) -> list[tuple[str, str, str, str]]:
    """``objdump -t`` output -> (address, flags, section, name) per symbol."""
    out = []
    for line in text.splitlines():
        m = re.fullmatch(r"([0-9a-f]+) (.{7}) (\S+)\t[0-9a-f]+ (.*)", line)
        if m:
            out.append((m.group(1), m.group(2), m.group(3), m.group(4).split()[-1] if m.group(4).split()
                        else ""))
    return out


def check_entry(symtab: list[tuple[str, str, str, str]]) -> None:
    """sort_ints must be a plain function with an address of its own: callgrind names code by
    symbol, and an alias sharing the address would hide every instruction from the count."""
    entries = [s for s in symtab if s[3] == "sort_ints"]
    if len(entries) != 1 or "F" not in entries[0][1] or not entries[0][2].startswith(".text"):
        raise ValueError("sort_ints must be an ordinary C function (not an alias, ifunc or data)")
    addr, _, section, _ = entries[0]
    twins = sorted(name for a, flags, sec, name in symtab
                   if a == addr and sec == section and name != "sort_ints" and not
                   {"d", "f"} & set(flags))
    if twins:
        raise ValueError(f"sort_ints shares its address with {', '.join(twins)} (an alias?): callgrind "
                         "would count that code under the other name; define sort_ints as its own function")


def parse_nm(text: str) -> tuple[list[str], list[str]]:
    """``nm -P`` output -> (undefined symbols, defined global symbols)."""
    undefined, defined = [], []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 2:
            continue
        name, kind = parts[0], parts[1]
        if kind in ("U", "w", "v"):
            undefined.append(name)
        elif kind.isupper() or kind in ("i", "u"):
            defined.append(name)
    return undefined, defined


def parse_sections(text: str) -> list[str]:
    """``objdump -h`` output -> section names."""
    names = []
    for line in text.split("SYMBOL TABLE:")[0].splitlines():
        parts = line.split()
        if len(parts) >= 7 and parts[0].isdigit():
            names.append(parts[1])
    return names


def parse_instructions(log: str, cg_out: str) -> int:
    """Ir collected inside sort_ints: valgrind's log summary, cross-checked with the callgrind
    file's ``summary:`` line."""
    collected = re.findall(r"^==\d+== Collected : (\d+)\s*$", log, re.MULTILINE)
    summary = re.findall(r"^summary: (\d+)\s*$", cg_out, re.MULTILINE)
    if len(collected) != 1 or len(summary) != 1:
        raise ValueError("valgrind did not report exactly one instruction count "
                         f"(log: {len(collected)}, callgrind file: {len(summary)})")
    if collected[0] != summary[0]:
        raise ValueError(f"valgrind's log ({collected[0]}) and callgrind file ({summary[0]}) disagree")
    return int(collected[0])


def compare_output(arrays: list[list[int]], stdout: str, what: str) -> None:
    if stdout == expected_output(arrays):
        return
    lines = stdout.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # after the final newline
    for i, arr in enumerate(arrays):
        want = " ".join(map(str, sorted(arr)))
        got = lines[i] if i < len(lines) else None
        if got != want:
            sample = arr[:8]
            more = " ..." if len(arr) > 8 else ""
            shown = "nothing" if got is None else repr(got[:80] + ("..." if len(got) > 80 else ""))
            raise ValueError(f"{what}: wrong result for an array of length {len(arr)} "
                             f"(starting {sample}{more}): got {shown}")
    raise ValueError(f"{what}: extra output after the last array")


# --------------------------------------------------------------------------- sandbox steps



def _cap(text: str, n: int = 1500) -> str:
    text = text.strip()
    return text if len(text) <= n else text[:n] + f"\n... ({len(text) - n} more characters)"


def _run(candidate, argv: list[str], what: str, timeout: float, **kw):
    r = candidate.run(argv, timeout=timeout, **kw)
    if r.timed_out:
        raise CandidateTimeout(f"{what} did not finish within {timeout:g} s")
    return r


def _compile(candidate, source_name: str, obj: str) -> None:
    r = _run(candidate, [*GCC, "-c", "-o", obj, source_name], "compiling the program",
             COMPILE_TIMEOUT)
    if r.returncode != 0:
        raise ValueError(f"the program does not compile:\n{_cap(r.stderr)}")


def _inspect(candidate, obj: str) -> None:
    nm = _run(candidate, ["nm", "-P", obj], "nm", TOOL_TIMEOUT)
    hdr = _run(candidate, ["objdump", "-h", "-t", obj], "objdump -h -t", TOOL_TIMEOUT)
    dis = _run(candidate, ["objdump", "-d", "--no-show-raw-insn", obj], "objdump -d", TOOL_TIMEOUT,
               max_output=32 << 20)
    if nm.returncode != 0 or hdr.returncode != 0 or dis.returncode != 0:
        raise ValueError(f"cannot inspect the compiled program: {_cap(nm.stderr + hdr.stderr + dis.stderr)}")
    undefined, defined = parse_nm(nm.stdout)
    check_object(undefined, defined, parse_sections(hdr.stdout), dis.stdout)
    check_entry(parse_symtab(hdr.stdout))


def _link(candidate, harness: str, obj: str, exe: str) -> None:
    r = _run(candidate, [*GCC, "-static", "-o", exe, harness, obj], "linking", COMPILE_TIMEOUT)
    if r.returncode != 0:
        raise ValueError(f"the program does not link with the harness:\n{_cap(r.stderr)}")


def _count(candidate, exe: str, tag: str, bench: list[list[int]], bench_input: str, what: str) -> int:
    log, cg = f"vg_{tag}.log", f"cg_{tag}.out"
    r = _run(candidate, ["valgrind", "--tool=callgrind", f"--log-file={log}",
                         f"--callgrind-out-file={cg}", "--collect-atstart=no",
                         "--toggle-collect=sort_ints", f"./{exe}"],
             f"{what} under callgrind", BENCH_TIMEOUT, input=bench_input, max_output=8 << 20)
    if r.returncode != 0:
        raise ValueError(f"{what} failed under valgrind (exit {r.returncode}):\n"
                         f"{_cap(candidate.read_file(log, max_bytes=1 << 16))}")
    compare_output(bench, r.stdout, f"{what} on the benchmark")
    return parse_instructions(candidate.read_file(log, max_bytes=1 << 20),
                              candidate.read_file(cg, max_bytes=8 << 20))


def evaluate(candidate) -> EvaluationResult:
    tag = secrets.token_hex(8)
    harness, obj, exe = f"harness_{tag}.c", f"cand_{tag}.o", f"sorter_{tag}"
    candidate.write_file(harness, HARNESS)
    _compile(candidate, candidate.program_name, obj)
    _inspect(candidate, obj)
    _link(candidate, harness, obj, exe)

    arrays = correctness_arrays(random.Random(secrets.randbits(64)))
    r = _run(candidate, [f"./{exe}"], "sorting the test arrays", CHECK_TIMEOUT,
             input=encode_input(arrays), max_output=16 << 20)
    if r.returncode != 0:
        raise ValueError(f"the sorter exited with status {r.returncode} on the test arrays "
                         f"(crash or out-of-bounds access?): {_cap(r.stderr, 500)}")
    compare_output(arrays, r.stdout, "correctness test")

    bench = benchmark_arrays()
    bench_input = encode_input(bench)
    instructions = _count(candidate, exe, tag, bench, bench_input, "the program")

    ref_src, ref_obj, ref_exe = f"ref_{tag}.c", f"ref_{tag}.o", f"ref_{tag}"
    candidate.write_file(ref_src, REFERENCE.read_text())
    _compile(candidate, ref_src, ref_obj)
    _link(candidate, harness, ref_obj, ref_exe)
    reference = _count(candidate, ref_exe, f"ref_{tag}", bench, bench_input, "the reference")

    n_numbers = sum(len(a) for a in bench)
    if instructions < n_numbers:  # a sort reads every number at least once
        raise ValueError(f"only {instructions} instructions were counted inside sort_ints for "
                         f"{n_numbers} numbers: the count did not see the sorting code")
    score = reference / instructions
    return EvaluationResult(
        metrics={"combined_score": score, "instructions": instructions,
                 "reference_instructions": reference,
                 "instructions_per_number": instructions / n_numbers},
        artifacts={"feedback": (
            f"correct on {len(arrays)} fresh random arrays; {instructions:,} instructions inside "
            f"sort_ints on the fixed benchmark ({len(bench)} arrays, {n_numbers:,} numbers) vs "
            f"{reference:,} for the initial program: speed-up {score:.4f}x")},
    )
