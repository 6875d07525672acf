"""verilog_multiplier: source rules, yosys statistics and testbench parsing on known inputs, known
designs and hostile ones through the real executor, and a short model-free run."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from types import ModuleType

import pytest
import support

from evoforge.problem import Problem
from evoforge.program import Status


@pytest.fixture(autouse=True)
def _tools() -> None:
    support.skip_without_tools(Problem.load("verilog_multiplier"))


@pytest.fixture(scope="module")
def prob() -> Problem:
    return Problem.load("verilog_multiplier")


@pytest.fixture(scope="module")
def ev(prob: Problem) -> ModuleType:
    return support.load_evaluator(prob)


def with_block(prob: Problem, body: str) -> str:
    return support.replace_block(prob.initial_code, "// EVOLVE-BLOCK-START", "// EVOLVE-BLOCK-END", body)


def module(body: str, p: str = "output [15:0] p") -> str:
    return f"module mult8(input [7:0] a, input [7:0] b, {p});\n{body}\nendmodule\n"


# -- pure checks ---------------------------------------------------------------------------


def test_source_rules_accept_the_initial_program(ev: ModuleType, prob: Problem) -> None:
    assert "*" in prob.initial_code  # in comments only
    ev.check_source(prob.initial_code)
    ev.check_source(module("always @(*) p = a;\nalways @ ( * ) p = b;\nalways @* p = a;"))
    stripped = ev.strip_comments("a /* x\n * y */ b // c * d\ne")
    assert stripped == "a \n b \ne"


@pytest.mark.parametrize(("code", "reason"), [
    ("assign p = a * b;", "line 2: the * operator"),
    ("assign p = a ** 2;", "the * operator"),
    ("always @(*) p = a * b;", "line 2: the * operator"),
    ("always @* p = {a, b} * 1;", "the * operator"),
    ("(* keep *) wire w;", "the * operator"),
    ("assign p = a / b;", "division"),
    ("assign p = a % b;", "modulo"),
    ("initial $display(\"x\");", "string literals"),
    ("initial $finish;", "system tasks"),
    ("`define X 1", "compiler directives"),
    ("/* never closed", "never closed"),
])
def test_source_rules_reject(ev: ModuleType, code: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason.replace("*", r"\*")):
        ev.check_source(module(code))


def stat(by_type: dict[str, int], name: str = "\\mult8", **extra: object) -> dict:
    m = {"num_cells": sum(by_type.values()), "num_cells_by_type": by_type, "num_memories": 0,
         "num_processes": 0, **extra}
    return {"modules": {name: m}}


def test_cells_from_stat(ev: ModuleType) -> None:
    assert ev.cells_from_stat(stat({"$_AND_": 3, "$_XOR_": 2})) == (5, {"$_AND_": 3, "$_XOR_": 2})
    with pytest.raises(ValueError, match="only combinational gates"):
        ev.cells_from_stat(stat({"$_AND_": 3, "$_DLATCH_P_": 1}))
    with pytest.raises(ValueError, match="only combinational gates"):
        ev.cells_from_stat(stat({"fa": 1}))
    with pytest.raises(ValueError, match="single module mult8, got: top"):
        ev.cells_from_stat(stat({"$_AND_": 1}, name="\\top"))
    with pytest.raises(ValueError, match="memories"):
        ev.cells_from_stat(stat({"$_AND_": 1}, num_memories=1))
    bad = stat({"$_AND_": 1})
    bad["modules"]["\\mult8"]["num_cells"] = 0
    with pytest.raises(ValueError, match="cell count"):
        ev.cells_from_stat(bad)


def test_result_line_needs_the_token(ev: ModuleType) -> None:
    out = "noise\nRESULT_abc 2 13 7 0 0000000001011011\n"
    assert ev.parse_result(out, "abc") == (2, 13, 7)
    with pytest.raises(ValueError, match="did not report"):
        ev.parse_result(out, "abd")  # a forged line without the evaluation's token
    with pytest.raises(ValueError, match="did not report"):
        ev.parse_result(out + out, "abc")
    with pytest.raises(ValueError, match="malformed"):
        ev.parse_result("RESULT_abc x 1 2 3 4\n", "abc")


def test_reference_value_is_yosys_synthesis_of_star(ev: ModuleType, prob: Problem, tmp_path: Path
                                                    ) -> None:
    """best_known is yosys's own synthesis of `a * b` with the evaluator's script."""
    (tmp_path / "ref.v").write_text(module("  assign p = a * b;"))
    script = ("read_verilog ref.v; synth -flatten -top mult8; check -assert; "
              "tee -q -o stat.json stat -json")
    subprocess.run(["yosys", "-q", "-p", script], cwd=tmp_path, check=True, timeout=120)
    cells, _ = ev.cells_from_stat(json.loads((tmp_path / "stat.json").read_text()))
    version = subprocess.run(["yosys", "-V"], capture_output=True, text=True, timeout=30).stdout
    if "Yosys 0.23 " not in version:
        pytest.skip(f"the reference was measured with yosys 0.23, this is {version.strip()}")
    assert cells == ev.REFERENCE_CELLS == -prob.meta["best_known"] == 354


# -- through the real executor ---------------------------------------------------------------

SHIFT_ADD = """\
  integer i;
  always @(*) begin
    p = 16'd0;
    for (i = 0; i < 8; i = i + 1)
      if (b[i]) p = p + ({8'd0, a} << i);
  end"""

HOSTILE = {
    "wrong": (module("  assign p = a + b;"), "wrong product for a="),
    "star": (module("  assign p = a * b;"), "the * operator is not allowed"),
    "syntax": (module("  assign p = a +;"), "yosys rejected the design"),
    "loop": (module("  wire [15:0] t = t + {a, b};\n  assign p = t;"), "yosys rejected the design"),
    "latch": (module("  always @(*) if (a[0]) p = {a, b};", p="output reg [15:0] p"),
              "only combinational gates"),
    "narrow_port": (module("  assign p = a & b;", p="output [7:0] p"), "wrong product"),
    # RTL simulation passes (Icarus ignores the pragma) and yosys synthesises 0 cells (it drops
    # the code between the pragmas); the netlist, which is what is simulated, computes nothing
    "translate_off": (module("""\
  integer i;
  always @(*) begin
    p = 16'd0;
    // synthesis translate_off
    for (i = 0; i < 8; i = i + 1)
      if (b[i]) p = p + ({8'd0, a} << i);
    // synthesis translate_on
  end""", p="output reg [15:0] p"), "wrong product"),
}


def test_known_designs_through_the_executor(prob: Problem, tmp_path: Path) -> None:
    log0 = prob.initial_code.replace("localparam LOG_BLOCK = 3;", "localparam LOG_BLOCK = 0;")
    assert log0 != prob.initial_code
    shift_add = with_block(prob, module(SHIFT_ADD, p="output reg [15:0] p"))
    codes = [prob.initial_code, log0, shift_add, *(with_block(prob, c) for c, _ in HOSTILE.values())]
    results = support.evaluate_codes(prob, tmp_path, codes, concurrent=True)
    initial, carry_select, behavioural, *hostile = results
    for r in (initial, carry_select, behavioural):
        assert r.status is Status.OK, (r.reason, r.artifacts)
        assert r.score == -r.metrics["cells"]
    assert initial.score == prob.meta["baseline"] == -430
    assert carry_select.score == -404  # one-bit carry-select blocks: cheaper full adders
    assert behavioural.score == -446  # shift-and-add with `if`: yosys builds the adders and muxes
    for (name, (_, reason)), r in zip(HOSTILE.items(), hostile, strict=True):
        assert r.status is Status.FAILED, (name, r.status, r.reason)
        assert reason in r.reason, (name, r.reason)


def test_a_design_that_stalls_yosys_times_out(prob: Problem, tmp_path: Path) -> None:
    code = module("  genvar i;\n  generate for (i = 0; i < 100000000; i = i + 1) begin : g\n"
                  "    wire w;\n  end endgenerate\n  assign p = {a, b};")
    support.assert_times_out(prob, tmp_path, with_block(prob, code), timeout=3)


# -- a short model-free run -----------------------------------------------------------------------


def test_model_free_run_improves(prob: Problem, tmp_path: Path) -> None:
    """The model-free mutator only perturbs numeric literals here; about 1 child in 40 changes
    LOG_BLOCK (one of 82 literals), and any smaller value is a cheaper correct design. Seed 50
    does so in the first generation (proposal 2: LOG_BLOCK 3 -> 1, 420 cells), which every run
    proposes from the initial program, so the outcome does not depend on timing."""
    best = support.model_free_best(prob, tmp_path, max_programs=5, seed=50)
    assert best.score is not None and best.score > prob.meta["baseline"]
