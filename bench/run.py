"""Every benchmark in one command: a table each, then the issue's targets met or missed.

    pip install -e '.[bench]' && python bench/run.py [--quick] [--chart [PATH]] [--only NAME ...] [--out DIR]

- cold_start   spawn to the first tools/list over stdio, fal-mcp against a bare MCPServer     (cold_start.py)
- overhead     get-status through fal-mcp (stdio, HTTP) against the same GET made with httpx  (overhead.py)
- throughput   concurrent get-status over streamable HTTP at 1, 10 and 50 clients            (throughput.py)
- memory       RSS of an HTTP fal-mcp over 11,000 mixed calls                                (memory.py)
- long_jobs    following a job to its output, against fal-client's subscribe                (long_jobs.py)
- requests_per_job  requests to fal per completed job over 120 sequential run-model jobs (requests_per_job.py)
- webhooks     the webhook path: requests to fal per job, delivery to client latency           (webhooks.py)
- history      list-requests for every filter at 1,000,000 SQLite rows, at 100,000 on both backends (history.py)
- attacks      a legitimate caller's latency alone and under three denial-of-service attacks (attacks.py)
- oauth        the per-call cost of checking an access token, against --auth token          (oauth.py)
- replicas     two replicas on one PostgreSQL database, 50 clients crossing between them     (replicas.py)
- context      what the tool list costs a model's context, in tokens                          (context_cost.py)

Writes `bench/results/all.json` (or `DIR/all.json`): the machine, every report, its samples. `--chart` also
draws the figures a picture reads better for into `docs/benchmarks.png` (or PATH). `--quick` makes every
benchmark short: a smoke test that they all still run, not a measurement. Each module also runs alone.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

import attacks
import chart
import cold_start
import context_cost
import history
import long_jobs
import memory
import oauth
import overhead
import replicas
import requests_per_job
import rig
import throughput
import webhooks

BENCHMARKS: dict[str, Callable[[bool], rig.Report]] = {
    "cold_start": cold_start.run,
    "overhead": overhead.run,
    "throughput": throughput.run,
    "memory": memory.run,
    "long_jobs": long_jobs.run,
    "requests_per_job": requests_per_job.run,
    "webhooks": webhooks.run,
    "history": history.run,
    "attacks": attacks.run,
    "oauth": oauth.run,
    "replicas": replicas.run,
    "context": context_cost.run,
}
CHART = rig.BENCH.parent / "docs" / "benchmarks.png"


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "fal-mcp": version("fal-mcp"),
        "mcp": version("mcp"),
        "httpx": version("httpx"),
    }


def print_summary(reports: list[rig.Report]) -> None:
    print("\n== Targets")
    for report in reports:
        for target in report.targets:
            print(f"  {rig.describe(target)}")
    targets = [t for r in reports for t in r.targets]
    print(f"  {sum(t.met for t in targets)} of {len(targets)} targets met")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="every benchmark short (a smoke test)")
    parser.add_argument("--chart", nargs="?", const=CHART, type=Path, help=f"draw the chart (default {CHART.name})")
    parser.add_argument("--only", nargs="+", choices=list(BENCHMARKS), help="run only these")
    parser.add_argument("--out", type=Path, default=rig.RESULTS, help="where all.json goes")
    args = parser.parse_args(argv)
    os.environ.pop("FAL_KEY", None)  # a real key must never reach a benchmark

    reports: list[rig.Report] = []
    for name in args.only or BENCHMARKS:
        started = time.monotonic()
        print(f"\nrunning {name}{' (quick)' if args.quick else ''}...", flush=True)
        report = BENCHMARKS[name](args.quick)
        report.notes.append(f"took {time.monotonic() - started:.0f} s; load average after: {os.getloadavg()[0]:.2f}")
        rig.print_report(report)
        reports.append(report)
    print_summary(reports)

    args.out.mkdir(parents=True, exist_ok=True)
    everything = {
        "machine": machine(),
        "quick": args.quick,
        "reports": {report.name: report.as_json() for report in reports},
    }
    (args.out / "all.json").write_text(json.dumps(everything, indent=2))
    print(f"\nwrote {args.out / 'all.json'}")
    if args.chart is not None:
        chart.draw({report.name: report for report in reports}, args.chart, machine())
        print(f"wrote {args.chart}")


if __name__ == "__main__":
    main()
