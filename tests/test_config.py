from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from evoforge.config import Config, build_config, load_config, parse_duration, parse_override
from evoforge.errors import ConfigError

DOCS = Path(__file__).parent.parent / "docs" / "config.md"


def test_defaults_build_with_no_arguments():
    c = build_config({})
    assert c.max_programs == 100 and c.objective.direction == "maximize"
    assert c.in_flight(uses_llm=False) == 2 * c.evaluation.workers
    assert c.in_flight(uses_llm=True) == c.llm.concurrency + 2 * c.evaluation.workers


def test_unknown_key_names_key_and_suggests():
    with pytest.raises(ConfigError) as e:
        build_config({"llm": {"concurency": 3}})
    msg = str(e.value)
    assert "llm.concurency" in msg and "did you mean 'concurrency'" in msg


def test_openevolve_alias_is_translated_in_the_message():
    with pytest.raises(ConfigError, match="evoforge calls it 'max_programs'"):
        build_config({"max_iterations": 10})


def test_unknown_nested_key_in_list_item():
    with pytest.raises(ConfigError, match="did you mean 'bins'"):
        build_config({"selector": {"features": [{"name": "x", "binz": 3}]}})


def test_bad_value_names_key():
    with pytest.raises(ConfigError, match=r"evaluation\.workers"):
        build_config({"evaluation": {"workers": 0}})
    with pytest.raises(ConfigError, match="exploration_ratio"):
        build_config({"selector": {"exploration_ratio": 0.8, "exploitation_ratio": 0.5}})


def test_set_overrides_really_override_and_parse_yaml(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("max_programs: 5\nllm:\n  concurrency: 2\n")
    c = load_config(f, base={"max_programs": 1, "seed": 3},
                    overrides=["llm.concurrency=9", "llm.models=[a, b]", "max_time=2m",
                               "target_score=null"])
    assert c.max_programs == 5 and c.seed == 3
    assert c.llm.concurrency == 9
    assert [m.name for m in c.llm.models] == ["a", "b"]
    assert c.max_time == 120.0 and c.target_score is None


def test_set_unknown_key_is_an_error():
    with pytest.raises(ConfigError, match="did you mean 'workers'"):
        build_config({}, overrides=["evaluation.worker=3"])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_override("novalue")


def test_bad_yaml_file_named(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_config(f)
    f.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(f)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_durations():
    assert parse_duration("90s") == 90 and parse_duration("1.5h") == 5400
    assert parse_duration(12) == 12.0 and parse_duration(None) is None
    with pytest.raises(ValueError):
        parse_duration("soon")


def _all_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        ann = field.annotation
        sub = next((a for a in (ann, *getattr(ann, "__args__", ()))
                    if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if sub is not None and name not in ("models", "features"):
            keys += _all_keys(sub, f"{prefix}{name}.")
        else:
            keys.append(prefix + name)
    return keys


def test_every_config_key_is_documented():
    text = DOCS.read_text()
    documented = set(re.findall(r"^\| `([a-z_.]+)` \|", text, flags=re.M))
    missing = [k for k in _all_keys(Config) if k not in documented]
    assert not missing, f"undocumented config keys in docs/config.md: {missing}"
    stale = [k for k in documented if k not in _all_keys(Config)]
    assert not stale, f"docs/config.md documents keys that do not exist: {stale}"


def test_the_mutator_line_says_why_no_llm_is_used():
    from evoforge.api import describe_mutator

    none = describe_mutator(build_config({}))
    assert none.startswith("model-free mutator") and "set llm.models" in none
    chosen = describe_mutator(build_config({"llm": {"models": ["m"]},
                                            "mutator": {"name": "model_free"}}))
    assert chosen.startswith("model-free mutator") and "llm.models is not used" in chosen
    assert "no LLM configured" not in chosen
    assert describe_mutator(build_config({"llm": {"models": ["m"]}})).startswith("LLM mutator: m")
