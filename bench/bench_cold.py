"""How much slower the server's own code runs after a pause than back to back, on this machine.

At 500 requests/s each of two workers waits about 4 ms between requests. On a shared VM the
caches a request warmed are gone by the next one (other tenants run on the same cores), so a
request costs several times what a tight loop of them costs: a server's CPU per request at a
low rate is not its in-process cost. This measures that penalty on one fixed piece of the hot
path (parse and validate a PUBLISH, read its From, To and Via: what every request does first),
timed alone, after pauses spent asleep and spent spinning.

    .venv/bin/python bench/bench_cold.py [--calls 400] [--pauses 0,0.5,2,10]

Prints the median and p90 of one call per pause (µs) and the ratio to back-to-back calls.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from slee.sip._parser import parse_message
from slee.sip._validate import validate_request

PUBLISH = (
    b"PUBLISH sip:alice@example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-cold-1;rport\r\n"
    b"Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=1\r\nTo: <sip:alice@example.com>\r\n"
    b"Call-ID: cold-1@127.0.0.1\r\nCSeq: 1 PUBLISH\r\nEvent: presence\r\nExpires: 3600\r\n"
    b"Content-Type: application/pidf+xml\r\nContent-Length: 0\r\n\r\n"
)


def one_request() -> None:
    message = parse_message(PUBLISH, datagram=True)
    validate_request(message)
    _ = message.to.uri, message.from_.uri, message.vias


def measure(calls: int, pause: float, *, spin: bool) -> list[float]:
    """Seconds per call, each call timed alone after ``pause`` asleep (or spinning)."""
    times = []
    for _ in range(calls):
        if pause and spin:
            end = time.perf_counter() + pause
            while time.perf_counter() < end:
                pass
        elif pause:
            time.sleep(pause)
        start = time.perf_counter()
        one_request()
        times.append(time.perf_counter() - start)
    return sorted(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=400, help="calls per pause (default 400)")
    parser.add_argument("--pauses", default="0,0.5,2,10", help="pauses in ms, comma-separated")
    args = parser.parse_args(argv)
    try:
        pauses = [float(p) / 1000 for p in args.pauses.split(",")]
    except ValueError:
        parser.error(f"--pauses takes milliseconds separated by commas, e.g. 0,2,10 (not {args.pauses!r})")
    if args.calls < 10:
        parser.error("--calls must be at least 10")
    measure(args.calls, 0, spin=False)  # warm up: imports, first-call costs
    base = None
    print(f"{'pause':>9}  {'how':>6}  {'median us':>9}  {'p90 us':>7}  {'x back to back':>14}")
    for pause in pauses:
        for spin in ((False,) if pause == 0 else (False, True)):
            times = measure(args.calls, pause, spin=spin)
            median, p90 = times[len(times) // 2], times[len(times) * 9 // 10]
            if base is None:
                base = median
            how = "spin" if spin else ("sleep" if pause else "-")
            print(f"{pause * 1000:7.1f} ms  {how:>6}  {median * 1e6:9.1f}  {p90 * 1e6:7.1f}  {median / base:14.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
