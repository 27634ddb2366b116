"""``bin/slee start --workers 2 --deploy presence``: two container processes on one SIP port.

Real processes, real sockets. Users are picked so that each worker owns some of them. The
kernel steers each UDP datagram to the worker owning it (slee.transport._steer); a data dir
laid out before that (owners by crc32) has datagrams spread at random, and TCP connections
go by address hash, so there messages cross between workers. What a user sees must not change: registrations, presence, messages,
management through one API, a crashed worker restarted from its store, one stop for all.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from slee.transport import shard_of_uri
from tests.e2e.server import ROOT, free_port, running_server
from tests.e2e.test_presence_sip import DOMAIN, Phone, pidf
from tests.support.sipclient import SipTestClient

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

WORKERS = ["--workers", "2"]


def users(count_per_worker: int, owner_hash: str = "fnv1a") -> list[list[str]]:
    """Per worker index, user names it owns."""
    owned: list[list[str]] = [[], []]
    n = 0
    while min(map(len, owned)) < count_per_worker:
        name = f"user{n}"
        bucket = owned[shard_of_uri(f"sip:{name}@{DOMAIN}", 2, owner_hash)]
        if len(bucket) < count_per_worker:
            bucket.append(name)
        n += 1
    return owned


def api(server, path: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(server.mgmt_url + path, data=data, method="POST" if data else "GET",
                                     headers={"Authorization": f"Bearer {server.token}",
                                              "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def transport_stats(status: dict) -> list[dict]:
    out = []
    for worker in status["workers"]:
        entity = next(e for e in worker["ra_entities"] if e["name"] == "sip")
        out.append(entity["stats"]["transport"])
    return out


def cli(server, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(ROOT / "bin" / "slee"), "--data", str(server.data_dir), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("layout", ["steered", "legacy"])
def test_presence_across_two_workers(tmp_path: Path, layout: str) -> None:
    owner_hash = "fnv1a" if layout == "steered" else "crc32"
    if layout == "legacy":  # a data dir a worker group laid out before steering
        (tmp_path / "data").mkdir()
        (tmp_path / "data" / "workers.json").write_text('{"count": 2}\n')
    owned = users(2, owner_hash)
    a0, b0 = owned[0]
    a1, b1 = owned[1]

    async def scenario(server) -> None:
        phones = {u: await Phone.open(server, u) for u in (a0, b0, a1, b1)}
        try:
            for phone in phones.values():
                await phone.register()
            # b0 watches a1 and b1 watches a0: every subscription lives on the other user's worker
            for watcher, target in ((b0, a1), (b1, a0), (b0, a0)):
                await phones[watcher].subscribe(phones[target])
                first = await phones[watcher].notify(lambda m, t=target: f"{t}@" in str(m.headers.get("From")))
                assert b"<basic>open</basic>" in first.body  # from the registration state
            etag = (await phones[a1].publish(pidf(a1, note="<note>in a meeting</note>"))).headers.get("SIP-ETag")
            assert etag
            await phones[a0].publish(pidf(a0, note="<note>lunch</note>"))
            got = await phones[b0].notify(lambda m: b"in a meeting" in m.body)
            assert f"sip:{a1}@{DOMAIN}" in got.body.decode()
            assert b"lunch" in (await phones[b1].notify(lambda m: b"lunch" in m.body)).body
            assert b"lunch" in (await phones[b0].notify(lambda m: b"lunch" in m.body)).body
            # NOTIFY answers found the worker that sent each NOTIFY: none is retransmitted
            await asyncio.sleep(1.2)  # > T1 * 2: a lost 200 would have caused a retransmission
            for phone in phones.values():
                notifies = [r for r in phone.c.received if getattr(r.message, "method", None) == "NOTIFY"]
                keys = [(r.message.call_id, r.message.cseq.seq) for r in notifies]
                assert len(keys) == len(set(keys)), f"{phone.user} got a NOTIFY twice"
        finally:
            for phone in phones.values():
                await phone.c.close()

    with running_server("presence", tmp_path, extra_args=WORKERS) as server:
        asyncio.run(asyncio.wait_for(scenario(server), 60))
        status = api(server, "/v1/status")
        assert [w["index"] for w in status["workers"]] == [0, 1]
        assert len({w["pid"] for w in status["workers"]} | {status["pid"]}) == 3
        assert (status["datagrams"], status["owner_hash"]) == (("steered", "fnv1a") if layout == "steered"
                                                                else ("random", "crc32"))
        shown = cli(server, "status")
        assert shown.returncode == 0, shown.stderr
        assert ("steered by the kernel to their owner, owners by fnv1a" if layout == "steered"
                else "spread at random, owners by crc32") in shown.stdout
        stats = transport_stats(status)
        assert all(s["udp_datagrams_in"] > 0 for s in stats)
        if layout == "steered":  # every datagram reached its owner: nothing to hand over
            assert sum(s["handed_over"] for s in stats) == 0, stats
        else:
            assert sum(s["handed_over"] for s in stats) > 0 and sum(s["taken_over"] for s in stats) > 0
        assert sum(s["handed_over"] for s in stats) == sum(s["taken_over"] for s in stats)
        # an operation about one AOR is answered by the worker that owns it
        shown = cli(server, "presence", "show", f"sip:{a1}@{DOMAIN}", "--json")
        assert shown.returncode == 0, shown.stderr
        assert "in a meeting" in shown.stdout


def test_message_to_a_tcp_user_goes_through_the_worker_holding_its_connection(tmp_path: Path) -> None:
    """The kernel picks the worker that accepts a connection; for each user, connect until the
    worker that does NOT own the user holds it, then register over it and send it a MESSAGE."""
    owned = users(1)

    def open_counts(server) -> list[int]:
        return [s["connections_open"] for s in transport_stats(api(server, "/v1/status"))]

    async def foreign_connection(server, owner: int) -> SipTestClient:
        for _ in range(40):
            before = open_counts(server)
            tcp = await SipTestClient.connect("tcp", *server.sip_address, auto_answer={"MESSAGE": 200})
            await asyncio.sleep(0.05)
            after = await asyncio.to_thread(open_counts, server)
            if after[1 - owner] > before[1 - owner]:
                return tcp
            await tcp.close()
            await asyncio.sleep(0.05)
        raise AssertionError("the kernel never gave a connection to the other worker")

    async def scenario(server) -> None:
        for owner in (0, 1):
            user = owned[owner][0]
            tcp = await foreign_connection(server, owner)
            phone = Phone(tcp, user)
            await phone.request("REGISTER", f"sip:{DOMAIN}", headers=[("Expires", "600")], status=200)
            sender = await Phone.open(server, f"sender{owner}")
            await sender.request("MESSAGE", phone.aor, to=phone.aor, status=200,
                                 headers=[("Content-Type", "text/plain")], body=f"hello {user}".encode())
            message = await tcp.receive_request("MESSAGE")
            assert message.body == f"hello {user}".encode()
            await tcp.close()
            await sender.c.close()

    with running_server("presence", tmp_path, extra_args=WORKERS) as server:
        asyncio.run(asyncio.wait_for(scenario(server), 90))
        stats = transport_stats(api(server, "/v1/status"))
        # each owner answered the REGISTER and forwarded the MESSAGE through the other worker
        assert [s["sent_by_worker"] >= 2 for s in stats] == [True, True]
        assert [s["sent_for_worker"] >= 2 for s in stats] == [True, True]
        assert sum(s["connections_outbound"] for s in stats) == 0


def test_management_restart_and_stop(tmp_path: Path) -> None:
    user = users(1)[1][0]

    async def register(server) -> None:
        phone = await Phone.open(server, user)
        await phone.register(expires=3600)
        await phone.c.close()

    async def bindings(server) -> list[str]:
        phone = await Phone.open(server, user)
        ok = await phone.request("REGISTER", f"sip:{DOMAIN}", status=200)  # a query: no Contact
        await phone.c.close()
        return ok.headers.get_all("Contact")

    with running_server("presence", tmp_path, extra_args=WORKERS) as server:
        asyncio.run(register(server))
        # a refused change is refused once, by worker 0, and changes nothing
        bad = cli(server, "deploy", "no-such-recipe")
        assert bad.returncode != 0 and "no-such-recipe" in (bad.stdout + bad.stderr)
        assert "worker 1 refused" not in bad.stdout + bad.stderr
        # a change reaches every worker
        traced = cli(server, "trace", "set", "ra/sip", "fine")
        assert traced.returncode == 0, traced.stderr
        for index in (0, 1):
            levels = json.loads(urllib.request.urlopen(urllib.request.Request(
                f"{server.mgmt_url}/v1/trace?worker={index}",
                headers={"Authorization": f"Bearer {server.token}"}), timeout=10).read())
            assert "fine" in json.dumps(levels).lower()
        # worker 1 killed: the supervisor restarts it from its store, the binding survives
        status = api(server, "/v1/status")
        victim = status["workers"][1]["pid"]
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while True:
            status = api(server, "/v1/status")
            w1 = status["workers"][1]
            if w1.get("pid") not in (None, victim) and "error" not in w1:
                break
            assert time.monotonic() < deadline, status["workers"][1]
            time.sleep(0.3)
        assert w1["restarts"] == 1
        shown = cli(server, "status")
        assert shown.returncode == 0, shown.stderr
        rows = shown.stdout.split("WORKERS", 1)[1].splitlines()[2:4]
        assert [r.split()[:3] for r in rows] == [["0", str(status["workers"][0]["pid"]), "up"],
                                                  ["1", str(w1["pid"]), "up"]]
        assert rows[1].split()[3] == "1"  # restarts
        contacts = asyncio.run(bindings(server))
        assert any(user in str(c) for c in contacts), contacts
        # the restarted worker inherited its socket, still its slot: nothing was handed over
        assert sum(s["handed_over"] for s in transport_stats(api(server, "/v1/status"))) == 0
        pids = [w["pid"] for w in status["workers"]]
        # the data dir now belongs to a group of 2: another count is refused with the reason
        stopped = cli(server, "stop")
        assert stopped.returncode == 0, stopped.stderr
        server.process.wait(timeout=30)
        for pid in pids:
            assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
    again = subprocess.run([str(ROOT / "bin" / "slee"), "start", "--workers", "3", "--data", str(server.data_dir),
                            "--sip-port", str(free_port()), "--mgmt-port", "0"], cwd=ROOT, capture_output=True,
                           text=True, timeout=60)
    assert again.returncode != 0 and "served by 2 workers" in again.stderr
    single = subprocess.run([str(ROOT / "bin" / "slee"), "start", "--data", str(server.data_dir),
                             "--sip-port", str(free_port()), "--mgmt-port", "0"], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert single.returncode != 0 and "--workers" in single.stderr


def test_deployed_after_start_the_workers_get_their_datagrams(tmp_path: Path) -> None:
    """``bin/slee start --workers 2``, then ``bin/slee deploy presence``: the SIP RA deployed
    later takes the socket its worker inherited, and the kernel steers to it from then on."""
    owned = users(2)

    async def register_all(server) -> None:
        for name in owned[0] + owned[1]:
            phone = await Phone.open(server, name)
            await phone.register(expires=600)
            await phone.c.close()

    with running_server("", tmp_path, extra_args=WORKERS) as server:
        deployed = cli(server, "deploy", "presence")
        assert deployed.returncode == 0, deployed.stderr
        asyncio.run(asyncio.wait_for(register_all(server), 60))
        stats = transport_stats(api(server, "/v1/status"))
        assert [s["udp_datagrams_in"] for s in stats] == [2, 2]  # each its own two users
        assert sum(s["handed_over"] for s in stats) == 0
