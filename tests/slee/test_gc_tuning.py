"""slee.server.tune_gc: what survives a collection is frozen, and still collected later.

Run in a child interpreter: the GC settings are process-wide and the test runner's own
objects must not be frozen.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent("""
    import gc, weakref
    import slee.server
    from slee.server import tune_gc

    class Node:
        pass

    tune_gc(1_000)
    frozen_at_start = gc.get_freeze_count()
    state = [Node() for _ in range(5_000)]          # long-lived server state
    assert gc.get_freeze_count() >= frozen_at_start + 4_000, "young collections froze their survivors"
    gc.collect(0)                                   # a young collection: what survives it is frozen
    assert all(len(gc.get_objects(generation)) < 1_000 for generation in (1, 2)), "older generations stay empty"

    # a garbage cycle among frozen objects: not collected by the next full collection ...
    a, b = Node(), Node()
    a.other, b.other = b, a
    gone = weakref.ref(a)
    gc.collect()                                    # a and b survive it (still referenced): frozen
    del a, b
    gc.collect()
    assert gone() is not None, "frozen objects are not rescanned"
    # ... but by the first full collection FULL_SCAN_INTERVAL after the last full scan
    slee.server.FULL_SCAN_INTERVAL = 0.0
    gc.collect()
    assert gone() is None, "the periodic full scan collects cycles among frozen objects"
    print("ok")
""")



def test_collections_freeze_survivors_and_a_periodic_full_scan_rescans_them() -> None:
    result = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
