"""Presence end to end against a real container (`bin/slee start --deploy presence`), with the
loopback SipTestClient: register, subscribe, publish rich status, log off, restart."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.e2e.server import running_server
from tests.support.sipclient import SipTestClient

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

DOMAIN = "example.test"


def pidf(user: str, basic: str = "open", person: str = "", note: str = "") -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<presence xmlns="urn:ietf:params:xml:ns:pidf" '
            f'xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" '
            f'entity="sip:{user}@{DOMAIN}"><tuple id="t1"><status><basic>{basic}</basic></status>{note}</tuple>'
            f"{person}</presence>").encode()


class Phone:
    """One user's UDP client: REGISTER, SUBSCRIBE, PUBLISH; NOTIFYs are answered 200."""

    def __init__(self, client: SipTestClient, user: str) -> None:
        self.c, self.user = client, user
        self.aor = f"sip:{user}@{DOMAIN}"
        self.cseq = 1

    @classmethod
    async def open(cls, server, user: str) -> Phone:
        client = await SipTestClient.connect("udp", *server.sip_address, auto_answer={"NOTIFY": 200})
        return cls(client, user)

    @property
    def contact(self) -> str:
        return f"<sip:{self.user}@{self.c.local_host}:{self.c.local_port}>"

    async def request(self, method: str, uri: str, *, to: str | None = None, headers=(), body=b"",
                      call_id: str | None = None, status: int | None = None):
        self.cseq += 1
        self.c.send(self.c.request_bytes(method, uri, from_uri=self.aor, to_uri=to or self.aor, cseq=self.cseq,
                                         contact=self.contact, headers=headers, body=body, call_id=call_id))
        return await self.c.receive_response(status)

    async def register(self, expires: int = 600):
        return await self.request("REGISTER", f"sip:{DOMAIN}", headers=[("Expires", str(expires))], status=200)

    async def subscribe(self, other: Phone, expires: int = 600):
        return await self.request("SUBSCRIBE", other.aor, to=other.aor, status=200,
                                  headers=[("Event", "presence"), ("Expires", str(expires))])

    async def publish(self, body: bytes, etag: str | None = None, expires: int | None = None, status: int = 200,
                      content_type: str = "application/pidf+xml"):
        headers = [("Event", "presence"), ("Content-Type", content_type)] if body else [("Event", "presence")]
        if etag:
            headers.append(("SIP-If-Match", etag))
        if expires is not None:
            headers.append(("Expires", str(expires)))
        return await self.request("PUBLISH", self.aor, headers=headers, body=body, status=status)

    async def notify(self, predicate=None, timeout: float = 5.0):
        item = await self.c.receive(lambda r: getattr(r.message, "method", None) == "NOTIFY"
                                    and (predicate is None or predicate(r.message)), timeout=timeout)
        return item.message


def test_register_subscribe_publish_log_off(tmp_path: Path):
    async def scenario(server) -> None:
        alice, bob = await Phone.open(server, "alice"), await Phone.open(server, "bob")
        try:
            await alice.register()
            ok = await bob.subscribe(alice)
            assert ok.headers.get("Expires") == "600" and ok.headers.get("Contact")
            first = await bob.notify()
            assert first.headers.get("Subscription-State").startswith("active")
            assert b"<basic>open</basic>" in first.body  # registered, nothing published
            busy = pidf("alice", person='<dm:person id="p"><rpid:activities><rpid:on-the-phone/>'
                        "</rpid:activities><dm:note>On the phone</dm:note></dm:person>")
            resp = await alice.publish(busy)
            etag = resp.headers.get("SIP-ETag")
            assert etag and resp.headers.get("Expires") == "3600"
            rich = await bob.notify(lambda m: b"on-the-phone" in m.body)
            assert b"<rpid:on-the-phone/>" in rich.body and b"<note>On the phone</note>" in rich.body
            assert (await alice.publish(b"", etag="stale", status=412)).status == 412
            await alice.register(expires=0)  # log off: de-REGISTER only, no un-PUBLISH
            off = await bob.notify(lambda m: b"<basic>closed</basic>" in m.body)
            assert b"on-the-phone" not in off.body
            await alice.register()
            await bob.notify(lambda m: b"<basic>open</basic>" in m.body)
            assert (await bob.request("SUBSCRIBE", alice.aor, to=alice.aor, status=489,
                                      headers=[("Event", "dialog")])).headers.get("Allow-Events")
            await alice.publish(b"hello", status=415, content_type="text/plain")
        finally:
            await alice.c.close()
            await bob.c.close()

    with running_server("presence", tmp_path) as server:
        asyncio.run(scenario(server))


def test_subscriptions_survive_a_restart_and_cseq_keeps_counting(tmp_path: Path):
    data = tmp_path / "data"

    async def main() -> None:
        from tests.e2e.server import free_port

        port = free_port()
        with running_server("presence", tmp_path, sip_port=port, data_dir=data) as server:
            alice, bob = await Phone.open(server, "alice"), await Phone.open(server, "bob")
            await alice.register()
            await bob.subscribe(alice)
            first = await bob.notify()
            await alice.publish(pidf("alice", "open", note="<note>before</note>"))
            before = await bob.notify(lambda m: b"before" in m.body)
            assert before.cseq.seq > first.cseq.seq
        with running_server("presence", tmp_path, sip_port=port, data_dir=data):
            await alice.publish(pidf("alice", "open", note="<note>after restart</note>"))
            after = await bob.notify(lambda m: b"after restart" in m.body, timeout=10)
            assert after.call_id == before.call_id
            assert after.cseq.seq > before.cseq.seq  # the persistent dialog kept its CSeq
        await alice.c.close()
        await bob.c.close()

    asyncio.run(main())


def _add_user(server, user: str, password: str) -> None:
    import subprocess
    import sys

    from tests.e2e.server import ROOT

    done = subprocess.run([sys.executable, "-m", "slee.cli", "--data", str(server.data_dir), "users", "add", user,
                           "--domain", DOMAIN, "--password", password], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr


def test_digest_auth_on_publish_and_subscribe(tmp_path: Path):
    from slee.sip import build_credentials

    def answer(challenge, user: str, password: str, method: str, uri: str, nc: int) -> tuple[str, str]:
        [params] = [c.params for c in challenge.proxy_authenticate if c.params["algorithm"] == "SHA-256"]
        return ("Proxy-Authorization", build_credentials(params, username=user, method=method, uri=uri,
                                                         password=password, nc=nc))

    async def scenario(server) -> None:
        alice, bob = await Phone.open(server, "alice"), await Phone.open(server, "bob")
        try:
            challenge = await alice.request("PUBLISH", alice.aor, headers=[("Event", "presence"),
                                            ("Content-Type", "application/pidf+xml")], body=pidf("alice"))
            assert challenge.status == 407 and len(challenge.proxy_authenticate) == 2
            headers = [("Event", "presence"), ("Content-Type", "application/pidf+xml")]
            ok = await alice.request("PUBLISH", alice.aor, headers=[*headers, answer(
                challenge, "alice", "alice-pw", "PUBLISH", alice.aor, 1)], body=pidf("alice"))
            assert ok.status == 200
            etag = ok.headers.get("SIP-ETag")
            for nc in (2, 3, 4):  # the nonce stays good: refreshes are not challenged again
                r = await alice.request("PUBLISH", alice.aor, headers=[("Event", "presence"), ("SIP-If-Match", etag),
                                        answer(challenge, "alice", "alice-pw", "PUBLISH", alice.aor, nc)])
                assert r.status == 200, (nc, r)
                etag = r.headers.get("SIP-ETag")
            replayed = await bob.request("PUBLISH", alice.aor, to=alice.aor, headers=[*headers, answer(
                challenge, "bob", "bob-pw", "PUBLISH", alice.aor, 1)], body=pidf("alice"))
            assert replayed.status == 407  # nonce-count 1 of that nonce was used already
            assert any(c.params.get("stale", "").lower() == "true" for c in replayed.proxy_authenticate)
            # bob, authenticated as bob, claiming to be alice
            forged = await bob.request("PUBLISH", alice.aor, to=alice.aor, headers=[*headers, answer(
                replayed, "bob", "bob-pw", "PUBLISH", alice.aor, 1)], body=pidf("alice"))
            assert forged.status == 403
            sub = await bob.request("SUBSCRIBE", alice.aor, to=alice.aor,
                                    headers=[("Event", "presence"), ("Expires", "600")])
            assert sub.status == 407
            sub = await bob.request("SUBSCRIBE", alice.aor, to=alice.aor, status=200, headers=[
                ("Event", "presence"), ("Expires", "600"), answer(sub, "bob", "bob-pw", "SUBSCRIBE", alice.aor, 1)])
            assert b"<basic>open</basic>" in (await bob.notify()).body
        finally:
            await alice.c.close()
            await bob.c.close()

    with running_server("presence", tmp_path, extra_args=("--set", "auth=on")) as server:
        _add_user(server, "alice", "alice-pw")
        _add_user(server, "bob", "bob-pw")
        asyncio.run(scenario(server))
