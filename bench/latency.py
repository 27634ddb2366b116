"""Per-call latency of one workload at a fixed rate, a few runs, with the tail percentiles.

bench/run.py measures latency once per workload, before its rate steps; this measures it
alone, as often as asked, on whatever state the server is in. Same SIPp scenarios and latency
definition as run.py (REGISTER/PUBLISH to their 2xx, SUBSCRIBE to the initial NOTIFY).

    .venv/bin/python bench/latency.py --target 127.0.0.1:5060 --workload subscribe \\
        [--rate 500] [--calls 5000] [--runs 3] [--dump DIR]

``--dump`` writes each run's latencies in the order the calls were sent (one ms value per
line), to look for stalls in time.
"""

from __future__ import annotations

import argparse
import functools
import secrets
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as bench


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True, metavar="HOST:PORT")
    parser.add_argument("--workload", choices=bench.RATE_WORKLOADS, default="subscribe")
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dump", type=Path, help="write each run's per-call latencies here")
    args = parser.parse_args(argv)
    host, _, port = args.target.rpartition(":")
    target = bench.Target("target", host=host, port=int(port))
    settings = bench.Settings(rates=(args.rate,), step_seconds=args.calls / args.rate, max_step_calls=args.calls,
                              latency_rate=args.rate, latency_seconds=args.calls / args.rate,
                              fanout_watchers=0, memory_entries=0, memory_rate=1)
    bench.latencies = functools.partial(bench.latencies, in_send_order=True)  # run_sipp calls it by this name
    workdir = Path(tempfile.mkdtemp(prefix="latency-"))
    prefix = secrets.token_hex(3)  # new users on every invocation
    if args.dump:
        args.dump.mkdir(parents=True, exist_ok=True)
    for n in range(args.runs):
        result = bench.run_sipp(target, args.workload, args.rate, args.calls, settings, workdir,
                                f"{prefix}r{n}", shortmsg=True)
        values = result.pop("latency_ms")
        ordered = sorted(values)
        cut = {q: bench.percentile(ordered, q) for q in (0.5, 0.9, 0.99, 0.999)}
        print(f"{args.workload} run {n + 1}: {result['successful']}/{args.calls} ok, "
              f"p50 {cut[0.5]:.2f} p90 {cut[0.9]:.2f} p99 {cut[0.99]:.2f} p99.9 {cut[0.999]:.2f} "
              f"max {ordered[-1]:.2f} ms" if ordered else f"{args.workload} run {n + 1}: no answers")
        if args.dump:
            (args.dump / f"{args.workload}-{n + 1}.txt").write_text("\n".join(f"{v:.3f}" for v in values) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
