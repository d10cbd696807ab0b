"""`python -m rlhf.client` against a live server: start an iteration, follow it to the end,
publish what it trained, download the model and the labels; and the exit status of what
fails."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile

import pytest

from rlhf import client
from rlhf.authentication import create_api_token
from rlhf.models import Iteration, ModelVersion


@pytest.fixture
def cli(live_server, people, monkeypatch):
    _, token = create_api_token(user=people.researcher, name="cli")
    monkeypatch.setenv("TANDEM_URL", live_server.url)
    monkeypatch.setenv("TANDEM_TOKEN", token)
    return client.main


def test_start_follow_publish(world, cli, capsys, monkeypatch):
    assert cli(["start", "--algorithm", "dpo", "--batch", "2026-w47", "--no-publish"]) == 0
    started = json.loads(capsys.readouterr().out)
    assert (started["status"], started["batches"]) == ("queued", ["2026-w47"])
    iteration = Iteration.objects.get(pk=started["id"])

    # The worker's part, played between polls: a step under way, then the iteration done.
    moves = iter(
        [
            # Sampling: chunks counted, no loss.
            {
                "status": "running",
                "current_step": "evaluate",
                "progress": {"phase": "sample", "step": 1, "total": 3, "loss": None},
            },
            {"status": "running", "current_step": "dpo", "progress": {"step": 2, "total": 4}},
            {
                "status": "running",
                "current_step": "dpo",
                "progress": {"phase": "train", "step": 4, "total": 4, "loss": 0.25},
            },
            {"status": "succeeded", "current_step": "", "metrics": {"win_rate": 0.6}},
        ]
    )
    monkeypatch.setattr(
        client.time,
        "sleep",
        lambda _: Iteration.objects.filter(pk=iteration.pk).update(**next(moves)),
    )
    assert cli(["follow", str(iteration.pk), "--interval", "0"]) == 0
    shown = capsys.readouterr()
    assert "dpo" in shown.err and "4/4" in shown.err and "loss=0.25" in shown.err
    assert "evaluate" in shown.err and "phase=sample" in shown.err
    assert f"iteration {iteration.pk} succeeded" in shown.err
    assert json.loads(shown.out) == {"win_rate": 0.6}

    ModelVersion.objects.filter(pk=world.trained.pk).update(iteration=iteration)
    assert cli(["publish", "tiny-dpo-1"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "published"

    assert cli(["models", "--kind", "policy"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[1].split() == ["tiny-dpo-1", "policy", "published", "tiny", str(iteration.pk)]


def test_follow_exits_1_when_the_iteration_fails(world, cli, capsys):
    Iteration.objects.filter(pk=world.iteration.pk).update(status="failed", error="out of memory")
    assert cli(["follow", str(world.iteration.pk)]) == 1
    assert f"iteration {world.iteration.pk} failed: out of memory" in capsys.readouterr().err


def test_cancel_and_a_refusal(world, cli, capsys):
    assert cli(["cancel", str(world.iteration.pk)]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "cancelled"
    assert cli(["cancel", str(world.iteration.pk)]) == 1
    assert capsys.readouterr().err == "error 409: the iteration has already cancelled\n"
    assert cli(["start", "--algorithm", "sgd"]) == 1
    assert capsys.readouterr().err.startswith("error 400 (algorithm): algorithm: ")


def test_downloads_of_a_model_and_labels(world, cli, capsys, tmp_path):
    assert cli(["download", "tiny", str(tmp_path / "tiny.tar")]) == 0
    with tarfile.open(tmp_path / "tiny.tar") as tar:
        assert "tiny/config.json" in tar.getnames()
    assert cli(["labels", "2026-w47", str(tmp_path / "w47.jsonl")]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("wrote 8 training rows")
    assert len((tmp_path / "w47.jsonl").read_text().splitlines()) == 8
    assert not list(tmp_path.glob("*.partial"))


def test_rollback(world, cli, capsys):
    cli(["publish", "tiny-dpo-1"])
    assert cli(["rollback", "tiny-dpo-1", "--reason", "worse"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "rolled back tiny-dpo-1; tiny serves again"


def test_a_bad_token_and_an_unreachable_server_exit_1(world, cli, capsys, monkeypatch):
    assert cli(["--token", "tdm_wrong", "models"]) == 1
    assert capsys.readouterr().err == "error 401: invalid or revoked token\n"
    assert cli(["--url", "http://127.0.0.1:9", "models"]) == 1
    assert "cannot reach http://127.0.0.1:9" in capsys.readouterr().err


def test_it_runs_as_a_module_without_django(tmp_path):
    # A clean interpreter with no settings: the client must not need Django.
    result = subprocess.run(
        [sys.executable, "-m", "rlhf.client", "--help"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
        cwd=client.__file__.rsplit("/rlhf/", 1)[0],
    )
    assert result.returncode == 0, result.stderr
    assert "follow" in result.stdout
    probe = "import sys, rlhf.client; print('django' in sys.modules)"
    modules = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        cwd=client.__file__.rsplit("/rlhf/", 1)[0],
    )
    assert modules.stdout.strip() == "False"
