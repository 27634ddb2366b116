"""Hot upgrade of presence under load: ``bin/slee upgrade presence PRESENCE-V2 --migrate``
while PUBLISH and SUBSCRIBE/refresh traffic keeps going.

Zero failed transactions; every existing subscription keeps its dialog and goes on receiving
NOTIFYs with increasing CSeq, now from the 2.0 code (``X-Presence-Service``); new
subscriptions work; version 1.0 is INACTIVE afterwards and can be uninstalled.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.e2e.server import ROOT, ServerInfo, running_server
from tests.support.sipclient import SipTestClient

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

DOMAIN = "example.test"
USERS = [f"user{i}" for i in range(6)]
TIMEOUT = 5.0


def pidf(user: str, note: str) -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<presence xmlns="urn:ietf:params:xml:ns:pidf" '
            f'entity="sip:{user}@{DOMAIN}"><tuple id="t"><status><basic>open</basic></status>'
            f"<note>{note}</note></tuple></presence>").encode()


def slee(server: ServerInfo, *args: str, timeout: float = 120) -> str:
    done = subprocess.run([sys.executable, "-m", "slee.cli", "--data", str(server.data_dir), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@dataclass
class Watch:
    """One subscription dialog seen from the watcher: its NOTIFYs in arrival order."""

    watcher: str
    presentity: str
    call_id: str
    from_tag: str
    to_tag: str = ""
    target: str = ""
    cseq: int = 1
    notifies: list = field(default_factory=list)


class Load:
    """Publishers and watchers over UDP; counts every transaction and every failure."""

    def __init__(self, server: ServerInfo) -> None:
        self.server = server
        self.sent = 0
        self.failed: list[str] = []
        self.watches: dict[str, Watch] = {}
        self.etags: dict[str, str | None] = dict.fromkeys(USERS)
        self.clients: dict[str, SipTestClient] = {}
        self.cseq = 100
        self.lock = asyncio.Lock()
        self.closing = False

    async def open(self) -> None:
        for user in USERS:
            self.clients[user] = await SipTestClient.connect("udp", *self.server.sip_address)
            asyncio.get_running_loop().create_task(self._pump(user))

    async def close(self) -> None:
        self.closing = True
        for c in self.clients.values():
            await c.close()

    async def _pump(self, user: str) -> None:
        """Answer NOTIFYs 200 and remember them per dialog."""
        client = self.clients[user]
        while not self.closing:
            try:
                got = await client.receive(lambda r: getattr(r.message, "method", None) == "NOTIFY", timeout=1.0)
            except TimeoutError:
                continue
            except Exception:
                return
            client.reply(got, 200)
            watch = self.watches.get(got.message.call_id)
            if watch is not None:
                watch.notifies.append(got.message)

    async def _transaction(self, user: str, method: str, uri: str, *, to: str, headers, body=b"",
                           call_id: str | None = None, from_tag: str | None = None, to_tag: str | None = None,
                           cseq: int | None = None, label: str = ""):
        client = self.clients[user]
        async with self.lock:  # one request at a time per process keeps responses unambiguous
            self.cseq += 1
            self.sent += 1
            data = client.request_bytes(method, uri, from_uri=f"sip:{user}@{DOMAIN}", to_uri=to,
                                        cseq=cseq or self.cseq, call_id=call_id, from_tag=from_tag, to_tag=to_tag,
                                        contact=f"<sip:{user}@127.0.0.1:{client.local_port}>", headers=headers,
                                        body=body)
            client.send(data)
            try:
                resp = await client.receive(lambda r: getattr(r.message, "status", None) is not None
                                            and r.message.status >= 200, timeout=TIMEOUT)
            except TimeoutError:
                self.failed.append(f"{label or method} {uri}: timeout")
                return None
        if not 200 <= resp.message.status < 300:
            self.failed.append(f"{label or method} {uri}: {resp.message.status} {resp.message.reason}")
        return resp.message

    async def subscribe(self, watcher: str, presentity: str) -> Watch:
        call_id = f"w-{watcher}-{presentity}-{time.monotonic_ns()}"
        watch = Watch(watcher, presentity, call_id, from_tag=f"t{time.monotonic_ns()}")
        self.watches[f"{call_id}@test"] = watch  # build_request appends "@test" to the Call-ID
        aor = f"sip:{presentity}@{DOMAIN}"
        resp = await self._transaction(watcher, "SUBSCRIBE", aor, to=aor, call_id=call_id, from_tag=watch.from_tag,
                                       cseq=watch.cseq, headers=[("Event", "presence"), ("Expires", "600")])
        assert resp is not None and resp.status == 200
        watch.to_tag = resp.to.tag
        watch.target = str(resp.contacts[0].uri)
        return watch

    async def refresh(self, watch: Watch) -> None:
        watch.cseq += 1
        aor = f"sip:{watch.presentity}@{DOMAIN}"
        await self._transaction(watch.watcher, "SUBSCRIBE", watch.target, to=aor, call_id=watch.call_id,
                                from_tag=watch.from_tag, to_tag=watch.to_tag, cseq=watch.cseq, label="refresh",
                                headers=[("Event", "presence"), ("Expires", "600")])

    async def publish(self, user: str, note: str) -> None:
        headers = [("Event", "presence"), ("Expires", "600"), ("Content-Type", "application/pidf+xml")]
        if self.etags[user]:
            headers.append(("SIP-If-Match", self.etags[user]))
        aor = f"sip:{user}@{DOMAIN}"
        resp = await self._transaction(user, "PUBLISH", aor, to=aor, headers=headers, body=pidf(user, note))
        if resp is not None and resp.status == 200:
            self.etags[user] = resp.headers.get("SIP-ETag")

    async def run(self, stop: asyncio.Event) -> int:
        """PUBLISH (modify by ETag) and in-dialog refreshes round-robin until ``stop``."""
        rounds = 0
        watches = list(self.watches.values())
        while not stop.is_set():
            rounds += 1
            for user in USERS:
                await self.publish(user, f"round {rounds}")
            for watch in watches[rounds % 3::3]:
                await self.refresh(watch)
            await asyncio.sleep(0.02)
        return rounds


def presence_v2(tmp_path: Path) -> Path:
    """Version 2.0 of the presence unit: services/presence with its version bumped (its
    NOTIFYs then say X-Presence-Service: slee.presence/2.0), so the two never drift apart."""
    unit = tmp_path / "presence-v2"
    shutil.copytree(ROOT / "services" / "presence", unit, ignore=shutil.ignore_patterns("tests", "__pycache__"))
    manifest = unit / "deployable-unit.yaml"
    text = manifest.read_text()
    assert 'version: "1.0"' in text
    manifest.write_text(text.replace('version: "1.0"', 'version: "2.0"', 1))
    sbbs = unit / "sbbs.py"
    code = sbbs.read_text()
    assert 'VENDOR, VERSION = "slee.presence", "1.0"' in code
    sbbs.write_text(code.replace('VENDOR, VERSION = "slee.presence", "1.0"', 'VENDOR, VERSION = "slee.presence", "2.0"'))
    return unit


@pytest.mark.parametrize("workers", [1, 2], ids=["1-worker", "2-workers"])
def test_hot_upgrade_with_migration_under_load(tmp_path: Path, workers: int):
    """With 2 workers the upgrade goes to each in turn while both carry traffic."""
    async def scenario(server: ServerInfo) -> None:
        load = Load(server)
        await load.open()
        try:
            for user in USERS:
                await load.publish(user, "start")
            for i, watcher in enumerate(USERS):  # each watches the next two
                for presentity in (USERS[(i + 1) % len(USERS)], USERS[(i + 2) % len(USERS)]):
                    await load.subscribe(watcher, presentity)
            await asyncio.sleep(0.5)
            stop = asyncio.Event()
            traffic = asyncio.get_running_loop().create_task(load.run(stop))
            await asyncio.sleep(1.0)
            before = load.sent
            out = await asyncio.to_thread(slee, server, "upgrade", "presence", str(v2), "--migrate")
            assert "migrated" in out.lower(), out
            await asyncio.sleep(1.5)  # traffic keeps going on the new code
            stop.set()
            rounds = await traffic
            assert load.sent - before > 20 and rounds > 3
            assert load.failed == [], load.failed[:10]

            # every existing subscription still gets NOTIFYs, now from 2.0, with increasing CSeq
            marks = {cid: len(w.notifies) for cid, w in load.watches.items()}
            for user in USERS:
                await load.publish(user, "after the upgrade")
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and any(
                    not any(b"after the upgrade" in n.body for n in w.notifies[marks[cid]:])
                    for cid, w in load.watches.items()):
                await asyncio.sleep(0.1)
            for watch in load.watches.values():
                seqs = [n.cseq.seq for n in watch.notifies]
                assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), (watch.call_id, seqs)
                last = watch.notifies[-1]
                assert b"after the upgrade" in last.body, watch.call_id
                assert last.headers.get("X-Presence-Service") == "slee.presence/2.0"
                assert watch.notifies[0].headers.get("X-Presence-Service") == "slee.presence/1.0"
            # a new subscription works on the new version
            fresh = await load.subscribe(USERS[0], USERS[3])
            deadline = time.monotonic() + 5
            while not fresh.notifies and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert fresh.notifies and b"after the upgrade" in fresh.notifies[0].body
            assert fresh.notifies[0].headers.get("X-Presence-Service") == "slee.presence/2.0"
            assert load.failed == [], load.failed[:10]
        finally:
            await load.close()

    v2 = presence_v2(tmp_path)
    with running_server("presence", tmp_path / "server", extra_args=["--workers", str(workers)]) as server:
        asyncio.run(scenario(server))
        status = slee(server, "status")
        v1 = [line for line in status.splitlines() if "presence" in line and "1.0" in line and "slee.presence" in line]
        assert v1 and all("INACTIVE" in line.upper() for line in v1), status
        out = slee(server, "uninstall", "presence/slee.presence/1.0")
        assert "1.0" in out, out
        assert "slee.presence/1.0" not in slee(server, "status").replace("PresenceRule/slee.presence/1.0", "")
