"""The presence SBBs: a PresentitySbb per presentity, a SubscriptionSbb per subscription dialog.

``PresentitySbb`` is the root: one entity per presentity AOR (a custom initial-event selector
converges SUBSCRIBE, PUBLISH and location events on the AOR). All PUBLISHes of one
presentity therefore run one at a time on one entity: no 412 storms, no duplicate records.
It keeps the publications (RFC 3903), the registration state, the composed document, and an
index of its watchers. It lives while it is watched (its children are attached to the
subscription dialogs) or published (a null activity carries the publication timers); then
the container removes it. Registration changes reach existing presentities only.

``SubscriptionSbb`` is a child entity per subscription dialog (RFC 6665), attached to the
dialog's activity: it answers refreshes, owns the expiry timer, and sends NOTIFYs — at most
one outstanding, later changes coalesced into the newest state.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import secrets
from typing import Any

from slee import (
    TIMER_EVENT,
    ChildRelation,
    CmpField,
    EventTypeId,
    InitialEventSelector,
    Sbb,
    event_handler,
    initial_event_selector,
    local_method,
)
from slee.events import PROFILE_ADDED, PROFILE_REMOVED, PROFILE_UPDATED, Address, ProfileEvent
from slee.ra.sip import (
    DIALOG_REQUEST,
    REQUEST,
    RESPONSE_CLIENT_ERROR,
    RESPONSE_GLOBAL_FAILURE,
    RESPONSE_REDIRECT,
    RESPONSE_SERVER_ERROR,
    RESPONSE_SUCCESS,
    TRANSACTION_TIMEOUT,
    RequestEvent,
    ResponseEvent,
    aor_of,
)
from slee.settings import SettingsCache
from slee.transaction import current_transaction

from .auth import authenticate
from .config import PACKAGES, PIDF, PresenceConfig
from .pidf import PidfError, Publication, closed_document, compose, entity_aor, parse_pidf
from .rules import decide
from .winfo import Watcher, ended_event, watcherinfo

try:  # the location RA (helper "registrar"); ids are fixed by contract, so define them if absent
    from slee.ra.location.events import LOCATION_CHANGED, LOCATION_DEREGISTERED, LOCATION_REGISTERED
except ImportError:  # pragma: no cover - only before the location RA exists
    LOCATION_REGISTERED = EventTypeId("slee.location.Registered", "slee", "1.0")
    LOCATION_DEREGISTERED = EventTypeId("slee.location.Deregistered", "slee", "1.0")
    LOCATION_CHANGED = EventTypeId("slee.location.BindingsChanged", "slee", "1.0")

VENDOR, VERSION = "slee.presence", "1.0"
USAGE = "presence"


SETTINGS_TABLE = "presence-settings"


def _config(sbb: Sbb) -> PresenceConfig:
    """Service config, overridden by profile ``presence-settings/default`` where set.

    Read once per SLEE transaction (a PUBLISH asks for it several times). The one copy is
    kept here, not on the SBB object: an idle Ready object would hold it for nothing.
    """
    global _config_cache
    txn = current_transaction.get()
    if txn is None:
        return _read_config(sbb)
    key = (txn.id, id(sbb.context.service_config))
    cached = _config_cache
    if cached is not None and cached[0] == key:
        return cached[1]
    config = _read_config(sbb)
    _config_cache = (key, config)
    return config


_config_cache: tuple[tuple[Any, int], PresenceConfig] | None = None


def _read_config(sbb: Sbb) -> PresenceConfig:
    values = dict(sbb.context.service_config or {})
    try:
        row = sbb.context.profile_facility.get_table(SETTINGS_TABLE).get("default")
    except Exception:  # no settings table deployed
        row = None
    for key, value in (row or {}).items():
        if value not in (None, ""):
            values[key] = value
    return _config_by_entries.get(values)  # the same settings: the same (immutable) config


_config_by_entries: SettingsCache[PresenceConfig] = SettingsCache(PresenceConfig.from_mapping)


def _watch_id(dialog_id: str) -> str:
    return hashlib.sha1(dialog_id.encode()).hexdigest()[:12]


def _sub_state(state: str, remaining: int) -> str:
    """Subscription-State (RFC 6665 §8.2.3); blocked-neutral subscriptions look active."""
    if state == "pending":
        return f"pending;expires={remaining}"
    return f"active;expires={remaining}"


def _acceptable(accept: list[str], wanted: str) -> bool:
    """RFC 6665 §4.2.1: no Accept means the package default (baresip sends none)."""
    if not accept:
        return True
    kind = wanted.split("/", 1)[0]
    return any(a in (wanted, "*/*", f"{kind}/*") for a in accept)


# =====================================================================================
class SubscriptionSbb(Sbb):
    """One subscription dialog: refreshes, expiry, NOTIFY delivery and its flow control."""

    sbb_name, sbb_vendor, sbb_version = "PresenceSubscriptionSbb", VENDOR, VERSION

    parent = CmpField(object)
    dialog_aci = CmpField(object)
    presentity = CmpField(str)
    watcher = CmpField(str)
    display = CmpField(str)
    package = CmpField(str)
    state = CmpField(str)  # active | pending | blocked | terminated
    expires_at = CmpField(float)
    timer_id = CmpField(str)
    # a NOTIFY awaits its answer; not stored: after a restart none does (and its answer
    # would otherwise rewrite the subscription's stored state for every NOTIFY sent)
    outstanding = CmpField(bool, default=False, stored=False)
    dirty = CmpField(bool, default=False)  # something newer than the outstanding NOTIFY
    pending_body = CmpField(bytes)  # the newest content, sent when the outstanding one is answered
    sent_hash = CmpField(str)  # what the watcher last got (skip identical NOTIFYs)
    winfo_version = CmpField(int, default=-1)  # RFC 3858 §4: 0 for the first document, +1 per NOTIFY
    winfo_changes = CmpField(dict)  # watcher id -> Watcher fields changed since the last winfo NOTIFY
    winfo_full = CmpField(bool, default=False)  # a full winfo document is owed (refresh while outstanding)
    final_sent = CmpField(bool, default=False)
    created_at = CmpField(float)

    # -- driven by the parent ---------------------------------------------------------
    @local_method
    def start(self, parent: Any, dialog_aci: Any, info: dict[str, Any], body: bytes) -> None:
        self.parent = parent
        self.dialog_aci = dialog_aci
        self.presentity = info["presentity"]
        self.watcher = info["watcher"]
        self.display = info.get("display") or None  # None is not kept (the field's default)
        self.package = info["package"]
        self.state = info["state"]
        self.created_at = self.context.now()
        self._arm(info["expires"])
        dialog_aci.attach(self.context.sbb_local_object)
        if info["expires"] == 0:  # a fetch (RFC 6665 §4.4.3): one NOTIFY, terminated, with the state
            self._finish("timeout")
            return
        if self.package == "presence.winfo":
            self._offer_winfo(full=True)  # RFC 3857 §4.2: the first NOTIFY carries full state
        else:
            self._offer(body, force=True)

    @local_method
    def update(self, body: bytes, state: str | None = None, *, force: bool = False) -> None:
        """New content (composed PIDF, or a full winfo list) and/or a new authorization state."""
        if self.final_sent:
            return
        if state is not None and state != self.state:
            self.state = state
            force = True
        self._offer(body, force=force)

    @local_method
    def watchers_changed(self, changes: list[dict[str, Any]]) -> None:
        """winfo only: watchers that changed (RFC 3858 §4), sent as a ``partial`` document."""
        if self.final_sent or self.package != "presence.winfo":
            return
        merged = dict(self.winfo_changes or {})
        for change in changes:
            merged[change["id"]] = change  # the newest state of each watcher wins
        self.winfo_changes = merged
        self._offer_winfo(full=False)

    @local_method
    def describe(self) -> dict[str, Any]:
        dialog = self._dialog()
        return {"watcher": self.watcher, "display": self.display or "", "package": self.package,
                "state": self.state, "expires": self._remaining(), "dialog": dialog.id if dialog else None,
                "cseq": dialog.local_seq if dialog else None, "outstanding": self.outstanding,
                "duration": int(self.context.now() - (self.created_at or self.context.now()))}

    @local_method
    def terminate(self, reason: str) -> None:
        """End from the notifier side (rejected, deactivated, noresource...)."""
        self._finish(reason)

    # -- events on the dialog ---------------------------------------------------------
    @event_handler(DIALOG_REQUEST["SUBSCRIBE"])
    def on_refresh(self, event: RequestEvent, aci: Any) -> None:
        """RFC 6665 §4.2.1.2: a refresh or an unsubscribe (Expires: 0) inside the dialog."""
        req, st = event.request, event.server_transaction
        cfg = _config(self)
        ev = req.event
        if ev is None or ev.package != self.package:
            st.respond(489, "Bad Event", headers=[("Allow-Events", ", ".join(PACKAGES))])
            return
        expires = req.expires if req.expires is not None else cfg.default_expires
        if 0 < expires < cfg.min_expires:
            st.respond(423, "Interval Too Brief", headers=[("Min-Expires", str(cfg.min_expires))])
            return
        expires = min(expires, cfg.max_expires)
        st.respond(200, "OK", headers=[("Expires", str(expires)), ("Contact", self._contact(event))])
        if expires == 0:
            self.context.usage(USAGE).increment("unsubscribes")
            self._finish(None)
            return
        self._arm(expires)
        self.context.usage(USAGE).increment("refreshes")
        if self.package == "presence.winfo":
            self._offer_winfo(full=True)  # RFC 3857 §4.2: a refresh gets the full state again
            return
        body = self.parent.content_for(self.package, self.context.sbb_local_object)
        self._offer(body, force=True)  # §4.2.1.2: every refresh gets a NOTIFY

    @event_handler(RESPONSE_SUCCESS)
    def on_notify_ok(self, event: ResponseEvent, aci: Any) -> None:
        self.outstanding = False
        if self.final_sent:
            return
        if self.dirty:
            self.dirty = False
            if self.package == "presence.winfo":
                self._offer_winfo(full=False)
                return
            body = self.pending_body or b""
            self._offer(body, force=False)

    @event_handler(RESPONSE_CLIENT_ERROR)
    def on_notify_4xx(self, event: ResponseEvent, aci: Any) -> None:
        self._failed(event.status)

    @event_handler(RESPONSE_SERVER_ERROR)
    def on_notify_5xx(self, event: ResponseEvent, aci: Any) -> None:
        self._failed(event.status)

    @event_handler(RESPONSE_GLOBAL_FAILURE)
    def on_notify_6xx(self, event: ResponseEvent, aci: Any) -> None:
        self._failed(event.status)

    @event_handler(RESPONSE_REDIRECT)
    def on_notify_3xx(self, event: ResponseEvent, aci: Any) -> None:
        self._failed(event.status)

    @event_handler(TRANSACTION_TIMEOUT)
    def on_notify_timeout(self, event: Any, aci: Any) -> None:
        self._failed(408)

    @event_handler(TIMER_EVENT)
    def on_expired(self, event: Any, aci: Any) -> None:
        if event.timer_id != self.timer_id:
            return
        self.timer_id = None
        self.context.usage(USAGE).increment("subscriptions_expired")
        self._finish("timeout")

    # -- internals --------------------------------------------------------------------
    def _failed(self, status: int) -> None:
        """RFC 6665 §4.2.2: 481 or a timeout (and other failures) end the subscription."""
        self.outstanding = False
        self.context.usage(USAGE).increment("notifies_failed")
        if self.final_sent:
            self._remove("deactivated")
            return
        self.final_sent = True
        self._remove("deactivated")

    def _contact(self, event: RequestEvent) -> str:
        sip = self.context.ra("sip")
        return sip.contact(event.source.transport if event.source.reliable else None)

    def _dialog(self) -> Any:
        aci = self.dialog_aci
        return aci.activity if aci is not None else None

    def _remaining(self) -> int:
        return max(0, math.ceil((self.expires_at or 0) - self.context.now()))

    def _arm(self, expires: int) -> None:
        timers = self.context.timer_facility
        if self.timer_id:
            timers.cancel_timer(self.timer_id)
        self.expires_at = self.context.now() + expires
        self.timer_id = timers.set_timer_in(self.dialog_aci, float(expires)) if expires > 0 else None

    def _offer(self, body: bytes, *, force: bool) -> None:
        """Send now, or remember the newest content while a NOTIFY is outstanding."""
        if self.state == "blocked" and _config(self).blocked_mode == "terminate":
            self._finish("rejected")
            return
        if self.state == "pending":
            body = b""  # RFC 3857 §5: a pending subscription gets no presence data
        elif self.state == "blocked" and self.package == "presence":
            body = closed_document(self.presentity)  # polite blocking: a neutral document
        # 8 bytes are plenty to tell two states of one subscription apart (16 hex characters
        # are kept per subscription; SHA-1's 40 were 24 bytes more for nothing)
        digest = hashlib.blake2b(self.state.encode() + b"\0" + body, digest_size=8).hexdigest()
        if not force and digest == self.sent_hash:
            return
        if self.outstanding:
            self.dirty = True
            self.pending_body = body
            return
        if self.dirty:  # (after a restart: ``outstanding`` is not stored) this is newer
            self.dirty = False
            self.pending_body = None
        self.sent_hash = digest
        self._send(_sub_state(self.state, self._remaining()), body)

    def _offer_winfo(self, *, full: bool) -> None:
        """RFC 3858 §4: a ``full`` document first (and after a refresh), then ``partial`` ones
        with only the watchers that changed; ``version`` one higher on every NOTIFY, so the
        changes coalesced while a NOTIFY was outstanding all go into the next one."""
        if self.outstanding:
            self.dirty = True
            if full:
                self.winfo_full = True
            return
        full = full or self.winfo_full or self.winfo_version < 0
        changes = self.winfo_changes or {}
        if not full and not changes:
            return
        self.winfo_version = version = self.winfo_version + 1
        if full:
            body = self.parent.winfo_document(version)
        else:
            body = watcherinfo(self.presentity, [Watcher(**w) for w in changes.values()], version=version,
                               full=False)
        self.winfo_changes = {}
        self.winfo_full = False
        self._send(_sub_state(self.state, self._remaining()), body)

    def _send(self, sub_state: str, body: bytes) -> None:
        dialog = self._dialog()
        if dialog is None or dialog.terminated:
            return
        ctype = PACKAGES[self.package]
        request = dialog.create_request("NOTIFY", body=body, content_type=ctype if body else None,
                                        headers=[("Event", self.package), ("Subscription-State", sub_state),
                                                 ("X-Presence-Service", f"{VENDOR}/{VERSION}")])
        dialog.send_request(request)
        self.outstanding = True
        self.context.usage(USAGE).increment("notifies_sent")

    def _finish(self, reason: str | None) -> None:
        """A final NOTIFY (terminated), then forget the dialog (RFC 6665 §4.4.1)."""
        if self.final_sent:
            return
        self.final_sent = True
        if self.timer_id:
            self.context.timer_facility.cancel_timer(self.timer_id)
            self.timer_id = None
        state = "terminated" + (f";reason={reason}" if reason else "")
        body = b""
        if self.package == "presence" and self.state == "active":
            body = self.parent.content_for(self.package, None)
        elif self.package == "presence.winfo":
            self.winfo_version = self.winfo_version + 1
            body = self.parent.winfo_document(self.winfo_version)  # the last word is the full list
        self._send(state, body)
        self._remove(reason)

    def _remove(self, reason: str | None) -> None:
        dialog = self._dialog()
        if dialog is not None and not dialog.terminated:
            dialog.terminate()
        parent = self.parent
        me = self.context.sbb_local_object
        if parent is not None:
            parent.subscription_ended(me, reason)


# =====================================================================================
class PresentitySbb(Sbb):
    """Root: one entity per presentity — publications, registration, composition, watchers."""

    sbb_name, sbb_vendor, sbb_version = "PresentitySbb", VENDOR, VERSION

    aor = CmpField(str)
    registered = CmpField(bool, default=False)
    pubs = CmpField(dict)  # etag -> {"body": bytes, "expires_at": float, "timer": str, "at": float}
    timer_owner = CmpField(dict)  # timer id -> etag | "rules"
    document = CmpField(bytes)  # the composed PIDF, kept by earlier versions; now None (see _document)
    doc_digest = CmpField(str)  # digest of the last composed PIDF: recomposing to the same notifies nobody
    subs = CmpField(dict)  # child entity id -> {"watcher", "package", "state", "id"[, "display"][, "event"]}
    home = CmpField(object)  # ACI of the null activity of publication timers, while there are publications
    rules_timer = CmpField(str)  # only in state from versions that polled the rules table
    subscriptions = ChildRelation(SubscriptionSbb)

    # -- initial event selection --------------------------------------------------------
    @initial_event_selector
    def select_presentity(self, ies: InitialEventSelector) -> InitialEventSelector:
        """Converge on the presentity AOR; refuse packages this service does not serve so the
        RA answers 489 with Allow-Events (RFC 6665 §4.2.1)."""
        event = ies.event
        if isinstance(event, ProfileEvent):  # a rule changed: the owner's presentity re-decides
            values = event.after or event.before or {}
            owner = values.get("owner")
            if event.table != self._rules_table_name() or not owner:
                ies.initial_event = False
                return ies
            ies.address = Address("sip", str(owner))
            ies.select = {"address"}
            ies.create = False  # a rule of a presentity nobody watches waits for its first SUBSCRIBE
            return ies
        request = getattr(event, "request", None)
        if request is not None:
            ev = request.event
            allowed = ("presence",) if request.method == "PUBLISH" else tuple(PACKAGES)
            if ev is None or ev.package not in allowed:
                ies.initial_event = False
                return ies
        elif getattr(event, "aor", None) is None:
            ies.initial_event = False
            return ies
        else:
            # A registration change of a user nobody watches and who has not published: no
            # presentity to update. When one is created later it reads the location service.
            ies.create = False
        ies.select = {"address"}
        return ies

    @event_handler(REQUEST["SUBSCRIBE"], initial=True, select=("address",), selector="select_presentity")
    def on_subscribe(self, event: RequestEvent, aci: Any) -> None:
        req, st = event.request, event.server_transaction
        cfg = _config(self)
        outcome = authenticate(self.context, event, cfg)
        if outcome is not None and not outcome.ok:
            return  # 407 (or 403/400) sent; no state is created for an unauthenticated request
        self._init(aor_of(req.to.uri))
        package = req.event.package
        if not _acceptable(req.accept, PACKAGES[package]):
            st.respond(406, "Not Acceptable", headers=[("Accept", PACKAGES[package])])
            return
        expires = req.expires if req.expires is not None else cfg.default_expires
        if 0 < expires < cfg.min_expires:  # RFC 6665 §4.2.1.1
            st.respond(423, "Interval Too Brief", headers=[("Min-Expires", str(cfg.min_expires))])
            return
        expires = min(expires, cfg.max_expires)
        watcher = aor_of(req.from_.uri)
        if package == "presence.winfo" and watcher != self.aor:
            st.respond(403, "Forbidden (only the presentity may watch its watchers)")
            return
        decision = decide(self._rules_table(cfg), self.aor, watcher) if cfg.authorization == "rules" else "allow"
        state = {"allow": "active", "block": "blocked", "pending": "pending"}[decision]
        if package == "presence.winfo":
            state = "active"
        sip = self.context.ra("sip")
        dialog = sip.create_dialog(st, persistent=True)
        contact = sip.contact(event.source.transport if event.source.reliable else None)
        # 200 even while pending: RFC 6665 §8.3.1 deprecates 202
        st.respond(200, "OK", headers=[("Expires", str(expires)), ("Contact", contact)])
        dialog_aci = self.context.aci_for(dialog)
        child = self.subscriptions.create()
        subs = dict(self.subs or {})
        # Only what differs from the defaults _watcher() reads ("display" none, "event"
        # "subscribe"): one entry per watcher, 4 keys are a smaller dict than 6.
        entry = {"watcher": watcher, "package": package, "state": state, "id": _watch_id(dialog.id)}
        if req.from_.display_name:
            entry["display"] = req.from_.display_name
        subs[child.entity_id] = entry
        self.subs = subs
        self.context.usage(USAGE).increment("subscriptions")
        info = {"presentity": self.aor, "watcher": watcher, "display": req.from_.display_name or "",
                "package": package, "state": state, "expires": expires}
        body = self.content_for(package, None)
        child.start(self.context.sbb_local_object, dialog_aci, info, body)
        if package == "presence" and child.entity_id in (self.subs or {}):  # not ended already (fetch, blocked)
            self._winfo_changed([self._watcher(child.entity_id)])

    @event_handler(REQUEST["PUBLISH"], initial=True, select=("address",), selector="select_presentity")
    def on_publish(self, event: RequestEvent, aci: Any) -> None:
        """RFC 3903 §6: create, refresh, modify or remove a publication."""
        req, st = event.request, event.server_transaction
        cfg = _config(self)
        outcome = authenticate(self.context, event, cfg)
        if outcome is not None and not outcome.ok:
            return  # 407 (or 403/400) sent
        aor = aor_of(req.to.uri)
        if aor_of(req.from_.uri) != aor or (outcome is not None and not outcome.may_use(aor)):
            # RFC 3903 §13: only the presentity itself (the authenticated user, when auth is on)
            self.context.usage(USAGE).increment("publish_rejected")
            st.respond(403, "Forbidden (a user may publish only its own presence)")
            return
        self._init(aor)
        if req.body and req.content_type != PIDF:
            st.respond(415, "Unsupported Media Type", headers=[("Accept", PIDF)])
            return
        expires = req.expires if req.expires is not None else cfg.publish_default_expires
        if 0 < expires < cfg.publish_min_expires:
            st.respond(423, "Interval Too Brief", headers=[("Min-Expires", str(cfg.publish_min_expires))])
            return
        expires = min(expires, cfg.publish_max_expires)
        pubs = {k: dict(v) for k, v in (self.pubs or {}).items()}
        if_match = req.sip_if_match
        if if_match is not None and if_match not in pubs:
            self.context.usage(USAGE).increment("publish_412")
            st.respond(412, "Conditional Request Failed")
            return
        body: bytes | None = None
        if req.body:
            try:
                doc = parse_pidf(req.body, max_size=cfg.max_body)
            except PidfError as exc:
                self.context.usage(USAGE).increment("publish_rejected")
                st.respond(400, f"Bad Request ({exc.reason})")
                return
            if entity_aor(doc.get("entity")) != self.aor:
                self.context.usage(USAGE).increment("publish_rejected")
                st.respond(400, "Bad Request (PIDF entity is not the publisher's AOR)")
                return
            body = req.body
        elif if_match is None:
            st.respond(400, "Bad Request (initial PUBLISH without a body)")
            return
        old = pubs.pop(if_match, None) if if_match is not None else None
        if old is not None and old.get("timer"):
            self.context.timer_facility.cancel_timer(old["timer"])
            self._forget_timer(old["timer"])
        etag = secrets.token_hex(10)  # a fresh entity-tag in every 2xx (RFC 3903 §6 step 7)
        if expires > 0:
            entry = {"body": body if body is not None else old["body"], "expires_at": self.context.now() + expires,
                     "at": self.context.now() if body is not None else old["at"], "timer": None}
            entry["timer"] = self.context.timer_facility.set_timer_in(self._home(), float(expires))
            self._own_timer(entry["timer"], etag)
            pubs[etag] = entry
            self.context.usage(USAGE).increment("publications" if old is None else
                                                ("publish_modify" if body is not None else "publish_refresh"))
        else:
            self.context.usage(USAGE).increment("publish_remove")
        self.pubs = pubs
        st.respond(200, "OK", headers=[("SIP-ETag", etag), ("Expires", str(expires))])
        self._recompose()
        self._release_home()

    @event_handler(LOCATION_REGISTERED, initial=True, select=("address",), selector="select_presentity")
    def on_registered(self, event: Any, aci: Any) -> None:
        self._init(event.aor)
        self.registered = True
        self._recompose()

    @event_handler(LOCATION_CHANGED, initial=True, select=("address",), selector="select_presentity")
    def on_bindings_changed(self, event: Any, aci: Any) -> None:
        self._init(event.aor)
        self.registered = bool(event.bindings)
        self._recompose()

    @event_handler(LOCATION_DEREGISTERED, initial=True, select=("address",), selector="select_presentity")
    def on_deregistered(self, event: Any, aci: Any) -> None:
        """The last binding is gone (un-REGISTER, wildcard or expiry): the user is offline."""
        self._init(event.aor)
        self.registered = False
        if _config(self).close_publications_on_deregister and self.pubs:
            for entry in self.pubs.values():
                if entry.get("timer"):
                    self.context.timer_facility.cancel_timer(entry["timer"])
                    self._forget_timer(entry["timer"])
            self.pubs = {}
        self._recompose()
        self._release_home()

    @event_handler(PROFILE_ADDED, initial=True, select=("address",), selector="select_presentity")
    def on_rule_added(self, event: ProfileEvent, aci: Any) -> None:
        self._rule_changed(aci)

    @event_handler(PROFILE_UPDATED, initial=True, select=("address",), selector="select_presentity")
    def on_rule_updated(self, event: ProfileEvent, aci: Any) -> None:
        self._rule_changed(aci)

    @event_handler(PROFILE_REMOVED, initial=True, select=("address",), selector="select_presentity")
    def on_rule_removed(self, event: ProfileEvent, aci: Any) -> None:
        self._rule_changed(aci)

    def _rule_changed(self, aci: Any) -> None:
        """``bin/slee presence allow|block|remove`` committed a rule of this presentity."""
        # Off the table's activity at once: later rule changes reach only their owner, and a
        # presentity created just for this event (nobody subscribed) is removed again.
        aci.detach(self.context.sbb_local_object)
        if self.aor:
            self._check_rules()

    @event_handler(TIMER_EVENT)
    def on_timer(self, event: Any, aci: Any) -> None:
        owner = (self.timer_owner or {}).get(event.timer_id)
        if owner is None:
            return
        if owner == "rules":  # the periodic re-check of versions before profile events: stop it
            self.context.timer_facility.cancel_timer(event.timer_id)
            self._forget_timer(event.timer_id)
            self.rules_timer = None
            self._check_rules()
            return
        self._forget_timer(event.timer_id)
        pubs = {k: v for k, v in (self.pubs or {}).items() if k != owner}
        if len(pubs) != len(self.pubs or {}):
            self.pubs = pubs
            self.context.usage(USAGE).increment("publications_expired")
            self._recompose()
            self._release_home()

    # -- local interface (children, management) -----------------------------------------
    @local_method
    def content_for(self, package: str, child: Any) -> bytes:
        if package == "presence":
            return self._document()
        return b"winfo"  # the child asks winfo_document() with its own version

    @local_method
    def winfo_document(self, version: int) -> bytes:
        """The full watcher list (RFC 3858 §4, ``state="full"``)."""
        return watcherinfo(self.aor, self._watchers(), version=version, full=True)

    @local_method
    def subscription_ended(self, child: Any, reason: str | None = None) -> None:
        subs = dict(self.subs or {})
        info = subs.pop(child.entity_id, None)
        self.subs = subs
        child.remove()
        if info is not None and info["package"] == "presence":
            gone = Watcher(info["id"], info["watcher"], "terminated", ended_event(reason, info["state"]),
                           info.get("display") or None)
            self._winfo_changed([gone])  # a partial document reports it terminated (RFC 3858 §4)

    @local_method
    def snapshot(self) -> dict[str, Any]:
        now = self.context.now()
        return {"aor": self.aor, "registered": self.registered,
                "document": (self._document()).decode(),
                "publications": [{"etag": k, "expires": max(0, math.ceil(v["expires_at"] - now))}
                                 for k, v in (self.pubs or {}).items()],
                "watchers": [ref.describe() for ref in self.subscriptions]}

    # -- internals --------------------------------------------------------------------------
    def _init(self, aor: str) -> None:
        if self.aor:
            return
        self.aor = aor
        try:
            bindings = self.context.ra("location").lookup(aor)
        except Exception:  # no location RA linked (unit tests, presence-only deployments)
            bindings = []
        self.registered = bool(bindings)

    def _home(self) -> Any:
        """The null activity that carries publication timers and keeps a published
        presentity alive. Made on the first publication only: a presentity that is only
        watched lives as long as its subscriptions (their dialogs hold its child entities),
        and is removed with the last of them."""
        home = self.home
        if home is None:
            null = self.context.null_activity_factory.create_null_activity()
            home = self.context.aci_for(null)
            home.attach(self.context.sbb_local_object)
            self.home = home
        return home

    def _release_home(self) -> None:
        """No publication (nor an old version's rules timer) left: let the home go. With no
        subscription either, the container then removes this presentity."""
        home = self.home
        if home is None or self.pubs or self.rules_timer:
            return
        self.home = None
        home.detach(self.context.sbb_local_object)
        name = f"presence:{self.aor}"  # bound by versions that made the home at once
        naming = self.context.naming
        if naming.lookup(name) is not None:
            naming.unbind(name)

    def _own_timer(self, timer_id: str, owner: str) -> None:
        owners = dict(self.timer_owner or {})
        owners[timer_id] = owner
        self.timer_owner = owners

    def _forget_timer(self, timer_id: str) -> None:
        owners = dict(self.timer_owner or {})
        owners.pop(timer_id, None)
        self.timer_owner = owners

    def _compose(self) -> bytes:
        cfg = _config(self)
        pubs = sorted((self.pubs or {}).items(), key=lambda kv: -kv[1]["at"])
        publications = [Publication(k, v["body"], v["at"]) for k, v in pubs]
        force_closed = not self.registered and cfg.close_publications_on_deregister and self._ever_registered()
        return compose(self.aor, publications, registered=self.registered, force_closed=force_closed)

    def _ever_registered(self) -> bool:
        return False  # publications are dropped on deregistration, so nothing stale remains

    def _document(self) -> bytes:
        """The current composed document. Composed each time it is needed (7 us without a
        publication, 26 us with one), not kept: keeping it cost 0.8 KiB per presentity,
        most of them with nothing published, and it is needed once per new subscription."""
        return self._compose()

    def _recompose(self) -> None:
        if not any(info["package"] == "presence" for info in (self.subs or {}).values()):
            # Nobody to tell: composing would be for nothing (most publishers' watchers are
            # offline). The next watcher gets a document composed for it; the digest is
            # unknown until then, and a NOTIFY with unchanged content is not sent anyway
            # (SubscriptionSbb compares what the watcher last got).
            if self.doc_digest is not None:
                self.doc_digest = None
            return
        doc = self._compose()
        digest = hashlib.blake2b(doc, digest_size=16).hexdigest()
        if self.document is not None:
            self.document = None  # state written by an earlier version
        if digest == self.doc_digest:
            return  # unchanged composed state: nobody is notified
        self.doc_digest = digest
        for ref in self.subscriptions:
            info = (self.subs or {}).get(ref.entity_id)
            if info is not None and info["package"] == "presence":
                ref.update(doc)

    def _watcher(self, entity_id: str) -> Watcher:
        info = (self.subs or {})[entity_id]
        return Watcher(info["id"], info["watcher"], info["state"], info.get("event", "subscribe"),
                       info.get("display") or None)

    def _watchers(self) -> list[Watcher]:
        return [self._watcher(k) for k, v in (self.subs or {}).items() if v["package"] == "presence"]

    def _winfo_changed(self, changes: list[Watcher]) -> None:
        """Tell every ``presence.winfo`` subscription which watchers changed."""
        if not changes:
            return
        subs = self.subs or {}
        winfo = [ref for ref in self.subscriptions
                 if (subs.get(ref.entity_id) or {}).get("package") == "presence.winfo"]
        if not winfo:
            return  # nobody watches this presentity's watchers: nothing to build
        payload = [dataclasses.asdict(w) for w in changes]
        for ref in winfo:
            ref.watchers_changed(payload)

    def _rules_table_name(self) -> str:
        try:
            return _config(self).rules_table
        except Exception:  # a selector may run where the settings cannot be read
            return PresenceConfig.rules_table

    def _rules_table(self, cfg: PresenceConfig) -> Any:
        try:
            return self.context.profile_facility.get_table(cfg.rules_table)
        except Exception:
            return None

    def _check_rules(self) -> None:
        """Re-decide every watcher after a rule changed: pending -> active (approved) or
        blocked (rejected); an allowed watcher blocked later is rejected too, and one whose
        rule was removed is pending again (RFC 3857 §3.3 events for winfo)."""
        cfg = _config(self)
        if cfg.authorization != "rules":
            return
        table = self._rules_table(cfg)
        subs = {k: dict(v) for k, v in (self.subs or {}).items()}
        changed: list[str] = []
        for ref in list(self.subscriptions):
            info = subs.get(ref.entity_id)
            if info is None or info["package"] != "presence":
                continue
            state = {"allow": "active", "block": "blocked", "pending": "pending"}[
                decide(table, self.aor, info["watcher"])]
            if state == info["state"]:
                continue
            info["state"] = state
            info["event"] = {"active": "approved", "blocked": "rejected", "pending": "subscribe"}[state]
            changed.append(ref.entity_id)
            self.subs = subs
            ref.update(self._document(), info["state"])
            subs = {k: dict(v) for k, v in (self.subs or {}).items()}
        # approved ones (and neutral-blocked ones); terminated ones reported themselves on the way out
        self._winfo_changed([self._watcher(k) for k in changed if k in (self.subs or {})])
