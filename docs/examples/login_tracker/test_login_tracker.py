"""Unit tests of the example SBBs with slee.testing: no network, no store, fake clock."""

import pytest

from slee.testing import SbbHarness

from .login_tracker import (
    IDLE_AFTER,
    USER_IDLE,
    USER_LOGGED_IN,
    USER_LOGGED_OUT,
    AuditSbb,
    LoginTrackerSbb,
    UserLoggedIn,
    UserLoggedOut,
)


@pytest.fixture
def h():
    with SbbHarness(LoginTrackerSbb, event_types=[USER_IDLE]) as harness:
        yield harness


def login(h, user, device):
    return h.fire(USER_LOGGED_IN, UserLoggedIn(user, device), h.activity(), address=f"{user}@example.com")


def logout(h, user, device):
    return h.fire(USER_LOGGED_OUT, UserLoggedOut(user, device), h.activity(), address=f"{user}@example.com")


def test_one_entity_per_user_tracks_devices(h):
    login(h, "alice", "phone")
    login(h, "alice", "laptop")
    login(h, "bob", "phone")
    by_user = {r.convergence_name: r.cmp["devices"] for r in h.roots()}
    assert by_user == {"addr=sip:alice@example.com": ["laptop", "phone"], "addr=sip:bob@example.com": ["phone"]}
    assert h.usage() == {"logins": 3}


def test_audit_child_keeps_last_lines(h):
    for i in range(7):
        login(h, "alice", f"dev{i}")
    [audit] = h.entities(AuditSbb)
    assert audit.cmp["lines"] == [f"login dev{i}" for i in range(2, 7)]


def test_idle_user_gets_an_idle_event_from_the_periodic_timer(h):
    login(h, "alice", "phone")
    assert len(h.timers()) == 1
    assert h.container.naming.lookup("login-tracker:alice") is not None
    h.advance(IDLE_AFTER - 1)
    assert h.fired_of(USER_IDLE) == []
    h.advance(60)
    [idle] = h.fired_of(USER_IDLE)
    assert idle.event.user == "alice" and idle.event.idle_for >= IDLE_AFTER


def test_last_logout_cancels_timer_and_ends_the_null_activity(h):
    login(h, "alice", "phone")
    before = len(h.container.activity_contexts)
    logout(h, "alice", "phone")
    assert h.timers() == []
    assert h.container.naming.lookup("login-tracker:alice") is None
    # the logout's own activity was added, the null activity ended
    assert len(h.container.activity_contexts) == before
    h.advance(3600)
    assert h.fired_of(USER_IDLE) == []


def test_failed_handler_leaves_state_unchanged(h, monkeypatch):
    login(h, "alice", "phone")
    before = h.root().cmp

    def broken(self, line):
        raise RuntimeError("audit store unavailable")

    monkeypatch.setattr(LoginTrackerSbb, "_audit", broken)
    outcome = login(h, "alice", "tablet")
    assert outcome.failed == 1
    assert h.root().cmp == before
