"""OpenEvolve users' config.yaml is accepted (issue 10): detected, translated key by key into
evoforge's schema, with one warning per key evoforge has no equivalent for; evoforge's own
configs stay strict; config errors name the file or --set item holding the bad key."""

from __future__ import annotations

import logging
import shutil
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from evoforge import api
from evoforge.config import Config, Layer, build_config, load_config
from evoforge.errors import ConfigError
from evoforge.mutators.model_free import ModelFreeMutator
from evoforge.openevolve_config import (
    RULES,
    is_openevolve,
    openevolve_keys,
    read_config_file,
    translate,
)
from evoforge.problem import Problem, builtin_problems

FIXTURES = Path(__file__).parent / "fixtures" / "openevolve"
EVERY_KEY = FIXTURES / "every_key.yaml"
PER_MODEL = FIXTURES / "per_model.yaml"
PROBLEM = FIXTURES / "problem"
EVOFORGE = str(Path(sys.executable).with_name("evoforge"))
LITERAL_KEYS = ("sk-fixture-LITERAL-key-must-never-be-stored-0123456789",
                "sk-per-model-LITERAL-key-must-never-be-stored-987",
                "sk-problem-LITERAL-key-must-never-be-stored-55555")
QUICK = ["evaluation.reverify=0", "evaluation.warm_pool=false"]


def warned_keys(warnings: list[str]) -> Counter[str]:
    """How often each key is named: a warning is ``KEY[, KEY...]: what evoforge does``."""
    return Counter(k for w in warnings for k in w.split(": ", 1)[0].split(", "))


def get(data: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        data = data[part]
    return data


def config_keys(model: type[BaseModel] = Config, prefix: str = "") -> set[str]:
    out = set()
    for name, f in model.model_fields.items():
        sub = next((a for a in (f.annotation, *getattr(f.annotation, "__args__", ()))
                    if isinstance(a, type) and issubclass(a, BaseModel)), None)
        out.add(prefix + name)
        if sub is not None and name not in ("models", "features"):
            out |= config_keys(sub, f"{prefix}{name}.")
    return out


def fixture_keys(data: dict[str, Any], prefix: str = "") -> set[str]:
    out = set()
    for k, v in data.items():
        if isinstance(v, dict) and f"{prefix}{k}" in ("llm", "prompt", "database", "evaluator",
                                                       "evolution_trace"):
            out |= fixture_keys(v, f"{prefix}{k}.")
        else:
            out.add(f"{prefix}{k}")
    return out


# every_key.yaml: what each OpenEvolve key became
MAPPED = {
    "max_iterations": ("max_programs", 41),  # 40 children + the initial program
    "random_seed": ("seed", 7),
    "diff_based_evolution": ("mutator.edit_mode", "rewrite"),
    "llm.api_base": ("llm.base_url", "http://127.0.0.1:9/v1"),
    "llm.models": ("llm.models", [{"name": "model-a", "weight": 0.5},
                                  {"name": "model-p", "weight": 0.3},
                                  {"name": "model-s", "weight": 0.1}]),
    "llm.primary_model": ("llm.models", ...),
    "llm.primary_model_weight": ("llm.models", ...),
    "llm.secondary_model": ("llm.models", ...),
    "llm.secondary_model_weight": ("llm.models", ...),
    "llm.temperature": ("llm.temperature", 0.4),
    "llm.top_p": ("llm.top_p", 0.9),
    "llm.max_tokens": ("llm.max_tokens", 2048),
    "llm.timeout": ("llm.request_timeout", 200),
    "llm.retries": ("llm.retries", 4),
    "llm.retry_delay": ("llm.backoff_base", 40),
    "prompt.system_message": ("prompt.system_message", "You evolve sorting networks."),
    "prompt.num_top_programs": ("selector.num_context", 5),  # 4 top + 1 diverse
    "prompt.num_diverse_programs": ("selector.num_context", 5),
    "prompt.max_artifact_bytes": ("prompt.feedback_chars", 3000),
    "database.archive_size": ("selector.archive_size", 30),
    "database.num_islands": ("selector.num_islands", 3),
    "database.exploration_ratio": ("selector.exploration_ratio", 0.3),
    "database.exploitation_ratio": ("selector.exploitation_ratio", 0.6),
    "database.migration_interval": ("selector.migration_interval", 25),
    "database.migration_rate": ("selector.migration_rate", 0.2),
    "database.feature_dimensions": ("selector.features", ...),
    "database.feature_bins": ("selector.features", [{"name": "code_length", "bins": 4},
                                                    {"name": "score", "bins": 6}]),
    "evaluator.timeout": ("evaluation.timeout", 45),
    "evaluator.memory_limit_mb": ("evaluation.memory_mb", 2048),
    "evaluator.cascade_evaluation": ("evaluation.cascade_thresholds", [0.2, 0.4]),
    "evaluator.cascade_thresholds": ("evaluation.cascade_thresholds", [0.2, 0.4]),
    "evaluator.parallel_evaluations": ("evaluation.workers", 3),
}
# accepted without a warning: evoforge behaves so anyway, or the value changes nothing
ACCEPTED = {"enforce_evolve_blocks", "prompt.artifact_security_filter", "database.in_memory",
            "database.log_prompts", "prompt.include_artifacts", "evaluator.enable_artifacts"}
# mapped where evoforge can (these values are checked above), and warned about what it cannot
MAPPED_AND_WARNED = {"database.feature_dimensions": "'diversity'",  # diversity dropped
                     "database.feature_bins": "'unused_dim'"}


def test_every_openevolve_key_is_mapped_or_warned_exactly_once() -> None:
    data = yaml.safe_load(EVERY_KEY.read_text())
    top_rules = {k for k in RULES if not k.startswith("llm.models[].")}
    assert fixture_keys(data) == top_rules, "every_key.yaml must set every OpenEvolve key"
    t = read_config_file(EVERY_KEY)
    assert t.openevolve
    counts = warned_keys(t.warnings)
    assert max(counts.values()) == 1, counts  # once per key
    for key in sorted(top_rules):
        if key in MAPPED:
            target, want = MAPPED[key]
            assert target in config_keys(), target
            if want is not ...:
                assert get(t.config, target) == want, key
            assert (key in counts) == (key in MAPPED_AND_WARNED), key
        elif key in ACCEPTED:
            assert key not in counts, key
        else:
            assert counts[key] == 1, f"{key} is neither mapped nor warned about"
            assert not RULES[key].targets or key in {  # mapped, but not with these values
                "llm.api_key", "llm.system_message", "database.random_seed",
                "prompt.template_dir"}, key
    for key, what in MAPPED_AND_WARNED.items():
        assert what in next(w for w in t.warnings if key in w.split(": ", 1)[0])
    # a few warnings say what evoforge does instead
    text = "\n".join(t.warnings)
    assert "`evoforge resume RUN_DIR` continues from any point" in text
    assert "llm.models[].weight: a model with weight 0 is never drawn" in text
    assert "database.random_seed: ignored; evoforge has one seed" in text
    assert "llm.system_message: ignored; prompt.system_message is set and wins" in text
    assert "no patience stop" in next(w for w in t.warnings if "early_stopping_patience" in w)
    # what it became is a valid evoforge config, with targets that exist in evoforge's schema
    cfg = build_config(t.layer())
    assert cfg.llm.proposal_deadline == 200 * 5 + 40 * 4  # OpenEvolve's longest proposal
    assert cfg.llm.backoff_max == 40
    for rule in RULES.values():
        assert set(rule.targets) <= config_keys(), rule.targets
    assert not any(lit in yaml.safe_dump(t.config) + text for lit in LITERAL_KEYS)


def test_what_models_set_for_themselves_is_shared_and_warned_when_they_differ(
        monkeypatch: pytest.MonkeyPatch) -> None:
    t = read_config_file(PER_MODEL)
    counts = warned_keys(t.warnings)
    per_model = {k for k in RULES if k.startswith("llm.models[].")}
    assert set(counts) == per_model - {"llm.models[].name", "llm.models[].weight"}, counts
    assert max(counts.values()) == 1
    llm = t.config["llm"]
    assert llm["models"] == [{"name": "model-a", "weight": 0.6}, {"name": "model-b", "weight": 0.4}]
    assert (llm["base_url"], llm["api_key_env"], llm["temperature"], llm["top_p"]) == (
        "http://127.0.0.1:9/v1", "EVOFORGE_TEST_KEY_A", 0.3, 0.8)
    assert (llm["max_tokens"], llm["request_timeout"], llm["retries"], llm["backoff_base"]) == (
        1000, 50, 2, 3)
    assert t.config["prompt"]["system_message"] == "model a speaks"
    assert "one llm.temperature for all models; using the first model's, 0.3" in "\n".join(
        t.warnings)
    assert not any(lit in yaml.safe_dump(t.config) + "\n".join(t.warnings)
                   for lit in LITERAL_KEYS)
    build_config(t.layer())


def test_openevolve_defaults_are_accepted_quietly() -> None:
    """OpenEvolve's own defaults (its documented default config, re-typed here) give no
    warning but checkpoint_interval's and the dropped 'diversity' dimension's."""
    oe_defaults = {
        "max_iterations": 100, "checkpoint_interval": 10, "log_level": "INFO", "log_dir": None,
        "random_seed": 42, "diff_based_evolution": True, "max_code_length": 10000,
        "enforce_evolve_blocks": False, "early_stopping_patience": None,
        "convergence_threshold": 0.001, "early_stopping_metric": "combined_score",
        "llm": {"models": [{"name": "m1", "weight": 0.8}, {"name": "m2", "weight": 0.2}],
                "evaluator_models": [{"name": "m1", "weight": 0.8}], "api_base": "http://h/v1",
                "api_key": None, "temperature": 0.7, "top_p": 0.95, "max_tokens": 4096,
                "timeout": 60, "retries": 3, "retry_delay": 5},
        "prompt": {"template_dir": None, "system_message": "system_message",
                   "evaluator_system_message": "evaluator_system_message",
                   "num_top_programs": 3, "num_diverse_programs": 2,
                   "use_template_stochasticity": True, "template_variations": {},
                   "include_artifacts": True, "max_artifact_bytes": 20480,
                   "artifact_security_filter": True, "suggest_simplification_after_chars": 500,
                   "include_changes_under_chars": 100, "concise_implementation_max_lines": 10,
                   "comprehensive_implementation_min_lines": 50, "diff_summary_max_line_len": 100,
                   "diff_summary_max_lines": 30},
        "database": {"db_path": None, "in_memory": True, "log_prompts": True,
                     "population_size": 1000, "archive_size": 100, "num_islands": 5,
                     "migration_interval": 50, "migration_rate": 0.1,
                     "elite_selection_ratio": 0.1, "exploration_ratio": 0.2,
                     "exploitation_ratio": 0.7, "feature_dimensions": ["complexity", "diversity"],
                     "feature_bins": 10, "diversity_reference_size": 20},
        "evaluator": {"timeout": 300, "max_retries": 3, "cascade_evaluation": True,
                      "cascade_thresholds": [0.5, 0.75, 0.9], "parallel_evaluations": 4,
                      "use_llm_feedback": False, "llm_feedback_weight": 0.1},
        "evolution_trace": {"enabled": False, "format": "jsonl", "include_code": False,
                            "include_prompts": True, "output_path": None, "buffer_size": 10,
                            "compress": False},
    }
    t = translate(oe_defaults)
    assert set(warned_keys(t.warnings)) == {"checkpoint_interval", "database.feature_dimensions"}
    cfg = build_config(t.layer())
    assert cfg.max_programs == 101 and cfg.selector.num_islands == 5
    assert cfg.selector.num_context == 5 and cfg.evaluation.workers == 4
    assert [f.name for f in cfg.selector.features] == ["code_length"]
    assert cfg.mutator.edit_mode == "diff" and cfg.prompt.system_message is None


def test_detection() -> None:
    assert openevolve_keys({"max_iterations": 3, "llm": {"api_base": "u", "temperature": 1},
                            "prompt": {"num_top_programs": 2}}) == [
        "max_iterations", "llm.api_base", "prompt.num_top_programs"]
    assert is_openevolve({"database": {}})
    assert is_openevolve({"evaluator": {"timeout": 5}})
    assert is_openevolve({"llm": {"primary_model": "m"}})
    assert is_openevolve({"llm": {"models": [{"name": "m", "api_key": "${K}"}]}})
    # keys both schemas share, and evoforge's own, are not OpenEvolve's
    assert not is_openevolve({"llm": {"models": [{"name": "m", "weight": 2}], "temperature": 1,
                                      "top_p": 0.5, "max_tokens": 9, "retries": 1},
                              "prompt": {"system_message": "x", "template_dir": None},
                              "max_programs": 5, "selector": {"num_islands": 2}})
    for name, path in builtin_problems().items():  # every shipped config is evoforge's
        if (path / "config.yaml").is_file():
            assert not read_config_file(path / "config.yaml").openevolve, name
    template = Path(__file__).parents[1] / "src/evoforge/templates/problem/config.yaml"
    assert not read_config_file(template).openevolve


def test_evoforge_configs_stay_strict(tmp_path: Path) -> None:
    f = tmp_path / "mine.yaml"
    f.write_text("max_programs: 5\nselector:\n  num_islandz: 3\n")
    t = read_config_file(f)
    assert not t.openevolve and t.config == {"max_programs": 5, "selector": {"num_islandz": 3}}
    with pytest.raises(ConfigError, match="did you mean 'num_islands'") as e:
        load_config(f)
    assert str(f) in str(e.value) and "OpenEvolve" not in str(e.value)
    f.write_text("max_programz: 5\n")
    with pytest.raises(ConfigError, match="did you mean 'max_programs'"):
        load_config(f)


def test_mixed_config_translates_openevolve_keys_and_validates_the_rest(tmp_path: Path) -> None:
    t = translate({"max_programs": 10, "max_iterations": 50, "selector": {"num_islands": 5},
                   "database": {"num_islands": 3, "archive_size": 7},
                   "llm": {"concurrency": 2, "api_base": "http://h/v1", "base_url": "http://e/v1"}})
    cfg = build_config(t.layer())
    assert cfg.max_programs == 10 and cfg.selector.num_islands == 5  # evoforge's keys win
    assert cfg.selector.archive_size == 7 and cfg.llm.concurrency == 2
    assert cfg.llm.base_url == "http://e/v1"
    assert warned_keys(t.warnings) == Counter(["max_iterations", "database.num_islands",
                                               "llm.api_base"])
    assert any(w.startswith("max_iterations: ignored; max_programs is also set in this file")
               for w in t.warnings)
    # an unknown key outside OpenEvolve's own sections is still an error...
    f = tmp_path / "mixed.yaml"
    f.write_text("max_iterations: 5\nselector:\n  num_islandz: 3\n")
    with pytest.raises(ConfigError, match="did you mean 'num_islands'") as e:
        load_config(f)
    assert f"{f} (OpenEvolve format)" in str(e.value)
    # ...inside them (OpenEvolve ignores unknown keys) it is warned about
    t = translate({"database": {"num_island": 3}, "evaluator": {"timout": 3}})
    assert ("database.num_island: not an OpenEvolve 0.4 key evoforge knows; ignored "
            "(did you mean 'num_islands'?)") in t.warnings
    assert any(w.startswith("evaluator.timout:") and "'timeout'" in w for w in t.warnings)
    assert "database" not in t.config and "evaluator" not in t.config


def test_unknown_keys_anywhere_in_an_openevolve_file_are_ignored_as_openevolve_does(
        tmp_path: Path) -> None:
    """OpenEvolve drops keys it does not know; its own example configs have some (a top-level
    ``parallel_evaluations`` in alphaevolve_math_problems), so such a file must run."""
    f = tmp_path / "config.yaml"
    f.write_text("max_iterations: 5\nparallel_evaluations: 1\nmax_programz: 3\n"
                 "llm:\n  primary_model: m\n  concurrency: 2\n  some_new_knob: 1\n"
                 "prompt:\n  system_message: be brief\n  num_top_programz: 2\n")
    cfg = load_config(f)
    assert cfg.max_programs == 6 and cfg.llm.concurrency == 2  # evoforge's own llm key kept
    t = read_config_file(f)
    assert warned_keys(t.warnings) == Counter(["parallel_evaluations", "max_programz",
                                               "llm.some_new_knob", "prompt.num_top_programz"])
    top = next(w for w in t.warnings if w.startswith("parallel_evaluations:"))
    assert "'evaluator.parallel_evaluations'" in top and "evaluation.workers" in top
    assert any("did you mean 'max_programs'" in w for w in t.warnings)
    assert any("did you mean 'num_top_programs'" in w for w in t.warnings)
    assert "parallel_evaluations" not in t.config and "some_new_knob" not in t.config["llm"]
    # a key of OpenEvolve's in the wrong place: its usual place is named, not a per-model one
    t = translate({"max_iterations": 3, "temperature": 0.5, "system_message": "x"})
    assert any("'llm.temperature'" in w for w in t.warnings), t.warnings
    assert any("prompt.system_message in evoforge" in w for w in t.warnings), t.warnings
    assert not any("llm.models[]" in w for w in t.warnings), t.warnings


def test_api_key_env_reference_and_literal_key() -> None:
    t = translate({"llm": {"api_key": "${MY_PROVIDER_KEY}", "primary_model": "m"}})
    assert t.config["llm"]["api_key_env"] == "MY_PROVIDER_KEY" and not t.warnings
    t = translate({"llm": {"api_key": "sk-literal-zzz", "primary_model": "m"}})
    assert "api_key_env" not in t.config["llm"]
    assert warned_keys(t.warnings) == Counter(["llm.api_key"])
    assert "export OPENAI_API_KEY=" in t.warnings[0] and "sk-literal-zzz" not in t.warnings[0]


def test_smaller_mappings(tmp_path: Path) -> None:
    assert translate({"diff_based_evolution": True}).config == {"mutator": {"edit_mode": "diff"}}
    off = translate({"prompt": {"include_artifacts": False, "max_artifact_bytes": 99}})
    assert off.config == {"prompt": {"feedback_chars": 0}} and not off.warnings
    off = translate({"evaluator": {"enable_artifacts": False}, "prompt": {"max_artifact_bytes": 9}})
    assert off.config["prompt"] == {"feedback_chars": 0}
    no_cascade = translate({"evaluator": {"cascade_evaluation": False,
                                          "cascade_thresholds": [0.9]}})
    assert no_cascade.config["evaluation"] == {"cascade_thresholds": []}
    assert translate({"evaluator": {"cascade_evaluation": True}}).config["evaluation"] == {
        "cascade_thresholds": [0.5, 0.75, 0.9]}  # OpenEvolve's default thresholds
    assert translate({"database": {"feature_dimensions": ["score", "my_metric"],
                                   "feature_bins": 3}}).config["selector"]["features"] == [
        {"name": "score", "bins": 3}, {"name": "my_metric", "bins": 3}]
    assert translate({"database": {"random_seed": 5}}).config == {"seed": 5}
    assert translate({"llm": {"timeout": 60}}).config == {"llm": {"request_timeout": 60}}
    # OpenEvolve's template_dir is relative to the file; kept when it holds evoforge templates
    (tmp_path / "tpl").mkdir()
    (tmp_path / "tpl" / "user.j2").write_text("{{ parent.code }}")
    f = tmp_path / "c.yaml"
    f.write_text("max_iterations: 3\nprompt:\n  template_dir: tpl\n")
    assert read_config_file(f).config["prompt"]["template_dir"] == str(tmp_path / "tpl")


def test_errors_name_the_layer_that_holds_the_bad_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        build_config(Layer({"llm": {"concurrency": 2}}, "a.yaml"),
                     overrides=["llm.concurency=3"])
    assert "(--set llm.concurency=3)" in str(e.value) and "a.yaml" not in str(e.value)
    with pytest.raises(ConfigError) as e:  # the value used is --set's: it is the culprit
        build_config(Layer({"evaluation": {"workers": 2}}, "a.yaml"),
                     overrides=["evaluation.workers=0"])
    assert "(--set evaluation.workers=0)" in str(e.value)
    with pytest.raises(ConfigError) as e:  # two layers, two culprits, each line names its own
        build_config(Layer({"selector": {"num_islandz": 2}}, "a.yaml"),
                     Layer({"llm": {"hedgee": True}}, "b.yaml"))
    head, *lines = str(e.value).splitlines()
    assert head in ("invalid configuration (a.yaml; b.yaml):",
                    "invalid configuration (b.yaml; a.yaml):")
    assert next(x for x in lines if "'selector.num_islandz'" in x).endswith("[in a.yaml]")
    assert next(x for x in lines if "'llm.hedgee'" in x).endswith("[in b.yaml]")
    with pytest.raises(ConfigError, match="workers"):  # plain dicts: named after source
        build_config({"evaluation": {"workers": 0}}, source="here.yaml")
    # through prepare: the problem's config.yaml, --config FILE, --set, a flag
    problem = tmp_path / "p"
    shutil.copytree(PROBLEM, problem)
    (problem / "config.yaml").write_text("selector:\n  num_islandz: 2\n")
    with pytest.raises(ConfigError) as e:
        api.prepare(problem, run_dir=tmp_path / "r")
    assert f"({problem / 'config.yaml'})" in str(e.value)
    (problem / "config.yaml").write_text("max_programs: 3\n")
    other = tmp_path / "other.yaml"
    other.write_text("database:\n  num_islands: 0\n")  # OpenEvolve's key, an invalid value
    with pytest.raises(ConfigError) as e:
        api.prepare(problem, run_dir=tmp_path / "r", config_file=other)
    assert f"({other} (OpenEvolve format), key database.num_islands)" in str(e.value)
    with pytest.raises(ConfigError) as e:
        api.prepare(problem, run_dir=tmp_path / "r", overrides=["selector.num_islands=0"])
    assert "(--set selector.num_islands=0)" in str(e.value)
    with pytest.raises(ConfigError) as e:
        api.prepare(problem, run_dir=tmp_path / "r", flags={"evaluation.workers": 0})
    assert "(--workers)" in str(e.value)
    # flags outrank --set, as documented
    _, cfg, _ = api.prepare(problem, run_dir=tmp_path / "r", overrides=["max_programs=9"],
                            flags={"max_programs": 4})
    assert cfg.max_programs == 4


def test_load_config_translates_and_logs_each_warning_once(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="evoforge"):
        cfg = load_config(EVERY_KEY)
    assert cfg.max_programs == 41 and cfg.selector.num_islands == 3
    logged = [r.getMessage() for r in caplog.records]
    assert f"{EVERY_KEY} is an OpenEvolve config" in logged[0]
    counts = warned_keys([m.removeprefix(f"{EVERY_KEY}: ") for m in logged[1:]])
    assert counts["checkpoint_interval"] == 1 and counts["evaluator.cpu_limit"] == 1


def _all_bytes(run_dir: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file())


def test_openevolve_example_runs_through_the_api_and_its_run_is_evoforge_format(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    problem = tmp_path / "oe_example"
    shutil.copytree(PROBLEM, problem)
    prob = Problem.load(problem)
    assert prob.config_file is not None and prob.config_file.openevolve
    with caplog.at_level(logging.WARNING, logger="evoforge"):
        outcome = api.evolve(prob, run_dir=tmp_path / "run", mutator=ModelFreeMutator())
    assert outcome.reason == "max_programs", outcome.message
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert logged.count("checkpoint_interval") == 1
    stored = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert not is_openevolve(stored)
    cfg = build_config(stored)
    assert cfg.max_programs == 5 and cfg.seed == 11 and cfg.selector.num_islands == 2
    with sqlite3.connect(tmp_path / "run" / "evoforge.db") as db:
        assert db.execute("select count(*) from programs").fetchone()[0] == 5  # 4 iterations
    assert not any(lit.encode() in _all_bytes(tmp_path / "run") for lit in LITERAL_KEYS)


def test_openevolve_example_runs_from_the_cli_and_resumes(tmp_path: Path) -> None:
    problem = tmp_path / "oe_example"
    shutil.copytree(PROBLEM, problem)
    run_dir = tmp_path / "run"
    sets = [a for s in ["mutator.name=model_free", *QUICK] for a in ("--set", s)]
    done = subprocess.run([EVOFORGE, "run", str(problem), "--out", str(run_dir), "-q", *sets],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "is an OpenEvolve config" in done.stderr
    assert done.stderr.count("checkpoint_interval") == 1  # once per key
    assert "llm.api_key: a literal API key is not used" in done.stderr
    assert not any(lit in done.stderr + done.stdout for lit in LITERAL_KEYS)
    assert "programs: 5" in done.stdout
    stored = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert not is_openevolve(stored) and stored["max_programs"] == 5
    again = subprocess.run([EVOFORGE, "resume", str(run_dir), "-q", "--max-programs", "7"],
                           capture_output=True, text=True, timeout=300, check=False)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "OpenEvolve" not in again.stderr  # the run's config is evoforge's now
    with sqlite3.connect(run_dir / "evoforge.db") as db:
        assert db.execute("select count(*) from programs").fetchone()[0] == 7
    assert not any(lit.encode() in _all_bytes(run_dir) for lit in LITERAL_KEYS)


def test_config_translate_prints_evoforge_yaml(tmp_path: Path) -> None:
    done = subprocess.run([EVOFORGE, "config", "translate", str(EVERY_KEY)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"# {EVERY_KEY}: translated from OpenEvolve's format")
    out = yaml.safe_load(done.stdout)
    assert not is_openevolve(out)
    cfg = build_config(out)
    assert cfg.max_programs == 41 and cfg.evaluation.workers == 3
    assert "warning: checkpoint_interval: ignored" in done.stderr
    assert done.stderr.count("warning: ") == len(read_config_file(EVERY_KEY).warnings)
    assert not any(lit in done.stdout + done.stderr for lit in LITERAL_KEYS)
    mine = tmp_path / "mine.yaml"
    mine.write_text("max_programs: 3\n")
    done = subprocess.run([EVOFORGE, "config", "translate", str(mine)], capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0 and yaml.safe_load(done.stdout) == {"max_programs": 3}
    assert "already in evoforge's schema" in done.stdout and not done.stderr


@pytest.mark.parametrize(("content", "says"), [
    (None, "not found"),
    ("a: [1, 2\n", "not valid YAML"),
    ("max_iterations: 3\nselector:\n  num_islandz: 2\n", "did you mean 'num_islands'"),
])
def test_config_translate_errors_exit_2_without_traceback(tmp_path: Path, content: str | None,
                                                          says: str) -> None:
    f = tmp_path / "c.yaml"
    if content is not None:
        f.write_text(content)
    done = subprocess.run([EVOFORGE, "config", "translate", str(f)], capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr and done.stderr.startswith("error:")
    assert says in done.stderr and not done.stdout


def test_every_rule_maps_or_says_what_evoforge_does_instead() -> None:
    for key, rule in RULES.items():
        assert rule.targets or rule.note, key


def test_the_migration_guide_lists_every_openevolve_key() -> None:
    import re

    guide = (Path(__file__).parents[1] / "docs" / "migrating-from-openevolve.md").read_text()
    rows = dict(re.findall(r"^\| `([\w.\[\]]+)` \| ([^|]+) \|", guide, flags=re.M))
    assert set(rows) == set(RULES)
    for key, rule in RULES.items():
        said = rows[key].strip()
        if rule.targets:
            assert said == f"`{rule.targets[0]}`", key
        else:
            assert said in ("warned", "accepted"), key
