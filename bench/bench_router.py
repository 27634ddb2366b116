"""Events per second through the event router to a trivial SBB.

Not a test: prints a table. Each run fires EVENTS events spread over ACTIVITIES activities
(one root entity per activity, created by the first event), measured from the first fire
until the container is idle and, with a store, every write is durable.

    .venv/bin/python bench/bench_router.py [--events N] [--activities N]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from slee import CmpField, EventTypeId, Sbb, ServiceId, event_handler
from slee.container import Container
from slee.events import EventType
from slee.store import Store
from slee.testing import FakeActivity, _HarnessRa

PING = EventTypeId("bench.Ping", "bench", "1.0")


class NoopSbb(Sbb):
    @event_handler(PING, initial=True, select=("activity_context",))
    def on_ping(self, event, aci):
        pass


class CmpSbb(Sbb):
    count = CmpField(int, default=0)

    @event_handler(PING, initial=True, select=("activity_context",))
    def on_ping(self, event, aci):
        self.count += 1


async def run(sbb: type[Sbb], events: int, activities: int, store_url: str | None) -> tuple[float, dict]:
    store = Store.open(store_url) if store_url else None
    c = Container(store=store)
    c.install_ra(_HarnessRa)
    c.install_event_type(EventType(PING))
    c.create_ra_entity("bench", _HarnessRa.ra_id)
    svc = ServiceId("bench", "bench", "1.0")
    c.install_service(svc, sbb)
    await c.start()
    c.activate_service(svc)
    acts = [FakeActivity(f"a{i}") for i in range(activities)]
    for act in acts:
        c.start_activity("bench", act, act)
    await c.wait_idle()
    per = events // activities
    start = time.perf_counter()
    fired = 0
    batch = 2000
    for _round in range(per):
        for act in acts:
            c.fire_event("bench", act, PING, None)
            fired += 1
            if fired % batch == 0:
                await asyncio.sleep(0)  # let the router run, as the RA's socket reads would
    await c.wait_idle(60)
    elapsed = time.perf_counter() - start
    stats = {"delivered": c.delivered, "entities": len(c.entities)}
    if c._committer is not None:
        stats["batches"] = c._committer.stats["batches"]
    await c.stop()
    if store:
        store.close()
    return fired / elapsed, stats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--activities", type=int, default=1000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for label, sbb, url in (
            ("no CMP writes, no store", NoopSbb, None),
            ("CMP write per event, no store", CmpSbb, None),
            ("no CMP writes, SQLite store", NoopSbb, f"sqlite:///{tmp}/a.db"),
            ("CMP write per event, SQLite store", CmpSbb, f"sqlite:///{tmp}/b.db"),
        ):
            rate, stats = asyncio.run(run(sbb, args.events, args.activities, url))
            rows.append((label, rate, stats))
    print(f"{'scenario':38} {'events/s':>10}  details")
    for label, rate, stats in rows:
        print(f"{label:38} {rate:10,.0f}  {stats}")


if __name__ == "__main__":
    main()
