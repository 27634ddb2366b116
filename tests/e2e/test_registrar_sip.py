"""End to end: the registrar and proxy in a real ``bin/slee start --deploy registrar`` process,
driven over loopback UDP/TCP with SipTestClient."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from slee.sip import build_credentials
from tests.e2e.server import ROOT, running_server
from tests.support.sipclient import SipTestClient

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


async def register(client: SipTestClient, server, user: str, *, contact: str | None = None,
                   expires: int | None = 600, cseq: int = 1, call_id: str | None = None,
                   headers: tuple = ()) -> object:
    extra = list(headers)
    if expires is not None:
        extra.append(("Expires", str(expires)))
    contact = contact if contact is not None else f"<sip:{user}@127.0.0.1:{client.local_port}>"
    client.send(client.request_bytes("REGISTER", "sip:example.com", from_uri=f"sip:{user}@example.com",
                                     contact=contact or None, cseq=cseq,
                                     call_id=call_id or f"reg-{user}-{client.local_port}", headers=extra))
    return await client.receive_response()


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def test_register_refresh_query_wildcard_423_and_cseq(tmp_path: Path):
    async def scenario(s) -> None:
        a = await SipTestClient.connect("udp", *s.sip_address)
        r = await register(a, s, "alice", expires=600)
        assert r.status == 200 and r.contacts[0].params["expires"] == "600" and r.headers.get("Date")
        second = f"<sip:alice@127.0.0.1:{a.local_port};transport=tcp>"
        r = await register(a, s, "alice", contact=second, expires=300, cseq=2)
        assert r.status == 200 and len(r.contacts) == 2
        r = await register(a, s, "alice", expires=900, cseq=3)  # refresh the first
        assert sorted(c.params["expires"] for c in r.contacts) in (["300", "900"], ["299", "900"])
        r = await register(a, s, "alice", contact="", expires=None, cseq=4)  # query
        assert r.status == 200 and len(r.contacts) == 2
        r = await register(a, s, "alice", expires=10, cseq=5)
        assert r.status == 423 and r.headers.get("Min-Expires") == "60"
        r = await register(a, s, "alice", expires=600, cseq=3)  # same Call-ID, CSeq not higher
        assert r.status == 500
        r = await register(a, s, "alice", contact="*", expires=0, cseq=6)
        assert r.status == 200 and r.contacts == []
        r = await register(a, s, "alice", contact="", expires=None, cseq=7)
        assert r.contacts == []
        await a.close()

    with running_server("registrar", tmp_path) as s:
        run(scenario(s))


def test_many_users_and_message_through_the_proxy_over_udp_and_tcp(tmp_path: Path):
    async def scenario(s) -> None:
        clients = {}
        for i in range(10):
            transport = "tcp" if i % 2 else "udp"
            c = await SipTestClient.connect(transport, *s.sip_address)
            contact = f"<sip:u{i}@127.0.0.1:{c.local_port};transport={transport}>"
            r = await register(c, s, f"u{i}", contact=contact)
            assert r.status == 200
            clients[i] = c
        body = bytes(range(256))  # binary: relayed untouched
        for sender, receiver in ((0, 1), (1, 0), (2, 3)):
            src, dst = clients[sender], clients[receiver]
            src.send(src.request_bytes("MESSAGE", f"sip:u{receiver}@example.com", from_uri=f"sip:u{sender}@example.com",
                                       to_uri=f"sip:u{receiver}@example.com", body=body,
                                       headers=[("Content-Type", "application/octet-stream")]))
            got = await dst.receive(lambda r: getattr(r.message, "method", None) == "MESSAGE")
            assert got.message.body == body
            assert got.message.max_forwards == 69
            dst.reply(got, 202)
            assert (await src.receive_response()).status == 202
        # a user that never registered: 404; one that unregistered: 480
        c = clients[4]
        c.send(c.request_bytes("MESSAGE", "sip:ghost@example.com", from_uri="sip:u4@example.com",
                               to_uri="sip:ghost@example.com", body=b"x"))
        assert (await c.receive_response()).status == 404
        await register(clients[5], s, "u5", contact="*", expires=0, cseq=2,
                       call_id=f"reg-u5-{clients[5].local_port}")
        c.send(c.request_bytes("MESSAGE", "sip:u5@example.com", from_uri="sip:u4@example.com",
                               to_uri="sip:u5@example.com", body=b"x"))
        assert (await c.receive_response()).status == 480
        c.send(c.request_bytes("MESSAGE", "sip:u0@example.com", from_uri="sip:u4@example.com",
                               to_uri="sip:u0@example.com", body=b"x", max_forwards=0))
        assert (await c.receive_response()).status == 483
        for c in clients.values():
            await c.close()

    with running_server("registrar", tmp_path) as s:
        run(scenario(s))


def test_bindings_expire_on_the_timer(tmp_path: Path):
    async def scenario(s) -> None:
        a = await SipTestClient.connect("udp", *s.sip_address)
        assert (await register(a, s, "alice", expires=2)).status == 200
        await asyncio.sleep(3.5)
        b = await SipTestClient.connect("udp", *s.sip_address)
        b.send(b.request_bytes("MESSAGE", "sip:alice@example.com", from_uri="sip:bob@example.com",
                               to_uri="sip:alice@example.com", body=b"x"))
        assert (await b.receive_response()).status == 480
        r = await register(a, s, "alice", contact="", expires=None, cseq=2)
        assert r.contacts == []

    with running_server("registrar", tmp_path, extra_args=("--set", "min_expires=1")) as s:
        run(scenario(s))


def test_registrations_survive_a_restart(tmp_path: Path):
    data = tmp_path / "data"
    ports: list[int] = []

    async def first(s) -> None:
        for i in range(5):
            c = await SipTestClient.connect("udp", *s.sip_address)
            ports.append(c.local_port)
            assert (await register(c, s, f"user{i}", contact=f"<sip:user{i}@127.0.0.1:{40000 + i}>")).status == 200
            await c.close()

    async def second(s) -> None:
        c = await SipTestClient.connect("udp", *s.sip_address)
        for i in range(5):
            r = await register(c, s, f"user{i}", contact="", expires=None, cseq=1, call_id=f"q{i}")
            assert [str(x.uri) for x in r.contacts] == [f"sip:user{i}@127.0.0.1:{40000 + i}"]
            assert 0 < int(r.contacts[0].params["expires"]) <= 600

    with running_server("registrar", tmp_path, data_dir=data) as s:
        run(first(s))
        port = s.sip_port  # the RA entity is restored with its own configuration: same port
    with running_server("registrar", tmp_path, data_dir=data, sip_port=port) as s:
        run(second(s))


def test_digest_auth_with_users_cli(tmp_path: Path):
    async def scenario(s) -> None:
        a = await SipTestClient.connect("udp", *s.sip_address)
        r = await register(a, s, "alice")
        assert r.status == 401
        challenges = {c.params["algorithm"]: c.params for c in r.www_authenticate}
        assert set(challenges) == {"MD5", "SHA-256"}
        for n, algorithm in enumerate(("SHA-256", "MD5")):
            creds = build_credentials(challenges[algorithm], username="alice", method="REGISTER",
                                      uri="sip:example.com", password="wonderland", nc=n + 1)
            r = await register(a, s, "alice", cseq=2 + n, headers=(("Authorization", creds),))
            assert r.status == 200, (algorithm, r)
        wrong = build_credentials(challenges["MD5"], username="alice", method="REGISTER", uri="sip:example.com",
                                  password="nope", nc=9)
        assert (await register(a, s, "alice", cseq=9, headers=(("Authorization", wrong),))).status == 401

    with running_server("registrar", tmp_path, extra_args=("--set", "auth=on")) as s:
        done = subprocess.run([sys.executable, "-m", "slee.cli", "--data", str(s.data_dir), "users", "add", "alice",
                               "--domain", "example.com", "--password", "wonderland"], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
        if done.returncode == 2 and "invalid choice" in done.stderr:
            from slee.cli_sip import add_user
            from slee.management import ManagementClient

            add_user(ManagementClient(s.data_dir), "alice", "example.com", "wonderland")
        else:
            assert done.returncode == 0, done.stderr
        time.sleep(0.1)
        run(scenario(s))


def _slee(server, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(ROOT / "bin" / "slee"), "--data", str(server.data_dir), *args], cwd=ROOT,
                          input=stdin, capture_output=True, text=True, timeout=60)


def test_users_cli_add_list_passwd_remove_then_register(tmp_path: Path):
    """``bin/slee users`` end to end against the running server, then REGISTERs with digest."""

    async def attempt(s, user: str, password: str, cseq: int) -> int:
        c = await SipTestClient.connect("udp", *s.sip_address)
        try:
            r = await register(c, s, user, cseq=cseq)
            assert r.status == 401
            challenge = {ch.params["algorithm"]: ch.params for ch in r.www_authenticate}["MD5"]
            creds = build_credentials(challenge, username=user, method="REGISTER", uri="sip:example.com",
                                      password=password)
            return (await register(c, s, user, cseq=cseq + 1, headers=(("Authorization", creds),))).status
        finally:
            await c.close()

    with running_server("registrar", tmp_path, extra_args=("--set", "auth=on", "--set", "domains=example.com")) as s:
        added = _slee(s, "users", "add", "alice", "--domain", "example.com", "--password", "wonderland")
        assert added.returncode == 0 and "alice@example.com" in added.stdout, added.stderr
        added = _slee(s, "users", "add", "bob", stdin="builder\n")  # the domain: the first served one
        assert added.returncode == 0 and "bob@example.com" in added.stdout, added.stderr
        dup = _slee(s, "users", "add", "alice@example.com", "--password", "x")
        assert dup.returncode != 0  # already there
        listed = json.loads(_slee(s, "--json", "users", "list").stdout)
        assert sorted(u["user"] for u in listed["users"]) == ["alice@example.com", "bob@example.com"]
        assert "wonderland" not in _slee(s, "--json", "profiles", "get", "subscribers", "alice@example.com").stdout

        assert run(attempt(s, "alice", "wonderland", 1)) == 200
        assert run(attempt(s, "bob", "builder", 11)) == 200
        assert run(attempt(s, "alice", "wrong", 21)) == 401

        changed = _slee(s, "users", "passwd", "alice@example.com", stdin="looking-glass\n")
        assert changed.returncode == 0, changed.stderr
        assert run(attempt(s, "alice", "wonderland", 31)) == 401
        assert run(attempt(s, "alice", "looking-glass", 41)) == 200

        removed = _slee(s, "users", "remove", "bob@example.com")
        assert removed.returncode == 0, removed.stderr
        listed = json.loads(_slee(s, "--json", "users", "list").stdout)
        assert [u["user"] for u in listed["users"]] == ["alice@example.com"]
        assert run(attempt(s, "bob", "builder", 51)) == 401
