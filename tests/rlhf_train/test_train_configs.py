"""Stage configs from config files, API values and the command line: conversion, the errors a
researcher sees, and flags overriding a file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rlhf.train import RejectionConfig, RewardConfig, SFTConfig
from rlhf.train.cli import main
from rlhf.train.configs import ConfigError, build_config, config_fields, read_config_file

REQUIRED = {"data": "train.jsonl", "policy": "models/v3", "out": "runs/rm"}


def test_a_yaml_file_builds_a_config_of_the_fields_types(tmp_path: Path) -> None:
    path = tmp_path / "rm.yaml"
    path.write_text(
        "data: train.jsonl\n"
        "policy: models/v3\n"
        "out: runs/rm\n"
        "batch-size: 16\n"
        "lr: 1e-5\n"  # YAML 1.1 reads this as a string
        "lora_alpha: 8\n"  # an integer where a float is wanted
        "warmup-steps: null\n"
        "target: safety\n"
    )
    config = build_config(RewardConfig, read_config_file(path))
    assert config == RewardConfig(
        data=Path("train.jsonl"),
        policy=Path("models/v3"),
        out=Path("runs/rm"),
        batch_size=16,
        lr=1e-5,
        lora_alpha=8.0,
        warmup_steps=None,
        target="safety",
    )
    assert isinstance(config.data, Path) and isinstance(config.lora_alpha, float)


def test_a_json_file_with_lists_and_optional_paths(tmp_path: Path) -> None:
    path = tmp_path / "rejection.json"
    values = {
        **REQUIRED,
        "helpfulness_rm": "rm/help",
        "safety_rm": None,
        "previous_best": ["it1/best.jsonl", "it2/best.jsonl"],
        "samples": "8",  # numbers from strings (the command line gives strings)
    }
    path.write_text(json.dumps(values))
    config = build_config(RejectionConfig, read_config_file(path))
    assert config.previous_best == [Path("it1/best.jsonl"), Path("it2/best.jsonl")]
    assert config.safety_rm is None and config.samples == 8
    assert config.temperature == 1.0  # the stage's own default


@pytest.mark.parametrize(
    ("values", "field", "message"),
    [
        ({"batch_sise": 8}, "batch_sise", "unknown field; did you mean 'batch_size'?"),
        ({"batch_size": "eight"}, "batch_size", "expected an integer, got 'eight'"),
        ({"batch_size": 8.5}, "batch_size", "expected an integer, got 8.5"),
        ({"batch_size": True}, "batch_size", "expected an integer, got True"),
        ({"lr": "fast"}, "lr", "expected a number, got 'fast'"),
        ({"lr": float("nan")}, "lr", "expected a number, got nan"),
        ({"target": 3}, "target", "expected a string, got 3"),
        ({"policy": ""}, "policy", "expected a path, got ''"),
        ({"policy": None}, "policy", "expected a path, got null"),
        ({"data": None, "policy": "p", "out": "o"}, "data", "expected a path, got null"),
        ({"batch-size": 8, "batch_size": 8}, "batch_size", "given twice"),
    ],
)
def test_a_bad_value_names_its_field_and_why(
    values: dict[str, Any], field: str, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        build_config(RewardConfig, {**REQUIRED, **values})
    assert caught.value.field == field
    assert caught.value.message.startswith(message)
    assert str(caught.value).startswith(f"{field}: {message}")


def test_a_missing_required_field_is_named() -> None:
    with pytest.raises(ConfigError, match=r"^policy: required field is missing$"):
        build_config(SFTConfig, {"data": "d.jsonl", "out": "o"})


def test_a_list_field_refuses_a_single_value() -> None:
    with pytest.raises(ConfigError, match=r"^previous_best: expected a list of paths, got 'a'"):
        build_config(RejectionConfig, {**REQUIRED, "helpfulness_rm": "rm", "previous_best": "a"})


@pytest.mark.parametrize(
    ("text", "message"),
    [("- a\n- b\n", "expected a mapping of field names to values"), ("a: [\n", "not valid YAML")],
)
def test_a_file_that_is_no_mapping_is_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as caught:
        read_config_file(path)
    assert caught.value.field is None and str(path) in str(caught.value)


def test_config_fields_describe_types_defaults_and_help() -> None:
    fields = {f["name"]: f for f in config_fields(RejectionConfig)}
    assert fields["data"] == {
        "name": "data",
        "type": "path",
        "required": True,
        "default": None,
        "help": "prompts JSONL, or comparison rows (their non-held-out prompts)",
    }
    assert fields["safety_rm"]["type"] == "path or null" and not fields["safety_rm"]["required"]
    assert fields["previous_best"] | {"help": ""} == {
        "name": "previous_best",
        "type": "list of paths",
        "required": False,
        "default": [],
        "help": "",
    }
    assert (fields["lr"]["type"], fields["lr"]["default"]) == ("number", 2e-5)
    assert (fields["epochs"]["type"], fields["epochs"]["default"]) == ("integer", 2)
    json.dumps(list(fields.values()))  # ready for the API as it is


def sft_file(tmp_path: Path, tiny_checkpoint: Path, suffix: str) -> Path:
    data = tmp_path / "demonstrations.jsonl"
    data.write_text(
        "".join(json.dumps({"prompt": f"Say {i}", "response": f"{i}"}) + "\n" for i in range(8))
    )
    values = {
        "data": str(data),
        "policy": str(tiny_checkpoint),
        "out": str(tmp_path / "from-file"),
        "batch-size": 4,
        "max_seq_len": 64,
        "epochs": 1,
    }
    path = tmp_path / f"sft{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps(values))
    else:
        path.write_text("".join(f"{k}: {v}\n" for k, v in values.items()))
    return path


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_the_command_line_reads_a_config_file_and_flags_override_it(
    suffix: str, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    path = sft_file(tmp_path, tiny_checkpoint, suffix)
    out = tmp_path / "overridden"
    assert main(["sft", "--config", str(path), "--out", str(out), "--batch-size", "1"]) == 0
    config = json.loads((out / "metrics.json").read_text())["config"]
    assert config["out"] == str(out) and config["batch_size"] == 1  # the flags
    assert config["max_seq_len"] == 64 and config["epochs"] == 1  # the file
    assert not (tmp_path / "from-file").exists()


@pytest.mark.parametrize(
    ("line", "flags", "error"),
    [
        ("", ["--batch-size", "many"], "error: batch_size: expected an integer, got 'many'"),
        ("epoch: 1\n", [], "error: epoch: unknown field; did you mean 'epochs'?"),
    ],
)
def test_the_command_line_reports_a_bad_config_without_a_traceback(
    line: str,
    flags: list[str],
    error: str,
    tiny_checkpoint: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = sft_file(tmp_path, tiny_checkpoint, ".yaml")
    path.write_text(path.read_text() + line)
    assert main(["sft", "--config", str(path), *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith(error) and "Traceback" not in err


def test_required_fields_may_come_from_the_file_or_the_flags(
    tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sft", "--policy", str(tiny_checkpoint), "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error: data: required field is missing")
