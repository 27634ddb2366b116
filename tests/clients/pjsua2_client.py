"""Drive a real PJSIP client (PyPI `pjsua2-python`) from tests, in a child process.

pjsua2 allows one Endpoint per process, so each client is `_pjsua2_agent.py` in its own
interpreter, fed JSON commands on stdin and answering JSON events on stdout. Verdicts come
from pjsua2's own callbacks and getters (`Account.getInfo`, `Buddy.getInfo().presStatus`,
`onInstantMessage`), not from SIP traces.

pjsua2 facts this driver is shaped by (observed, see captures/README.md):
- RPID activities it can publish and parse are only away and busy; 'dnd' and 'on-the-phone'
  are published as busy with a note ("Do not disturb" / "On the phone" unless one is given);
- it reports a buddy's note as the status text, and `closed` as offline whatever the activity.
"""

from __future__ import annotations

import itertools
import json
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._process import ClientError, ClientTimeout, LineProcess

__all__ = ["ACTIVITY_MAP", "Pjsua2Client"]

AGENT = Path(__file__).with_name("_pjsua2_agent.py")

# our activity word -> (online?, pjsua2 RPID activity, default note)
ACTIVITY_MAP: dict[str, tuple[bool, str, str | None]] = {
    "online": (True, "unknown", None),
    "away": (True, "away", None),
    "busy": (True, "busy", None),
    "dnd": (True, "busy", "Do not disturb"),
    "on-the-phone": (True, "busy", "On the phone"),
    "offline": (False, "unknown", None),
}


class Pjsua2Client:
    """One pjsua2 account in its own process. Synchronous; every wait has a timeout.

    Use as a context manager: the agent is asked to quit (pjsua then de-REGISTERs,
    un-SUBSCRIBEs and un-PUBLISHes) and killed if it does not; only that process.
    """

    def __init__(self, user: str, domain: str, server: tuple[str, int], *,
                 transport: str = "udp", buddies: list[str] | tuple[str, ...] = (),
                 publish: bool = True, password: str | None = None, workdir: Path,
                 python: str = sys.executable, expires: int = 600) -> None:
        if transport not in ("udp", "tcp"):
            raise ValueError(f"transport must be 'udp' or 'tcp', not {transport!r}")
        self.aor = f"sip:{user}@{domain}"
        self.workdir = Path(workdir)
        self.initial_buddies = list(buddies)
        self.agent_config: dict[str, Any] = {
            "aor": self.aor, "user": user, "domain": domain, "server": list(server),
            "transport": transport, "publish": publish, "password": password,
            "expires": expires, "log_file": str(self.workdir / "pjsua2.log")}
        self.python = python
        self.proc: LineProcess | None = None
        self.events: list[dict[str, Any]] = []
        self._parsed = 0
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.local: str | None = None

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> Pjsua2Client:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 10.0) -> None:
        """Start the agent (no REGISTER yet) and subscribe to the initial buddies."""
        if self.proc is not None and self.proc.alive():
            raise ClientError("pjsua2 agent already running")
        try:
            import pjsua2  # noqa: F401
        except ImportError as exc:
            raise ClientError(f"pjsua2 not importable ({exc}); "
                              f"install it: {self.python} -m pip install pjsua2-python") from exc
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "agent.json").write_text(json.dumps(self.agent_config, indent=2))
        self.events.clear()
        self._parsed = 0
        self.proc = LineProcess([self.python, str(AGENT), json.dumps(self.agent_config)],
                                cwd=self.workdir, merge_stderr=False,
                                log_path=self.workdir / "agent-events.log")
        ready = self._wait_event(lambda e: e["event"] == "ready", timeout, "agent ready")
        self.local = ready["local"]
        for aor in self.initial_buddies:
            self.add_buddy(aor)

    def stop(self, timeout: float = 5.0, grace: float = 2.0) -> int | None:
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        if proc.alive():
            try:
                proc.send_line(json.dumps({"id": 0, "op": "quit"}))
            except ClientError:
                pass
            proc.wait_exit(timeout)
        return proc.kill(grace)

    def _running(self) -> LineProcess:
        if self.proc is None or not self.proc.alive():
            tail = self.proc.tail() if self.proc else ""
            raise ClientError(f"pjsua2 agent for {self.aor} is not running\n{tail}")
        return self.proc

    # ------------------------------------------------------------------ protocol
    def _drain(self) -> list[dict[str, Any]]:
        proc = self.proc
        if proc is not None:
            lines = proc.lines
            while self._parsed < len(lines):
                line = lines[self._parsed]
                self._parsed += 1
                try:
                    self.events.append(json.loads(line))
                except ValueError:
                    self.events.append({"event": "garbage", "line": line})
        return self.events

    def _wait_event(self, pred: Callable[[dict[str, Any]], bool], timeout: float, what: str,
                    start: int = 0) -> dict[str, Any]:
        proc = self._running()

        def check() -> dict[str, Any] | None:
            events = self._drain()
            hit = next((e for e in events[start:] if pred(e)), None)
            if hit is None and proc.finished():
                raise ClientError(f"pjsua2 agent exited ({proc.returncode}) while waiting for "
                                  f"{what}:\n{proc.tail()}")
            return hit

        return proc.wait_until(check, timeout, what)  # type: ignore[return-value]

    def call(self, op: str, timeout: float = 5.0, **args: Any) -> Any:
        """Run one agent command and return its result, raising ClientError on failure."""
        with self._lock:
            proc = self._running()
            cid = next(self._ids)
            proc.send_line(json.dumps({"id": cid, "op": op, **args}))
        reply = self._wait_event(lambda e: e["event"] == "reply" and e["id"] == cid, timeout,
                                 f"reply to {op}")
        if not reply["ok"]:
            raise ClientError(f"pjsua2 {op} failed: {reply['error']}\n{reply.get('trace', '')}")
        return reply["result"]

    def _mark(self) -> int:
        return len(self._drain())

    # ------------------------------------------------------------------ registration
    def register(self, timeout: float = 5.0) -> dict[str, Any]:
        """REGISTER and wait until pjsua2 reports the registration active (2xx)."""
        mark = self._mark()
        self.call("register")
        ev = self._wait_event(lambda e: e["event"] == "reg_state", timeout, "reg_state", mark)
        if not (200 <= ev["code"] < 300 and ev["active"]):
            raise ClientError(f"registration of {self.aor} failed: {ev}")
        return ev

    def unregister(self, timeout: float = 5.0) -> dict[str, Any]:
        """De-REGISTER (pjsua also un-PUBLISHes here when publishing is on)."""
        mark = self._mark()
        self.call("unregister")
        return self._wait_event(lambda e: e["event"] == "reg_state" and not e["active"],
                                timeout, "de-registration", mark)

    def is_registered(self) -> bool:
        return bool(self.call("account_info")["reg_active"])

    def account_info(self) -> dict[str, Any]:
        return self.call("account_info")

    # ------------------------------------------------------------------ presence
    def set_status(self, activity: str, note: str | None = None) -> None:
        """Publish `activity` (see ACTIVITY_MAP) with an optional note."""
        try:
            online, rpid, default_note = ACTIVITY_MAP[activity]
        except KeyError:
            raise ValueError(f"activity must be one of {sorted(ACTIVITY_MAP)}, not {activity!r}")
        self.call("set_status", online=online, activity=rpid,
                  note=note if note is not None else default_note)

    def set_presence(self, state: str) -> None:
        """Same words as BaresipClient.set_presence: 'online' or 'offline'."""
        self.set_status(state)

    def add_buddy(self, aor: str) -> dict[str, Any]:
        """Create a Buddy with subscribe=True: pjsua2 SUBSCRIBEs at once."""
        return self.call("add_buddy", uri=aor)

    def buddy_status(self, aor: str) -> dict[str, Any]:
        """pjsua2's view: status (online/offline/unknown), text, activity, note, sub_state..."""
        return self.call("buddy_info", uri=aor)

    def wait_buddy_status(self, aor: str,
                          predicate: str | Callable[[dict[str, Any]], bool],
                          timeout: float = 5.0) -> dict[str, Any]:
        """Until the buddy's info satisfies `predicate` (a str compares with its `status`)."""
        check = ((lambda i: i["status"] == predicate) if isinstance(predicate, str)
                 else predicate)
        deadline = time.monotonic() + timeout
        seen: list[dict[str, Any]] = []
        while True:
            info = self.buddy_status(aor)
            seen.append(info)
            if check(info):
                return info
            left = deadline - time.monotonic()
            if left <= 0:
                raise ClientTimeout(f"{aor} status never matched within {timeout:g}s; "
                                    f"last seen {seen[-1]}")
            mark = self._mark()
            try:  # wake on the next buddy_state callback, or re-poll shortly
                self._wait_event(lambda e: e["event"] == "buddy_state", min(left, 0.5),
                                 "buddy_state", mark)
            except ClientTimeout:
                pass

    # ------------------------------------------------------------------ messages
    def send_message(self, aor: str, text: str, *, content_type: str = "text/plain",
                     timeout: float = 5.0) -> dict[str, Any]:
        """Send a MESSAGE and wait for pjsua2's delivery status (the final response)."""
        mark = self._mark()
        self.call("send_message", uri=aor, text=text, content_type=content_type)
        ev = self._wait_event(lambda e: e["event"] == "message_status", timeout,
                              "MESSAGE status", mark)
        if not 200 <= ev["code"] < 300:
            raise ClientError(f"MESSAGE to {aor} failed: {ev['code']} {ev['reason']}")
        return ev

    def received_messages(self) -> list[tuple[str, str]]:
        """(from URI, body) for every incoming MESSAGE, oldest first."""
        return [(_strip_uri(e["from_uri"]), e["body"])
                for e in self._drain() if e["event"] == "message"]

    def received_message_events(self) -> list[dict[str, Any]]:
        return [e for e in self._drain() if e["event"] == "message"]

    def wait_message(self, predicate: Callable[[str, str], bool] | str | None = None,
                     timeout: float = 5.0) -> tuple[str, str]:
        if predicate is None:
            check: Callable[[str, str], bool] = lambda f, t: True  # noqa: E731
        elif isinstance(predicate, str):
            check = lambda f, t: t == predicate  # noqa: E731
        else:
            check = predicate
        ev = self._wait_event(
            lambda e: e["event"] == "message" and check(_strip_uri(e["from_uri"]), e["body"]),
            timeout, "an incoming MESSAGE")
        return _strip_uri(ev["from_uri"]), ev["body"]


def _strip_uri(value: str) -> str:
    """pjsua2 gives From as a name-addr (`"Bob" <sip:bob@x>`); keep only the URI."""
    if "<" in value and ">" in value:
        return value[value.index("<") + 1:value.index(">")]
    return value
