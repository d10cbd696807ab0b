"""The export format: parsing, defaults, the errors a bad file gives, the Llama 2 data mix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from train_fixtures import comparison, write_rows

from rlhf.train.cli import main
from rlhf.train.data import (
    MARGINS,
    Comparison,
    DataError,
    parse_comparison,
    read_comparisons,
    read_demonstrations,
    read_prompts,
)
from rlhf.train.reward import mix_for


def test_a_minimal_row_gets_its_defaults(tmp_path: Path) -> None:
    row = {
        "prompt": "Hi",
        "chosen": "Hello!",
        "rejected": "Go away.",
        "strength": "better",
        "safety": "both_safe",
        "guideline": "helpfulness",
        "batch": "2026-W48",
        "heldout": False,
    }
    [parsed] = read_comparisons(write_rows(tmp_path / "rows.jsonl", [row]))
    assert parsed.context == () and parsed.edited is None and parsed.risky is False
    assert parsed.dialogue()[-1].content == "Hi"


def test_the_full_export_row_with_context(tmp_path: Path) -> None:
    row = comparison("And in Spain?", "Madrid.", "Paris.", index=0, heldout=True)
    row["context"] = [
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris."},
    ]
    [parsed] = read_comparisons(write_rows(tmp_path / "rows.jsonl", [row]))
    assert [m.role for m in parsed.dialogue()] == ["user", "assistant", "user"]
    assert parsed.heldout and parsed.batch == "2026-W48"
    [prompt] = read_prompts(tmp_path / "rows.jsonl")  # prompt-only stages read the same rows
    assert prompt.prompt == "And in Spain?" and prompt.heldout


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"strength": None}, "missing field 'strength'"),
        ({"strength": "much_better"}, "unknown strength 'much_better'"),
        ({"safety": "unsafe"}, "unknown safety 'unsafe'"),
        ({"guideline": "style"}, "unknown guideline 'style'"),
        ({"heldout": "no"}, "field 'heldout' must be bool, got str"),
        ({"chosen": 3}, "field 'chosen' must be str, got int"),
        ({"risky": 1}, "field 'risky' must be bool, got int"),
        ({"context": [{"role": "system", "content": "x"}]}, "context[0] has role 'system'"),
        ({"context": [{"role": "user", "content": "x"}]}, "must end with an assistant turn"),
    ],
)
def test_a_bad_row_names_file_line_and_field(
    tmp_path: Path, change: dict[str, object], message: str
) -> None:
    rows = [comparison("Q", "A", "B", index=i, heldout=False) for i in range(3)]
    rows[1] |= change
    rows[1] = {k: v for k, v in rows[1].items() if v is not None or k == "edited"}
    path = write_rows(tmp_path / "rows.jsonl", rows)
    with pytest.raises(DataError) as error:
        read_comparisons(path)
    assert str(error.value).startswith(f"{path}:2: ")
    assert message in str(error.value)


def test_invalid_json_and_non_objects(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text('{"prompt": "x", "response": "y"}\n\n{"prompt": \n')
    with pytest.raises(DataError, match=r"rows\.jsonl:3: "):
        read_demonstrations(path)
    path.write_text("[1, 2]\n")
    with pytest.raises(DataError, match=r"rows\.jsonl:1: expected a JSON object, got list"):
        read_demonstrations(path)


def test_edited_ranks_above_chosen_above_rejected() -> None:
    row = comparison("Q", "good", "bad", index=0, heldout=False)  # significantly better
    row["edited"] = "best"
    [parsed] = _parse([row])
    pairs = parsed.ranked_pairs(MARGINS["small"])
    assert pairs == [("good", "bad", 1.0), ("best", "good", 0.0), ("best", "bad", 1.0)]


def test_margin_schemes_of_llama_2() -> None:
    assert list(MARGINS["small"].values()) == [1.0, 2 / 3, 1 / 3, 0.0]
    assert list(MARGINS["large"].values()) == [3.0, 2.0, 1.0, 0.0]
    assert set(MARGINS["none"].values()) == {0.0}


def test_llama_2_mix_of_helpfulness_and_safety_data() -> None:
    helpful = [comparison(f"h{i}", "a", "b", index=i, heldout=False) for i in range(20)]
    safety = [
        comparison(f"s{i}", "a", "b", index=i, heldout=False, guideline="safety") for i in range(90)
    ]
    rows = _parse(helpful + safety)
    for_helpfulness = mix_for("helpfulness", rows, seed=0)
    assert sum(r.guideline == "helpfulness" for r in for_helpfulness) == 20
    assert sum(r.guideline == "safety" for r in for_helpfulness) == 20  # an equal part
    for_safety = mix_for("safety", rows, seed=0)
    assert sum(r.guideline == "safety" for r in for_safety) == 90
    assert sum(r.guideline == "helpfulness" for r in for_safety) == 10  # 90/10


def test_bad_input_stops_the_command_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [comparison("Q", "A", "B", index=i, heldout=False) for i in range(4)]
    rows[3]["strength"] = "way_better"
    data = write_rows(tmp_path / "train.jsonl", rows)
    out = tmp_path / "run"
    # The policy does not exist either: the data error must come first.
    status = main(["reward", "--data", str(data), "--policy", "nowhere", "--out", str(out)])
    assert status == 2
    assert f"{data}:4: unknown strength 'way_better'" in capsys.readouterr().err
    assert not out.exists()


def _parse(rows: list[dict[str, Any]]) -> list[Comparison]:
    return [parse_comparison(row) for row in rows]
