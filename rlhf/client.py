"""`python -m rlhf.client`: the research API from the shell. Standard library and tqdm only (no
Django), so it runs on any machine that can reach Tandem.

    export TANDEM_URL=https://tandem.example.org TANDEM_TOKEN=tdm_...
    python -m rlhf.client start --algorithm dpo --batch 2026-w48 --hyperparameters hp.json
    python -m rlhf.client follow 12          # a progress bar until the iteration finishes
    python -m rlhf.client models --kind policy
    python -m rlhf.client publish iteration-12-policy
    python -m rlhf.client rollback iteration-12-policy --reason "worse on safety"
    python -m rlhf.client download iteration-12-policy policy.tar
    python -m rlhf.client labels 2026-w48 2026-w48.jsonl

Exit status: 0 on success; 1 when the API refuses a request, cannot be reached, or a followed
iteration fails or is cancelled; 2 for bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from tqdm import tqdm

DEFAULT_URL = "http://127.0.0.1:8000"
# The API's finished iteration statuses (GET /api/schema/, IterationStatusEnum).
FINISHED = {"succeeded", "failed", "cancelled"}


class ApiError(Exception):
    """A refused request: the API's {"detail", "field"} and the HTTP status."""

    def __init__(self, status: int, detail: str, field: str | None = None) -> None:
        super().__init__(f"{status}: {detail}")
        self.status, self.detail, self.field = status, detail, field


class Client:
    def __init__(self, url: str, token: str, *, timeout: float = 60) -> None:
        self.url, self.token, self.timeout = url.rstrip("/"), token, timeout

    def json(
        self,
        method: str,
        path: str,
        *,
        body: dict | None = None,
        query: dict | None = None,
        headers: dict | None = None,
    ) -> Any:
        with self._open(method, path, body=body, query=query, headers=headers) as response:
            return json.load(response)

    def download(self, path: str, out: Path, *, query: dict | None = None) -> int:
        """Stream a response body into `out` (through `out`.partial, so an interrupted
        download never looks complete); returns its size in bytes."""
        partial = out.with_name(out.name + ".partial")
        with self._open("GET", path, query=query) as response, partial.open("wb") as file:
            shutil.copyfileobj(response, file, 1024 * 1024)
        partial.replace(out)
        return out.stat().st_size

    def _open(self, method, path, *, body=None, query=None, headers=None):
        url = self.url + path
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        request = urllib.request.Request(
            url,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={
                "Authorization": f"Bearer {self.token}",
                "Content-Type": "application/json",
                **(headers or {}),
            },
        )
        try:
            return urllib.request.urlopen(request, timeout=self.timeout)
        except urllib.error.HTTPError as error:
            raise _api_error(error) from None


def _api_error(error: urllib.error.HTTPError) -> ApiError:
    try:
        body = json.load(error)
        return ApiError(error.code, body["detail"], body.get("field"))
    except (ValueError, KeyError, TypeError):  # not the API's JSON (a proxy's page, say)
        return ApiError(error.code, error.reason)


# --- commands -------------------------------------------------------------------------------


def start(client: Client, args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"algorithm": args.algorithm, "auto_publish": not args.no_publish}
    if args.batches:
        body["batches"] = args.batches
    if args.parent:
        body["parent"] = args.parent
    if args.hyperparameters:
        body["hyperparameters"] = json.loads(Path(args.hyperparameters).read_text())
    headers = {"Idempotency-Key": args.idempotency_key} if args.idempotency_key else None
    _print_json(client.json("POST", "/api/iterations/", body=body, headers=headers))
    return 0


def follow(client: Client, args: argparse.Namespace) -> int:
    """One progress bar per step (on standard error), redrawn every `interval` seconds until
    the iteration has finished; 0 if it succeeded."""
    out, bar, step = sys.stderr, None, None
    try:
        while True:
            iteration = client.json("GET", f"/api/iterations/{args.id}/", query={"log_lines": 0})
            progress = iteration["progress"] or {}
            if bar is None or iteration["current_step"] != step:
                if bar is not None:
                    bar.close()
                step = iteration["current_step"]
                bar = tqdm(desc=step or iteration["status"], unit="step", file=out)
            bar.total = progress.get("total")
            bar.n = progress.get("step", 0)
            # The phase says what the count counts (training steps, sampling chunks); sampling
            # has no loss.
            postfix = {"phase": progress.get("phase")}
            if progress.get("loss") is not None:
                postfix["loss"] = f"{progress['loss']:.4g}"
            bar.set_postfix({k: v for k, v in postfix.items() if v is not None}, refresh=False)
            bar.refresh()
            if iteration["status"] in FINISHED:
                break
            time.sleep(args.interval)
    finally:
        if bar is not None:
            bar.close()
    message = f"iteration {args.id} {iteration['status']}"
    if iteration["error"]:
        message += f": {iteration['error']}"
    print(message, file=out)
    if iteration["metrics"]:
        _print_json(iteration["metrics"])
    return 0 if iteration["status"] == "succeeded" else 1


def cancel(client: Client, args: argparse.Namespace) -> int:
    _print_json(client.json("POST", f"/api/iterations/{args.id}/cancel/"))
    return 0


def models(client: Client, args: argparse.Namespace) -> int:
    query, page = {"kind": args.kind, "status": args.status, "page_size": 200}, 1
    print(f"{'name':40} {'kind':20} {'status':10} {'parent':40} iteration")
    while page:
        listing = client.json("GET", "/api/models/", query={**query, "page": page})
        for version in listing["results"]:
            print(
                f"{version['name']:40} {version['kind']:20} {version['status']:10} "
                f"{version['parent'] or '-':40} {version['iteration'] or '-'}"
            )
        page = page + 1 if listing["next"] else 0
    return 0


def publish(client: Client, args: argparse.Namespace) -> int:
    _print_json(client.json("POST", f"/api/models/{args.name}/publish/"))
    return 0


def rollback(client: Client, args: argparse.Namespace) -> int:
    serving = client.json(
        "POST", f"/api/models/{args.name}/rollback/", body={"reason": args.reason}
    )
    print(f"rolled back {args.name}; {serving['name']} serves again")
    return 0


def download(client: Client, args: argparse.Namespace) -> int:
    size = client.download(f"/api/models/{args.name}/download/", Path(args.out))
    print(f"wrote {args.out} ({size / 1e6:.1f} MB, a tar archive)")
    return 0


def labels(client: Client, args: argparse.Namespace) -> int:
    out = Path(args.out)
    client.download(f"/api/batches/{args.batch}/labels.jsonl", out, query={"kind": args.kind})
    with out.open("rb") as file:
        count = sum(1 for _ in file)
    print(f"wrote {count} {args.kind} rows to {out}")
    return 0


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m rlhf.client", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--url", default=os.environ.get("TANDEM_URL", DEFAULT_URL), help="default: $TANDEM_URL"
    )
    parser.add_argument(
        "--token", default=os.environ.get("TANDEM_TOKEN"), help="default: $TANDEM_TOKEN"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    command = commands.add_parser("start", help="start an iteration")
    command.add_argument("--algorithm", required=True)
    command.add_argument("--batch", action="append", dest="batches", metavar="NAME")
    command.add_argument("--parent", metavar="VERSION", help="default: the newest published")
    command.add_argument("--hyperparameters", metavar="FILE.json")
    command.add_argument("--idempotency-key", metavar="KEY", help="makes a retry safe")
    command.add_argument("--no-publish", action="store_true", help="leave the result ready")
    command.set_defaults(run=start)

    command = commands.add_parser("follow", help="show an iteration's progress until it ends")
    command.add_argument("id", type=int)
    command.add_argument("--interval", type=float, default=1.0, help="seconds between polls")
    command.set_defaults(run=follow)

    command = commands.add_parser("cancel", help="cancel an iteration")
    command.add_argument("id", type=int)
    command.set_defaults(run=cancel)

    command = commands.add_parser("models", help="list model versions")
    command.add_argument("--kind")
    command.add_argument("--status")
    command.set_defaults(run=models)

    command = commands.add_parser("publish", help="publish a ready policy")
    command.add_argument("name")
    command.set_defaults(run=publish)

    command = commands.add_parser("rollback", help="roll back the newest published policy")
    command.add_argument("name")
    command.add_argument("--reason", default="")
    command.set_defaults(run=rollback)

    command = commands.add_parser("download", help="download a model version (tar)")
    command.add_argument("name")
    command.add_argument("out")
    command.set_defaults(run=download)

    command = commands.add_parser("labels", help="download a batch's labels (JSONL)")
    command.add_argument("batch")
    command.add_argument("out")
    command.add_argument("--kind", choices=["training", "raw"], default="training")
    command.set_defaults(run=labels)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.token:
        parser.error("no token: pass --token or set TANDEM_TOKEN")
    client = Client(args.url, args.token)
    try:
        return args.run(client, args)
    except ApiError as error:
        field = f" ({error.field})" if error.field else ""
        print(f"error {error.status}{field}: {error.detail}", file=sys.stderr)
    except urllib.error.URLError as error:
        print(f"cannot reach {args.url}: {error.reason}", file=sys.stderr)
    except (OSError, ValueError) as error:  # a local file: unreadable hyper-parameters, say
        print(f"error: {error}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
