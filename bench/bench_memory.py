"""Live Python memory per subscription or registration, in process, by allocation site.

The same in-process server as bench_inprocess.py (real container, SIP RA, services and
SQLite store; the UDP socket replaced by a recorder that answers NOTIFYs 200). N initial
SUBSCRIBEs to N different presentities (as the memory workload of run.py), or N REGISTERs;
tracemalloc compares the heap before and after and prints bytes and objects per request by
the line that allocated them. Not a test; use it to see where per-subscription memory goes.

    .venv/bin/python bench/bench_memory.py [--n 3000] [--workload subscribe|register]
        [--settle SECONDS] [--top 30]

``--settle 40`` waits out Timer J (32 s), so completed SIP transactions are gone; without
it they are counted, as in run.py's sample 6 s after the fill.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import tempfile
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import bench_inprocess  # noqa: E402

from slee.sip import parse_message  # noqa: E402
from slee.sip._addressing import Peer  # noqa: E402
from slee.store import Store  # noqa: E402


def subscribe(i: int) -> bytes:
    """An initial SUBSCRIBE of watcher w<i> to presentity p<i> (both unique, as run.py's)."""
    port = 20000 + i % 20000
    return (f"SUBSCRIBE sip:p{i}@bench.invalid SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-{i}-m;rport\r\nMax-Forwards: 70\r\n"
            f"From: <sip:w{i}@bench.invalid>;tag=f{i}\r\nTo: <sip:p{i}@bench.invalid>\r\n"
            f"Call-ID: m{i}@bench\r\nCSeq: 1 SUBSCRIBE\r\nContact: <sip:w{i}@127.0.0.1:{port}>\r\n"
            f"Event: presence\r\nAccept: application/pidf+xml\r\nExpires: 3600\r\nContent-Length: 0\r\n\r\n").encode()


async def main(args: argparse.Namespace) -> None:
    tmp = tempfile.TemporaryDirectory()
    store = Store.open(f"sqlite:///{tmp.name}/slee.db")
    container, sip, transport = await bench_inprocess.start_server(tmp.name, "presence", store=store)
    build = subscribe if args.workload == "subscribe" else (lambda i: bench_inprocess.request("register", i))
    messages = [build(i) for i in range(args.n + 50)]
    for raw in messages[:50]:  # warm up: imports, caches, first-use allocations
        sip._on_message(parse_message(raw), Peer("udp", "127.0.0.1", 20000))
    await container.wait_idle()
    gc.collect()
    tracemalloc.start(1)
    before = tracemalloc.take_snapshot()
    for k, raw in enumerate(messages[50:], 1):
        sip._on_message(parse_message(raw), Peer("udp", "127.0.0.1", 20000 + k % 20000))
        if k % 200 == 0:
            await asyncio.sleep(0)
    await container.wait_idle(60)
    if args.settle:
        await asyncio.sleep(args.settle)
    gc.collect()
    after = tracemalloc.take_snapshot()
    stats = after.compare_to(before, "lineno")
    total = sum(s.size_diff for s in stats)
    print(f"{args.workload}: {total / args.n:,.0f} B live heap per request ({args.n} requests, "
          f"settle {args.settle:g} s, {transport.sent} messages sent)")
    for stat in stats[:args.top]:
        frame = stat.traceback[0]
        where = frame.filename.replace(str(ROOT) + "/", "")
        print(f"{stat.size_diff / args.n:8.0f} B {stat.count_diff / args.n:6.2f} objects  {where}:{frame.lineno}")
    await container.stop()
    store.close()
    tmp.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--workload", default="subscribe", choices=["subscribe", "register"])
    parser.add_argument("--settle", type=float, default=0.0)
    parser.add_argument("--top", type=int, default=30)
    asyncio.run(main(parser.parse_args()))
