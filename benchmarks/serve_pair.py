"""An annotator's prompt to both responses ready, through the application, against the model
core and transformers sampling the same two responses, in the same run.

For each configuration (`--configurations`, default both) everything is set up here and torn
down again: `embedded` is SQLite and the filesystem broker under a temporary TANDEM_HOME,
`redis` a throwaway PostgreSQL database (`annotate_load.throwaway_database`) and Redis. The
script migrates, imports SmolLM2-135M-Instruct (`manage.py import_model smollm2`, as
scripts/run.sh's setup_demo does), opens a batch serving it at two temperatures with
`--new-tokens` per response, starts gunicorn and the real `generate` Celery worker (sampling in
`--mode`, SERVING_SAMPLING_MODE) and logs an annotator in. A first prompt loads the model into
the worker (`cold_*`); then each of `--repeats` prompts is written through the annotator's API
(POST /annotate/api/dialogues/) and its comparison polled every `--poll` seconds until both
responses are finished:

- first_token_s: from the POST until either side's text is not empty; first_token_delay_s:
  how much later that is than the model core's first step (`core_first_token_s`: the prompt's
  prefill and the first token), the application's share of the wait;
- both_complete_s: until the comparison is ready; tok_s: both responses' sampled tokens (a
  stop token included) over it; `tokens`: each response's.

After each, the same two responses (the comparison's prompt, seeds and parameters, read from
the database) are sampled by the model core directly, in one batch in the same mode as the
worker samples them (`core_*`: the text must come out the same, `same_text_as_core`), and by
transformers' `generate` on the GGUF file, one after the other, each forced to the length ours
got (`transformers_*`). Targets (same run): overhead = both_complete_s / core_s <= 1.2,
speedup = transformers_s / both_complete_s >= 4, and first_token_delay_s <= the worker's
stream interval (0.25 s) plus one poll. Each figure is given as the median and the
best over the repeats; the ratios come from the sums over the repeats.

    python benchmarks/serve_pair.py                               # both configurations, 256 tokens
    python benchmarks/serve_pair.py --configurations embedded --new-tokens 16 --repeats 1

The last line of stdout is one JSON object; progress goes to stderr. The machine's load average
is reported before and after (`load_before`, `load_after`): other work slows every figure.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import requests
import torch
import transformers
from _common import emit, environment, log
from annotate_load import REPO, database_url, throwaway_database
from faults import PASSWORD, Annotator, Process, free_port, wait_until
from generate import load_hf

from modelcore.assets import smollm2_gguf_path
from modelcore.chat import ChatTemplate, Message, encode_dialogue, stop_ids
from modelcore.checkpoint import load_checkpoint
from modelcore.sampling import SamplingParams, decode, generate_together
from modelcore.sampling_modes import SAMPLING_MODES, prepare_for_sampling, resolve_mode

VERSION = "smollm2-135m-instruct"
# Asks for a long answer, so that both responses run to most of their budget.
PROMPT = (
    "Write a detailed guide for a beginner who wants to start running: how to choose shoes, "
    "how to plan the first eight weeks, how to warm up, and how to avoid injuries."
)

SEED = """
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from annotation.models import Batch
from annotation.permissions import ANNOTATOR
from annotation.services import open_next_batch

batch = open_next_batch(name="serve-pair")
Batch.objects.filter(pk=batch.pk).update(max_new_tokens={new_tokens})
user = get_user_model().objects.create_user(username="annotator", password={password!r})
user.groups.add(Group.objects.get(name=ANNOTATOR))
"""

READ = """
import json
from annotation.models import Comparison

comparison = Comparison.objects.select_related("turn").get(pk={pk})
print(json.dumps({{
    "prompt": comparison.turn.prompt,
    "responses": [
        {{key: getattr(r, key) for key in
          ("temperature", "top_p", "seed", "max_new_tokens", "text", "num_tokens",
           "finish_reason")}}
        for r in comparison.responses.all()  # in the worker's order, side a then b
    ],
}}))
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--configurations", nargs="+", choices=("embedded", "redis"), default=["embedded", "redis"]
    )
    parser.add_argument("--new-tokens", type=int, default=256, help="per response")
    parser.add_argument("--repeats", type=int, default=3, help="timed prompts per configuration")
    parser.add_argument("--mode", choices=SAMPLING_MODES, default="auto", help="sampling mode")
    parser.add_argument(
        "--poll", type=float, default=0.1, help="seconds between polls (the page: 0.3)"
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
        help="admin URL of the PostgreSQL server (the benchmark database is created beside it)",
    )
    parser.add_argument("--database-name", default="tandem_bench_serve_pair")
    parser.add_argument(
        "--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
    )
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args(argv)
    if args.new_tokens < 1 or args.repeats < 1 or args.poll <= 0:
        parser.error("--new-tokens and --repeats must be >= 1, --poll > 0")
    if not args.database_name.replace("_", "").isalnum():
        parser.error("--database-name: letters, digits and underscores only")
    return args


# --- the application ----------------------------------------------------------------------------


class Application:
    """Migrated, seeded, with gunicorn and the generate worker running, on `env`."""

    def __init__(self, args: argparse.Namespace, env: dict[str, str], home: Path) -> None:
        self.env, self.home = env, home
        self.processes: list[Process] = []
        started = time.perf_counter()
        self.manage("migrate", "--noinput")
        self.manage("import_model", VERSION, "smollm2")
        self.manage("shell", "-c", SEED.format(new_tokens=args.new_tokens, password=PASSWORD))
        log(f"  migrated, imported and seeded in {time.perf_counter() - started:.0f} s")
        self.port = free_port()
        web = [sys.executable, "-m", "gunicorn", "tandem.wsgi:application"]
        web += ["--bind", f"127.0.0.1:{self.port}", "--workers", "1"]
        web += ["--worker-class", "gthread", "--threads", "4"]
        self.processes.append(Process("web", web, env, home))
        worker = [sys.executable, "-m", "celery", "-A", "tandem", "worker", "--pool", "solo"]
        worker += ["-Q", "generate", "-n", f"serve-pair-{secrets.token_hex(3)}@%h"]
        worker += ["--loglevel", "INFO"]  # its " ready." line says it listens
        self.processes.append(Process("worker", worker, env, home))
        wait_until("the worker", lambda: b" ready." in self.processes[-1].log.read_bytes(), 300)
        wait_until("the web server", self._answers, 120)
        self.annotator = Annotator(f"http://127.0.0.1:{self.port}")
        self.annotator.log_in()

    def manage(self, *command: str) -> str:
        completed = subprocess.run(
            [sys.executable, "manage.py", *command],
            env=self.env,
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        if completed.returncode != 0:
            raise RuntimeError(f"manage.py {command[0]} failed:\n{completed.stderr[-3000:]}")
        return completed.stdout

    def _answers(self) -> bool:
        try:
            return requests.get(f"http://127.0.0.1:{self.port}/healthz", timeout=5).ok
        except requests.RequestException:
            return False

    def pair(self, prompt: str, poll: float, timeout: float) -> dict[str, Any]:
        """Write `prompt` and poll its comparison until both responses are finished."""
        started = time.perf_counter()
        comparison = self.annotator.write_prompt(prompt)
        first_token = None
        while True:
            shown = self.annotator.once("GET", f"/annotate/api/comparisons/{comparison}/")
            now = time.perf_counter() - started
            if shown is None or shown.status_code != 200:
                raise RuntimeError(f"comparison {comparison}: {shown and shown.text[:300]}")
            payload = shown.json()
            if first_token is None and (payload["left"]["text"] or payload["right"]["text"]):
                first_token = now
            if payload["status"] == "ready":
                # Both finished between two polls: the first text came with the last.
                first_token = first_token or now
                break
            if payload["status"] == "failed":
                raise RuntimeError(f"comparison {comparison} failed: {payload['error']}")
            if now > timeout:
                raise TimeoutError(f"comparison {comparison}: not ready within {timeout:.0f} s")
            time.sleep(poll)
        stored = json.loads(self.manage("shell", "-c", READ.format(pk=comparison)).splitlines()[-1])
        return {"first_token_s": first_token, "both_complete_s": now, **stored}

    def close(self) -> None:
        for process in reversed(self.processes):
            process.stop()

    def tails(self) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.tail()}" for p in self.processes)


def application_env(args: argparse.Namespace, home: Path, redis: bool) -> dict[str, str]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tandem.settings",
        "TANDEM_HOME": str(home),
        "ARTIFACTS_ROOT": str(home / "artifacts"),
        "SECRET_KEY": secrets.token_urlsafe(50),
        "DEBUG": "0",
        "HTTPS": "0",
        "ALLOWED_HOSTS": "127.0.0.1",
        "SERVING_SAMPLING_MODE": args.mode,
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    }
    for name in ("DATABASE_URL", "REDIS_URL"):
        env.pop(name, None)  # the embedded default is what no URL gives
    if redis:
        env["DATABASE_URL"] = database_url(args.database_url, args.database_name)
        env["REDIS_URL"] = args.redis_url
    return env


@contextlib.contextmanager
def configuration(args: argparse.Namespace, name: str) -> Iterator[Application]:
    home = Path(tempfile.mkdtemp(prefix=f"tandem-serve-pair-{name}-"))
    with contextlib.ExitStack() as stack:
        if name == "redis":
            stack.enter_context(throwaway_database(args, home))  # removes `home` too
        else:
            stack.callback(shutil.rmtree, home, ignore_errors=True)
        app = None
        try:
            app = Application(args, application_env(args, home, name == "redis"), home)
            yield app
        except Exception:
            if app is not None:
                log(app.tails())
            raise
        finally:
            if app is not None:
                app.close()


# --- the model core and transformers, on the same responses -------------------------------------


class Direct:
    """The model core, in the worker's mode, and transformers, on SmolLM2's GGUF file."""

    def __init__(self, checkpoint_dir: Path, mode: str) -> None:
        checkpoint = load_checkpoint(checkpoint_dir)
        self.policy = prepare_for_sampling(checkpoint.model.eval(), mode)
        self.tokenizer = checkpoint.tokenizer
        self.template = ChatTemplate.for_tokenizer(self.tokenizer)
        self.stops = tuple(stop_ids(self.tokenizer, self.template))
        self.pad_id = self.tokenizer.pad_id or 0
        transformers.logging.set_verbosity_error()
        self.hf = load_hf(smollm2_gguf_path(), torch.device("cpu"), torch.float32)

    def prompt_ids(self, prompt: str) -> list[int]:
        messages = [Message("user", prompt)]
        return encode_dialogue(
            self.tokenizer, self.template, messages, add_generation_prompt=True
        ).ids

    def core(self, stored: dict[str, Any]) -> tuple[float, float, list[list[int]], list[str]]:
        """Seconds, seconds to the first step (the prefill and the first token), tokens and text
        of both responses sampled together, as the worker does."""
        prompt = self.prompt_ids(stored["prompt"])
        params = [
            SamplingParams(
                max_new_tokens=r["max_new_tokens"],
                temperature=r["temperature"],
                top_p=r["top_p"],
                seed=r["seed"],
                stop_ids=self.stops,
            )
            for r in stored["responses"]
        ]
        decoding = decode(self.policy, [prompt] * len(params), params, pad_id=self.pad_id)
        steps: list[float] = []
        started = time.perf_counter()
        [completions] = generate_together(
            [decoding], on_tokens=[lambda _: steps.append(time.perf_counter())]
        )
        seconds = time.perf_counter() - started
        tokens = [c.tokens for c in completions]
        texts = [self.tokenizer.decode(t, skip_special_tokens=True).strip() for t in tokens]
        return seconds, steps[0] - started, tokens, texts

    def transformers_sequential(self, stored: dict[str, Any], lengths: list[int]) -> float:
        """Seconds of transformers sampling the two responses one after the other, each with
        its temperature and top_p and exactly as many tokens as ours got."""
        ids = torch.tensor([self.prompt_ids(stored["prompt"])])
        started = time.perf_counter()
        for response, length in zip(stored["responses"], lengths, strict=True):
            sampled = response["temperature"] > 0
            with torch.inference_mode():
                self.hf.generate(
                    input_ids=ids,
                    attention_mask=torch.ones_like(ids),
                    max_new_tokens=length,
                    min_new_tokens=length,
                    do_sample=sampled,
                    temperature=response["temperature"] if sampled else None,
                    top_p=response["top_p"] if sampled else None,
                    top_k=0,  # ours cuts no top-k; transformers' default cuts at 50
                    pad_token_id=self.pad_id,
                )
        return time.perf_counter() - started


# --- measuring ----------------------------------------------------------------------------------


TIMES = (
    "first_token_s",
    "core_first_token_s",
    "first_token_delay_s",
    "both_complete_s",
    "core_s",
    "transformers_s",
)
RATES = ("tok_s", "core_tok_s", "transformers_tok_s")


def spread(values: list[float], best: Callable[[list[float]], float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 3), "best": round(best(values), 3)}


def measure(args: argparse.Namespace, app: Application, direct: Direct) -> dict[str, Any]:
    timeout = 120 + 30 * args.new_tokens  # generous: a busy machine slows every step
    log("  cold: the worker loads the model at its first prompt")
    cold = app.pair(PROMPT, args.poll, timeout + 600)
    runs = []
    for repeat in range(args.repeats):
        served = app.pair(PROMPT, args.poll, timeout)
        core_s, core_first_s, tokens, texts = direct.core(served)
        hf_s = direct.transformers_sequential(served, [len(t) for t in tokens])
        # Sampled tokens, a stop token included (it costs a step like any other).
        sampled = [r["num_tokens"] + (r["finish_reason"] == "stop") for r in served["responses"]]
        runs.append(
            {
                **{key: served[key] for key in ("first_token_s", "both_complete_s")},
                "tokens": sampled,
                "tok_s": sum(sampled) / served["both_complete_s"],
                "core_s": core_s,
                "core_first_token_s": core_first_s,
                "first_token_delay_s": served["first_token_s"] - core_first_s,
                "core_tok_s": sum(sampled) / core_s,
                "transformers_s": hf_s,
                "transformers_tok_s": sum(sampled) / hf_s,
                "same_text": texts == [r["text"] for r in served["responses"]]
                and [len(t) for t in tokens] == sampled,
            }
        )
        log(
            f"  repeat {repeat}: first token {served['first_token_s']:.2f} s, both "
            f"{served['both_complete_s']:.2f} s, core {core_s:.2f} s, transformers {hf_s:.2f} s"
        )
    served_total = sum(r["both_complete_s"] for r in runs)
    figures = {key: spread([r[key] for r in runs], min) for key in TIMES}
    figures |= {key: spread([r[key] for r in runs], max) for key in RATES}
    return {
        "cold_first_token_s": round(cold["first_token_s"], 3),
        "cold_both_complete_s": round(cold["both_complete_s"], 3),
        **figures,
        "tokens": [r["tokens"] for r in runs],
        "same_text_as_core": all(r["same_text"] for r in runs),
        "overhead_over_core": round(served_total / sum(r["core_s"] for r in runs), 3),
        "speedup_over_transformers": round(
            sum(r["transformers_s"] for r in runs) / served_total, 3
        ),
    }


def stop_on_sigterm(signum, frame):
    raise KeyboardInterrupt  # as Ctrl-C: the servers are stopped and the folders removed


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    mode = resolve_mode(args.mode, "cpu")
    result: dict[str, Any] = {
        "benchmark": "serve_pair",
        "model": "SmolLM2-135M-Instruct",
        "new_tokens": args.new_tokens,
        "mode": mode,
        "repeats": args.repeats,
        "poll_s": args.poll,
        "statistic": f"median and best of {args.repeats} prompts; ratios of the sums over them",
        "targets": {
            "overhead_over_core": "<= 1.2",
            "speedup_over_transformers": ">= 4",
            # Past the sampler's first step: at most one interval of the worker's streamed
            # writes (annotation.generation.STREAM_INTERVAL), as this client polls.
            "first_token_delay_s": "<= 0.25 + poll_s",
        },
        **environment(torch.device("cpu")),
        "load_before": [round(x, 2) for x in os.getloadavg()],
        "configurations": {},
    }
    direct = None
    for name in args.configurations:
        log(f"configuration {name}")
        with configuration(args, name) as app:
            if direct is None:
                direct = Direct(app.home / "artifacts" / "models" / VERSION, args.mode)
            result["configurations"][name] = measure(args, app, direct)
        log(f"  {name}: {json.dumps(result['configurations'][name])}")  # kept if a later one fails
    result["load_after"] = [round(x, 2) for x in os.getloadavg()]
    emit(result)
    return result


if __name__ == "__main__":
    main()
