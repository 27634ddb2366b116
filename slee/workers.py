"""``bin/slee start --workers N``: N container processes behind one SIP port and one API.

One Python process runs on one core. To use more, the supervisor here starts N worker
processes, each a complete container (its own event router, SBB entities and embedded SQLite
store in ``DATA/worker-K``) with the same deployments. The SIP RA of every worker binds the
same port (SO_REUSEPORT); each address-of-record belongs to one worker and messages reaching
another worker are handed to it (`slee.transport._shard`), so a user's registrations,
publications and watchers all live in one container and services need no change.

The supervisor binds the UDP sockets, one per worker in order, and keeps them open: socket K
is slot K of the port's SO_REUSEPORT group, and the kernel steers each datagram to the worker
owning it (`slee.transport._steer`); worker K inherits socket K, again after a restart.

The supervisor holds the data dir's lock and serves the management API the CLI talks to:
changes (deploy, activate, profiles, trace levels, ...) go to every worker in turn, worker 0
first, so a refused deployment touches none; reads go to worker 0 unless ``?worker=K`` names
another; ``/v1/status`` lists every worker. A worker that dies is restarted from its store.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from slee import __version__
from slee.cluster import OWNER_HASHES, WORKERS_FILE, WorkerInfo
from slee.management import check_loopback, ensure_token, read_endpoint, read_token
from slee.management._api import auth_middleware
from slee.management._files import remove_endpoint, write_endpoint
from slee.server import (
    ServerConfig,
    StartError,
    configure_logging,
    lock_data_dir,
    run_loop,
    run_until_stopped,
    serve,
)

log = logging.getLogger("slee.workers")

READY_TIMEOUT = 300.0  # seconds a worker may take to restore its store and deploy
MAX_RESTARTS = 3  # within RESTART_WINDOW; beyond, the whole group stops
RESTART_WINDOW = 60.0


@dataclass
class _Worker:
    index: int
    data_dir: Path
    process: asyncio.subprocess.Process | None = None
    url: str = ""
    token: str = ""
    listening: list[str] = field(default_factory=list)
    deaths: list[float] = field(default_factory=list)

    @property
    def headers(self) -> dict[str, str]:
        """For a call to this worker's management API (bodies are JSON)."""
        return {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}


class Supervisor:
    """Starts, watches and stops the workers; serves the management API in front of them."""

    def __init__(self, config: ServerConfig, count: int) -> None:
        if count < 2:
            raise StartError("--workers needs at least 2 (1 is a plain start)")
        if config.store_url:
            raise StartError("--workers runs one embedded SQLite store per worker; drop --store "
                             "(a store shared by several workers is not supported)")
        if config.sip_port == 0:
            raise StartError("--workers needs a fixed --sip-port (the workers share it)")
        self.config = config
        self.count = count
        self.data_dir = config.data_dir.resolve()
        self.workers = [_Worker(i, self.data_dir / f"worker-{i}") for i in range(count)]
        self.run_dir = ""
        self.started_at = time.time()
        self._lock_fd: int | None = None
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._stop = asyncio.Event()
        self._stopping = False
        self._failed = False
        self._watchers: set[asyncio.Task[None]] = set()
        self._mgmt: list[str] = []
        self.owner_hash = "fnv1a"
        self._udp: list[socket.socket | None] = []
        self.datagrams = "hash"  # how UDP datagrams reach the workers: steered, random or hash

    # -- start ------------------------------------------------------------------------------
    async def start(self) -> list[str]:
        cfg = self.config
        check_loopback(cfg.mgmt_host)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock_fd = lock_data_dir(self.data_dir)
        self._check_layout()
        self._bind_udp()
        self.run_dir = tempfile.mkdtemp(prefix="slee-workers-")  # short: Unix socket paths are capped
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=10))
        print(f"starting {self.count} workers in {self.data_dir}", file=sys.stderr, flush=True)
        await asyncio.gather(*(self._spawn(w) for w in self.workers))
        token = ensure_token(self.data_dir)
        app = web.Application(middlewares=[auth_middleware(token)], client_max_size=1 << 20)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False,
                                     shutdown_timeout=cfg.shutdown_timeout)
        await self._runner.setup()
        await web.TCPSite(self._runner, cfg.mgmt_host, cfg.mgmt_port, reuse_address=True).start()
        host, port = next(iter(self._runner.addresses))[:2]
        write_endpoint(self.data_dir, {"host": host, "port": port, "pid": os.getpid(), "started": self.started_at,
                                       "version": __version__, "workers": self.count,
                                       "store": f"sqlite per worker ({self.data_dir}/worker-*/slee.db)"})
        self._mgmt = [f"mgmt http://{host}:{port}"]
        return self._mgmt + self.workers[0].listening

    def _check_layout(self) -> None:
        """Refuse a data dir whose state another layout wrote: an AOR's state is in the store of
        the worker that owned it, so the worker count must not change under it."""
        path = self.data_dir / WORKERS_FILE
        if (self.data_dir / "slee.db").exists():
            raise StartError(f"{self.data_dir} holds a single-process container's store (slee.db); "
                             "start it without --workers, or use another --data for workers")
        if path.exists():
            try:
                layout = json.loads(path.read_text())
                before = int(layout["count"])
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise StartError(f"{path}: unreadable ({exc}); remove it only if the worker-* dirs are "
                                 "disposable") from None
            if before != self.count:
                raise StartError(f"{self.data_dir} was served by {before} workers and each user's state lives "
                                 f"in its worker's store; start with --workers {before}, or use another --data")
            # laid out before owners were chosen by fnv1a: keep each user with its store
            self.owner_hash = layout.get("owner_hash", "crc32")
            if self.owner_hash not in OWNER_HASHES:
                raise StartError(f"{path}: unknown owner_hash {self.owner_hash!r} (known: {', '.join(OWNER_HASHES)})")
            if self.owner_hash != "fnv1a":
                log.info("%s: owners chosen by %s (laid out before steering): datagrams are spread at "
                         "random and handed to their owner; a new --data dir steers them", path, self.owner_hash)
        else:
            path.write_text(json.dumps({"count": self.count, "owner_hash": self.owner_hash}) + "\n")

    def _bind_udp(self) -> None:
        """One UDP socket per worker, bound in worker order (see the module docstring)."""
        from slee.transport import bind_udp_group

        cfg = self.config
        try:
            socks, self.datagrams = bind_udp_group(cfg.sip_host, cfg.sip_port, self.count, self.owner_hash)
        except OSError as exc:
            raise StartError(str(exc)) from None
        self._udp = list(socks)

    def _udp_fd(self, worker: _Worker) -> int | None:
        sock = self._udp[worker.index] if worker.index < len(self._udp) else None
        return sock.fileno() if sock is not None else None

    def _worker_spec(self, worker: _Worker) -> dict[str, Any]:
        cfg = self.config
        return {"index": worker.index, "count": self.count, "run_dir": self.run_dir,
                "owner_hash": self.owner_hash, "udp_fd": self._udp_fd(worker),
                "data_dir": str(worker.data_dir), "sip_host": cfg.sip_host, "sip_port": cfg.sip_port,
                "deploy": list(cfg.deploy), "recipes_dir": str(cfg.recipes_dir) if cfg.recipes_dir else None,
                "variables": cfg.variables, "gc_threshold": cfg.gc_threshold, "loop": cfg.loop,
                "durability": cfg.durability, "shutdown_timeout": cfg.shutdown_timeout,
                "log_level": logging.getLevelName(logging.getLogger().getEffectiveLevel()).lower()}

    async def _spawn(self, worker: _Worker) -> None:
        """Start one worker and wait for its ready line; then watch it."""
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "slee.workers", json.dumps(self._worker_spec(worker)),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            pass_fds=[fd for fd in (self._udp_fd(worker),) if fd is not None],
            start_new_session=True)  # a terminal's Ctrl-C reaches the supervisor only; it stops them
        worker.process = process
        assert process.stdout is not None
        line = b""
        try:
            async with asyncio.timeout(READY_TIMEOUT):
                while b" ready (" not in line:
                    line = await process.stdout.readline()
                    if not line:
                        code = await process.wait()
                        raise StartError(f"worker {worker.index} exited (status {code}) before it was ready; "
                                         "its log is above")
        except TimeoutError:
            process.kill()
            raise StartError(f"worker {worker.index} not ready after {READY_TIMEOUT:.0f}s") from None
        text = line.decode(errors="replace").strip()
        listening = text.split("listening on: ", 1)[-1].split(", ")
        worker.listening = [a for a in listening if not a.startswith("mgmt ")]
        sock = self._udp[worker.index] if worker.index < len(self._udp) else None
        served = {a.split()[-1].partition(":")[0] for a in worker.listening if a.endswith(f":{self.config.sip_port}")}
        if sock is not None and "tcp" in served and "udp" not in served:
            # its SIP RA serves TCP only on this port: nobody would read the UDP socket. (With no
            # SIP RA yet, as before `bin/slee deploy`, the socket waits for the one deployed.)
            sock.close()
            self._udp[worker.index] = None
        endpoint = read_endpoint(worker.data_dir) or {}
        worker.url = f"http://{endpoint.get('host', '127.0.0.1')}:{endpoint.get('port')}"
        worker.token = read_token(worker.data_dir)
        print(f"  worker {worker.index} up (pid {process.pid})", file=sys.stderr, flush=True)
        task = asyncio.get_running_loop().create_task(self._watch(worker, process))
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)

    async def _watch(self, worker: _Worker, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        while await process.stdout.readline():  # keep its stdout drained
            pass
        code = await process.wait()
        if self._stopping or self._stop.is_set():
            return
        now = time.monotonic()
        worker.deaths = [t for t in worker.deaths if now - t < RESTART_WINDOW] + [now]
        if len(worker.deaths) > MAX_RESTARTS:
            log.error("worker %d exited (status %s) %d times within %.0fs; stopping all workers",
                      worker.index, code, len(worker.deaths), RESTART_WINDOW)
            self._failed = True
            self.request_stop()
            return
        log.error("worker %d (pid %s) exited with status %s; restarting it from its store",
                  worker.index, process.pid, code)
        try:
            await self._spawn(worker)
        except StartError as exc:
            log.error("%s; stopping all workers", exc)
            self._failed = True
            self.request_stop()

    # -- management API ------------------------------------------------------------------------
    async def _call(self, worker: _Worker, method: str, path: str, *, query: Any = None,
                    body: bytes | None = None) -> tuple[int, bytes]:
        assert self._session is not None
        try:
            async with self._session.request(method, worker.url + path, params=query, data=body,
                                             headers=worker.headers) as response:
                return response.status, await response.read()
        except aiohttp.ClientError as exc:
            return 503, json.dumps({"error": f"worker {worker.index} unreachable: {exc}"}).encode()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if request.method == "GET":
            if path == "/v1/status":
                return await self._status()
            query = {k: v for k, v in request.query.items() if k != "worker"}
            worker = self._worker_from(request.query.get("worker", "0"))
            status, out = await self._call(worker, "GET", path, query=query)
            return web.Response(status=status, body=out, content_type="application/json")
        body = await request.read()
        if path == "/v1/stop":
            asyncio.get_running_loop().call_soon(self.request_stop)
            return web.json_response({"stopping": True, "pid": os.getpid()})
        owner = self._owner_of_operation(path, body)
        if owner is not None:
            status, out = await self._call(owner, request.method, path, body=body)
            return web.Response(status=status, body=out, content_type="application/json")
        return await self._broadcast(request, body)

    async def _broadcast(self, request: web.Request, body: bytes) -> web.StreamResponse:
        """A change goes to every worker in turn; worker 0 first, so a refusal touches none.

        Long operations answer as a stream of progress lines (application/x-ndjson); their
        progress is relayed as it happens, each line naming its worker.
        """
        assert self._session is not None
        stream: web.StreamResponse | None = None
        first: tuple[int, bytes] | None = None
        for worker in self.workers:
            try:
                async with self._session.request(request.method, worker.url + request.path, data=body,
                                                 headers=worker.headers) as answer:
                    if answer.content_type == "application/x-ndjson":
                        if stream is None:
                            stream = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
                            await stream.prepare(request)
                        final = b""
                        async for raw in answer.content:
                            line = raw.strip()
                            if not line:
                                continue
                            item = json.loads(line)
                            if "progress" in item and self.count > 1:
                                line = json.dumps({"progress": f"worker {worker.index}: {item['progress']}"}).encode()
                                await stream.write(line + b"\n")
                            elif "progress" not in item:
                                final = line
                        outcome = json.loads(final) if final else {"error": "no result"}
                        status = int(outcome.get("status") or 500) if "error" in outcome else 200
                        out = final or json.dumps({"error": f"worker {worker.index} ended its answer early"}).encode()
                    else:
                        status, out = answer.status, await answer.read()
            except aiohttp.ClientError as exc:
                status, out = 503, json.dumps({"error": f"worker {worker.index} unreachable: {exc}"}).encode()
            if status >= 400 and first is not None:
                error = {"error": f"worker {worker.index} refused what worker 0 accepted: {_error_text(out)}; "
                                  "the workers now differ: fix the cause and repeat the command"}
                if stream is not None:
                    await stream.write(json.dumps({**error, "status": 500}).encode() + b"\n")
                    await stream.write_eof()
                    return stream
                return web.json_response(error, status=500)
            if first is None:
                first = (status, out)
                if status >= 400:
                    break
        assert first is not None
        if stream is not None:
            await stream.write(first[1] + b"\n")
            await stream.write_eof()
            return stream
        return web.Response(status=first[0], body=first[1], content_type="application/json")

    def _worker_from(self, text: str) -> _Worker:
        if not text.isdigit() or int(text) >= self.count:
            raise web.HTTPBadRequest(text=json.dumps({"error": f"worker must be 0..{self.count - 1}, not {text!r}"}),
                                     content_type="application/json")
        return self.workers[int(text)]

    def _owner_of_operation(self, path: str, body: bytes) -> _Worker | None:
        """A service operation about one address-of-record goes to the worker that owns it."""
        if path != "/v1/services/op":
            return None
        try:
            aor = (json.loads(body).get("args") or {}).get("aor")
        except (ValueError, AttributeError):
            return None
        if not isinstance(aor, str):
            return None
        from slee.transport import shard_of_uri

        try:
            return self.workers[shard_of_uri(aor, self.count, self.owner_hash)]
        except Exception:  # not a URI: let every worker say so
            return None

    async def _status(self) -> web.Response:
        answers = await asyncio.gather(*(self._call(w, "GET", "/v1/status") for w in self.workers))
        docs: list[dict[str, Any]] = []
        for worker, (status, out) in zip(self.workers, answers, strict=True):
            try:
                doc = json.loads(out) if status == 200 else {"error": _error_text(out)}
            except ValueError:
                doc = {"error": out.decode(errors="replace")[:200]}
            docs.append({"index": worker.index, "restarts": len(worker.deaths), **doc})
        head = {k: v for k, v in docs[0].items() if k not in ("index", "restarts", "worker")}
        head.update(pid=os.getpid(), data_dir=str(self.data_dir), started=self.started_at,
                    uptime=round(time.time() - self.started_at, 3), listening=self._mgmt + self.workers[0].listening,
                    store=f"sqlite per worker ({self.data_dir}/worker-*/slee.db)", workers=docs,
                    datagrams=self.datagrams, owner_hash=self.owner_hash)
        return web.json_response(head)

    # -- run and stop ----------------------------------------------------------------------------
    def request_stop(self) -> None:
        self._stop.set()

    async def wait(self) -> None:
        await self._stop.wait()

    async def stop(self) -> int:
        log.info("stopping %d workers", self.count)
        self._stopping = True
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        remove_endpoint(self.data_dir)
        running = [w.process for w in self.workers if w.process is not None and w.process.returncode is None]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        if running:
            await asyncio.wait([asyncio.ensure_future(p.wait()) for p in running],
                                         timeout=self.config.shutdown_timeout + 10)
            for process in running:
                if process.returncode is None:
                    log.error("worker pid %d did not stop in time; killing it", process.pid)
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
                    await process.wait()
        for task in list(self._watchers):
            task.cancel()
        if self._session is not None:
            await self._session.close()
            self._session = None
        for sock in self._udp:
            if sock is not None:
                sock.close()
        self._udp = []
        if self.run_dir:
            shutil.rmtree(self.run_dir, ignore_errors=True)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        log.info("stopped")
        return 1 if self._failed else 0


def _error_text(out: bytes) -> str:
    try:
        return str(json.loads(out).get("error") or out[:200])
    except (ValueError, AttributeError):
        return out.decode(errors="replace")[:200]


async def serve_workers(config: ServerConfig, count: int) -> int:
    """Run the supervisor until SIGINT/SIGTERM or a stop call; print one ready line."""
    supervisor = Supervisor(config, count)

    def ready_line(addresses: list[str]) -> str:
        return (f"slee {__version__} ready (pid {os.getpid()}, data {supervisor.data_dir}, {count} workers); "
                "listening on: " + ", ".join(addresses))

    return await run_until_stopped(supervisor, ready_line)


def _stop_with_parent() -> None:
    """Linux: SIGTERM this worker when the supervisor dies, even by SIGKILL (no orphans)."""
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        if os.getppid() == 1:  # the supervisor died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)


def _worker_main(spec: dict[str, Any]) -> int:
    """One worker process: a plain container with WorkerInfo, its API on a free loopback port."""
    index = spec["index"]
    configure_logging(spec.get("log_level", "info"), prefix=f"w{index} ")
    _stop_with_parent()
    config = ServerConfig(
        data_dir=Path(spec["data_dir"]), mgmt_port=0, sip_host=spec["sip_host"], sip_port=spec["sip_port"],
        deploy=tuple(spec["deploy"]), recipes_dir=Path(spec["recipes_dir"]) if spec["recipes_dir"] else None,
        variables=spec["variables"], gc_threshold=spec["gc_threshold"], shutdown_timeout=spec["shutdown_timeout"],
        worker=WorkerInfo(index, spec["count"], spec["run_dir"], spec.get("owner_hash", "fnv1a"), spec.get("udp_fd")),
        loop=spec.get("loop", "auto"),
        durability=spec["durability"])
    try:
        return run_loop(serve(config), config.loop)
    except Exception as exc:  # the supervisor reports the exit status; the reason goes to the log
        log.error("worker %d cannot start: %s", index, exc)
        return 1


__all__ = ["Supervisor", "serve_workers"]

if __name__ == "__main__":
    sys.exit(_worker_main(json.loads(sys.argv[1])))
