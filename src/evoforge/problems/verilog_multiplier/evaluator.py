"""Evaluator for verilog_multiplier: an 8-bit unsigned multiplier, scored by synthesised cells.

Steps, all inside the candidate's sandbox (``candidate.run``), with a random token per evaluation
in every file name:

1. Source rules (``check_source``, on the evaluator's trusted copy of the source): no ``*``
   except in ``@*``/``@(*)`` (so no ``*``/``**`` operators, no ``(* attributes *)``), no ``/`` or
   ``%`` outside comments,
   no ``$`` (system tasks such as ``$display``/``$readmemh``), no compiler directives (`````),
   no string literals.
2. ``yosys -p "read_verilog program.v; synth -flatten -top mult8; check -assert; stat -json;
   write_verilog -noattr netlist.v"``: the design is flattened (so logic in submodules is counted
   and optimised across module boundaries), must be free of logic loops and other problems
   ``check`` finds, and may contain only combinational gate cells (no latches, flip-flops,
   memories, black boxes).
3. Correctness: the SYNTHESISED NETLIST (the thing that is scored, not the source) is simulated
   with Icarus Verilog against all 65,536 input pairs (starting point and bit order drawn at random
   per evaluation). Simulating the netlist rules out every simulation/synthesis mismatch
   (x-optimism, ``translate_off`` pragmas, incomplete sensitivity lists), and a loop-free netlist
   of combinational gates has no state, so the order of the vectors cannot matter. The testbench
   prints one result line tagged with a random token; the candidate cannot print at all (no
   ``$``), and the token would make a forged line detectable.

combined_score = -(number of cells), higher is better. Incorrect designs raise
``ValueError("wrong product for a=.., b=..")``.
"""

from __future__ import annotations

import json
import re
import secrets

from evoforge.candidate import CandidateTimeout
from evoforge.evaluation_result import EvaluationResult

REFERENCE_CELLS = 354  # yosys 0.23 `synth -flatten` of `assign p = a * b;` (reference, not a record)
YOSYS_TIMEOUT = 60.0
SIM_TIMEOUT = 30.0
COMBINATIONAL = frozenset({
    "$_NOT_", "$_BUF_", "$_AND_", "$_NAND_", "$_OR_", "$_NOR_", "$_XOR_", "$_XNOR_", "$_ANDNOT_",
    "$_ORNOT_", "$_MUX_", "$_NMUX_", "$_AOI3_", "$_OAI3_", "$_AOI4_", "$_OAI4_",
})


# --------------------------------------------------------------------------- source rules


def strip_comments(source: str) -> str:
    """The source with comments blanked out (newlines kept). A string literal is an error."""
    out: list[str] = []
    i, n = 0, len(source)
    while i < n:
        if source.startswith("//", i):
            j = source.find("\n", i)
            j = n if j < 0 else j
            i = j
        elif source.startswith("/*", i):
            j = source.find("*/", i + 2)
            if j < 0:
                raise ValueError("a /* comment is never closed")
            out.append("\n" * source.count("\n", i, j + 2))
            i = j + 2
        else:
            if source[i] == '"':
                line = source.count("\n", 0, i) + 1
                raise ValueError(f"line {line}: string literals are not allowed (a multiplier needs none)")
            out.append(source[i])
            i += 1
    return "".join(out)


_RULES = (
    ("*", "the * operator is not allowed (nor ** or (* attributes *)): yosys would build the "
          "multiplier itself; write it from gates, adders or other operators"),
    ("/", "division (/) is not allowed"),
    ("%", "the modulo operator (%) is not allowed"),
    ("$", "system tasks and functions ($display, $finish, $readmemh, ...) are not allowed"),
    ("`", "compiler directives (`define, `include, `ifdef, ...) are not allowed"),
)


_SENSITIVITY_STAR = re.compile(r"@\s*\(\s*\*\s*\)|@\s*\*")


def check_source(source: str) -> None:
    """Raise ValueError naming the first forbidden construct outside comments."""
    # `always @*` / `always @(*)` (the implicit sensitivity list) is the one allowed use of *
    code = _SENSITIVITY_STAR.sub(lambda m: " " * len(m.group(0)), strip_comments(source))
    for token, reason in _RULES:
        pos = code.find(token)
        if pos >= 0:
            line = code.count("\n", 0, pos) + 1
            raise ValueError(f"line {line}: {reason}")


# --------------------------------------------------------------------------- synthesis results


def cells_from_stat(stat: dict) -> tuple[int, dict[str, int]]:
    """``stat -json`` -> (cell count, cells by type); ValueError for anything but combinational
    gates in a single flattened mult8."""
    modules = stat.get("modules")
    if not isinstance(modules, dict) or list(modules) != ["\\mult8"]:
        names = ", ".join(m.lstrip("\\") for m in (modules or {}))
        raise ValueError(f"after flattening, the design should be the single module mult8, got: {names}")
    m = modules["\\mult8"]
    if m.get("num_memories") or m.get("num_processes"):
        raise ValueError("the design synthesises to memories or processes; use combinational logic")
    by_type = m.get("num_cells_by_type") or {}
    if not isinstance(by_type, dict) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in by_type.values()):
        raise ValueError("cannot read yosys's statistics")
    other = sorted(set(by_type) - COMBINATIONAL)
    if other:
        raise ValueError(f"the design synthesises to {', '.join(t.strip('$_') for t in other)} cells: "
                         "only combinational gates are allowed (no latches, flip-flops or black boxes)")
    cells = m.get("num_cells")
    if not isinstance(cells, int) or isinstance(cells, bool) or cells != sum(by_type.values()):
        raise ValueError("cannot read yosys's cell count")
    return cells, dict(by_type)


def testbench(module: str, token: str, add: int, mask: int) -> str:
    """An exhaustive testbench visiting all 65,536 (a, b) pairs once, in the order
    ``{a, b} = ((k + add) mod 2^16) ^ mask``: consecutive vectors differ in few bits, which keeps
    the event-driven simulation fast (a fully random order is three times slower)."""
    return f"""
module {module};
  reg [7:0] a, b;
  wire [15:0] p;
  reg [15:0] idx, want;
  integer k, errors, fa, fb, fp;
  mult8 dut(.a(a), .b(b), .p(p));
  initial begin
    errors = 0; fa = -1; fb = -1; fp = -1;
    for (k = 0; k < 65536; k = k + 1) begin
      idx = (k + {add}) ^ {mask};
      a = idx[15:8];
      b = idx[7:0];
      want = a * b;
      #1;
      if (p !== want) begin
        if (errors == 0) begin fa = a; fb = b; fp = p; end
        errors = errors + 1;
      end
    end
    $display("RESULT_{token} %0d %0d %0d %0d %b", errors, fa, fb, fp, p);
    $finish;
  end
endmodule
"""


def parse_result(stdout: str, token: str) -> tuple[int, int, int]:
    """The tagged result line -> (errors, first failing a, first failing b)."""
    lines = [ln for ln in stdout.splitlines() if ln.startswith(f"RESULT_{token} ")]
    if len(lines) != 1:
        raise ValueError(f"the testbench did not report a result ({len(lines)} tagged lines)")
    parts = lines[0].split()
    if len(parts) != 6 or not all(re.fullmatch(r"-?\d+", x) for x in parts[1:4]):
        raise ValueError("the testbench's result line is malformed (an x or z on the output?)")
    return int(parts[1]), int(parts[2]), int(parts[3])


# --------------------------------------------------------------------------- evaluate



def _cap(text: str, n: int = 1500) -> str:
    text = text.strip()
    return text if len(text) <= n else text[:n] + f"\n... ({len(text) - n} more characters)"


def _errors(text: str) -> str:
    lines = [ln for ln in text.splitlines() if "ERROR" in ln or "error" in ln or "Warning" in ln]
    return _cap("\n".join(lines[:20]) or text)


def _run(candidate, argv: list[str], what: str, timeout: float):
    r = candidate.run(argv, timeout=timeout, max_output=1 << 20)
    if r.timed_out:
        raise CandidateTimeout(f"{what} did not finish within {timeout:g} s")
    return r


def evaluate(candidate) -> EvaluationResult:
    check_source(candidate.source)
    tag = secrets.token_hex(8)
    net, stat_file, tb, sim = f"net_{tag}.v", f"stat_{tag}.json", f"tb_{tag}.v", f"sim_{tag}"

    script = (f"read_verilog {candidate.program_name}; synth -flatten -top mult8; check -assert; "
              f"tee -q -o {stat_file} stat -json; write_verilog -noattr {net}")
    r = _run(candidate, ["yosys", "-q", "-p", script], "yosys", YOSYS_TIMEOUT)
    if r.returncode != 0:
        raise ValueError(f"yosys rejected the design:\n{_errors(r.stderr + r.stdout)}")
    try:
        stat = json.loads(candidate.read_file(stat_file, max_bytes=1 << 20))
    except json.JSONDecodeError as e:
        raise ValueError("cannot read yosys's statistics") from e
    cells, by_type = cells_from_stat(stat)

    add, mask, token = secrets.randbits(16), secrets.randbits(16), secrets.token_hex(12)
    candidate.write_file(tb, testbench(f"tb_{tag}", token, add, mask))
    r = _run(candidate, ["iverilog", "-o", sim, tb, net], "iverilog", SIM_TIMEOUT)
    if r.returncode != 0:
        raise ValueError(f"the synthesised netlist does not compile with the testbench "
                         f"(are the ports exactly a[7:0], b[7:0], p[15:0]?):\n{_cap(r.stderr + r.stdout)}")
    r = _run(candidate, ["vvp", "-n", sim], "simulation", SIM_TIMEOUT)
    if r.returncode != 0:
        raise ValueError(f"the simulation failed (exit {r.returncode}):\n{_cap(r.stderr + r.stdout)}")
    errors, fa, fb = parse_result(r.stdout, token)
    if errors:
        raise ValueError(f"wrong product for a={fa}, b={fb} (expected {fa * fb}); "
                         f"{errors} of 65536 products are wrong")

    breakdown = ", ".join(f"{n} {t.strip('$_')}" for t, n in sorted(by_type.items(), key=lambda x: -x[1]))
    return EvaluationResult(
        metrics={"combined_score": -cells, "cells": cells, "reference_cells": REFERENCE_CELLS},
        artifacts={"feedback": (
            f"correct on all 65,536 input pairs; {cells} cells after yosys synth ({breakdown}); "
            f"yosys's own synthesis of a*b gives {REFERENCE_CELLS} cells")},
    )
