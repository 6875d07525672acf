"""Meta-prompt evolution (prompt.evolve): fitness bookkeeping, drawing, meta calls at their
cadence and in the cost, rejected rewrites, the drawn variant in what the server received,
resume, and prompts unchanged when it is off. Runs go through the real OpenAI-compatible test
server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
import random
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from evoforge import api, cli
from evoforge.cli import app
from evoforge.config import Config, build_config
from evoforge.errors import ConfigError, LLMError, StorageError
from evoforge.mutators.base import MutationOutcome, MutationRequest
from evoforge.mutators.meta_prompt import (
    STATE_KEY,
    MetaReplyError,
    PromptEvolution,
    VariantPopulation,
    load_variants,
    parse_meta_reply,
    with_prompt_evolution,
)
from evoforge.problem import Problem
from evoforge.program import MutationInfo, Program, Status
from evoforge.prompting import PromptBuilder, PromptVariant
from evoforge.storages import SQLiteStorage
from evoforge.testing import FunctionExecutor, FunctionLLM, FunctionMutator
from evoforge.testing.openai_server import ChatRequest, OpenAITestServer, reply

QUAD = Path(__file__).parent / "fixtures" / "problems" / "quadratic"
# each application raises f() by 1.0 (see test_llm_run.py)
GOOD = ("I will raise the value a little.\n<<<<<<< SEARCH\n    b = 2.0\n=======\n"
        "    b = 2.0\n    a = a + 0.5\n>>>>>>> REPLACE\n")
META_SYSTEM = "You improve the instructions"  # how a meta call's system message starts
PRICE_IN, PRICE_OUT = 1.0, 2.0  # USD per 1M tokens


def _good_meta(n: int) -> str:
    return (f"Here is my rewrite.\n<system>\nYou are careful variant number {n}.\n</system>\n"
            f"<guidance>\n- Try idea number {n} first.\n</guidance>\n")


def _is_meta(req: ChatRequest) -> bool:
    return str(req.messages[0].get("content", "")).startswith(META_SYSTEM)


class Script:
    """The server's answers: GOOD to proposals; to meta calls the scripted ``meta`` replies in
    order, then fresh good rewrites. Meta replies are billed 1000 + 100 tokens."""

    def __init__(self, meta: list[str] | None = None) -> None:
        self.meta = list(meta or [])
        self.count = 0

    def __call__(self, req: ChatRequest) -> Any:
        if not _is_meta(req):
            return reply(GOOD)
        self.count += 1
        text = self.meta.pop(0) if self.meta else _good_meta(self.count)
        return reply(text, prompt_tokens=1000, completion_tokens=100)


def _config(server: OpenAITestServer, **over: Any) -> Config:
    base = {
        "max_programs": 13, "seed": 1,
        "llm": {"base_url": server.base_url, "models": [
            {"name": "test-model", "input_price": PRICE_IN, "output_price": PRICE_OUT}],
            "concurrency": 1, "retries": 0, "request_timeout": 5, "proposal_deadline": 10,
            # no hedging: on a loaded machine a slow request's twin would be one more request
            # the server answers (and counts), a meta call's twin one more rewrite
            "hedge": False, "api_key_env": "EVOFORGE_TEST_KEY"},
        # one result at a time: proposals and server requests are in program-id order
        "evaluation": {"workers": 1, "timeout": 10, "reverify": 0, "cache": "off"},
        "pipeline": {"max_in_flight": 1},
        "selector": {"num_islands": 1, "exploitation_ratio": 1.0, "exploration_ratio": 0.0,
                     "crossover_rate": 0.0},
        "prompt": {"evolve": {"enabled": True, "meta_every": 4}},
    }
    return build_config(Problem.load(QUAD).config, base, over)


def _score(code: str) -> dict[str, float]:
    """The quadratic fixture's evaluator, in process (the code is this test's own)."""
    namespace: dict[str, Any] = {}
    exec(compile(code, "candidate", "exec"), namespace)  # noqa: S102
    return {"combined_score": -((float(namespace["run"]()) - 7.3) ** 2)}


def _evolve(run_dir: Path, config: Config) -> Any:
    return api.evolve(QUAD, run_dir=run_dir, config=config, executor=FunctionExecutor(_score))


def _programs(run_dir: Path) -> dict[int, Program]:
    with SQLiteStorage(run_dir / "evoforge.db", readonly=True) as s:
        return {p.id: p for p in s.programs()}


def _state(run_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    with SQLiteStorage(run_dir / "evoforge.db", readonly=True) as s:
        state = s.get_meta(STATE_KEY)
        return state, {r.id: r for r in load_variants(s, state)}


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVOFORGE_TEST_KEY", "sk-test-key")


# ----------------------------------------------------------------------------- bookkeeping


def _prog(pid: int, score: float | None, *, variant: str | None = None, parent: int = 0,
          status: Status = Status.OK, reason: str = "") -> Program:
    return Program(id=pid, code=f"# {pid}\n", parent_ids=(parent,) if pid else (),
                   status=status if score is not None or status is not Status.OK
                   else Status.FAILED, score=score, reason=reason,
                   mutation=MutationInfo(mutator="llm" if variant else "initial",
                                         prompt_variant=variant))


def _evolution(minimize: bool = False, storage: Any = None, **kw: Any) -> PromptEvolution:
    inner = FunctionMutator(lambda r: r.parent.code + "# child\n")
    ev = PromptEvolution(inner, FunctionLLM(lambda m: ""), PromptBuilder(), storage,
                         minimize=minimize, discount=1.0, **kw)
    for i in range(2):
        ev.population.add(PromptVariant(f"v{i}", f"system {i}", f"guidance {i}"))
    return ev


@pytest.mark.parametrize("minimize", [False, True])
def test_children_better_and_worse_than_their_parent_move_their_own_variants_fitness(minimize):
    ev = _evolution(minimize)
    sign = -1 if minimize else 1
    ev.observe(_prog(0, 10.0))
    ev.observe(_prog(1, 10.0 + sign * 2.0, variant="v0"))  # better by 20 %
    v0, v1 = ev.population.records["v0"], ev.population.records["v1"]
    assert v0.fitness == pytest.approx(0.2 / 2) and (v0.better, v0.worse) == (1, 0)
    assert v1.fitness == 0 and v1.children == 0
    ev.observe(_prog(2, 10.0 - sign * 5.0, variant="v1"))  # worse by 50 %
    assert v1.fitness == pytest.approx(-0.5 / 2) and (v1.better, v1.worse) == (0, 1)
    assert v0.fitness == pytest.approx(0.1)  # untouched by v1's child
    # a failed child counts as the worst outcome; a child of the better child is measured
    # against that child, not the initial program
    ev.observe(_prog(3, None, variant="v1", parent=1, status=Status.FAILED, reason="boom"))
    assert v1.failed == 1 and v1.fitness == pytest.approx((-0.5 - 1.0) / 3)
    ev.observe(_prog(4, 10.0 + sign * 2.0, variant="v0", parent=1))  # equal to its parent
    assert v0.worse == 1 and v0.fitness == pytest.approx(0.2 / 3)
    # the LLM never answered: not the prompt's doing, nothing counted
    ev.observe(_prog(5, None, variant="v0", status=Status.INVALID, reason="llm: HTTP 500"))
    assert v0.children == 2
    # an invalid edit is the prompt's doing
    ev.observe(_prog(6, None, variant="v0", status=Status.INVALID, reason="edit did not apply"))
    assert v0.failed == 1 and v0.fitness == pytest.approx((0.2 - 1.0) / 4)


def test_gains_are_clipped_and_discounted():
    pop = VariantPopulation(discount=0.5)
    pop.add(PromptVariant("v0", "s", "g"))
    pop.add(PromptVariant("v1", "s1", "g1"))
    parent = _prog(0, 1.0)
    assert pop.reward(_prog(1, 100.0, variant="v0"), parent.score) == 1.0
    assert pop.reward(_prog(1, -100.0, variant="v0"), parent.score) == -1.0
    pop.credit("v0", 1.0, ok=True)
    pop.credit("v1", -1.0, ok=True)  # v0's first child now weighs a half
    v0 = pop.records["v0"]
    assert v0.weight == pytest.approx(0.5) and v0.reward == pytest.approx(0.5)


@pytest.mark.parametrize("fit", ["v0", "v1"])
def test_drawing_prefers_the_fitter_variant_and_tries_a_newborn(fit):
    pop = VariantPopulation(exploration=0.5)
    pop.add(PromptVariant("v0", "s0", "g0"))
    pop.add(PromptVariant("v1", "s1", "g1"))
    unfit = "v1" if fit == "v0" else "v0"
    for _ in range(10):
        pop.credit(fit, 0.3, ok=True)
        pop.credit(unfit, -0.5, ok=True)
    rng = random.Random(0)
    drawn = []
    for _ in range(200):
        v = pop.choose(rng)
        drawn.append(v.id)
        pop.release(v.id)
    assert drawn.count(fit) >= 190
    pop.add(PromptVariant("v2", "s2", "g2"))  # untried: drawn next (exploration)
    assert pop.choose(rng).id == "v2"


def test_outstanding_draws_spread_concurrent_proposals():
    pop = VariantPopulation(exploration=0.5)
    for i in range(3):
        pop.add(PromptVariant(f"v{i}", f"s{i}", f"g{i}"))
    rng = random.Random(1)
    drawn = {pop.choose(rng).id for _ in range(3)}  # none committed yet
    assert drawn == {"v0", "v1", "v2"}


def test_a_new_variant_beyond_the_population_retires_the_least_fit():
    pop = VariantPopulation(size=3)
    for i in range(3):
        pop.add(PromptVariant(f"v{i}", f"s{i}", f"g{i}"))
    pop.credit("v0", 0.4, ok=True)
    pop.credit("v1", -1.0, ok=False)
    pop.credit("v2", 0.1, ok=True)
    assert pop.add(PromptVariant("v3", "s3", "g3")) == "v1"
    assert [r.id for r in pop.alive()] == ["v0", "v2", "v3"]
    assert pop.records["v1"].variant.system == "s1"  # kept for the record


# ----------------------------------------------------------------------------- replies


@pytest.mark.parametrize(("text", "why"), [
    ("", "empty"),
    ("   \n", "empty"),
    ("I would keep it as it is.", "no <system>"),
    ("<system>hello</system>", "no <guidance>"),
    ("<system>\n\n</system><guidance>g</guidance>", "<system> part is empty"),
    ("<system>" + "x" * 2001 + "</system><guidance>g</guidance>", "over prompt.evolve.max_chars"),
    ("<system>s</system><guidance># EVOLVE-BLOCK-START\nfoo</guidance>", "EVOLVE-BLOCK marker"),
    ("<system>s</system><guidance><<<<<<< SEARCH\nx</guidance>", "SEARCH/REPLACE marker"),
    ("<system>s</system><guidance>a\n=======\nb</guidance>", "SEARCH/REPLACE marker"),
    ("<system>s\x1b[2J</system><guidance>g</guidance>", "control character U+001B"),
    ("<system>sys 0</system><guidance>gui 0</guidance>", "repeats variant v0"),
])
def test_unusable_meta_replies_are_rejected_with_the_reason(text, why):
    with pytest.raises(MetaReplyError, match=re.escape(why)):
        parse_meta_reply(text, max_chars=2000,
                         existing=[PromptVariant("v0", "sys 0", "gui 0")])


def test_a_usable_meta_reply_gives_both_parts():
    system, guidance = parse_meta_reply(_good_meta(7), max_chars=2000)
    assert system == "You are careful variant number 7."
    assert guidance == "- Try idea number 7 first."


# ----------------------------------------------------------------------------- runs


def test_meta_calls_come_at_their_cadence_are_billed_and_the_drawn_variant_is_sent(tmp_path):
    script = Script()
    with OpenAITestServer(script) as srv:
        outcome = _evolve(tmp_path / "r", _config(srv))
        records = srv.records
    assert outcome.ok, outcome.message
    progs = _programs(tmp_path / "r")
    assert len(progs) == 13
    bodies = [r.body["messages"] for r in records]
    meta = [b for b in bodies if b[0]["content"].startswith(META_SYSTEM)]
    proposals = [b for b in bodies if not b[0]["content"].startswith(META_SYSTEM)]
    # 12 LLM proposals, meta_every 4: a rewrite after the 4th, 8th and 12th
    assert len(proposals) == 12 and len(meta) == 3
    with SQLiteStorage(tmp_path / "r" / "evoforge.db", readonly=True) as s:
        stats = s.stats()
        exchanges = {pid: s.exchange(pid) for pid in progs}
    assert [pid for pid, x in exchanges.items() if x and "meta" in x] == [4, 8, 12]
    assert exchanges[4]["meta"]["outcome"] == "accepted as v1 (a rewrite of v0)"
    # the meta calls are billed like any other call: in the run's tokens and cost
    assert stats["prompt_tokens"] == 12 * 10 + 3 * 1000
    assert stats["completion_tokens"] == 12 * 5 + 3 * 100
    assert stats["cost"] == pytest.approx(
        (12 * (10 * PRICE_IN + 5 * PRICE_OUT) + 3 * (1000 * PRICE_IN + 100 * PRICE_OUT)) / 1e6)
    assert progs[4].mutation.prompt_tokens == 1010
    state, variants = _state(tmp_path / "r")
    assert list(variants) == ["v0", "v1", "v2", "v3"] and state["meta_calls"] == 3
    # the k-th proposal sent is program k's; its system message holds its variant's text
    used = set()
    for pid, messages in enumerate(proposals, start=1):
        vid = progs[pid].mutation.prompt_variant
        assert vid is not None and exchanges[pid]["prompt_variant"] == vid
        v = variants[vid].variant
        assert v.system in messages[0]["content"] and v.guidance in messages[0]["content"]
        for other in variants.values():
            if other.id != vid and other.id != "v0":
                assert other.variant.system not in messages[0]["content"]
        used.add(vid)
    assert used >= {"v0", "v1", "v2"}  # rewrites were drawn, not just kept
    # the meta call saw the variants with their record and asked for the fittest's rewrite
    assert "Variant v0: fitness" in meta[0][1]["content"]
    assert "Write an improved version of variant v0" in meta[0][1]["content"]
    # the children's fitness is what the stored programs say
    fresh = _evolution()
    fresh.population.records.clear()
    for r in variants.values():
        fresh.population.add(r.variant)
    fresh.population.discount = 0.99
    fresh.restore(sorted(progs.values(), key=lambda p: p.done_seq or 0))
    for vid, r in variants.items():
        assert fresh.population.records[vid].fitness == pytest.approx(r.fitness)
        assert fresh.population.records[vid].children == r.children
    assert sum(r.children for r in variants.values()) == 12


def test_bad_meta_replies_are_rejected_and_logged_and_the_run_goes_on(tmp_path, caplog):
    bad = ["", "Nothing to change.", "<system>" + "y" * 3000 + "</system><guidance>g</guidance>",
           "<system>s</system><guidance># EVOLVE-BLOCK-END</guidance>"]
    caplog.set_level(logging.WARNING, logger="evoforge")
    with OpenAITestServer(Script(bad)) as srv:
        cfg = _config(srv, max_programs=7, prompt={"evolve": {"meta_every": 1}})
        outcome = _evolve(tmp_path / "r", cfg)
    assert outcome.ok and outcome.reason == "max_programs", outcome.message
    state, variants = _state(tmp_path / "r")
    assert state["meta_calls"] == 6 and state["meta_rejected"] == 4
    assert list(variants) == ["v0", "v1", "v2"]  # only the two good rewrites
    with SQLiteStorage(tmp_path / "r" / "evoforge.db", readonly=True) as s:
        outcomes = [s.exchange(i)["meta"]["outcome"] for i in range(1, 7)]
    # the client itself turns an empty reply into an error: rejected all the same, billed
    assert outcomes[0].startswith("rejected: llm: ") and "empty reply" in outcomes[0]
    assert outcomes[1] == "rejected: the reply has no <system>...</system> part"
    assert "over prompt.evolve.max_chars=2,000" in outcomes[2]
    assert "EVOLVE-BLOCK marker" in outcomes[3]
    assert outcomes[4].startswith("accepted as v1")
    logged = [r.getMessage() for r in caplog.records if "was rejected" in r.getMessage()]
    assert len(logged) == 4 and "no <system>...</system> part" in logged[1]


def test_resume_keeps_the_variants_their_fitness_and_the_cadence(tmp_path):
    with OpenAITestServer(Script()) as srv:
        first = _evolve(tmp_path / "r", _config(srv, max_programs=10))
    assert first.ok
    before, vars_before = _state(tmp_path / "r")
    assert before["llm_proposals"] == 9 and before["meta_calls"] == 2
    # a fresh wrapper on the stored run: the variants come back, the fitness is relearnt
    # from the stored programs to the same values
    with SQLiteStorage(tmp_path / "r" / "evoforge.db") as s:
        ev = PromptEvolution(FunctionMutator(lambda r: None), FunctionLLM(lambda m: ""),
                             PromptBuilder(), s, meta_every=4)
        loaded = dict(ev.population.records)
        ev.restore(s.programs())
        assert {k: r.variant for k, r in loaded.items()} == {
            k: r.variant for k, r in vars_before.items()}
        for k, r in ev.population.records.items():
            assert r.fitness == pytest.approx(vars_before[k].fitness)
            assert (r.children, r.alive) == (vars_before[k].children, vars_before[k].alive)
    script = Script()
    with OpenAITestServer(script) as srv:
        res = api.resume(tmp_path / "r", overrides=[f"llm.base_url={srv.base_url}"],
                         flags={"max_programs": 14}, executor=FunctionExecutor(_score))
        sent = [r.body["messages"] for r in srv.records]
    assert res.ok, res.message
    after, vars_after = _state(tmp_path / "r")
    # 13 LLM proposals in all: the counting went on (a rewrite after the 12th, not the 4th
    # of this session)
    assert after["llm_proposals"] == 13 and after["meta_calls"] == 3 and script.count == 1
    for k, r in vars_before.items():
        assert vars_after[k].variant == r.variant
        assert vars_after[k].children >= r.children
    progs = _programs(tmp_path / "r")
    assert sum(r.children for r in vars_after.values()) == 13
    # the first proposal after the resume was drawn from the stored variants, v0 included
    first_after = progs[10].mutation.prompt_variant
    assert first_after in vars_before
    assert vars_before[first_after].variant.system in sent[0][0]["content"]


def test_off_by_default_and_the_first_variant_sends_exactly_the_usual_prompt(tmp_path):
    assert Config().prompt.evolve.enabled is False
    sent: dict[str, list[Any]] = {}
    for mode, evolve in (("off", {"enabled": False}), ("v0 only", {"meta_every": None})):
        with OpenAITestServer(Script()) as srv:
            cfg = _config(srv, max_programs=6, prompt={"evolve": evolve})
            assert _evolve(tmp_path / mode, cfg).ok
            sent[mode] = [r.body["messages"] for r in srv.records]
    assert len(sent["off"]) == 5
    assert sent["v0 only"] == sent["off"]  # byte for byte
    with SQLiteStorage(tmp_path / "off" / "evoforge.db", readonly=True) as s:
        assert s.get_meta(STATE_KEY) is None
        assert all(p.mutation.prompt_variant is None for p in s.programs())
    on, _ = _state(tmp_path / "v0 only")
    assert on["ids"] == ["v0"] and on["meta_calls"] == 0
    # and the built-in text is what an unset variant renders (tests/golden holds that text)
    pb = PromptBuilder()
    req = MutationRequest(parent=_prog(0, 1.0), rng=random.Random(0))
    assert pb.build(replace(req, prompt_variant=pb.default_variant(req))) == pb.build(req)


def test_a_custom_system_template_without_the_variant_is_warned_about(tmp_path, caplog):
    from evoforge.mutators.llm import LLMMutator

    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "system.j2").write_text("You write {{ language }}.\n")
    cfg = build_config({"prompt": {"template_dir": str(tmp_path / "t"),
                                   "evolve": {"enabled": True}}})
    inner = LLMMutator(FunctionLLM(lambda m: ""), PromptBuilder.from_config(cfg))
    with SQLiteStorage(tmp_path / "db.sqlite") as s:
        wrapped = with_prompt_evolution(inner, s, cfg)
    assert isinstance(wrapped, PromptEvolution) and wrapped.llm is inner.llm
    assert "do not show {{ variant.system }}" in caplog.text
    caplog.clear()
    (tmp_path / "t" / "system.j2").write_text("{{ variant.system if variant else '' }}\n")
    with SQLiteStorage(tmp_path / "db2.sqlite") as s:
        with_prompt_evolution(inner, s, cfg)
    assert "variant" not in caplog.text


def test_with_prompt_evolution_leaves_a_mutator_without_an_llm_alone(tmp_path, caplog):
    inner = FunctionMutator(lambda r: None)
    cfg = build_config({"prompt": {"evolve": {"enabled": True}}})
    with SQLiteStorage(tmp_path / "db.sqlite") as s:
        assert with_prompt_evolution(inner, s, Config()) is inner
        assert with_prompt_evolution(inner, s, cfg) is inner
    assert "no prompts to evolve" in caplog.text
    with pytest.raises(ConfigError, match="unknown key 'prompt.evolve.meta_evry'"):
        build_config({"prompt": {"evolve": {"meta_evry": 3}}})


def test_cli_status_lists_the_variants_and_show_names_the_variant_escaped(tmp_path, monkeypatch):
    hostile = ("<system>\nYou are [bold red]LOUD[/bold red] variant.\n</system>\n"
               "<guidance>\n- be bold\n</guidance>\n")
    with OpenAITestServer(Script([hostile])) as srv:
        assert _evolve(tmp_path / "r", _config(srv, max_programs=7)).ok
    with SQLiteStorage(tmp_path / "r" / "evoforge.db") as s:  # stored text turned hostile
        text = s.get_meta("prompt_variant:v0")
        s.set_meta("prompt_variant:v0", {**text, "system": "evil \x1b]52;c;AAAA\x07 intro"})
    progs = _programs(tmp_path / "r")
    runner = CliRunner()
    monkeypatch.setattr(cli.out, "width", 240)  # one table row per variant
    shown = runner.invoke(app, ["status", str(tmp_path / "r")])
    assert shown.exit_code == 0, shown.output
    assert "prompt variants (prompt.evolve): 1 rewrite(s) asked, 0 rejected" in shown.output
    assert "[bold red]LOUD[/bold red]" in shown.output  # markup shown, not obeyed
    assert "\x1b" not in shown.output and "\\x1b]52" in shown.output
    lines = [ln for ln in shown.output.splitlines() if ln.strip().startswith(("v0", "v1"))]
    assert len(lines) == 2
    hint = re.search(r"the fittest, (v\d), in full: \S+ show \S+ (\d+) --prompt", shown.output)
    assert hint is not None and progs[int(hint[2])].mutation.prompt_variant == hint[1]
    assert lines[0].strip().startswith(hint[1])  # the fittest living variant comes first
    v1 = next(p for p in progs.values() if p.mutation.prompt_variant == "v1")
    shown = runner.invoke(app, ["show", str(tmp_path / "r"), str(v1.id), "--prompt"])
    assert shown.exit_code == 0, shown.output
    assert "built with prompt variant v1 (a rewrite of v0 by the meta call of program #4)" \
        in shown.output
    shown = runner.invoke(app, ["show", str(tmp_path / "r"), "4", "--reply"])
    assert "meta outcome: accepted as v1 (a rewrite of v0)" in shown.output


def test_a_meta_call_that_fails_is_billed_and_the_proposal_kept():
    def failing(messages: list[dict[str, str]]) -> str:
        raise LLMError("HTTP 500 from the endpoint", prompt_tokens=7, cost=0.25)

    def llm_child(request: MutationRequest) -> MutationOutcome:  # as an LLM mutator answers
        return MutationOutcome(code="child\n", info=MutationInfo(mutator="llm", cost=0.5),
                               exchange={"messages": [], "reply": "x"})

    ev = PromptEvolution(FunctionMutator(llm_child), FunctionLLM(failing), PromptBuilder(),
                         meta_every=1)
    out = asyncio.run(ev.mutate(MutationRequest(parent=_prog(0, 1.0), rng=random.Random(0))))
    assert out.code == "child\n" and out.info.prompt_variant == "v0"
    assert out.info.cost == pytest.approx(0.75) and out.info.prompt_tokens == 7
    assert out.exchange is not None and out.exchange["prompt_variant"] == "v0"
    assert out.exchange["meta"]["outcome"] == "rejected: llm: HTTP 500 from the endpoint"
    assert ev.meta_calls == 1 and ev.meta_rejected == 1


def test_a_stagnating_run_asks_for_a_rewrite(tmp_path):
    # f() climbs by 1 per child up to 7.25 (program 4, the best); every later child of the
    # best overshoots to 8.25: no new best from program 5 on
    with OpenAITestServer(Script()) as srv:
        cfg = _config(srv, max_programs=12,
                      prompt={"evolve": {"meta_every": None, "stagnation": 3}})
        assert _evolve(tmp_path / "r", cfg).ok
    with SQLiteStorage(tmp_path / "r" / "evoforge.db", readonly=True) as s:
        progs = {p.id: p for p in s.programs()}
        metas = [pid for pid in progs if (s.exchange(pid) or {}).get("meta")]
    assert max(progs.values(), key=lambda p: p.score or -1e9).id == 4
    # three children without a new best committed (5, 6, 7) when proposal 8 returns; then
    # three more proposals before the next rewrite
    assert metas == [8, 11]


def test_a_bandit_with_a_model_free_arm_draws_variants_only_for_llm_proposals(tmp_path):
    with OpenAITestServer(Script()) as srv:
        cfg = _config(srv, max_programs=16, mutator={"name": "bandit",
                                                     "bandit_edit_modes": ["diff"],
                                                     "bandit_tuning": False})
        assert _evolve(tmp_path / "r", cfg).ok
        asked = sum(1 for r in srv.records if not r.body["messages"][0]["content"]
                    .startswith(META_SYSTEM))
    progs = _programs(tmp_path / "r")
    by_llm = [p for p in progs.values() if p.mutation.mutator == "llm"]
    others = [p for p in progs.values() if p.id and p.mutation.mutator != "llm"]
    assert by_llm and others and len(by_llm) == asked
    assert all(p.mutation.prompt_variant is not None for p in by_llm)
    assert all(p.mutation.prompt_variant is None for p in others)
    state, variants = _state(tmp_path / "r")
    assert state["llm_proposals"] == len(by_llm)
    assert sum(r.children for r in variants.values()) == len(by_llm)


def test_a_recorded_run_replays_its_meta_calls_into_the_same_run(tmp_path):
    rec = tmp_path / "llm.jsonl"
    with OpenAITestServer(Script()) as srv:
        assert _evolve(tmp_path / "a", _config(srv, max_programs=10,
                                               llm={"record": str(rec)})).ok
        url = srv.base_url
    with OpenAITestServer(Script()) as gone:  # a server that is never asked
        cfg = _config(gone, max_programs=10, llm={"replay": str(rec)})
        assert _evolve(tmp_path / "b", cfg).ok
        assert gone.request_count == 0
    assert url not in rec.read_text()
    a, b = _programs(tmp_path / "a"), _programs(tmp_path / "b")
    assert [(p.code, p.mutation.prompt_variant) for p in a.values()] == [
        (p.code, p.mutation.prompt_variant) for p in b.values()]
    assert _state(tmp_path / "a")[0]["meta_calls"] == _state(tmp_path / "b")[0]["meta_calls"] == 2


def test_status_survives_unreadable_stored_variants(tmp_path, monkeypatch):
    with OpenAITestServer(Script()) as srv:
        assert _evolve(tmp_path / "r", _config(srv, max_programs=3)).ok
    with SQLiteStorage(tmp_path / "r" / "evoforge.db") as s:
        s.set_meta(STATE_KEY, {"version": 1, "ids": ["v0", "v9"], "stats": {}})
    monkeypatch.setattr(cli.out, "width", 240)
    shown = CliRunner().invoke(app, ["status", str(tmp_path / "r")])
    assert shown.exit_code == 0, shown.output
    assert "prompt variants: the run's stored prompt variants (meta key 'prompt_variants') are " \
           "unreadable" in shown.output
    assert "LLM usage" in shown.output  # the rest of the status is there
    with OpenAITestServer(Script()) as srv, pytest.raises(StorageError, match="unreadable"):
        api.resume(tmp_path / "r", overrides=[f"llm.base_url={srv.base_url}"],
                   executor=FunctionExecutor(_score))


def test_show_says_which_variant_made_a_program(tmp_path, monkeypatch):
    with OpenAITestServer(Script()) as srv:
        assert _evolve(tmp_path / "r", _config(srv, max_programs=7)).ok
    progs = _programs(tmp_path / "r")
    monkeypatch.setattr(cli.out, "width", 240)
    runner = CliRunner()
    seen = set()
    for pid in sorted(progs):
        shown = runner.invoke(app, ["show", str(tmp_path / "r"), str(pid)])
        assert shown.exit_code == 0, shown.output
        vid = progs[pid].mutation.prompt_variant
        lines = [ln for ln in shown.output.splitlines() if ln.startswith("made with")]
        if vid is None:
            assert pid == 0 and lines == []
        elif vid == "v0":
            assert lines == ["made with prompt variant v0 (the built-in instructions)"]
        else:
            assert lines == [f"made with prompt variant {vid} (a rewrite of v0 by the meta call "
                             "of program #4)"]
        seen.add(vid)
    assert seen == {None, "v0", "v1"}


def test_a_variant_that_works_takes_over_and_bad_ones_die_out(tmp_path):
    """A model that only improves the program when its instructions say STRATEGY-A: the
    rewrite saying so is drawn for most later proposals; failing variants are retired."""
    missing = "<<<<<<< SEARCH\nthis line does not exist\n=======\nx = 1\n>>>>>>> REPLACE\n"
    metas = [0]

    def model(req: ChatRequest) -> Any:
        if _is_meta(req):
            metas[0] += 1
            word = "STRATEGY-A" if metas[0] == 1 else f"STRATEGY-X{metas[0]}"
            return reply(f"<system>\nUse {word}.\n</system>\n<guidance>\n- {word}\n</guidance>")
        return reply(GOOD if "STRATEGY-A" in req.messages[0]["content"] else missing)

    def value(code: str) -> float:  # maximise f(): every GOOD edit is better by 1.0
        namespace: dict[str, Any] = {}
        exec(compile(code, "candidate", "exec"), namespace)  # noqa: S102
        return float(namespace["run"]())

    with OpenAITestServer(model) as srv:
        cfg = _config(srv, max_programs=21, prompt={"evolve": {"meta_every": 5, "population": 3}})
        assert api.evolve(QUAD, run_dir=tmp_path / "r", config=cfg,
                          executor=FunctionExecutor(value)).ok
    progs = _programs(tmp_path / "r")
    state, variants = _state(tmp_path / "r")
    a = next(r for r in variants.values() if "STRATEGY-A" in r.variant.system)
    after = [p for p in progs.values() if p.id > (a.born_program or 0)]
    share = sum(p.mutation.prompt_variant == a.id for p in after) / len(after)
    assert share >= 0.6, share
    assert all(p.status is Status.OK for p in after if p.mutation.prompt_variant == a.id)
    assert max(variants.values(), key=lambda r: r.fitness) is a
    retired = [r.id for r in variants.values() if not r.alive]
    assert "v0" in retired and a.alive and len([r for r in variants.values() if r.alive]) == 3
    assert state["meta_calls"] == 4
