"""The research API's labels export in TRL's format (`format=trl`)."""

from __future__ import annotations

import json

from annotation.export import trl_records

API = "/api/batches/"


def test_format_trl_streams_trl_rows(world, researcher):
    response = researcher.get(f"{API}2026-w47/labels.jsonl", {"format": "trl"})
    assert response.status_code == 200, response.content
    assert response["Content-Disposition"] == 'attachment; filename="2026-w47-trl.jsonl"'
    rows = [json.loads(line) for line in b"".join(response.streaming_content).splitlines()]
    assert rows == json.loads(json.dumps(list(trl_records(["2026-w47"]))))
    assert rows[1]["prompt"] == [{"role": "user", "content": "What is 1 plus 1?"}]
    assert rows[1]["chosen"] == [{"role": "assistant", "content": "1 plus 1 is 2."}]


def test_an_unknown_format_or_trl_raw_records_are_refused(world, researcher):
    response = researcher.get(f"{API}2026-w47/labels.jsonl", {"format": "csv"})
    assert (response.status_code, response.json()["field"]) == (400, "format")
    response = researcher.get(f"{API}2026-w47/labels.jsonl", {"kind": "raw", "format": "trl"})
    assert (response.status_code, response.json()["field"]) == (400, "format")
