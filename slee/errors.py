"""SLEE exceptions, named after their JSR 240 counterparts."""

from __future__ import annotations


class SleeError(Exception):
    """Base class of the container's own errors."""


class TransactionRolledBackError(SleeError):
    """A SLEE transaction was rolled back (JSR 240 TransactionRolledbackLocalException)."""


class TransactionRequiredError(SleeError):
    """A transactional method was called with no SLEE transaction active."""


class UnrecognizedActivityError(SleeError):
    """The activity handle is not known to the container."""


class ActivityAlreadyExistsError(SleeError):
    """start_activity was called twice for one handle."""


class ActivityIsEndingError(SleeError):
    """Events cannot be fired on, or SBBs attached to, an ending activity."""


class NoSuchObjectError(SleeError):
    """An SBB local object (or profile, or timer) refers to something that has been removed."""


class NameAlreadyBoundError(SleeError):
    """The Activity Context Naming Facility already has this name."""


class NameNotBoundError(SleeError):
    """The Activity Context Naming Facility has no such name."""


class UnrecognizedEventError(SleeError):
    """The event type is not installed."""


class InvalidStateError(SleeError):
    """The component is not in a state that allows the operation (e.g. activate an ACTIVE service)."""


class ValidationError(SleeError):
    """A component failed install-time validation; the message says where and why."""


class ProfileError(SleeError):
    """Profile facility misuse: unknown table, profile, attribute, or a bad attribute value."""
