"""pjsua2 agent: one pjsua2 Endpoint and Account, driven by JSON lines on stdin.

Run as a child process (`python _pjsua2_agent.py CONFIG_JSON`) because pjsua2 allows one
Endpoint per process and its C code must not share a process with the test runner. Every
pjsua2 call and callback happens on the main thread (threadCnt=0, mainThreadOnly): a reader
thread only moves stdin lines into a queue. Stdout carries JSON events only; pjsip's own
console output is pointed at stderr at the file-descriptor level so it cannot corrupt them.

Commands: {"id": N, "op": NAME, ...args}; each gets {"event": "reply", "id": N, "ok": ...}.
Unsolicited events: ready, reg_state, buddy_state, message, message_status.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import threading
import traceback

import pjsua2 as pj

_OUT = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
os.dup2(2, 1)  # anything pjsip prints to stdout goes to stderr instead

ACTIVITIES = {"unknown": pj.PJRPID_ACTIVITY_UNKNOWN, "away": pj.PJRPID_ACTIVITY_AWAY,
              "busy": pj.PJRPID_ACTIVITY_BUSY}
ACTIVITY_NAMES = {v: k for k, v in ACTIVITIES.items()}
STATUS_NAMES = {pj.PJSUA_BUDDY_STATUS_UNKNOWN: "unknown", pj.PJSUA_BUDDY_STATUS_ONLINE: "online",
                pj.PJSUA_BUDDY_STATUS_OFFLINE: "offline"}


def emit(event: str, **fields: object) -> None:
    _OUT.write(json.dumps({"event": event, **fields}) + "\n")


def buddy_info(buddy: pj.Buddy) -> dict[str, object]:
    info = buddy.getInfo()
    ps = info.presStatus
    return {"uri": info.uri, "status": STATUS_NAMES.get(ps.status, str(ps.status)),
            "text": ps.statusText, "activity": ACTIVITY_NAMES.get(ps.activity, str(ps.activity)),
            "note": ps.note, "rpid_id": ps.rpidId, "sub_state": info.subStateName,
            "sub_term_code": info.subTermCode, "sub_term_reason": info.subTermReason}


class Buddy(pj.Buddy):
    def onBuddyState(self) -> None:
        emit("buddy_state", **buddy_info(self))

    def onBuddyEvSubState(self, prm: pj.OnBuddyEvSubStateParam) -> None:
        emit("buddy_state", **buddy_info(self))


class Account(pj.Account):
    def __init__(self) -> None:
        super().__init__()
        self.buddies: dict[str, Buddy] = {}

    def onRegState(self, prm: pj.OnRegStateParam) -> None:
        info = self.getInfo()
        emit("reg_state", code=prm.code, reason=prm.reason, expiration=prm.expiration,
             active=info.regIsActive)

    def onInstantMessage(self, prm: pj.OnInstantMessageParam) -> None:
        emit("message", from_uri=prm.fromUri, to_uri=prm.toUri, contact=prm.contactUri,
             content_type=prm.contentType, body=prm.msgBody)

    def onInstantMessageStatus(self, prm: pj.OnInstantMessageStatusParam) -> None:
        emit("message_status", to_uri=prm.toUri, code=prm.code, reason=prm.reason,
             body=prm.msgBody)


class Agent:
    def __init__(self, cfg: dict) -> None:
        self.cfg = cfg
        self.ep = pj.Endpoint()
        self.ep.libCreate()
        ep_cfg = pj.EpConfig()
        ep_cfg.uaConfig.threadCnt = 0
        ep_cfg.uaConfig.mainThreadOnly = True
        ep_cfg.uaConfig.userAgent = cfg.get("user_agent") or ep_cfg.uaConfig.userAgent
        ep_cfg.logConfig.consoleLevel = 0
        ep_cfg.logConfig.level = 5
        ep_cfg.logConfig.msgLogging = True
        ep_cfg.logConfig.filename = cfg["log_file"]
        ep_cfg.medConfig.noVad = True
        self.ep.libInit(ep_cfg)
        self.ep.audDevManager().setNullDev()
        tcfg = pj.TransportConfig()
        tcfg.boundAddress = "127.0.0.1"
        tcfg.port = 0
        kind = pj.PJSIP_TRANSPORT_TCP if cfg["transport"] == "tcp" else pj.PJSIP_TRANSPORT_UDP
        self.tid = self.ep.transportCreate(kind, tcfg)
        self.ep.libStart()
        self.local = self.ep.transportGetInfo(self.tid).localName

        acc = pj.AccountConfig()
        acc.idUri = cfg["aor"]
        acc.regConfig.registrarUri = f"sip:{cfg['domain']}"
        acc.regConfig.registerOnAdd = False
        acc.regConfig.timeoutSec = cfg.get("expires", 600)
        host, port = cfg["server"]
        hostport = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        # preloaded Route to our server, like baresip's `outbound`: the domain never resolves
        acc.sipConfig.proxies.append(f"sip:{hostport};transport={cfg['transport']};lr")
        acc.sipConfig.transportId = self.tid
        acc.presConfig.publishEnabled = bool(cfg["publish"])
        acc.natConfig.contactRewriteUse = 0
        acc.natConfig.viaRewriteUse = 0
        acc.natConfig.sdpNatRewriteUse = 0
        if cfg.get("password") is not None:
            acc.sipConfig.authCreds.append(pj.AuthCredInfo(
                "digest", "*", cfg["user"], 0, cfg["password"]))
        self.acc = Account()
        self.acc.create(acc)
        self.commands: queue.Queue[dict | None] = queue.Queue()
        self.running = True

    # ------------------------------------------------------------------ commands
    def op_register(self, _: dict) -> None:
        self.acc.setRegistration(True)

    def op_unregister(self, _: dict) -> None:
        self.acc.setRegistration(False)

    def op_account_info(self, _: dict) -> dict:
        info = self.acc.getInfo()
        return {"uri": info.uri, "reg_active": info.regIsActive, "reg_status": info.regStatus,
                "reg_status_text": info.regStatusText, "reg_expires": info.regExpiresSec,
                "online_status": info.onlineStatus, "online_text": info.onlineStatusText,
                "local": self.local}

    def op_set_status(self, a: dict) -> None:
        ps = pj.PresenceStatus()
        ps.status = pj.PJSUA_BUDDY_STATUS_ONLINE if a["online"] else pj.PJSUA_BUDDY_STATUS_OFFLINE
        ps.activity = ACTIVITIES[a.get("activity") or "unknown"]
        ps.note = a.get("note") or ""
        self.acc.setOnlineStatus(ps)

    def op_add_buddy(self, a: dict) -> dict:
        uri = a["uri"]
        if uri not in self.acc.buddies:
            bcfg = pj.BuddyConfig()
            bcfg.uri = uri
            bcfg.subscribe = True
            b = Buddy()
            b.create(self.acc, bcfg)
            self.acc.buddies[uri] = b
        return buddy_info(self.acc.buddies[uri])

    def op_buddy_info(self, a: dict) -> dict:
        return buddy_info(self.acc.buddies[a["uri"]])

    def op_send_message(self, a: dict) -> None:
        prm = pj.SendInstantMessageParam()
        prm.content = a["text"]
        prm.contentType = a.get("content_type") or "text/plain"
        buddy = self.acc.buddies.get(a["uri"])
        if buddy is None:  # pjsua2 sends MESSAGE through a Buddy; a silent one will do
            bcfg = pj.BuddyConfig()
            bcfg.uri = a["uri"]
            bcfg.subscribe = False
            buddy = Buddy()
            buddy.create(self.acc, bcfg)
            self.acc.buddies[a["uri"]] = buddy
        buddy.sendInstantMessage(prm)

    def op_quit(self, _: dict) -> None:
        self.running = False

    # ------------------------------------------------------------------ loop
    def read_stdin(self) -> None:
        for line in sys.stdin:
            if line.strip():
                try:
                    self.commands.put(json.loads(line))
                except ValueError:
                    emit("error", error=f"bad JSON: {line!r}")
        self.commands.put(None)  # EOF: the driver went away

    def run(self) -> None:
        threading.Thread(target=self.read_stdin, daemon=True).start()
        emit("ready", local=self.local, pid=os.getpid())
        while self.running:
            self.ep.libHandleEvents(10)
            while True:
                try:
                    cmd = self.commands.get_nowait()
                except queue.Empty:
                    break
                if cmd is None:
                    self.running = False
                    break
                self.dispatch(cmd)
        # graceful shutdown: pjsua sends de-REGISTER / un-SUBSCRIBE / un-PUBLISH here
        self.acc.shutdown()
        self.ep.libDestroy()
        emit("exited")

    def dispatch(self, cmd: dict) -> None:
        fn = getattr(self, "op_" + str(cmd.get("op")), None)
        try:
            if fn is None:
                raise ValueError(f"unknown op {cmd.get('op')!r}")
            emit("reply", id=cmd.get("id"), ok=True, result=fn(cmd))
        except Exception as exc:
            emit("reply", id=cmd.get("id"), ok=False,
                 error=f"{type(exc).__name__}: {exc}", trace=traceback.format_exc())


def main() -> None:
    agent = Agent(json.loads(sys.argv[1]))
    agent.run()


if __name__ == "__main__":
    main()
