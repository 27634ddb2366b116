"""Stream transports: cut a TCP/TLS byte stream into messages (RFC 3261 §18.3).

Sans-IO, in the manner of h11: ``feed()`` takes whatever the socket produced and returns
events. Framing is by Content-Length, which is mandatory on streams; keep-alives follow
RFC 5626 §3.5.1 (a CRLFCRLF "ping" is answered with a CRLF "pong").
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FramerEvent", "FramingFailed", "KeepAliveReceived", "MessageFramed", "StreamFramer"]


@dataclass(frozen=True, slots=True)
class MessageFramed:
    """One complete message (start line, headers, body), ready for ``parse_message``."""

    data: bytes


@dataclass(frozen=True, slots=True)
class KeepAliveReceived:
    """A keep-alive: ``pong`` is True for a CRLFCRLF ping, which needs a CRLF pong sent
    back (RFC 5626 §3.5.1); False for a lone CRLF (a pong, or §7.5 noise)."""

    pong: bool


@dataclass(frozen=True, slots=True)
class FramingFailed:
    """The stream cannot be framed any more; send ``status`` if possible, then close."""

    status: int
    reason: str


FramerEvent = MessageFramed | KeepAliveReceived | FramingFailed

_CRLF = b"\r\n"
_CRLFCRLF = b"\r\n\r\n"
_CL_NAMES = (b"content-length", b"l")


class StreamFramer:
    """Content-Length framing with limits; after :class:`FramingFailed` it stays failed."""

    def __init__(
        self,
        *,
        max_message_size: int = 65535,
        max_header_lines: int = 256,
        max_line_length: int = 8192,
    ) -> None:
        self.max_message_size = max_message_size
        self.max_header_lines = max_header_lines
        self.max_line_length = max_line_length
        self._buf = bytearray()
        self._need: int | None = None  # total length of the message being read
        self._scan = 0  # bytes of the header section already checked
        self._half_ping = False  # a lone CRLF just ended a read at a message boundary
        self._nl_pos = self._line_start = self._lines = 0  # incremental line accounting
        self._failed = False

    @property
    def failed(self) -> bool:
        return self._failed

    @property
    def buffered(self) -> int:
        """Octets received but not yet returned as a message."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[FramerEvent]:
        if self._failed:
            return []
        buf = self._buf
        buf += data
        events: list[FramerEvent] = []
        while buf:
            if self._need is None:
                if self._scan == 0 and buf[0] in (13, 10):
                    if not self._keepalive(buf, events):
                        break
                    continue
                failure = self._read_head(buf)
                if failure is not None:
                    return self._fail(events, failure)
                if self._need is None:
                    break
            if len(buf) < self._need:
                break
            message = bytes(buf[: self._need])
            del buf[: self._need]
            self._need = None
            self._scan = self._nl_pos = self._line_start = self._lines = 0
            events.append(MessageFramed(message))
        return events

    def _keepalive(self, buf: bytearray, events: list[FramerEvent]) -> bool:
        """Consume CRLFs at a message boundary; False when more bytes are needed."""
        if buf[0] == 10:  # a bare LF: noise before a message (§7.5)
            del buf[:1]
            return True
        if len(buf) < 2:
            return False
        if buf[1] != 10:
            return self._start_message()  # CR followed by junk: let parsing reject it
        if self._half_ping:
            # the second half of a CRLFCRLF ping split across reads
            self._half_ping = False
            del buf[:2]
            events.append(KeepAliveReceived(pong=True))
            return True
        if buf[:4] == _CRLFCRLF:
            del buf[:4]
            events.append(KeepAliveReceived(pong=True))
            return True
        if len(buf) == 3 and buf[2] == 13:
            return False  # "\r\n\r": wait for the rest of a possible ping
        del buf[:2]
        events.append(KeepAliveReceived(pong=False))
        self._half_ping = not buf  # a ping may continue in the next read
        return True

    def _start_message(self) -> bool:
        self._half_ping = False
        self._scan = 1  # past the boundary: CRLF handling is over for this message
        return True

    def _read_head(self, buf: bytearray) -> FramingFailed | None:
        self._half_ping = False
        start = max(0, self._scan - 3)
        end = buf.find(_CRLFCRLF, start)
        limit = end if end >= 0 else len(buf)
        failure = self._check_lines(buf, limit)
        if failure is not None:
            return failure
        if end < 0:
            if len(buf) > self.max_message_size:
                return FramingFailed(513, "Message Too Large")
            self._scan = max(1, len(buf))
            return None
        length = _content_length(bytes(buf[:end]))
        if isinstance(length, FramingFailed):
            return length
        total = end + 4 + length
        if total > self.max_message_size:
            return FramingFailed(513, "Message Too Large")
        self._need = total
        return None

    def _check_lines(self, buf: bytearray, limit: int) -> FramingFailed | None:
        """Count header lines and measure them incrementally (no rescans: a slow sender
        feeding one octet at a time costs linear time)."""
        pos = self._nl_pos
        line_start = self._line_start
        lines = self._lines
        while True:
            nl = buf.find(b"\n", pos, limit)
            if nl < 0:
                break
            if nl - line_start > self.max_line_length:
                return FramingFailed(400, "Bad Request (header line too long)")
            lines += 1
            line_start = pos = nl + 1
        if limit - line_start > self.max_line_length:
            return FramingFailed(400, "Bad Request (header line too long)")
        if lines > self.max_header_lines:
            return FramingFailed(400, "Bad Request (too many header lines)")
        self._nl_pos, self._line_start, self._lines = max(pos, limit), line_start, lines
        return None

    def _fail(self, events: list[FramerEvent], failure: FramingFailed) -> list[FramerEvent]:
        self._failed = True
        self._buf.clear()
        events.append(failure)
        return events


def _content_length(head: bytes) -> int | FramingFailed:
    """The Content-Length of a header section; mandatory on streams (§18.3, §20.14)."""
    values: list[bytes] = []
    current: int | None = None  # index in values of a CL row that may be folded
    for line in head.split(b"\n")[1:]:
        line = line.rstrip(b"\r")
        if line[:1] in (b" ", b"\t"):
            if current is not None:
                values[current] += b" " + line.strip()
            continue
        name, colon, value = line.partition(b":")
        current = None
        if colon and name.strip().lower() in _CL_NAMES:
            values.append(value.strip())
            current = len(values) - 1
    if not values:
        return FramingFailed(400, "Bad Request (missing Content-Length)")
    if len(values) > 1:
        return FramingFailed(400, "Bad Request (multiple Content-Length)")
    value = values[0].strip()
    if not value.isdigit() or not value.isascii():
        return FramingFailed(400, "Bad Request (malformed Content-Length)")
    return int(value)
