"""Drive a real baresip 1.0 (Debian `baresip-core`) headless, for end-to-end tests.

baresip runs as `baresip -f WORKDIR` with the stdio UI: commands go in on stdin, and what
the user would see comes out on stdout. Every verdict this driver gives (registration,
buddy status, received text) is parsed from that output, i.e. from what baresip itself
reports, never from SIP traces.

baresip 1.0 facts this driver is shaped by (observed, see captures/README.md):
- presence subscriptions are made only when the presence module loads, one per `contacts`
  line with `;presence=p2p`; a buddy added while running needs the module reloaded;
- there is no command to de-REGISTER and stay up (`/uadel` is refused while the presence
  module holds the UA), so `unregister()` is a clean `/quit`, which sends un-PUBLISH (if
  publishing), un-SUBSCRIBEs and the de-REGISTER, in that order, then exits;
- buddy states are "Unknown", "Online", "Offline" and "Busy" (RPID away shows as
  "Offline", busy and on-the-phone as "Busy");
- `/message` texts the *current* contact; incoming ones print as `FROM: "TEXT"`.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from ._process import ClientError, ClientTimeout, LineProcess, require_binary

__all__ = ["BARESIP_STATUSES", "BaresipClient", "BaresipConfig"]

BARESIP_STATUSES = ("Unknown", "Online", "Offline", "Busy")

_MODULE_PATH = "/usr/lib/baresip/modules"
# stdio: the UI on stdin/stdout; uuid: a +sip.instance like a real install; account/contact:
# read the `accounts` and `contacts` files; menu: the slash commands; presence: SUBSCRIBE
# for p2p contacts and PUBLISH (pubint). No audio driver or codec: nothing opens a device.
_MODULES = (
    ("module", "stdio.so"),
    ("module_tmp", "uuid.so"),
    ("module_tmp", "account.so"),
    ("module_app", "contact.so"),
    ("module_app", "menu.so"),
    ("module_app", "presence.so"),
)

_CONTACTS_HEADER = re.compile(r"^--- Contacts \((\d+)\) ---$")
_CONTACT_LINE = re.compile(r"^(?P<cur>>)?\s+(?P<status>Unknown|Online|Offline|Busy)\s+"
                           r"(?P<name>.*?)\s*<(?P<uri>[^>]+)>\s*$")
_UA_HEADER = re.compile(r"^--- User Agents \((\d+)\) ---$")
_UA_LINE = re.compile(r"^(?P<cur>>)?\s+(?P<aor>sips?:\S+)\s+(?P<state>OK|zzz|ERR)\b")
_MESSAGE_LINE = re.compile(r'^(?P<from>sips?:[^\s"]+): "(?P<text>.*)$')
_CHANGED = re.compile(r"^<(?P<uri>[^>]+)> changed status from (?P<old>\w+) to (?P<new>\w+)$")
_MSG_ERROR = re.compile(r"^ (?P<code>[3-6]\d\d) (?P<reason>.+)$")


@dataclass(frozen=True)
class BaresipConfig:
    """The files baresip reads from its config dir; `write()` puts them into `workdir`."""

    user: str
    domain: str
    server: tuple[str, int]
    transport: str = "udp"
    buddies: tuple[str, ...] = ()
    publish: bool = True
    password: str | None = None
    listen: str = "127.0.0.1:0"
    regint: int = 600
    pubint: int = 600

    def config_text(self) -> str:
        # poll, not epoll: epoll refuses a non-pollable stdin and then the stdio UI is dead.
        lines = ["poll_method\t\tpoll", f"sip_listen\t\t{self.listen}",
                 f"module_path\t\t{_MODULE_PATH}"]
        lines += [f"{kind}\t\t{name}" for kind, name in _MODULES]
        return "\n".join(lines) + "\n"

    def account_line(self) -> str:
        host, port = self.server
        hostport = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        uri = f"sip:{self.user}@{self.domain}"
        if self.transport != "udp":
            uri += f";transport={self.transport}"
        # `outbound` makes baresip preload Route: <sip:HOST:PORT;transport=..;lr> to our server,
        # so the domain itself never has to resolve.
        params = [f'outbound="sip:{hostport};transport={self.transport}"',
                  f"regint={self.regint}", f"pubint={self.pubint if self.publish else 0}",
                  "answermode=manual"]
        if self.password is not None:
            params += [f"auth_user={self.user}", f"auth_pass={self.password}"]
        return f"<{uri}>;" + ";".join(params) + "\n"

    def contacts_text(self) -> str:
        return "".join(f'"{_display(aor)}" <{aor}>;presence=p2p\n' for aor in self.buddies)

    def write(self, workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "config").write_text(self.config_text())
        (workdir / "accounts").write_text(self.account_line())
        (workdir / "contacts").write_text(self.contacts_text())


def _display(aor: str) -> str:
    return aor.split(":", 1)[-1].split("@", 1)[0]


class BaresipClient:
    """One baresip process for one account. Synchronous; every wait has a timeout.

    Use as a context manager: the process is stopped (and killed if it does not quit)
    on exit, and only that process.
    """

    def __init__(self, user: str, domain: str, server: tuple[str, int], *,
                 transport: str = "udp", buddies: list[str] | tuple[str, ...] = (),
                 publish: bool = True, password: str | None = None, workdir: Path,
                 binary: str = "baresip") -> None:
        if transport not in ("udp", "tcp"):
            raise ValueError(f"transport must be 'udp' or 'tcp', not {transport!r}")
        self.aor = f"sip:{user}@{domain}"
        self.workdir = Path(workdir)
        self.config = BaresipConfig(user=user, domain=domain, server=server,
                                    transport=transport, buddies=tuple(buddies),
                                    publish=publish, password=password)
        self.binary = binary
        self.proc: LineProcess | None = None
        self._lock = threading.RLock()  # one command/answer exchange at a time

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> BaresipClient:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 5.0) -> None:
        """Write the config files and start baresip; returns once it says it is ready."""
        if self.proc is not None and self.proc.alive():
            raise ClientError("baresip already running")
        binary = require_binary(self.binary, "apt-get install -y baresip-core")
        self.config.write(self.workdir)
        self.proc = LineProcess([binary, "-f", str(self.workdir)], cwd=self.workdir,
                                log_path=self.workdir / "baresip.log")
        self.proc.wait_line(r"^baresip is ready\.$", timeout=timeout)

    def stop(self, timeout: float = 5.0, grace: float = 2.0) -> int | None:
        """`/quit`, then SIGTERM/SIGKILL if it lingers (a dead registrar makes /quit wait)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        if proc.alive():
            try:
                proc.send_line("/quit")
            except ClientError:
                pass
            proc.wait_exit(timeout)
        return proc.kill(grace)

    def _running(self) -> LineProcess:
        if self.proc is None or not self.proc.alive():
            tail = self.proc.tail() if self.proc else ""
            raise ClientError(f"baresip for {self.aor} is not running\n{tail}")
        return self.proc

    @property
    def lines(self) -> list[str]:
        return list(self.proc.lines) if self.proc else []

    # ------------------------------------------------------------------ registration
    def register(self, timeout: float = 5.0) -> None:
        """baresip registers as soon as it starts: start it if needed and wait for the 200."""
        if self.proc is None or not self.proc.alive():
            self.start()
        _poll(lambda: self.is_registered(), timeout, f"{self.aor} registered", self._running())

    def unregister(self, timeout: float = 5.0) -> None:
        """Log off the only way baresip 1.0 can: `/quit` (un-PUBLISH, un-SUBSCRIBE, de-REGISTER).

        With `publish=False` this is a de-REGISTER only. `register()` starts a new process.
        """
        proc = self._running()
        mark = proc.mark()
        proc.send_line("/quit")
        proc.wait_line(r"^ua: stop all", start=mark, timeout=timeout)
        if proc.wait_exit(timeout) is None:
            raise ClientTimeout(f"baresip did not exit after /quit:\n{proc.tail()}")
        self.stop()

    def is_registered(self, timeout: float = 3.0) -> bool:
        """What `/reginfo` shows for this account: OK (registered) or zzz/ERR."""
        states = self._query("/reginfo", _UA_HEADER, _UA_LINE, timeout)
        return any(m["aor"] == self.aor and m["state"] == "OK" for m in states)

    # ------------------------------------------------------------------ presence
    def set_presence(self, state: str) -> None:
        """baresip 1.0 publishes only open or closed: 'online' or 'offline'."""
        if state not in ("online", "offline"):
            raise ValueError(f"baresip can only publish 'online' or 'offline', not {state!r}")
        proc = self._running()
        mark = proc.mark()
        proc.send_line(f"/presence_{state}")
        want = "Online" if state == "online" else "Offline"
        # printed only when the state changes: accept either the change line or no-op
        try:
            proc.wait_line(rf"^presence: update status of .* to '{want}'$", start=mark,
                           timeout=1.0)
        except ClientTimeout:
            pass

    def add_buddy(self, aor: str, timeout: float = 5.0) -> None:
        """Add a `;presence=p2p` contact. While running, reload contact+presence modules.

        The reload is what baresip 1.0 offers: it un-PUBLISHes and un-SUBSCRIBEs, then
        SUBSCRIBEs to every buddy again and re-PUBLISHes.
        """
        if aor in self.config.buddies:
            return
        self.config = replace(self.config, buddies=(*self.config.buddies, aor))
        if self.proc is None or not self.proc.alive():
            return
        proc = self._running()
        self.config.write(self.workdir)
        mark = proc.mark()
        for cmd in ("/rmmod presence", "/rmmod contact", "/insmod contact", "/insmod presence"):
            proc.send_line(cmd)
        proc.wait_line(r"^loaded module presence$", start=mark, timeout=timeout)
        self.buddy_status(aor, timeout=timeout)  # proves the contact list has it

    def buddies(self, timeout: float = 3.0) -> dict[str, str]:
        """Every contact's status as `/contacts` prints it, keyed by URI."""
        return {m["uri"]: m["status"]
                for m in self._query("/contacts", _CONTACTS_HEADER, _CONTACT_LINE, timeout)}

    def buddy_status(self, aor: str, timeout: float = 3.0) -> str:
        """'Unknown', 'Online', 'Offline' or 'Busy': baresip's own word for the buddy."""
        status = self.buddies(timeout).get(aor)
        if status is None:
            raise ClientError(f"{aor} is not in baresip's contact list")
        return status

    def wait_buddy_status(self, aor: str, predicate: str | Callable[[str], bool],
                          timeout: float = 5.0) -> str:
        """Poll `/contacts` until the buddy's status equals/satisfies `predicate`."""
        check = (lambda s: s == predicate) if isinstance(predicate, str) else predicate
        proc = self._running()
        seen: list[str] = []

        def ok() -> str | None:
            status = self.buddy_status(aor)
            seen.append(status)
            return status if check(status) else None

        deadline = time.monotonic() + timeout
        while True:
            result = ok()
            if result is not None:
                return result
            left = deadline - time.monotonic()
            if left <= 0:
                raise ClientTimeout(f"{aor} status never matched within {timeout:g}s; "
                                    f"saw {seen[-5:]}\n{proc.tail()}")
            mark = proc.mark()
            try:  # wake on the next status-change line, or re-poll after a short while
                proc.wait_line(_CHANGED, start=mark, timeout=min(left, 0.5))
            except ClientTimeout:
                pass

    def status_changes(self) -> list[tuple[str, str, str]]:
        """(uri, old, new) for every "changed status" line baresip printed so far."""
        return [(m["uri"], m["old"], m["new"])
                for m in map(_CHANGED.match, self.lines) if m]

    # ------------------------------------------------------------------ messages
    def send_message(self, aor: str, text: str, timeout: float = 3.0) -> None:
        """Select `aor` as current contact (`/contact_next` until it is), then `/message`.

        Raises if baresip prints an error status for the MESSAGE within a short while.
        """
        if aor not in self.config.buddies:
            raise ClientError(f"baresip can only message a contact; add_buddy({aor!r}) first")
        proc = self._running()
        with self._lock:
            for _ in range(len(self.config.buddies) + 1):
                if self._current_contact(timeout) == aor:
                    break
                proc.send_line("/contact_next")
            else:
                raise ClientError(f"could not select {aor} as baresip's current contact")
            mark = proc.mark()
            proc.send_line(f"/message {text}")
        try:
            m = proc.wait_line(_MSG_ERROR, start=mark, timeout=0.5)
        except ClientTimeout:
            return
        raise ClientError(f"baresip MESSAGE to {aor} failed: {m['code']} {m['reason']}")

    def _current_contact(self, timeout: float) -> str | None:
        rows = self._query("/contacts", _CONTACTS_HEADER, _CONTACT_LINE, timeout)
        return next((m["uri"] for m in rows if m["cur"]), None)

    def received_messages(self) -> list[tuple[str, str]]:
        """(from URI, text) for every incoming MESSAGE baresip printed, oldest first."""
        out: list[tuple[str, str]] = []
        lines = self.lines
        i = 0
        while i < len(lines):
            m = _MESSAGE_LINE.match(lines[i])
            i += 1
            if not m:
                continue
            text = m["text"]
            # baresip prints the body verbatim inside quotes: a multi-line body spans lines
            while not text.endswith('"') and i < len(lines):
                text += "\n" + lines[i]
                i += 1
            out.append((m["from"], text[:-1] if text.endswith('"') else text))
        return out

    def wait_message(self, predicate: Callable[[str, str], bool] | str | None = None,
                     timeout: float = 5.0) -> tuple[str, str]:
        """First received (from, text) whose text equals `predicate` or satisfies it."""
        if predicate is None:
            check: Callable[[str, str], bool] = lambda f, t: True  # noqa: E731
        elif isinstance(predicate, str):
            check = lambda f, t: t == predicate  # noqa: E731
        else:
            check = predicate
        proc = self._running()
        return proc.wait_until(  # type: ignore[return-value]
            lambda: next((m for m in self.received_messages() if check(*m)), None),
            timeout, "an incoming MESSAGE")

    # ------------------------------------------------------------------ plumbing
    def _query(self, command: str, header: re.Pattern[str], row: re.Pattern[str],
               timeout: float) -> list[re.Match[str]]:
        """Send a listing command and parse its block: a counted header, then N rows."""
        proc = self._running()
        with self._lock:
            mark = proc.mark()
            proc.send_line(command)
            head = proc.wait_line(header, start=mark, timeout=timeout)
            count = int(head.group(1))
            start = proc.lines.index(head.string, mark) + 1
            rows: list[re.Match[str]] = []

            def collect() -> bool:
                rows.clear()
                for line in proc.lines[start:]:
                    m = row.match(line)
                    if m:
                        rows.append(m)
                        if len(rows) == count:
                            return True
                return count == 0

            proc.wait_until(collect, timeout, f"{count} rows after {command}")
            return rows


def _poll(check: Callable[[], object], timeout: float, what: str, proc: LineProcess) -> object:
    """Call `check` every 0.1 s until truthy; used where each check is itself a command."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise ClientTimeout(f"timed out after {timeout:g}s waiting for {what}\n{proc.tail()}")
        time.sleep(0.1)
