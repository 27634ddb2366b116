"""The process behind ``bin/slee start``: store, container, RA entities, units, management API.

Start order matters for a clean restart: the store is opened, RA classes are discovered,
then the deployment manager rebuilds what was deployed (RA entities, units, SBB entities,
timers, service states) before the container starts delivering events, and RA entities
become active last. Then ``--deploy`` recipes are applied (idempotent), the management API
binds to loopback, and ONE line lists every address the process listens on.

SIGINT/SIGTERM (or ``bin/slee stop``) stop it in the reverse order: the management API stops
accepting calls and finishes those in flight, RA entities stop creating activities, queued
events are delivered, and the store is flushed and closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import gc
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from slee import __version__
from slee.cluster import WORKERS_FILE, WorkerInfo
from slee.container import Container, ContainerConfig
from slee.deploy import DeploymentManager
from slee.management import ManagementApi, check_loopback, ensure_token
from slee.management._files import remove_endpoint, write_endpoint
from slee.ra.spi import discover_resource_adaptors
from slee.store import Store, mask_url

log = logging.getLogger("slee.server")


class StartError(RuntimeError):
    """The container cannot start; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class ServerConfig:
    data_dir: Path = Path("var")
    store_url: str | None = None  # default: sqlite in the data dir
    mgmt_host: str = "127.0.0.1"
    mgmt_port: int = 8750
    sip_host: str = "0.0.0.0"
    sip_port: int = 5060
    deploy: tuple[str, ...] = ()
    recipes_dir: Path | None = None
    variables: dict[str, str] = field(default_factory=dict)
    shutdown_timeout: float = 10.0
    gc_threshold: int = 10_000  # allocations between young-generation collections (CPython: 700)
    worker: WorkerInfo | None = None  # one of several worker processes (slee.workers)
    loop: str = "auto"  # event loop: uvloop when installed ("auto"), "uvloop" or "asyncio"
    durability: str = "write"  # when a commit is acknowledged: "write" or "fsync" (slee.store.DURABILITY)

    def resolved_store_url(self) -> str:
        return self.store_url or f"sqlite:///{self.data_dir.resolve() / 'slee.db'}"


LOOPS = ("auto", "uvloop", "asyncio")


def loop_factory(loop: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop ``bin/slee start --loop`` asks for: uvloop (libuv; about 8 % less CPU
    per REGISTER under SIPp load) when installed, else asyncio's own. None: asyncio's."""
    if loop not in LOOPS:
        raise StartError(f"--loop must be one of {', '.join(LOOPS)}, not {loop!r}")
    if loop == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if loop == "uvloop":
            raise StartError("--loop uvloop: uvloop is not installed (pip install uvloop), "
                             "or start with --loop asyncio") from None
        return None
    return uvloop.new_event_loop


def run_loop(main: Coroutine[Any, Any, int], loop: str = "auto") -> int:
    """Run the server's main coroutine on the event loop ``loop`` names (see loop_factory)."""
    try:
        factory = loop_factory(loop)
    except StartError:
        main.close()
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


def default_recipes_dir() -> Path:
    """``./deploy`` when it exists, else the ``deploy/`` folder of the project slee runs from."""
    here = Path.cwd() / "deploy"
    return here if here.is_dir() else Path(__file__).resolve().parent.parent / "deploy"


class Server:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.data_dir = config.data_dir.resolve()
        self.store: Store | None = None
        self.container: Container | None = None
        self.manager: DeploymentManager | None = None
        self._runner: web.AppRunner | None = None
        self._lock_fd: int | None = None
        self._endpoint_written = False
        self._stop = asyncio.Event()
        self._mgmt: list[str] = []
        self.started_at = time.time()

    # -- start ------------------------------------------------------------------------------
    async def start(self) -> list[str]:
        cfg = self.config
        check_loopback(cfg.mgmt_host)  # refuse before touching anything
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock()
        url = cfg.resolved_store_url()
        self.store = Store.open(url)
        container = self.container = Container(
            store=self.store, config=ContainerConfig(worker=cfg.worker, durability=cfg.durability))
        for ra_cls in discover_resource_adaptors().values():
            container.install_ra(ra_cls)
        variables = {"sip_host": cfg.sip_host, "sip_port": str(cfg.sip_port), "data_dir": str(self.data_dir),
                     **cfg.variables}
        self.manager = DeploymentManager(container, units_dir=self.data_dir / "units",
                                         recipes_dir=cfg.recipes_dir or default_recipes_dir(), variables=variables)
        summary = self.manager.restore()
        log.info("restored %s", summary)
        await container.start()
        await self.manager.activate_restored_ra_entities()
        for name in cfg.deploy:
            await self.manager.deploy(name)  # the manager logs its progress itself

        token = ensure_token(self.data_dir)
        api = ManagementApi(self.manager, info=self._info, on_stop=self.request_stop)
        self._runner = web.AppRunner(api.app(token), access_log=None, shutdown_timeout=cfg.shutdown_timeout,
                                     handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, cfg.mgmt_host, cfg.mgmt_port, reuse_address=True)
        await site.start()
        mgmt = list(self._runner.addresses)
        host, port = mgmt[0][0], mgmt[0][1]
        write_endpoint(self.data_dir, {"host": host, "port": port, "pid": os.getpid(), "started": self.started_at,
                                       "version": __version__, "store": mask_url(url)})
        self._endpoint_written = True
        self._mgmt = [f"mgmt http://{_fmt(a[0])}:{a[1]}" for a in mgmt]
        return self.addresses

    @property
    def addresses(self) -> list[str]:
        """Where this process listens now: the management API, then every RA entity's sockets."""
        return self._mgmt + self._ra_addresses()

    def _ra_addresses(self) -> list[str]:
        out: list[str] = []
        if self.container is None:
            return out
        for entity in self.container.ra_entities.values():
            fn = getattr(entity.ra, "listen_addresses", None)
            if fn is not None:
                out.extend(f"{entity.name} {a}" for a in fn())
        return out

    def _info(self) -> dict[str, Any]:
        worker = self.config.worker
        return {"pid": os.getpid(), "data_dir": str(self.data_dir), "started": self.started_at,
                **({"worker": worker.index} if worker is not None else {}),
                "uptime": round(time.time() - self.started_at, 3),
                "store": mask_url(self.config.resolved_store_url()), "durability": self.config.durability,
                "listening": self.addresses}

    def _lock(self) -> None:
        self._lock_fd = lock_data_dir(self.data_dir)
        if self.config.worker is None and (self.data_dir / WORKERS_FILE).exists():
            os.close(self._lock_fd)
            self._lock_fd = None
            raise StartError(f"{self.data_dir} holds the stores of a worker group; start it with --workers "
                             f"(see {WORKERS_FILE} there), or use another --data")

    # -- run and stop -------------------------------------------------------------------------
    def request_stop(self) -> None:
        self._stop.set()

    async def wait(self) -> None:
        await self._stop.wait()

    async def stop(self) -> None:
        log.info("stopping")
        if self._runner is not None:
            await self._runner.cleanup()  # stop accepting, finish calls in flight
            self._runner = None
        if self._endpoint_written:
            remove_endpoint(self.data_dir)
            self._endpoint_written = False
        if self.container is not None:
            await self.container.stop(self.config.shutdown_timeout)  # RAs stop, events drain, store flushed
        if self.store is not None:
            self.store.close()
            self.store = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        log.info("stopped")


def lock_data_dir(data_dir: Path) -> int:
    """Take the data dir's flock (one container or supervisor per dir); write our pid into it."""
    path = data_dir / "slee.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        other = os.read(fd, 32).decode(errors="replace").strip()
        os.close(fd)
        raise StartError(f"a container (pid {other or '?'}) already runs with data dir {data_dir}; "
                         "stop it with bin/slee stop, or use another --data") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def _fmt(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def tune_gc(threshold: int) -> None:
    """Cyclic GC tuned for a server: freeze what startup built, collect the young rarely.

    With CPython's defaults a full collection walks every live binding, entity and activity
    every few thousand allocations; measured with bench/bench_inprocess.py that took 40 % of
    a REGISTER's CPU time. Most per-request objects die by reference counting anyway. The
    young threshold bounds each pause: a young collection scans what survived since the
    last one (under presence load, most of it), 18-25 ms at 100,000, about 2 ms at 10,000.
    """
    global _last_full_scan
    if threshold <= 0:
        return
    gc.collect()
    gc.freeze()  # objects alive after startup (code, registries, restored state) are not rescanned
    _last_full_scan = time.monotonic()
    gc.set_threshold(threshold, 50, 100)
    if _freeze_survivors not in gc.callbacks:
        gc.callbacks.append(_freeze_survivors)


FULL_SCAN_INTERVAL = 600.0
"""Seconds between full collections that scan the frozen objects too (see _freeze_survivors)."""
_last_full_scan = time.monotonic()


def _freeze_survivors(phase: str, info: dict[str, int]) -> None:
    """After every collection, freeze what survived it: each object is scanned by one young
    collection, then never again until the next full scan.

    Under presence load most young objects survive (they are bindings, entities, dialogs),
    so the older generations fill with them. Freezing only after full collections left the
    middle generation to collect: after 100,000 REGISTERs and PUBLISHes per worker its
    collections stalled the loop for about 200 ms, and young collections with references
    into that large heap took 13-20 ms. Long-lived state is freed by reference counting when
    it ends; only garbage cycles among frozen objects would wait, and the services make
    almost none (young collections under load found 0 unreachable objects). A full
    collection at least FULL_SCAN_INTERVAL seconds after the last full scan unfreezes
    everything first, so such cycles are still collected; that one scan walks the whole heap.
    """
    global _last_full_scan
    if phase == "start":
        if info.get("generation") == 2 and time.monotonic() - _last_full_scan >= FULL_SCAN_INTERVAL:
            _last_full_scan = time.monotonic()
            gc.unfreeze()
    else:
        gc.freeze()


async def run_until_stopped(process: Any, ready_line: Callable[[list[str]], str], *,
                            on_started: Callable[[], None] | None = None, ready: Any = None) -> int:
    """Start ``process`` (a Server or a worker Supervisor), print its ready line, run until
    SIGINT/SIGTERM or a stop call, stop it; its ``stop()`` may return the exit status."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, process.request_stop)
    try:
        try:
            addresses = await process.start()
        except BaseException:
            await process.stop()
            raise
        if on_started is not None:
            on_started()
        (ready or (lambda text: print(text, flush=True)))(ready_line(addresses))
        await process.wait()
        return await process.stop() or 0
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)


async def serve(config: ServerConfig, *, ready: Any = None) -> int:
    """Run until SIGINT/SIGTERM or a stop call; print the ready line to stdout."""
    server = Server(config)
    log.info("event loop: %s", type(asyncio.get_running_loop()).__module__.split(".")[0])

    def ready_line(addresses: list[str]) -> str:
        return (f"slee {__version__} ready (pid {os.getpid()}, data {server.data_dir}); listening on: "
                + ", ".join(addresses))

    # GC tuned after start-up, so that what start-up built is frozen
    return await run_until_stopped(server, ready_line, on_started=lambda: tune_gc(config.gc_threshold), ready=ready)


def configure_logging(level: str, prefix: str = "") -> None:
    """Log to stderr; ``prefix`` tells apart the lines of several worker processes."""
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), stream=sys.stderr,
                        format=f"%(asctime)s %(levelname)s {prefix}%(name)s: %(message)s")


__all__ = ["Server", "ServerConfig", "StartError", "default_recipes_dir", "lock_data_dir", "run_until_stopped", "serve"]
