"""Store commit throughput: group commit vs one transaction per SLEE transaction.

Each SLEE transaction writes one small registration-like document. ``group`` runs
``--concurrency`` event handlers on one event loop; each submits its change to the
GroupCommitter and waits for durability before taking the next event (as an SBB must before
acknowledging). ``apply`` calls Store.apply once per transaction from one thread.

    .venv/bin/python bench/bench_store.py [--n 20000] [--plain-n 2000] [--pg-url URL]

SQLite runs on a temporary file under --dir (default: the system temp dir; it must be a real
disk, not tmpfs, for fsync to cost what it costs in production). PostgreSQL runs in a
throwaway schema of --pg-url (default $SLEE_TEST_PG_URL or the local test server).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import tempfile
import time
from collections.abc import Iterator

from slee.store import GroupCommitter, Put, Store, StoreError
from slee.store.testing import postgres_schema, test_pg_url


def document(i: int) -> dict:
    return {
        "aor": f"sip:user{i}@example.com",
        "contacts": [{"uri": f"sip:user{i}@192.0.2.{i % 250}:5060", "q": 1.0, "expires": 3600}],
        "cseq": i,
    }


async def run_group(store: Store, n: int, concurrency: int) -> tuple[float, dict]:
    committer = GroupCommitter(store)
    next_index = 0

    async def handler() -> None:
        nonlocal next_index
        while next_index < n:
            i = next_index
            next_index += 1
            await committer.submit([Put("bench-group", f"user{i}", document(i))])

    started = time.perf_counter()
    await asyncio.gather(*(handler() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    await committer.close()
    return elapsed, committer.stats


def run_plain(store: Store, n: int) -> float:
    started = time.perf_counter()
    for i in range(n):
        store.apply([Put("bench-plain", f"user{i}", document(i))])
    return time.perf_counter() - started


@contextlib.contextmanager
def sqlite_url(directory: str | None) -> Iterator[str]:
    with tempfile.TemporaryDirectory(dir=directory, prefix="slee-bench-") as tmp:
        yield f"sqlite:///{os.path.join(tmp, 'slee.db')}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20000, help="group-commit transactions")
    parser.add_argument("--plain-n", type=int, default=2000, help="one-by-one transactions")
    parser.add_argument("--concurrency", type=int, default=500, help="concurrent handlers")
    parser.add_argument("--pg-url", default=test_pg_url())
    parser.add_argument("--dir", default=None, help="directory for the SQLite file")
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    args = parser.parse_args()

    rows = []
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    for backend in backends:
        url_cm = sqlite_url(args.dir) if backend == "sqlite" else postgres_schema(args.pg_url)
        try:
            with url_cm as url, Store.open(url) as store:
                elapsed, stats = asyncio.run(run_group(store, args.n, args.concurrency))
                rows.append(
                    (
                        backend,
                        f"GroupCommitter c={args.concurrency}",
                        args.n,
                        elapsed,
                        stats["batches"],
                        stats["transactions"],
                    )
                )
                plain = run_plain(store, args.plain_n)
                rows.append((backend, "apply() one by one", args.plain_n, plain, "-", args.plain_n))
                assert store.count("bench-group") == args.n
        except StoreError as exc:
            print(f"{backend}: {exc}")

    header = f"{'backend':9} {'mode':26} {'txns':>7} {'seconds':>8} {'commits/s':>10} "
    header += f"{'batches':>8} {'db txns':>8} {'avg batch':>9}"
    print(header)
    print("-" * len(header))
    for backend, mode, n, seconds, batches, db_txns in rows:
        avg = f"{n / batches:9.1f}" if isinstance(batches, int) and batches else f"{'1.0':>9}"
        print(
            f"{backend:9} {mode:26} {n:7d} {seconds:8.2f} {n / seconds:10.0f} "
            f"{batches!s:>8} {db_txns!s:>8} {avg}"
        )


if __name__ == "__main__":
    main()
