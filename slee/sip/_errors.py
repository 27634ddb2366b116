"""The one exception of the SIP core, carrying the response the RFC prescribes."""

from __future__ import annotations

__all__ = ["SipParseError"]

_DEFAULT_REASONS = {
    0: "Dropped",
    400: "Bad Request",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    483: "Too Many Hops",
    505: "Version Not Supported",
    513: "Message Too Large",
}


class SipParseError(ValueError):
    """A message (or one header of it) the peer got wrong.

    ``status`` is the response the RFC suggests (400, 416, 420, 483, 505, 513) or 0 when the
    message must be dropped silently; ``reason`` is a ready-made reason phrase such as
    ``"Bad Request (malformed CSeq)"``. ``is_response`` is set when the offending message
    was itself a response: a response is never answered (RFC 3261 §8.1.3.1, §18.1.2).
    ``unsupported`` lists the option tags behind a 420 (the caller puts them in an
    Unsupported header, RFC 3261 §8.2.2.3).
    """

    def __init__(
        self,
        detail: str,
        status: int = 400,
        *,
        is_response: bool = False,
        unsupported: list[str] | None = None,
        reason: str | None = None,
    ) -> None:
        self.detail = detail
        self.status = status
        self.is_response = is_response
        self.unsupported: list[str] = list(unsupported or ())
        if reason is None:
            base = _DEFAULT_REASONS.get(status, "Bad Request")
            reason = f"{base} ({detail})" if detail else base
        self.reason = reason
        super().__init__(reason)

    def as_response_error(self) -> SipParseError:
        """The same error seen on a response: never answered, so status 0 (drop)."""
        if self.is_response:
            return self
        return SipParseError(self.detail, 0, is_response=True, reason=self.reason)

    def __repr__(self) -> str:
        return f"SipParseError({self.status}, {self.reason!r}, is_response={self.is_response})"
