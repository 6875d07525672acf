"""Every LLM exchange is kept (``show --prompt/--reply``), recorded (``--record``) and
replayable with no endpoint (``--replay``); OpenEvolve's ``run INITIAL EVALUATOR`` form. All
through the installed ``evoforge`` entry point against a real server on 127.0.0.1."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from evoforge.storages import SQLiteStorage
from evoforge.testing.openai_server import ChatRequest, OpenAITestServer, reply

QUAD = Path(__file__).parent / "fixtures" / "problems" / "quadratic"
EVOFORGE = str(Path(sys.executable).with_name("evoforge"))
SECRET = "sk-do-not-leak-4242"
MISSING = "<<<<<<< SEARCH\nthis line does not exist\n=======\nx = 1\n>>>>>>> REPLACE\n"


def _climb(req: ChatRequest):
    """A reply that depends on the prompt: raise `a` in whatever parent was shown; every
    fourth request answers with an edit that does not apply (an invalid child)."""
    if req.index % 4 == 3:
        return reply("Here is my idea.\n" + MISSING)
    text = req.last_user_message
    line = next((ln for ln in text.splitlines() if ln.strip().startswith("a = ")), None)
    if line is None:
        return reply("no idea")
    return reply(f"<<<<<<< SEARCH\n{line}\n=======\n{line} + 0.25\n>>>>>>> REPLACE\n",
                 prompt_tokens=100, completion_tokens=20)


def _evoforge(*args: str, key: str = SECRET, **kw) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "EVOFORGE_TEST_KEY": key}
    return subprocess.run([EVOFORGE, *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=300, **kw)


def _llm_args(base_url: str, seed: int = 3) -> list[str]:
    return ["--set", f"llm.base_url={base_url}", "--set", "llm.models=[test-model]",
            "--set", "llm.api_key_env=EVOFORGE_TEST_KEY", "--set", "llm.concurrency=1",
            "--set", "llm.retries=0", "--set", "pipeline.max_in_flight=1",
            "--set", "evaluation.workers=1", "--set", "selector.num_islands=1",
            "--seed", str(seed), "-q"]


def _programs(run_dir: Path) -> list[tuple[int, str, str, tuple[int, ...]]]:
    with SQLiteStorage(run_dir / "evoforge.db", readonly=True) as s:
        return [(p.id, p.status.value, p.code, p.parent_ids) for p in s.programs()]


@pytest.fixture
def problem(tmp_path: Path) -> Path:
    dst = tmp_path / "quadratic"
    shutil.copytree(QUAD, dst)
    return dst


def test_record_then_replay_with_the_server_gone_makes_the_same_programs(problem, tmp_path):
    rec = tmp_path / "llm.jsonl"
    with OpenAITestServer(_climb) as srv:
        first = _evoforge("run", problem, "--out", tmp_path / "a", "--max-programs", "9",
                          "--record", rec, *_llm_args(srv.base_url))
        asked, url = srv.request_count, srv.base_url
    assert first.returncode == 0, first.stderr
    lines = rec.read_text().splitlines()
    assert len(lines) == asked >= 8
    assert SECRET not in rec.read_text() and url not in rec.read_text()
    assert all("reply" in json.loads(ln) for ln in lines)
    # the server is stopped: only the recording can answer
    again = _evoforge("run", problem, "--out", tmp_path / "b", "--max-programs", "9",
                      "--replay", rec, *_llm_args("http://127.0.0.1:9/v1"), key="")
    assert again.returncode == 0, again.stderr
    a, b = _programs(tmp_path / "a"), _programs(tmp_path / "b")
    assert a == b
    assert {st for _, st, _, _ in a} >= {"ok", "invalid"}  # both kinds were replayed


def test_replay_of_a_prompt_not_in_the_recording_stops_and_names_it(problem, tmp_path):
    rec = tmp_path / "llm.jsonl"
    with OpenAITestServer(_climb) as srv:
        done = _evoforge("run", problem, "--out", tmp_path / "a", "--max-programs", "4",
                         "--record", rec, *_llm_args(srv.base_url))
    assert done.returncode == 0, done.stderr
    # a longer run asks for a prompt the recording does not hold
    more = _evoforge("run", problem, "--out", tmp_path / "b", "--max-programs", "12",
                     "--replay", rec, *_llm_args("http://127.0.0.1:9/v1"), key="")
    assert more.returncode == 3, more.stderr  # EXIT_RUN_FAILED
    assert "--replay" in more.stderr and "not recorded" in more.stderr
    assert "Traceback" not in more.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"hello": 1}\n')
    broken = _evoforge("run", problem, "--out", tmp_path / "c", "--replay", bad, "-q",
                       "--max-programs", "3", key="")
    assert broken.returncode == 1 and "line 1" in broken.stderr, broken.stderr
    assert "Traceback" not in broken.stderr


def test_show_prints_the_prompt_the_reply_and_why_an_edit_failed(problem, tmp_path):
    with OpenAITestServer(_climb) as srv:
        done = _evoforge("run", problem, "--out", tmp_path / "r", "--max-programs", "6",
                         *_llm_args(srv.base_url))
        sent = [r.body["messages"] for r in srv.records]
    assert done.returncode == 0, done.stderr
    progs = _programs(tmp_path / "r")
    ok_child = next(pid for pid, st, _, par in progs if st == "ok" and par)
    invalid = next(pid for pid, st, _, _ in progs if st == "invalid")

    shown = _evoforge("show", tmp_path / "r", ok_child, "--prompt")
    assert shown.returncode == 0, shown.stderr
    system, user = (m["content"] for m in sent[ok_child - 1])  # one request per proposal here
    assert system.splitlines()[0] in shown.stdout and user.splitlines()[-1] in shown.stdout

    rep = _evoforge("show", tmp_path / "r", invalid, "--reply")
    assert rep.returncode == 0, rep.stderr
    assert "Here is my idea." in rep.stdout and "this line does not exist" in rep.stdout
    assert "edit did not apply" in rep.stdout

    plain = _evoforge("show", tmp_path / "r", invalid)  # no diff deleting the parent
    assert plain.returncode == 0, plain.stderr
    assert "diff against parent" not in plain.stdout
    assert "Here is my idea." in plain.stdout and "reason:" in plain.stdout

    initial = _evoforge("show", tmp_path / "r", 0, "--reply")
    assert initial.returncode == 1 and "not made by an LLM" in initial.stderr


def test_exchanges_survive_a_read_only_open_of_an_old_database(tmp_path):
    db = tmp_path / "evoforge.db"
    with SQLiteStorage(db) as s:
        s.add_exchange(5, {"messages": [], "reply": "x"})
        assert s.exchange(5) == {"messages": [], "reply": "x"} and s.exchange(6) is None
    with SQLiteStorage(db) as s:
        s._connection().execute("DROP TABLE exchanges")  # as written before exchanges existed
    with SQLiteStorage(db, readonly=True) as s:
        assert s.exchange(5) is None
    with SQLiteStorage(db) as s:  # a writable open adds the table back
        assert s.exchange(5) is None
        s.add_exchange(5, {"reply": "ok"})
        assert s.exchange(5) == {"reply": "ok"}


def test_openevolve_cli_form_runs_resumes_and_rejects_bad_usage(tmp_path):
    src = tmp_path / "oe"
    src.mkdir()
    shutil.copy(QUAD / "initial_program.py", src / "my_program.py")
    shutil.copy(QUAD / "evaluator.py", src / "my_evaluator.py")
    (src / "config.yaml").write_text("max_programs: 2\n")  # not read in this form
    out = tmp_path / "out"
    done = _evoforge("run", src / "my_program.py", src / "my_evaluator.py", "--iterations", "4",
                     "--output", out, "-q", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert len(_programs(out)) == 5  # the initial program and 4 children
    more = _evoforge("resume", out, "--max-programs", "8", "-q")
    assert more.returncode == 0, more.stderr
    assert len(_programs(out)) == 8

    lone = _evoforge("run", src / "my_program.py", cwd=tmp_path)
    assert lone.returncode == 2 and "is a file" in lone.stderr and "Traceback" not in lone.stderr
    both = _evoforge("run", src / "my_program.py", src / "my_evaluator.py", "--iterations", "2",
                     "--max-programs", "3", cwd=tmp_path)
    assert both.returncode == 2 and "not both" in both.stderr, both.stderr
    gone = _evoforge("run", src / "my_program.py", src / "nope.py", cwd=tmp_path)
    assert gone.returncode == 1 and "nope.py" in gone.stderr and "Traceback" not in gone.stderr
