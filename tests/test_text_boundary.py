"""Text from candidates and LLMs that is not valid Unicode (a lone surrogate, ``'\\ud800'``) is
made storable where records are made, so it can never wedge a run (issue 9, defect 1): the run
stores the program, finishes, and can be inspected and resumed."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from evoforge.program import EvalResult, MutationInfo, Program, Status, scrub
from evoforge.storages.sqlite import SQLiteStorage

EVOFORGE = str(Path(sys.executable).with_name("evoforge"))
LONE = "\ud800"


def test_scrub_replaces_only_lone_surrogates() -> None:
    assert scrub("plain é 😀") == "plain é 😀"
    assert scrub(f"a{LONE}b") == "a\ufffdb"
    assert scrub("\ud83d\ude00") == "😀"  # a valid pair, written as two code points
    assert scrub(f"{LONE}").encode("utf-8")


def test_records_with_lone_surrogates_are_stored(tmp_path: Path) -> None:
    result = EvalResult(Status.FAILED, reason=f"ValueError: {LONE}",
                        artifacts={f"stderr{LONE}": f"out {LONE}"})
    p = Program(id=1, code=f"x = '{LONE}'\n", mutation=MutationInfo(model=f"m{LONE}",
                                                                     note=f"n{LONE}"))
    with SQLiteStorage(tmp_path / "evoforge.db") as st:
        st.add_program(p)
        st.record_result(p.with_result(result, done_seq=1, evaluated_at=1.0))
        back = st.get(1)
    assert back.code == "x = '\ufffd'\n" and back.reason == "ValueError: \ufffd"
    assert back.artifacts == {"stderr\ufffd": "out \ufffd"}
    assert back.mutation.model == "m\ufffd" and back.mutation.note == "n\ufffd"


EVALUATOR = textwrap.dedent('''
    import importlib.util, sys

    def evaluate(program_path):
        spec = importlib.util.spec_from_file_location("p", program_path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        value = mod.f()
        if value != 1:
            print("bad \\ud800 output", file=sys.stderr)
            raise ValueError("lone \\ud800 surrogate " + str(value))
        return {"combined_score": 1.0}
''')
PROGRAM = "# EVOLVE-BLOCK-START\ndef f():\n    return 1\n# EVOLVE-BLOCK-END\n"


def test_a_run_with_lone_surrogates_finishes_and_resumes(tmp_path: Path) -> None:
    problem = tmp_path / "problem"
    problem.mkdir()
    (problem / "evaluator.py").write_text(EVALUATOR)
    (problem / "initial_program.py").write_text(PROGRAM)
    run_dir = tmp_path / "run"
    first = subprocess.run([EVOFORGE, "run", str(problem), "--out", str(run_dir), "-q",
                            "--max-programs", "15", "--seed", "1",
                            "--set", "evaluation.reverify=0"],
                           capture_output=True, text=True, timeout=300, check=False)
    assert first.returncode == 0, first.stderr[-2000:]
    with SQLiteStorage(run_dir / "evoforge.db", readonly=True) as st:
        programs = list(st.programs())
    failed = [p for p in programs if p.status is Status.FAILED]
    assert failed, "no child failed: the evaluator's surrogate path never ran"
    assert any("\ufffd" in p.reason for p in failed)
    assert all(p.status is not Status.PENDING for p in programs)
    again = subprocess.run([EVOFORGE, "resume", str(run_dir), "-q", "--max-programs", "20"],
                           capture_output=True, text=True, timeout=300, check=False)
    assert again.returncode == 0, again.stderr[-2000:]
    status = subprocess.run([EVOFORGE, "status", str(run_dir)], capture_output=True,
                            text=True, timeout=60, check=False)
    assert status.returncode == 0 and "Traceback" not in status.stderr
