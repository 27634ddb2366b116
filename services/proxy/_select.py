"""Response selection of a forking proxy (RFC 3261 §16.7 step 6), as pure functions."""

from __future__ import annotations


def better(candidate: int, best: int | None) -> bool:
    """True if a final ``candidate`` status should replace ``best`` as the response to send
    when no 2xx or 6xx arrives: the lowest class wins (3xx over 4xx over 5xx), 408 and 503
    (RFC 3261: never forward 503) lose to anything of the same class."""
    if best is None:
        return True
    cc, bc = candidate // 100, best // 100
    if cc != bc:
        return cc < bc
    weak = (408, 503, 500)
    return best in weak and candidate not in weak


def upstream_status(status: int) -> int:
    """§16.7 step 6: a proxy SHOULD NOT forward 503 upstream; it sends 500 instead."""
    return 500 if status == 503 else status
