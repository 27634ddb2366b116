"""The benchmark driver runs end to end: SIPp against the asyncio responder, JSON out.

Low rates and tiny counts (a couple of seconds): this checks the plumbing -- scenarios,
CSV injection, stat and trace parsing, the fan-out pool, memory sampling, process
clean-up -- not speed. Needs SIPp (Debian ``sip-tester``); never Kamailio.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.e2e]


@pytest.mark.timeout(90)
def test_driver_against_pyudp_reports_every_workload_without_failures(tmp_path: Path) -> None:
    if shutil.which("sipp") is None:
        pytest.fail("sipp is not installed: run .ci/run, or apt-get install sip-tester")
    output = tmp_path / "result.json"
    completed = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "run.py"),
            "--target",
            "pyudp=auto",
            "--quick",
            "--workloads",
            "register,publish,subscribe,fanout,memory",
            "--rates",
            "100,200",
            "--step-seconds",
            "0.5",
            "--latency-rate",
            "200",
            "--latency-seconds",
            "0.5",
            "--fanout-watchers",
            "20",
            "--memory-entries",
            "100",
            "--memory-rate",
            "200",
            "--output",
            str(output),
        ],
        capture_output=True,
        text=True,
        timeout=80,
        cwd=tmp_path,
    )
    assert completed.returncode == 0, completed.stderr
    report = json.loads(output.read_text())

    assert report["schema"] == 1
    assert report["machine"]["nproc"] >= 1
    assert report["machine"]["cpu_model"]
    assert len(report["machine"]["loadavg_start"]) == 3
    results = report["targets"]["pyudp"]["results"]
    assert set(results) == {"register", "publish", "subscribe", "fanout", "memory"}

    for workload in ("register", "publish", "subscribe"):
        figures = results[workload]
        assert "error" not in figures, figures
        assert [step["rate"] for step in figures["steps"]] == [100, 200]
        assert all(step["passed"] and step["failed"] == 0 for step in figures["steps"])
        assert figures["max_rate"] > 150  # the 200/s step was sustained
        latency = figures["latency"]
        assert latency["failed"] == 0
        assert latency["measured"] == latency["calls"] == 100
        assert 0 < latency["p50_ms"] <= latency["p99_ms"] <= latency["max_ms"]
        assert figures["failed"] == 0

    fanout = results["fanout"]
    assert fanout["subscribed"] == fanout["notified"] == 20
    assert fanout["publish_status"] == 200
    assert fanout["failed"] == 0
    assert 0 < fanout["time_to_first_notify_ms"] <= fanout["time_to_last_notify_ms"]

    memory = results["memory"]
    assert memory["registered"] == memory["subscribed"] == 100
    assert memory["failed"] == 0
    assert memory["idle"]["rss_kib"] > 0 and memory["processes"] == 1
    # Sampled, and per-entry figures derived. No growth is asserted: a process's PSS also
    # moves when other processes sharing its pages (other Pythons, SIPp) come and go, and
    # pyudp keeps next to nothing per entry.
    for sample in ("idle", "registrations", "subscriptions"):
        assert memory[sample]["pss_kib"] > 0 and memory[sample]["rss_kib"] > 0
    assert isinstance(memory["per_registration_bytes"], float)
    assert isinstance(memory["per_subscription_bytes"], float)

    # no reference to compare "ours" with: no ratios; the table was printed
    assert report["ratios"] == {}
    assert "REGISTER max sustained /s" in completed.stdout
    # each workload ran a fresh responder, and the driver stopped every one of them
    pids = {figures["server_pid"] for figures in results.values()}
    assert len(pids) == 5 and None not in pids
    for pid in pids:
        cmdline = Path(f"/proc/{pid}/cmdline")
        assert not cmdline.exists() or b"pyudp.py" not in cmdline.read_bytes()


@pytest.mark.timeout(150)
def test_driver_starts_our_server_itself_and_prints_ratios(tmp_path: Path) -> None:
    """``ours=auto`` (bench/run's default): our server is started fresh for every workload,
    as a user starts it, measured beside a reference, and stopped afterwards."""
    if shutil.which("sipp") is None:
        pytest.fail("sipp is not installed: run .ci/run, or apt-get install sip-tester")
    output = tmp_path / "result.json"
    completed = subprocess.run(
        [
            sys.executable, str(ROOT / "bench" / "run.py"),
            "--target", "ours=auto", "--target", "pyudp=auto", "--ours-workers", "2",
            "--quick", "--workloads", "register,subscribe,memory",
            "--rates", "100", "--step-seconds", "0.5",
            "--latency-rate", "100", "--latency-seconds", "0.5",
            "--memory-entries", "100", "--memory-rate", "200",
            "--output", str(output),
        ],
        capture_output=True, text=True, timeout=140, cwd=tmp_path,
    )
    assert completed.returncode == 0, completed.stderr
    report = json.loads(output.read_text())
    ours = report["targets"]["ours"]
    assert ours["auto"] and ours["workers"] == 2
    for workload in ("register", "subscribe"):
        figures = ours["results"][workload]
        assert "error" not in figures, figures
        assert figures["failed"] == 0 and figures["steps"][0]["passed"]
        assert figures["latency"]["measured"] == 50
    memory = ours["results"]["memory"]
    assert memory["registered"] == memory["subscribed"] == 100 and memory["failed"] == 0
    assert memory["processes"] == 3  # the supervisor and its two workers
    ratio = report["ratios"]["ours"]["pyudp"]
    assert ratio["register.max_rate"] is not None and ratio["register.max_rate"] > 0
    assert "ours/pyudp" in completed.stdout
    for figures in ours["results"].values():  # every server it started is gone
        cmdline = Path(f"/proc/{figures['server_pid']}/cmdline")
        assert not cmdline.exists() or b"slee.cli" not in cmdline.read_bytes()
