"""The benchmarks cannot rot: `bench/run.py --quick` runs every one of them and writes the JSON and the chart.

Only that they run and report is checked here, never a figure: timings belong to `bench/`, not to a test.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from PIL import Image

BENCH = Path(__file__).resolve().parent.parent / "bench"
EVERY_BENCHMARK = {
    "cold_start",
    "overhead",
    "throughput",
    "memory",
    "long_jobs",
    "requests_per_job",
    "webhooks",
    "history",
    "attacks",
    "oauth",
    "replicas",
    "context",
}


def test_every_benchmark_runs_and_reports(tmp_path: Path) -> None:
    chart = tmp_path / "chart.png"
    finished = subprocess.run(
        [sys.executable, str(BENCH / "run.py"), "--quick", "--out", str(tmp_path), "--chart", str(chart)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    written = json.loads((tmp_path / "all.json").read_text())
    assert written["quick"] is True
    assert set(written["reports"]) == EVERY_BENCHMARK
    for name, report in written["reports"].items():
        assert report["rows"], name
        assert report["targets"], name
        assert all(isinstance(t["met"], bool) for t in report["targets"]), name
    assert "Targets" in finished.stdout
    with Image.open(chart) as image:
        assert image.format == "PNG"
        assert image.width >= 1000
