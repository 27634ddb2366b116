"""What a container knows about its siblings when several worker processes serve together.

The container itself never looks at it: resource adaptors that own network endpoints read it
(``context.worker``) to share their port and hand work to the worker that owns it. The
processes are started and supervised by `slee.workers`.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["WORKERS_FILE", "WorkerInfo"]

WORKERS_FILE = "workers.json"
"""In a data dir served by a worker group: the worker count (one group per dir, one count)."""


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """This process is worker ``index`` (0-based) of ``count``; ``run_dir`` is a directory
    private to the group, for the sockets the workers talk over."""

    index: int
    count: int
    run_dir: str

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(f"worker index {self.index} is not in 0..{self.count - 1}")
