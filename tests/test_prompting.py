"""PromptBuilder: golden tests of the exact rendered prompts, plus the behaviour around them.

Regenerate the golden files after an intended template change with
``EVOFORGE_REGEN_GOLDEN=1 .venv/bin/pytest tests/test_prompting.py`` and review the diff.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from evoforge.config import Config, build_config
from evoforge.errors import ConfigError
from evoforge.mutators.base import MutationRequest
from evoforge.program import Program, Status
from evoforge.prompting import PromptBuilder, cap_text

GOLDEN = Path(__file__).parent / "golden"
REGEN = os.environ.get("EVOFORGE_REGEN_GOLDEN") == "1"

PARENT_CODE = """import math

# EVOLVE-BLOCK-START
def pack(n):
    return [(0.5, 0.5, 0.1)] * n
# EVOLVE-BLOCK-END

if __name__ == "__main__":
    print(pack(3))
"""


def parent(**kw: object) -> Program:
    base: dict[str, object] = dict(
        id=12, code=PARENT_CODE, generation=3, status=Status.FAILED,
        reason="evaluator raised ValueError: circles overlap",
        metrics={"combined_score": 0.25, "overlap": 3.0},
        artifacts={"stderr": "Traceback (most recent call last):\n  ...\n"
                             "ValueError: circles overlap",
                   "failing_case": "n=3: circles 0 and 1 overlap"})
    base.update(kw)
    return Program(**base)  # type: ignore[arg-type]


CONTEXT = (
    Program(id=4, code="def pack(n):\n    return []\n", generation=1, status=Status.OK,
            score=0.75, metrics={"combined_score": 0.75}),
    Program(id=9, code="def pack(n):\n    while True: pass\n", generation=2,
            status=Status.TIMEOUT, reason="wall clock 60s"),
)
PARTNERS = (
    Program(id=5, code="def pack(n):\n    return [(0.1, 0.1, 0.05)] * n\n", generation=2,
            status=Status.OK, score=0.5, metrics={"combined_score": 0.5, "overlap": 0.0}),
)


def request(**kw: object) -> MutationRequest:
    base: dict[str, object] = dict(parent=parent(), rng=random.Random(0), context=CONTEXT,
                                   task="Pack n circles in the unit square; maximise radii sum.")
    base.update(kw)
    return MutationRequest(**base)  # type: ignore[arg-type]


def render(messages: list[dict[str, str]]) -> str:
    return "".join(f"=== {m['role']} ===\n{m['content']}" for m in messages)


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if REGEN:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"golden file {path} missing; run with EVOFORGE_REGEN_GOLDEN=1"
    assert text == path.read_text(), (
        f"prompt differs from {path}; if intended, regenerate with EVOFORGE_REGEN_GOLDEN=1")


def test_golden_diff_prompt() -> None:
    pb = PromptBuilder(system_message="Prefer numpy-free code.")
    check_golden("prompt_diff.txt", render(pb.build(request())))


def test_golden_rewrite_prompt_minimize_crossover_no_context_code() -> None:
    pb = PromptBuilder(edit_mode="rewrite", minimize=True, score_metric="loss",
                       include_code_of_context=False)
    ok_parent = parent(status=Status.OK, reason="", score=0.5, metrics={"loss": 0.5},
                       artifacts={})
    check_golden("prompt_rewrite.txt",
                 render(pb.build(request(parent=ok_parent, others=PARTNERS))))


def test_golden_no_markers_no_task() -> None:
    pb = PromptBuilder()
    plain = parent(code="def f(x):\n    return x\n", status=Status.OK, reason="", score=1.0,
                   metrics={"combined_score": 1.0}, artifacts={})
    check_golden("prompt_plain.txt", render(pb.build(request(parent=plain, context=(), task=""))))


def test_messages_shape_and_content() -> None:
    msgs = PromptBuilder().build(request())
    assert [m["role"] for m in msgs] == ["system", "user"]
    user = msgs[1]["content"]
    assert PARENT_CODE.rstrip("\n") in user
    assert "Status: failed - evaluator raised ValueError: circles overlap" in user
    assert "ValueError: circles overlap" in user and "n=3: circles 0 and 1 overlap" in user
    assert "higher is better" in user
    assert "<<<<<<< SEARCH" in user and ">>>>>>> REPLACE" in user
    assert "Program 4: combined_score = 0.75" in user and "return []" in user
    assert "Program 9: combined_score = n/a (timeout)" in user


def test_edit_mode_override_and_direction() -> None:
    pb = PromptBuilder(minimize=True)
    user = pb.build(request(), edit_mode="rewrite")[1]["content"]
    assert "lower is better" in user
    assert "<<<<<<< SEARCH" not in user and "complete new program" in user
    with pytest.raises(ConfigError, match="edit mode"):
        pb.build(request(), edit_mode="patch")
    with pytest.raises(ConfigError, match="edit mode"):
        PromptBuilder(edit_mode="patch")


def test_feedback_is_capped() -> None:
    long = "A" * 500 + "MIDDLE" + "Z" * 500
    pb = PromptBuilder(feedback_chars=100)
    user = pb.build(request(parent=parent(artifacts={"stderr": long})))[1]["content"]
    assert "MIDDLE" not in user and "characters omitted" in user
    assert "A" * 33 in user and "Z" * 67 in user and "A" * 100 not in user
    none = PromptBuilder(feedback_chars=0).build(request())[1]["content"]
    assert "Evaluator feedback" not in none


def test_cap_text() -> None:
    assert cap_text("short", 10) == "short"
    capped = cap_text("0123456789" * 10, 30)
    assert capped.startswith("0123456789") and capped.endswith("0123456789")
    assert "[70 characters omitted]" in capped


def test_context_code_can_be_left_out() -> None:
    user = PromptBuilder(include_code_of_context=False).build(request())[1]["content"]
    assert "return []" not in user and "Program 4: combined_score = 0.75" in user


def test_template_dir_overrides_by_file_name(tmp_path: Path) -> None:
    (tmp_path / "user.j2").write_text("Improve program {{ parent.id }} ({{ better }} is better)")
    msgs = PromptBuilder(template_dir=tmp_path).build(request())
    assert msgs[1]["content"] == "Improve program 12 (higher is better)\n"
    assert "evolutionary search" in msgs[0]["content"]  # built-in system prompt kept


def test_strict_undefined_in_custom_template(tmp_path: Path) -> None:
    (tmp_path / "user.j2").write_text("{{ parnet.code }}")
    with pytest.raises(ConfigError, match="render"):
        PromptBuilder(template_dir=tmp_path).build(request())


def test_missing_template_dir_is_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="template_dir"):
        PromptBuilder(template_dir=tmp_path / "nope")


def test_from_config() -> None:
    cfg: Config = build_config({"objective": {"direction": "minimize", "score_metric": "err"},
                                "mutator": {"edit_mode": "rewrite"},
                                "prompt": {"system_message": "EXTRA RULE", "feedback_chars": 7,
                                           "include_code_of_context": False}})
    pb = PromptBuilder.from_config(cfg)
    assert (pb.edit_mode, pb.minimize, pb.score_metric) == ("rewrite", True, "err")
    assert (pb.feedback_chars, pb.include_code_of_context) == (7, False)
    msgs = pb.build(request())
    assert msgs[0]["content"].rstrip().endswith("EXTRA RULE")
    assert "`err`: lower is better" in msgs[1]["content"]


def test_a_multi_objective_prompt_names_every_objective_and_constraint():
    """Issue 14: with objective.metrics the LLM is told what the Pareto search compares,
    instead of only the scalar score metric; a scalar run's prompt does not change."""
    import random

    from evoforge.config import build_config
    from evoforge.mutators.base import MutationRequest
    from evoforge.program import Program, Status
    from evoforge.prompting import PromptBuilder

    parent = Program(id=3, code="x = 1\n", status=Status.OK, score=1.0,
                     metrics={"accuracy": 0.9, "latency_ms": 12.0, "error": 0.02})
    request = MutationRequest(parent=parent, rng=random.Random(0), task="t", language="python")
    cfg = build_config({"objective": {
        "metrics": [{"name": "accuracy"}, {"name": "latency_ms", "direction": "minimize"}],
        "constraints": [{"name": "error", "max": 0.05}]}})
    user = PromptBuilder.from_config(cfg).build(request)[1]["content"]
    assert "- `accuracy`: higher is better" in user
    assert "- `latency_ms`: lower is better" in user
    assert "constraint: `error` at most 0.05" in user
    assert "Programs are ranked by the metric" not in user
    scalar = PromptBuilder.from_config(build_config({})).build(request)[1]["content"]
    assert "Programs are ranked by the metric `combined_score`: higher is better" in scalar
    assert "Pareto" not in scalar
