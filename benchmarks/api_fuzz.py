"""Fuzz the HTTP API from its own OpenAPI schema with schemathesis: no input may produce a 5xx.

A small synthetic store and the default pipeline are trained and published to
a temporary registry; the app runs under uvicorn on 127.0.0.1 in this process,
and ``schemathesis run`` (the CLI, from the dev extra) sends generated valid
and invalid requests to every operation (path and query parameters, JSON
bodies), with the bearer token so that feedback and reload are exercised
past the auth check. Every check is on (``--checks all``): server errors
(the target: zero), status codes and content types the schema does not
declare, responses that do not match their schema, and so on.

Bounded: ``--max-examples`` per operation (default 200) and a 9-minute cap.
Saves ``benchmarks/results/api_fuzz.json``.
Run: ``python benchmarks/api_fuzz.py``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
sys.path.insert(0, str(REPO))

TOKEN = "fuzz-token"


def main() -> None:
    from tests.serving.app_fixtures import LiveServer

    from recgraph.data.store import Store
    from recgraph.data.synthetic import SyntheticConfig
    from recgraph.jobs.quickstart import load_synthetic
    from recgraph.jobs.train import train_pipeline
    from recgraph.serving.app import create_app
    from recgraph.serving.registry import ModelRegistry
    from recgraph.serving.settings import ServeSettings

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--max-examples", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="recgraph-fuzz-"))
    try:
        db = f"sqlite:///{work / 'store.db'}"
        store = Store(db)
        load_synthetic(
            store,
            SyntheticConfig(n_accounts=300, n_items=400, mean_follows=12, mean_interactions=20),
        )
        registry = ModelRegistry(work / "models")
        train_pipeline(store, registry)
        store.close()
        settings = ServeSettings(
            registry=registry.root, database_url=db, api_token=TOKEN, poll_seconds=1.0
        )
        report_path = work / "report.json"
        with LiveServer(create_app(settings)) as server:
            command = [
                "schemathesis", "run", f"{server.url}/openapi.json",
                "--checks", "all",
                "--header", f"Authorization: Bearer {TOKEN}",
                "--max-examples", str(args.max_examples),
                "--seed", str(args.seed),
                "--generation-deterministic",
                "--continue-on-failure",
                "--request-timeout", "10",
                "--report", "ndjson", "--report-ndjson-path", str(report_path),
                "--no-color",
            ]  # fmt: skip
            start = time.perf_counter()
            # run in the scratch folder: schemathesis keeps its example database in the cwd
            run = subprocess.run(command, capture_output=True, text=True, timeout=540, cwd=work)
            seconds = time.perf_counter() - start
        summary = summarise(report_path, run.stdout)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary.update(
        {
            "benchmark": "api_fuzz",
            "tool": "schemathesis " + version(),
            "command": " ".join(
                c if TOKEN not in c else "Authorization: Bearer ***" for c in command[1:]
            ),
            "max_examples_per_operation": args.max_examples,
            "seed": args.seed,
            "seconds": round(seconds, 1),
            "exit_code": run.returncode,
            "target": "zero server errors (5xx)",
        }
    )
    print(run.stdout[-6000:])
    if summary["requests"] == 0:
        sys.exit(f"schemathesis sent no request (exit {run.returncode}): {run.stderr[-2000:]}")
    print(json.dumps({k: v for k, v in summary.items() if k != "stdout_tail"}, indent=2))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "api_fuzz.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"saved {RESULTS / 'api_fuzz.json'}")


def version() -> str:
    from importlib.metadata import version as package_version

    return package_version("schemathesis")


def summarise(report: Path, stdout: str) -> dict:
    """Requests, status codes, 5xx and failed checks, from the NDJSON event stream."""
    statuses: dict[str, int] = {}
    failures: dict[str, int] = {}
    server_errors = 0
    operations: set[str] = set()
    examples: list[str] = []
    if report.exists():
        for line in report.read_text().splitlines():
            event = json.loads(line)
            _walk(event, statuses, failures, operations, examples)
    for status, count in statuses.items():
        if status.startswith("5"):
            server_errors += count
    return {
        "operations": sorted(operations),
        "requests": sum(statuses.values()),
        "responses_by_status": dict(sorted(statuses.items())),
        "server_errors": server_errors,
        "failed_checks": failures,
        "failure_examples": examples[:10],
        "stdout_tail": stdout[-3000:],
    }


def _walk(node, statuses, failures, operations, examples) -> None:
    """Collect responses and check results wherever the event nests them."""
    if isinstance(node, dict):
        response = node.get("response")
        if isinstance(response, dict) and isinstance(response.get("status_code"), int):
            code = str(response["status_code"])
            statuses[code] = statuses.get(code, 0) + 1
        if "label" in node and isinstance(node.get("label"), str) and " /" in node["label"]:
            operations.add(node["label"])
        if node.get("status") in ("FAILURE", "failure") and isinstance(node.get("name"), str):
            failure = (node.get("failure_info") or {}).get("failure") or {}
            key = f"{node['name']} | {failure.get('operation', '?')} | {failure.get('title', '')}"
            failures[key] = failures.get(key, 0) + 1
            if len(examples) < 10 and key not in " ".join(examples):
                examples.append(f"{key}: {failure.get('message', '')[:300]}")
        for value in node.values():
            _walk(value, statuses, failures, operations, examples)
    elif isinstance(node, list):
        for value in node:
            _walk(value, statuses, failures, operations, examples)


if __name__ == "__main__":
    main()
