"""bench/bench_cold.py runs and prints one row per pause and way of pausing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_cold_probe_prints_a_row_per_pause() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_cold.py"), "--calls", "20",
                           "--pauses", "0,0.2"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines()[1:]]
    assert [(row[0], row[2]) for row in rows] == [("0.0", "-"), ("0.2", "sleep"), ("0.2", "spin")]
    assert float(rows[0][-1]) == 1.0 and all(float(row[3]) > 0 for row in rows)


def test_cold_probe_refuses_bad_pauses() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_cold.py"), "--pauses", "2ms"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--pauses takes milliseconds" in done.stderr
