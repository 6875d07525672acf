from __future__ import annotations

import ast
import asyncio
import math
import os
import random
import subprocess
import sys
import textwrap

import pytest

from evoforge.edit import block_contents, check_fixed_parts, find_blocks, python_syntax_error
from evoforge.mutators.base import MutationRequest, Mutator
from evoforge.mutators.model_free import ModelFreeMutator, perturb_float, perturb_int
from evoforge.program import Program

REALISTIC = '''"""Circle packing: place n circles in the unit square (fixed header)."""
from __future__ import annotations

import math
import random

N_DEFAULT = 26  # fixed: the evaluator relies on it


# EVOLVE-BLOCK-START
class Packer:
    """Greedy ring packer.

    Places circles on rings and shrinks radii until nothing overlaps.
    """

    def __init__(self, n: int, margin: float = 0.02) -> None:
        self.n = n
        self.margin = margin
        self.rings = [6, 12, 8]

    def centers(self) -> list[tuple[float, float]]:
        pts = [(0.5, 0.5)]
        for k, count in enumerate(self.rings, start=1):
            r = 0.13 * k + self.margin
            for i in range(count):
                a = 2 * math.pi * i / count + (0.3 if k % 2 else 0.0)
                x, y = 0.5 + r * math.cos(a), 0.5 + r * math.sin(a)
                if 0.0 < x < 1.0 and 0.0 < y < 1.0:
                    pts.append((x, y))
        while len(pts) < self.n:
            pts.append((random.random(), random.random()))
        return pts[: self.n]


def radii(pts, scale=-0.5):
    out = []
    for i, (x, y) in enumerate(pts):
        r = min(x, y, 1 - x, 1 - y)
        for j, (u, v) in enumerate(pts):
            if i != j:
                d = math.hypot(x - u, y - v)
                r = min(r, d / 2)
        try:
            out.append(max(r * (1 + scale * 0.01), 0.0))
        except ValueError:
            out.append(0.0)
    assert all(r >= 0 for r in out), f"negative radius in {out!r}"
    return [x for x in out if x is not None] or [0.0]
# EVOLVE-BLOCK-END


def construct_packing(n: int = N_DEFAULT):
    pts = Packer(n).centers()
    rs = radii(pts)
    total = 0.0
    for r in rs:
        # EVOLVE-BLOCK-START
        # accumulate (this comment is dropped if the block mutates)
        total += r * 1.0
        if total > 1e6 or total < -1e6:
            break
        # EVOLVE-BLOCK-END
    return pts, rs, total


if __name__ == "__main__":
    print(construct_packing()[2])
'''

KINDS = {"literal", "swap_op", "duplicate", "delete", "swap_stmts", "crossover"}


def request(code: str, seed: int, *, others: tuple[str, ...] = (), language: str = "python"
            ) -> MutationRequest:
    return MutationRequest(
        parent=Program(id=1, code=code),
        rng=random.Random(seed),
        others=tuple(Program(id=10 + i, code=c) for i, c in enumerate(others)),
        language=language,
    )


def mutate(m: ModelFreeMutator, req: MutationRequest):  # noqa: ANN201
    return asyncio.run(m.mutate(req))


def test_is_a_mutator() -> None:
    m = ModelFreeMutator()
    assert isinstance(m, Mutator)
    assert m.name == "model_free" and m.uses_llm is False
    with pytest.raises(ValueError, match="max_edits"):
        ModelFreeMutator(max_edits=0)


def test_500_seeds_children_parse_and_keep_fixed_parts() -> None:
    m = ModelFreeMutator(max_edits=3)
    seen: set[str] = set()
    made = 0
    for seed in range(500):
        out = m.mutate_sync(request(REALISTIC, seed))
        assert out.info.mutator == "model_free"
        if out.code is None:
            continue
        made += 1
        assert out.code != REALISTIC
        assert python_syntax_error(out.code) is None, (seed, out.info)
        check_fixed_parts(REALISTIC, out.code)
        kinds = out.info.edit_kind.split(",")
        assert 1 <= len(kinds) <= 3 and set(kinds) <= KINDS
        assert out.info.note
        seen.update(kinds)
    assert made >= 495
    assert seen == KINDS - {"crossover"}


def test_async_mutate_matches_sync_and_is_deterministic_per_seed() -> None:
    m = ModelFreeMutator()
    for seed in range(30):
        a = mutate(m, request(REALISTIC, seed))
        b = m.mutate_sync(request(REALISTIC, seed))
        assert a == b
    children = {m.mutate_sync(request(REALISTIC, s)).code for s in range(30)}
    assert len(children) >= 25  # different seeds explore different children


def test_deterministic_across_processes_with_different_hash_seeds() -> None:
    script = textwrap.dedent("""
        import hashlib, random, sys
        sys.path.insert(0, sys.argv[1])
        from test_model_free import REALISTIC, request
        from evoforge.mutators.model_free import ModelFreeMutator
        m = ModelFreeMutator()
        h = hashlib.sha256()
        for s in range(40):
            out = m.mutate_sync(request(REALISTIC, s, others=(REALISTIC.replace("0.13", "0.2"),)))
            h.update(repr((out.code, out.info)).encode())
        print(h.hexdigest())
    """)
    digests = []
    for hash_seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=hash_seed)
        res = subprocess.run(
            [sys.executable, "-c", script, os.path.dirname(__file__)],
            capture_output=True, text=True, env=env, timeout=60, check=True,
        )
        digests.append(res.stdout.strip())
    assert digests[0] == digests[1] and len(digests[0]) == 64


A = """import math
# EVOLVE-BLOCK-START
ALPHA = 1.0
BETA = 2.0


def g(x):
    u = x + 1
    v = u * 3
    w = v - 4
    return w
# EVOLVE-BLOCK-END
print(g(ALPHA) + BETA)
"""
B = (
    A.replace("ALPHA = 1.0", "ALPHA = 10.0").replace("BETA = 2.0", "BETA = 20.0")
    .replace("u = x + 1", "u = x - 7").replace("v = u * 3", "v = u * 9")
    .replace("w = v - 4", "w = v - 44")
)


def test_crossover_mixes_both_parents() -> None:
    m = ModelFreeMutator(max_edits=1)
    mixed_top = mixed_body = crossovers = 0
    for seed in range(300):
        out = m.mutate_sync(request(A, seed, others=(B,)))
        if out.code is None or out.info.edit_kind != "crossover":
            continue
        crossovers += 1
        assert python_syntax_error(out.code) is None
        check_fixed_parts(A, out.code)
        assert "program 10" in out.info.note
        code = out.code
        lines = {ln.strip() for ln in code.split("\n")}
        if "ALPHA = 1.0" in lines and "BETA = 20.0" in lines:
            mixed_top += 1
        a_lines = sum(s in lines for s in ("u = x + 1", "v = u * 3", "w = v - 4"))
        b_lines = sum(s in lines for s in ("u = x - 7", "v = u * 9", "w = v - 44"))
        if a_lines and b_lines:
            mixed_body += 1
    assert crossovers > 50
    assert mixed_top > 0 and mixed_body > 0


def test_crossover_takes_whole_blocks_of_multi_block_programs() -> None:
    two = "x = 0\n# EVOLVE-BLOCK-START\na = 1\n# EVOLVE-BLOCK-END\ny = 0\n" \
          "# EVOLVE-BLOCK-START\nb = 2\nc = 3\n# EVOLVE-BLOCK-END\n"
    other = two.replace("a = 1", "a = 100").replace("b = 2\nc = 3", "b = 200\nc = 300")
    m = ModelFreeMutator(max_edits=1)
    found = False
    for seed in range(200):
        out = m.mutate_sync(request(two, seed, others=(other,)))
        if out.code is None or out.info.edit_kind != "crossover":
            continue
        check_fixed_parts(two, out.code)
        contents = block_contents(out.code)
        if contents[0] == "a = 1\n" and ast.dump(ast.parse(contents[1])) == ast.dump(
                ast.parse("b = 200\nc = 300")):
            found = True
    assert found


def test_no_crossover_without_partners_or_with_identical_partner() -> None:
    m = ModelFreeMutator()
    for seed in range(50):
        out = m.mutate_sync(request(A, seed, others=(A,)))
        assert out.code is not None and "crossover" not in out.info.edit_kind


def test_int_literals_stay_small_steps_and_never_flip_sign() -> None:
    code = "# EVOLVE-BLOCK-START\nN = 10\nK = 0\nM = 1\n# EVOLVE-BLOCK-END\n"
    m = ModelFreeMutator(max_edits=1)
    for seed in range(200):
        out = m.mutate_sync(request(code, seed))
        assert out.code is not None
        ns: dict[str, int] = {}
        exec(out.code, ns)  # noqa: S102 - our own tiny program
        assert 8 <= ns.get("N", 10) <= 12
        assert 0 <= ns.get("K", 0) <= 2
        assert 0 <= ns.get("M", 1) <= 3
    rng = random.Random(0)
    assert all(perturb_int(0, rng) in (1, 2) for _ in range(100))
    assert all(perturb_int(1, rng) in (0, 2, 3) for _ in range(100))


def test_perturb_float_changes_value_and_stays_finite() -> None:
    rng = random.Random(3)
    vals = [perturb_float(0.5, rng) for _ in range(2000)]
    assert all(math.isfinite(v) and v != 0.5 for v in vals)
    near = sum(0.4 < v < 0.6 for v in vals)
    assert near > 1400  # mostly small steps
    assert any(abs(v - 0.5) > 0.3 for v in vals)  # sometimes a larger jump
    assert all(perturb_float(0.0, rng) != 0.0 for _ in range(100))


def test_negative_literal_is_parenthesised_correctly() -> None:
    code = "# EVOLVE-BLOCK-START\ny = 2.0 ** 2\nz = -3.0\n# EVOLVE-BLOCK-END\n"
    m = ModelFreeMutator(max_edits=1)
    for seed in range(300):
        out = m.mutate_sync(request(code, seed))
        if out.code is None or not out.info.note.startswith("literal 2.0 -> -"):
            continue
        ns: dict[str, float] = {}
        exec(out.code, ns)  # noqa: S102
        new = float(out.info.note.split("-> ")[1].split(" ")[0])
        assert ns["y"] == pytest.approx(new**2)  # (-v) ** 2, not -(v ** 2)
        return
    pytest.fail("no sign-flipping jump in 300 seeds")


def test_note_names_the_program_line() -> None:
    code = "import os\n\n# EVOLVE-BLOCK-START\nx = 1\ny = 0.25\n# EVOLVE-BLOCK-END\n"
    m = ModelFreeMutator(max_edits=1)
    notes = [m.mutate_sync(request(code, s)).info.note for s in range(100)]
    assert any(n.startswith("literal 0.25 -> ") and n.endswith("at line 5") for n in notes)
    assert any(n.startswith("literal 1 -> ") and n.endswith("at line 4") for n in notes)


def test_nothing_to_change_returns_none_with_reason() -> None:
    m = ModelFreeMutator()
    out = m.mutate_sync(request("def f():\n    # EVOLVE-BLOCK-START\n    pass\n"
                                "    # EVOLVE-BLOCK-END\n", 0))
    assert out.code is None and "no edit applied" in out.info.note
    out = m.mutate_sync(request("x = 1\n# EVOLVE-BLOCK-START\n# EVOLVE-BLOCK-END\n", 0))
    assert out.code is None and "empty" in out.info.note
    out = m.mutate_sync(request("x = (\n# EVOLVE-BLOCK-START\ny = 1\n# EVOLVE-BLOCK-END\n", 0))
    assert out.code is None and "does not compile" in out.info.note
    out = m.mutate_sync(request("# EVOLVE-BLOCK-START\nx = 1\n", 0))
    assert out.code is None and "line 1" in out.info.note


def test_python_fragment_block_falls_back_to_literals() -> None:
    code = "x = (1 +\n# EVOLVE-BLOCK-START\n    2.5 *\n# EVOLVE-BLOCK-END\n    3)\n"
    m = ModelFreeMutator()
    for seed in range(20):
        out = m.mutate_sync(request(code, seed))
        assert out.code is not None and out.info.edit_kind.startswith("literal")
        check_fixed_parts(code, out.code)
        assert python_syntax_error(out.code) is None


def test_other_languages_regex_literals_inside_blocks_only() -> None:
    c_code = (
        "int limit = 100;\n"
        "double f(double x1) {\n"
        "    // EVOLVE-BLOCK-START\n"
        "    // keep 42 here\n"
        "    double a = 0.5 * x1 + 3;\n"
        "    int n = 0x1F + 7;\n"
        "    return a - 2.5e-3;\n"
        "    // EVOLVE-BLOCK-END\n"
        "}\n"
    )
    m = ModelFreeMutator()
    changed_tokens: set[str] = set()
    for seed in range(200):
        out = m.mutate_sync(request(c_code, seed, language="c"))
        assert out.code is not None and set(out.info.edit_kind.split(",")) == {"literal"}
        check_fixed_parts(c_code, out.code)
        assert "// keep 42 here" in out.code and "x1" in out.code and "0x1F" in out.code
        assert out.code == m.mutate_sync(request(c_code, seed, language="c")).code
        for old, new in zip(c_code.split("\n"), out.code.split("\n"), strict=True):
            if old != new:
                changed_tokens.update(set(old.split()) - set(new.split()))
    assert {"0.5", "3;", "7;", "2.5e-3;"} <= changed_tokens


def _score(code: str) -> float:
    ns: dict[str, object] = {}
    try:
        exec(code, ns)  # noqa: S102 - the mutated toy program; no loops, no I/O
        value = ns["f"]()  # type: ignore[operator]
    except Exception:
        return -math.inf
    if not isinstance(value, int | float) or not math.isfinite(value):
        return -math.inf
    return -((value - 7.3) ** 2)


def test_hill_climb_improves_substantially() -> None:
    start = (
        "def f():\n"
        "    # EVOLVE-BLOCK-START\n"
        "    a = 1.5\n"
        "    b = 2.0\n"
        "    return a * b + 0.5\n"
        "    # EVOLVE-BLOCK-END\n"
    )
    m = ModelFreeMutator(max_edits=2)
    rng = random.Random(7)
    best, best_score = start, _score(start)
    start_score = best_score
    assert start_score == pytest.approx(-14.44)
    for step in range(300):
        out = m.mutate_sync(MutationRequest(parent=Program(step, best), rng=rng))
        if out.code is None:
            continue
        check_fixed_parts(start, out.code)
        s = _score(out.code)
        if s > best_score:
            best, best_score = out.code, s
    assert best_score > -0.05, (best_score, best)
    assert len(find_blocks(best)) == 1
