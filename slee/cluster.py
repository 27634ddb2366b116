"""What a container knows about its siblings when several worker processes serve together.

The container itself never looks at it: resource adaptors that own network endpoints read it
(``context.worker``) to share their port and hand work to the worker that owns it. The
processes are started and supervised by `slee.workers`.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["OWNER_HASHES", "WORKERS_FILE", "WorkerInfo"]

WORKERS_FILE = "workers.json"
"""In a data dir served by a worker group: the worker count (one group per dir, one count) and
the owner hash its state was placed by."""

OWNER_HASHES = ("fnv1a", "crc32")
"""How an address-of-record's owner worker is chosen: ``fnv1a`` (`slee.transport._steer.
aor_hash`, which the kernel can compute too and so steer datagrams to their owner) for new
data dirs; ``crc32`` for those laid out before it (workers.json without ``owner_hash``)."""


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """This process is worker ``index`` (0-based) of ``count``; ``run_dir`` is a directory
    private to the group, for the sockets the workers talk over; ``owner_hash`` one of
    `OWNER_HASHES`; ``udp_fd`` the UDP socket the supervisor bound for this worker (its slot
    in the port's SO_REUSEPORT group), inherited, or None to bind one."""

    index: int
    count: int
    run_dir: str
    owner_hash: str = "fnv1a"
    udp_fd: int | None = None

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(f"worker index {self.index} is not in 0..{self.count - 1}")
        if self.owner_hash not in OWNER_HASHES:
            raise ValueError(f"owner hash {self.owner_hash!r} is not one of {', '.join(OWNER_HASHES)}")
