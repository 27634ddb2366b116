"""CPU cost per SIP request through the whole server, in one process, without sockets.

The real container, SIP RA (transaction layer, dialogs, provider), location RA and service
packages deployed by the real recipe — only the UDP socket is replaced by a recorder, and
the store is SQLite in a temp dir (or none). Prints requests/s per workload and, with
``--profile``, the top of a cProfile. Not a test; use it to see where a request's time goes.

    .venv/bin/python bench/bench_inprocess.py [--n 5000] [--workload register|publish|subscribe]
        [--recipe presence|registrar] [--profile] [--no-store]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from slee.container import Container  # noqa: E402
from slee.deploy import DeploymentManager  # noqa: E402
from slee.ra.spi import discover_resource_adaptors  # noqa: E402
from slee.sip._addressing import Peer  # noqa: E402
from slee.store import Store  # noqa: E402

PIDF = ('<?xml version="1.0" encoding="UTF-8"?><presence xmlns="urn:ietf:params:xml:ns:pidf" '
        'entity="sip:{user}@bench.invalid"><tuple id="t1"><status><basic>open</basic></status>'
        '<note>Available</note></tuple></presence>')


class RecordingTransport:
    """Stands in for SipTransport: counts what would have been sent."""

    def __init__(self) -> None:
        self.sent = 0
        self.port = 5060
        self.advertised_host = "127.0.0.1"
        self.listening: list[Peer] = []
        self.stats: dict[str, int] = {}
        self.last = b""
        self.on_message = None  # the RA's intake, to answer NOTIFYs

    def send(self, data: bytes, destination: Peer) -> None:
        self.sent += 1
        self.last = data
        if data.startswith(b"NOTIFY ") and self.on_message is not None:
            # a watcher answers 200, as SIPp does in the subscribe workload
            from slee.sip import make_response, parse_message

            notify = parse_message(data)
            self.on_message(make_response(notify, 200), destination)

    def connection_for(self, host: str, port: int) -> None:
        return None

    async def close(self) -> None:
        pass


def request(workload: str, i: int, presentities: int = 100) -> bytes:
    """Request ``i`` of a workload; SUBSCRIBEs go to ``presentities`` presentities in turn
    (0: each to a new one, as bench/run.py's SIPp scenario does)."""
    user = f"u{i}"
    target = f"p{i % presentities}" if presentities else f"p{i}"
    port = 20000 + i % 20000
    common = (f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-{i}-x;rport\r\n"
              f"Max-Forwards: 70\r\nFrom: <sip:{user}@bench.invalid>;tag=f{i}\r\n"
              f"Call-ID: c{i}@bench\r\n")
    if workload == "register":
        return (f"REGISTER sip:bench.invalid SIP/2.0\r\n{common}To: <sip:{user}@bench.invalid>\r\n"
                f"CSeq: 1 REGISTER\r\nContact: <sip:{user}@127.0.0.1:{port}>\r\nExpires: 3600\r\n"
                f"Content-Length: 0\r\n\r\n").encode()
    if workload == "publish":
        body = PIDF.format(user=user).encode()
        return (f"PUBLISH sip:{user}@bench.invalid SIP/2.0\r\n{common}To: <sip:{user}@bench.invalid>\r\n"
                f"CSeq: 1 PUBLISH\r\nEvent: presence\r\nExpires: 3600\r\n"
                f"Content-Type: application/pidf+xml\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
    if workload == "subscribe":
        return (f"SUBSCRIBE sip:{target}@bench.invalid SIP/2.0\r\n{common}To: <sip:{target}@bench.invalid>\r\n"
                f"CSeq: 1 SUBSCRIBE\r\nContact: <sip:{user}@127.0.0.1:{port}>\r\nEvent: presence\r\n"
                f"Accept: application/pidf+xml\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n").encode()
    raise SystemExit(f"unknown workload {workload}")


async def start_server(tmp: str, recipe: str, *, store: Store | None) -> tuple[Container, Any, RecordingTransport]:
    """The container with ``recipe`` deployed, its SIP RA's socket replaced by a recorder."""
    c = Container(store=store)
    for ra in discover_resource_adaptors().values():
        c.install_ra(ra)
    manager = DeploymentManager(c, units_dir=Path(tmp) / "units", recipes_dir=ROOT / "deploy",
                                variables={"sip_host": "127.0.0.1", "sip_port": "0"})
    await c.start()
    await manager.deploy(recipe, {})
    sip = c.ra_entities["sip"].ra
    transport = RecordingTransport()
    transport.on_message = sip._on_message
    await sip.transport.close()
    sip.transport = transport
    return c, sip, transport


async def main(args: argparse.Namespace) -> None:
    from slee.sip import parse_message

    tmp = tempfile.TemporaryDirectory()
    store = None if args.no_store else Store.open(f"sqlite:///{tmp.name}/slee.db")
    c, sip, transport = await start_server(tmp.name, args.recipe, store=store)
    if not args.default_gc:
        import dataclasses

        from slee.server import ServerConfig, tune_gc

        default = {f.name: f.default for f in dataclasses.fields(ServerConfig)}["gc_threshold"]
        tune_gc(default)  # as bin/slee start does
    messages = [request(args.workload, i, args.presentities) for i in range(args.n)]
    # warm up (imports, caches)
    for raw in messages[:50]:
        sip._on_message(parse_message(raw), Peer("udp", "127.0.0.1", 20000))
    await c.wait_idle()
    transport.sent = 0
    profiler = cProfile.Profile() if args.profile else None
    start = time.perf_counter()
    if profiler:
        profiler.enable()
    for k, raw in enumerate(messages[50:], 1):
        message = parse_message(raw)  # the transport's parse is part of the cost
        sip._on_message(message, Peer("udp", "127.0.0.1", 20000 + k % 20000))
        if k % 200 == 0:
            await asyncio.sleep(0)  # let the router and the committer run, as socket reads would
    await c.wait_idle(60)
    if profiler:
        profiler.disable()
    elapsed = time.perf_counter() - start
    n = len(messages) - 50
    print(f"{args.workload}: {n} requests in {elapsed:.2f}s = {n / elapsed:,.0f}/s "
          f"({1e6 * elapsed / n:.0f} us each); sent {transport.sent} messages; "
          f"store {'off' if store is None else 'SQLite'}; recipe {args.recipe}")
    if profiler:
        stats = pstats.Stats(profiler).sort_stats(args.sort)
        stats.print_stats(args.top)
        if args.callers:
            stats.print_callers(args.callers)
    await c.stop()
    if store:
        store.close()
    tmp.cleanup()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--workload", default="register", choices=["register", "publish", "subscribe"])
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--sort", default="tottime")
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--callers", help="with --profile: also who calls the functions matching this regex")
    ap.add_argument("--presentities", type=int, default=100,
                    help="subscribe: watched presentities, in turn (0: a new one per SUBSCRIBE)")
    ap.add_argument("--no-store", action="store_true")
    ap.add_argument("--default-gc", action="store_true", help="keep CPython's GC thresholds")
    ap.add_argument("--recipe", default="presence", help="deploy/RECIPE.yaml (presence, registrar)")
    asyncio.run(main(ap.parse_args()))
