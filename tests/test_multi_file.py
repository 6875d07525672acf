"""Programs of several files: the packed form, loading a problem directory, per-file edits, both
evaluator forms in both sandboxes, the model-free mutator, an LLM run against the scripted
server, and the CLI's ``show`` / ``best --write DIR``."""

from __future__ import annotations

import ast
import asyncio
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from evoforge import api
from evoforge.config import build_config
from evoforge.edit import (
    apply_diff,
    apply_rewrite,
    block_contents,
    check_fixed_parts,
    find_blocks,
)
from evoforge.errors import EditError, ProblemError, ProgramFilesError
from evoforge.executors.local import LocalExecutor
from evoforge.mutators.base import MutationRequest
from evoforge.mutators.model_free import ModelFreeMutator
from evoforge.problem import Problem
from evoforge.program import Program, Status
from evoforge.program_files import (
    MAGIC,
    MULTI_FILE,
    pack,
    read_tree,
    tree_diff,
    unpack,
    write_tree,
)
from evoforge.sandbox import bubblewrap_problem
from evoforge.storages import SQLiteStorage
from evoforge.testing.openai_server import OpenAITestServer, reply

BWRAP_PROBLEM = bubblewrap_problem()
SANDBOXES = [
    pytest.param("process", id="process"),
    pytest.param("bubblewrap", id="bubblewrap", marks=pytest.mark.skipif(
        BWRAP_PROBLEM is not None, reason=str(BWRAP_PROBLEM))),
]

MAIN = '''\
"""The evolvable entry point; helpers/scale.py and data.txt are beside it."""
from helpers.scale import factor

# EVOLVE-BLOCK-START
def value():
    a = 1.5
    b = 2.0
    return a * b * factor()
# EVOLVE-BLOCK-END
'''
SCALE = '''\
# EVOLVE-BLOCK-START
def factor():
    return 1.0
# EVOLVE-BLOCK-END
'''
KERNEL = "/* EVOLVE-BLOCK-START */\nint k = 3;\nint j = 4;\n/* EVOLVE-BLOCK-END */\nint fixed = 1;\n"
DATA = "context: no blocks here\n"
FILES = {"main.py": MAIN, "helpers/__init__.py": "", "helpers/scale.py": SCALE,
         "kernel.c": KERNEL, "data.txt": DATA}

PLAIN = '''\
import os, sys

def evaluate(program_path):
    assert os.path.isdir(program_path), program_path
    with open(os.path.join(program_path, "data.txt")) as f:
        assert f.read().startswith("context")
    with open(os.path.join(program_path, "kernel.c")) as f:
        k = int(f.read().split("int k = ")[1].split(";")[0])
    sys.path.insert(0, program_path)
    import main
    return {"combined_score": float(main.value()) + k, "k": float(k)}
'''
HARDENED = '''\
def evaluate(candidate):
    files = candidate.program_files
    assert sorted(files) == ["data.txt", "helpers/__init__.py", "helpers/scale.py", "kernel.c",
                             "main.py"], sorted(files)
    assert candidate.program_name == "program"
    out = candidate.run(["cat", "program/data.txt", "program/helpers/scale.py"])
    assert out.returncode == 0 and out.stdout.startswith("context"), out
    k = int(files["kernel.c"].split("int k = ")[1].split(";")[0])
    v = candidate.call("main:value", timeout=10)
    f = candidate.call("helpers.scale:factor", timeout=10)
    if type(v) is not float or v != 3.0 * f:
        raise ValueError("value() must return a float, 1.5 * 2.0 * factor()")
    return {"combined_score": v + k, "k": float(k)}
'''


def make_problem(tmp_path: Path, evaluator: str = PLAIN, files: dict[str, str] | None = None,
                 name: str = "multi") -> Path:
    d = tmp_path / name
    write_tree(d / "initial_program", files or FILES)
    (d / "evaluator.py").write_text(evaluator)
    return d


# -- the packed form ------------------------------------------------------------------------

def _random_text(rng: random.Random) -> str:
    pieces = ["x = 1\n", "\n", "\r\n", "\r", "no newline", MAGIC, "@@evoforge-file@@ a.py\n",
              "@@evoforge-file-1@@", "@@evoforge-file@@", "é\u202e\x00", "EVOLVE-BLOCK-START",
              "\t", " "]
    return "".join(rng.choice(pieces) for _ in range(rng.randint(0, 12)))


def test_pack_unpack_round_trip_with_hostile_contents() -> None:
    rng = random.Random(7)
    names = ["a.py", "b/c.c", "b/d/e.h", "x y.txt", "ünï.py", "z", ".hidden", "a.py.bak"]
    for _ in range(300):
        files = {n: _random_text(rng) for n in rng.sample(names, rng.randint(1, len(names)))}
        packed = pack(files)
        assert unpack(packed) == files
        assert list(unpack(packed)) == sorted(files)
        # canonical: the same tree in another order packs to the same string
        assert pack(dict(reversed(list(files.items())))) == packed
    # a file that holds the default boundary and the header text pushes the boundary on
    tricky = {"a.py": "@@evoforge-file@@ b.py\nstill a.py\n", "b.py": MAGIC + "@@x@@\n"}
    packed = pack(tricky)
    assert packed.splitlines()[0] == MAGIC + "@@evoforge-file-1@@"
    assert unpack(packed) == tricky
    # empty files and files without a final newline keep their exact text
    assert unpack(pack({"e": "", "n": "x", "nn": "x\n\n"})) == {"e": "", "n": "x", "nn": "x\n\n"}


def test_headers_are_outside_every_evolve_block() -> None:
    packed = pack(FILES)
    want = [c for p, t in sorted(FILES.items()) if find_blocks(t) for c in block_contents(t)]
    assert block_contents(packed) == want


@pytest.mark.parametrize("bad", [
    "../../etc/x", "/etc/passwd", "a/../../b", "./a", "a//b", "a/", "", "a\\b", "a\nb",
    "a\u202eb", "-rf", "x/EVOLVE-BLOCK-END", "a" * 300, ".."])
def test_hostile_names_are_errors_naming_the_path(bad: str, tmp_path: Path) -> None:
    with pytest.raises(ProgramFilesError) as e:
        pack({bad: "x"})
    if bad and len(bad) < 100:
        assert repr(bad)[:60] in str(e.value)
    with pytest.raises(ProgramFilesError):
        write_tree(tmp_path / "out", {"ok.py": "x", bad: "y"})
    assert not (tmp_path / "out" / "ok.py").exists()  # nothing written at all
    # the same name smuggled into a packed string is refused on unpacking
    forged = f"{MAGIC}@@b@@\n@@b@@ {bad}\nx\n"
    if "\n" not in bad:
        with pytest.raises(ProgramFilesError):
            unpack(forged)


@pytest.mark.parametrize("forged", [
    "x = 1\n", MAGIC + "\n", MAGIC + "@@b@@\nstray text\n@@b@@ a\nx\n",
    MAGIC + "@@b@@\n@@b@@ a\nx\n@@b@@ a\ny\n", MAGIC + "@@b@@\n@@b@@ a\nno final newline",
    MAGIC + "@@b@@\n@@b@@ a\nholds @@b@@ inside\n\n", MAGIC + "@@b@@\n@@b@@ a\nx\n@@b@@ a/b\ny\n",
    MAGIC + "@@b@@\n"])
def test_malformed_packed_strings_are_errors(forged: str) -> None:
    with pytest.raises(ProgramFilesError):
        unpack(forged)


def test_read_tree_refuses_symlinks_and_binary_and_skips_pycache(tmp_path: Path) -> None:
    d = tmp_path / "t"
    write_tree(d, {"a.py": "x = 1\n", "sub/b.c": "int b;\n"})
    (d / "__pycache__").mkdir()
    (d / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"\x00\xff")
    assert read_tree(d) == {"a.py": "x = 1\n", "sub/b.c": "int b;\n"}
    (d / "link.py").symlink_to("/etc/passwd")
    with pytest.raises(ProgramFilesError, match="link.py: is a symbolic link"):
        read_tree(d)
    (d / "link.py").unlink()
    (d / "bin.dat").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ProgramFilesError, match="bin.dat: not UTF-8"):
        read_tree(d)


def test_write_tree_follows_no_symlink(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    d = tmp_path / "d"
    d.mkdir()
    (d / "sub").symlink_to(outside)
    with pytest.raises(ProgramFilesError, match="not a directory"):
        write_tree(d, {"sub/x.py": "pwned"})
    (d / "f.py").symlink_to(outside / "target")
    with pytest.raises(ProgramFilesError, match="cannot write"):
        write_tree(d, {"f.py": "pwned"})
    assert list(outside.iterdir()) == []


# -- loading a problem ------------------------------------------------------------------------

def test_a_directory_initial_program_loads_packed(tmp_path: Path) -> None:
    prob = Problem.load(make_problem(tmp_path))
    assert prob.multi_file and prob.language == MULTI_FILE
    assert prob.program_name == "program/"
    assert unpack(prob.initial_code) == FILES
    assert len(prob.fingerprint()) == 16
    single = Problem.load(Path(__file__).parent / "fixtures" / "problems" / "quadratic")
    assert not single.multi_file and single.program_name.startswith("program.")
    assert not single.initial_code.startswith(MAGIC)


@pytest.mark.parametrize("files, message", [
    ({"a.py": "x = 1\n", "b.txt": "y\n"}, "no file has EVOLVE-BLOCK-START/-END markers"),
    ({"a.py": "# EVOLVE-BLOCK-START\nx = 1\n"}, r"a\.py: line 1: EVOLVE-BLOCK-START is never closed"),
    ({"a.py": "# EVOLVE-BLOCK-START\nx = (\n# EVOLVE-BLOCK-END\n"},
     r"a\.py: the initial program does not parse"),
])
def test_bad_trees_are_problem_errors_naming_the_file(tmp_path: Path, files, message) -> None:
    with pytest.raises(ProblemError, match=message):
        Problem.load(make_problem(tmp_path, files=files))


def test_a_file_and_a_directory_initial_program_is_an_error(tmp_path: Path) -> None:
    d = make_problem(tmp_path)
    (d / "initial_program.py").write_text("x = 1\n")
    with pytest.raises(ProblemError, match="several initial programs"):
        Problem.load(d)


# -- edits ------------------------------------------------------------------------------------

CODE = pack(FILES)


def diff(path: str, search: str, replace: str) -> str:
    return f"<<<<<<< SEARCH {path}\n{search}\n=======\n{replace}\n>>>>>>> REPLACE\n"


def test_each_search_replace_changes_the_file_it_names() -> None:
    r = ("Two changes.\n" + diff("kernel.c", "int k = 3;", "int k = 5;")
         + "File: `main.py`\n<<<<<<< SEARCH\n    b = 2.0\n=======\n    b = 2.5\n>>>>>>> REPLACE\n")
    child = unpack(apply_diff(CODE, r, MULTI_FILE))
    assert child["kernel.c"] == KERNEL.replace("int k = 3;", "int k = 5;")
    assert child["main.py"] == MAIN.replace("b = 2.0", "b = 2.5")
    for same in ("data.txt", "helpers/scale.py", "helpers/__init__.py"):
        assert child[same] == FILES[same]  # untouched, byte for byte


def test_the_same_search_goes_to_the_named_file_only() -> None:
    files = {"a.c": "// EVOLVE-BLOCK-START\nint x = 1;\n// EVOLVE-BLOCK-END\n",
             "b.c": "// EVOLVE-BLOCK-START\nint x = 1;\n// EVOLVE-BLOCK-END\n"}
    for name in ("b.c", "./b.c", "`b.c`"):
        child = unpack(apply_diff(pack(files), diff(name, "int x = 1;", "int x = 2;"), MULTI_FILE))
        assert child == {"a.c": files["a.c"], "b.c": files["b.c"].replace("1", "2")}
    with pytest.raises(EditError, match=r"SEARCH/REPLACE #1 does not name its file"):
        apply_diff(pack(files), "<<<<<<< SEARCH\nint x = 1;\n=======\nint x = 2;\n>>>>>>> REPLACE\n",
                   MULTI_FILE)


@pytest.mark.parametrize("reply, message", [
    (diff("data.txt", "context: no blocks here", "hacked"),
     r"data\.txt: the file has no EVOLVE blocks; it is context and cannot be changed"),
    (diff("nope.py", "x", "y"), r"names 'nope\.py', which is not a file of the program"),
    (diff("../../etc/x", "root", "pwned"), r"file path '\.\./\.\./etc/x' has an empty, '\.' or '\.\.' part"),
    (diff("/etc/passwd", "root", "pwned"), r"file path '/etc/passwd' is absolute"),
    (diff("kernel.c", "int fixed = 1;", "int fixed = 2;"),
     r"kernel\.c: SEARCH/REPLACE #1: SEARCH text not found in any EVOLVE block .*outside the EVOLVE blocks"),
    (diff("kernel.c", "/* EVOLVE-BLOCK-END */", ""), r"kernel\.c: SEARCH/REPLACE #1: .*marker"),
    (diff("main.py", "    b = 2.0", "    b = (2.0"), r"main\.py: syntax error in the changed file"),
    ("no blocks at all", "no SEARCH/REPLACE blocks found"),
])
def test_edits_that_cannot_apply_name_the_file_and_why(reply: str, message: str) -> None:
    with pytest.raises(EditError, match=message):
        apply_diff(CODE, reply, MULTI_FILE)


def test_every_failing_file_is_named_not_just_the_first() -> None:
    r = diff("data.txt", "context: no blocks here", "x") + diff("kernel.c", "int nope;", "x")
    with pytest.raises(EditError) as e:
        apply_diff(CODE, r, MULTI_FILE)
    assert "data.txt: the file has no EVOLVE blocks" in str(e.value)
    assert "kernel.c: SEARCH/REPLACE #2" in str(e.value)


def test_rewrites_name_their_files() -> None:
    new_kernel = KERNEL.replace("int j = 4;", "int j = 40;")
    r = f"New kernel.\n\nFile: kernel.c\n```c\n{new_kernel}```\n"
    child = unpack(apply_rewrite(CODE, r, MULTI_FILE))
    assert child == {**FILES, "kernel.c": new_kernel}
    # fixed text in the rewrite is not taken: only the block contents are
    hacked = new_kernel.replace("int fixed = 1;", "int fixed = 9;")
    child = unpack(apply_rewrite(CODE, f"File: kernel.c\n```c\n{hacked}```\n", MULTI_FILE))
    assert child["kernel.c"] == new_kernel
    with pytest.raises(EditError, match=r"data\.txt: the file has no EVOLVE blocks"):
        apply_rewrite(CODE, "File: data.txt\n```\nhacked\n```\n", MULTI_FILE)
    with pytest.raises(EditError, match=r"not a file of the program"):
        apply_rewrite(CODE, "File: new.py\n```python\nx = 1\n```\n", MULTI_FILE)
    with pytest.raises(EditError, match=r"no file named in the rewrite"):
        apply_rewrite(CODE, "```python\nx = 1\n```\n", MULTI_FILE)


def test_single_file_edits_never_read_the_packed_form() -> None:
    # a one-file program whose text looks packed is still one file: its whole text is the block
    looks_packed = pack({"a.py": "x = 1\n"})
    r = "<<<<<<< SEARCH\nx = 1\n=======\nx = 2\n>>>>>>> REPLACE\n"
    assert apply_diff(looks_packed, r) == looks_packed.replace("x = 1", "x = 2")


# -- evaluation: both forms, both sandboxes -----------------------------------------------------

def _evaluate(prob: Problem, codes: list[str], sandbox: str, tmp_path: Path):
    ex = LocalExecutor(prob.path, program_name=prob.program_name, sandbox=sandbox,
                       scratch_root=tmp_path / "scratch", timeout=30, warm_pool=False)

    async def go():
        try:
            return [await ex.evaluate(c) for c in codes]
        finally:
            await ex.aclose()

    return asyncio.run(go())


@pytest.mark.parametrize("sandbox", SANDBOXES)
@pytest.mark.parametrize("form", ["plain", "hardened"])
def test_both_forms_see_the_whole_tree(form: str, sandbox: str, tmp_path: Path) -> None:
    prob = Problem.load(make_problem(tmp_path, PLAIN if form == "plain" else HARDENED))
    assert prob.form == form
    changed = apply_diff(prob.initial_code, diff("kernel.c", "int k = 3;", "int k = 7;")
                         + diff("helpers/scale.py", "    return 1.0", "    return 2.0"), MULTI_FILE)
    forged = f"{MAGIC}@@b@@\n@@b@@ ../escape.py\nx = 1\n"
    first, second, bad = _evaluate(prob, [prob.initial_code, changed, forged], sandbox, tmp_path)
    assert first.status is Status.OK, (first.reason, first.artifacts)
    assert first.score == 1.5 * 2.0 * 1.0 + 3
    assert second.status is Status.OK and second.score == 1.5 * 2.0 * 2.0 + 7, second.reason
    assert bad.status is Status.INVALID and "'../escape.py'" in bad.reason
    assert not (tmp_path / "scratch" / "escape.py").exists()


# -- the model-free mutator ------------------------------------------------------------------

def test_model_free_mutates_each_file_with_blocks_and_nothing_else() -> None:
    parent = Program(id=0, code=CODE, status=Status.OK, score=1.0)
    partner_files = {**FILES, "helpers/scale.py": SCALE.replace("1.0", "3.0")}
    partner = Program(id=1, code=pack(partner_files), status=Status.OK, score=2.0)
    mutator = ModelFreeMutator()
    changed: dict[str, int] = {}
    for seed in range(60):
        req = MutationRequest(parent=parent, rng=random.Random(seed), language=MULTI_FILE,
                              others=(partner,) if seed % 3 == 0 else ())
        out = mutator.mutate_sync(req)
        assert out.code is not None, out.info.note
        child = unpack(out.code)
        assert child["data.txt"] == DATA and child["helpers/__init__.py"] == ""
        diffs = [p for p in FILES if child[p] != FILES[p]]
        assert len(diffs) == 1, diffs  # one file per child
        path = diffs[0]
        assert out.info.note.startswith(f"{path}: ")
        changed[path] = changed.get(path, 0) + 1
        # fixed parts stay: the same code outside the blocks, the markers in place
        assert len(find_blocks(child[path])) == len(find_blocks(FILES[path]))
        check_fixed_parts(FILES[path], child[path])  # raises if fixed text changed
        if path.endswith(".py"):
            ast.parse(child[path])
    assert set(changed) == {"main.py", "helpers/scale.py", "kernel.c"}, changed
    # deterministic given the request's seed
    again = mutator.mutate_sync(MutationRequest(parent=parent, rng=random.Random(5),
                                                language=MULTI_FILE))
    assert again.code == mutator.mutate_sync(MutationRequest(
        parent=parent, rng=random.Random(5), language=MULTI_FILE)).code


# -- whole runs ------------------------------------------------------------------------------

def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "evoforge", *args], capture_output=True,
                          text=True, env={**os.environ, "COLUMNS": "200"}, timeout=120)


def test_model_free_run_then_show_best_write_and_resume(tmp_path: Path) -> None:
    d = make_problem(tmp_path, HARDENED)
    run_dir = tmp_path / "run"
    cfg = build_config({"max_programs": 10, "seed": 3, "evaluation": {"workers": 2}})
    outcome = api.evolve(d, run_dir=run_dir, config=cfg)
    assert outcome.ok, outcome.message
    best = outcome.best
    assert best is not None and best.score > 3.0 + 3.0 - 1e-9
    # the run dir holds the best tree as a directory
    assert read_tree(run_dir / "best_program") == unpack(best.code)
    out = tmp_path / "written"
    r = _cli("best", str(run_dir), "--write", str(out))
    assert r.returncode == 0, r.stderr
    assert read_tree(out) == unpack(best.code) and "5 files written" in r.stderr
    r = _cli("best", str(run_dir))
    assert r.returncode == 0 and "==> kernel.c <==" in r.stdout and "==> main.py <==" in r.stdout
    with SQLiteStorage(run_dir / "evoforge.db", readonly=True) as s:
        child = next(p for p in s.programs() if p.id > 0 and p.status is Status.OK
                     and p.code != s.get(p.parent_ids[0]).code)
        parent = s.get(child.parent_ids[0])
    r = _cli("show", str(run_dir), str(child.id))
    assert r.returncode == 0, r.stderr
    expected = tree_diff(unpack(parent.code), unpack(child.code), f"program #{parent.id}",
                         f"program #{child.id}")
    changed_file = expected.split("\n", 1)[0].removeprefix(f"--- program #{parent.id}/")
    assert changed_file in FILES
    assert f"--- program #{parent.id}/{changed_file}" in r.stdout
    assert f"+++ program #{child.id}/{changed_file}" in r.stdout
    assert "-- data.txt --" in r.stdout  # every file is listed, the context file too
    # resume: the problem's fingerprint matches, ids continue
    outcome2 = api.resume(run_dir, flags={"max_programs": 14})
    assert outcome2.ok, outcome2.message
    with SQLiteStorage(run_dir / "evoforge.db", readonly=True) as s:
        assert s.stats()["next_id"] >= 14 and s.get_meta("multi_file") is True


def test_llm_run_edits_named_files_and_rejects_the_rest(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("EVOFORGE_TEST_KEY", "sk-test")
    d = make_problem(tmp_path, PLAIN)
    good = "Raise k.\n" + diff("kernel.c", "int k = 3;", "int k = 9;")
    script = [reply(good), reply(diff("data.txt", "context: no blocks here", "x")),
              reply(diff("../../etc/passwd", "root", "x")),
              reply("Double it.\n\n**helpers/scale.py**\n```python\n<<<<<<< SEARCH\n"
                    "    return 1.0\n=======\n    return 2.0\n>>>>>>> REPLACE\n```\n")]
    with OpenAITestServer(script) as srv:
        cfg = build_config({
            "max_programs": 5, "seed": 1,
            "llm": {"base_url": srv.base_url, "models": [{"name": "test-model"}],
                    "concurrency": 1, "retries": 0, "api_key_env": "EVOFORGE_TEST_KEY"},
            "evaluation": {"workers": 1, "reverify": 0},
            "pipeline": {"max_in_flight": 1},
            "selector": {"num_islands": 1, "exploitation_ratio": 1.0, "exploration_ratio": 0.0,
                         "crossover_rate": 0.0}})
        outcome = api.evolve(d, run_dir=tmp_path / "run", config=cfg)
        prompts = [rec.body["messages"][-1]["content"] for rec in srv.records]
    assert outcome.ok, outcome.message
    assert "File: data.txt (context: no EVOLVE blocks, cannot be changed)" in prompts[0]
    assert "File: helpers/scale.py\n```python\n" in prompts[0]
    assert "<<<<<<< SEARCH path/of/the/file" in prompts[0]
    with SQLiteStorage(tmp_path / "run" / "evoforge.db", readonly=True) as s:
        progs = {p.id: p for p in s.programs()}
    assert progs[1].status is Status.OK and progs[1].score == 3.0 + 9
    assert unpack(progs[1].code)["kernel.c"] == KERNEL.replace("int k = 3;", "int k = 9;")
    assert progs[2].status is Status.INVALID and "data.txt: the file has no EVOLVE blocks" in (
        progs[2].reason)
    assert progs[3].status is Status.INVALID and "'../../etc/passwd'" in progs[3].reason
    assert progs[4].status is Status.OK and progs[4].score == 6.0 + 9, progs[4].reason


def test_builtin_example_runs_in_the_process_sandbox(tmp_path: Path) -> None:
    prob = Problem.load("spread_points_c")
    if prob.missing_tools():
        pytest.skip(f"spread_points_c needs {sorted(prob.missing_tools())}")
    assert prob.multi_file and prob.form == "hardened"
    files = unpack(prob.initial_code)
    assert [p for p in files if find_blocks(files[p])] == ["driver.py", "kernel.c"]
    broken = apply_diff(prob.initial_code, diff("kernel.c", "    unsigned s = seed ? seed : 1u;",
                                                "    unsigned s = seed ? seed : 1u"), MULTI_FILE)
    ok, bad = _evaluate(prob, [prob.initial_code, broken], "process", tmp_path)
    assert ok.status is Status.OK and ok.score == pytest.approx(prob.meta["baseline"], rel=1e-9)
    assert bad.status is Status.FAILED and "kernel.c does not compile" in bad.reason


def test_candidate_call_names() -> None:
    from evoforge.candidate import Candidate

    r, w = os.pipe()
    try:
        c = Candidate(w, r, source="x", program_name="program.py")
        assert c.program_files == {"program.py": "x"}
        for bad in ("../x:f", "a b", "m:", "m:f:g", "m/x:f", ""):
            with pytest.raises(ValueError, match="function name"):
                c.call(bad)
    finally:
        os.close(r)
        os.close(w)


def test_prompt_of_a_single_file_program_is_unchanged() -> None:
    from evoforge.prompting import PromptBuilder

    code = textwrap.dedent(MAIN)
    req = MutationRequest(parent=Program(id=1, code=code), rng=random.Random(0))
    user = PromptBuilder().build(req)[1]["content"]
    assert "File:" not in user and f"```python\n{code.rstrip()}\n```" in user


def test_llm_mutator_rewrite_mode_on_several_files() -> None:
    from evoforge.mutators.llm import LLMMutator
    from evoforge.prompting import PromptBuilder
    from evoforge.testing import FunctionLLM

    new_scale = SCALE.replace("1.0", "2.5")
    answers = iter([f"File: helpers/scale.py\n```python\n{new_scale}```\n",
                    "File: helpers/scale.py\n```python\ndef factor(:\n```\n"])
    llm = FunctionLLM(lambda messages: next(answers))
    m = LLMMutator(llm, PromptBuilder(edit_mode="rewrite"), edit_mode="rewrite")
    req = MutationRequest(parent=Program(id=0, code=CODE), rng=random.Random(0),
                          language=MULTI_FILE)
    out = asyncio.run(m.mutate(req))
    assert out.code is not None and unpack(out.code) == {**FILES, "helpers/scale.py": new_scale}
    assert "File: path/of/the/file" in llm.requests[0][1]["content"]
    out = asyncio.run(m.mutate(req))
    assert out.code is None and "helpers/scale.py" in out.info.note


def test_tuning_reads_each_block_by_its_files_language() -> None:
    from evoforge.mutators.tuning import find_literals, render

    files = {"a.py": "# EVOLVE-BLOCK-START\nsteps = 40\nrate = 0.25\n# EVOLVE-BLOCK-END\n",
             "k.c": "/* EVOLVE-BLOCK-START */\nint m = 40;\ndouble r = 0.25;\n/* EVOLVE-BLOCK-END */\n",
             "n.txt": "40 0.25\n"}
    code = pack(files)
    lits = find_literals(code, MULTI_FILE)
    texts = sorted(code[lit.start:lit.end] for lit in lits)
    assert texts == ["0.25", "0.25", "40"]  # the Python int too; C ints and context never
    assert [code[lit.start:lit.end] for lit in find_literals(code, "text")] == ["0.25", "0.25"]
    child = unpack(render(code, lits, [0.5 if "." in code[lit.start:lit.end] else 41
                                       for lit in lits]))
    assert child == {"a.py": files["a.py"].replace("40", "41").replace("0.25", "0.5"),
                     "k.c": files["k.c"].replace("0.25", "0.5"), "n.txt": files["n.txt"]}


def test_the_best_tree_is_never_written_through_a_file_or_symlink_in_its_place(tmp_path):
    """Review: ``best_program/`` is replaced by renames; a file or a symlink found at its place
    (planted, or left by hand) is an error naming it, and what it points to is untouched."""
    from evoforge.errors import StorageError
    from evoforge.program_files import pack
    from evoforge.run import _atomic_write_tree

    code = pack({"a.py": "x = 1\n", "lib/b.c": "int b;\n"})
    target = tmp_path / "best_program"
    _atomic_write_tree(target, code)  # fresh, then replaced whole
    _atomic_write_tree(target, pack({"a.py": "x = 2\n"}))
    assert (target / "a.py").read_text() == "x = 2\n" and not (target / "lib").exists()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep").write_text("keep me")
    link = tmp_path / "linked"
    link.symlink_to(elsewhere, target_is_directory=True)
    plain = tmp_path / "plain"
    plain.write_text("a file")
    for bad in (link, plain):
        with pytest.raises(StorageError, match="not a directory"):
            _atomic_write_tree(bad, code)
    assert sorted(p.name for p in elsewhere.iterdir()) == ["keep"]
    assert plain.read_text() == "a file"
