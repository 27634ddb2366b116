"""Datagrams steered by the kernel to the worker that owns them (classic BPF on SO_REUSEPORT).

Each address-of-record has one owner worker (`slee.transport._shard`); a datagram that the
kernel gives to another worker is handed over a Unix socket, parsed twice and answered a
process wake-up later. The kernel can do better: a SO_REUSEPORT group runs a classic BPF
program over each datagram's UDP payload and takes its return value as the index of the
socket to deliver to. This module builds that program. It reads what is at a findable place
in the bytes:

* a response (``SIP/``): the worker number our branches carry (``z9hG4bK-w<N>-``), searched
  for in the first bytes, where the top Via is;
* a request: the first header line starting ``To`` / ``t`` (any case), the URI after its
  first ``sip:``, hashed up to the end of the host (`aor_hash` of ``user@host``), modulo the
  worker count: REGISTER, in-dialog requests and the usual SUBSCRIBE, PUBLISH and MESSAGE
  (whose To is their Request-URI) land on their owner.

What the program cannot read (no To within its window, a display name longer than the
window, a long URI, a sips: URI, another tenant's branch) goes to a random worker, which hands it over as before:
the parse in Python stays the authority on ownership, the program only a guess that is
right for nearly every message. Loads past the end of a short datagram end the program with
0 (worker 0). Slot ``i`` of the group must be worker ``i``'s socket: the supervisor binds
them in order and keeps them open across worker restarts (`slee.workers`).

Classic BPF has no loops and only forward jumps (conditional ones reach 255 instructions),
so the searches are unrolled within fixed windows, under the kernel's 4,096-instruction cap.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass, field

__all__ = ["FNV_OFFSET", "STEER_WINDOWS", "aor_hash", "attach_program", "random_program", "steer_datagrams",
           "steering_program"]

FNV_OFFSET = 2166136261
_FNV_PRIME = 16777619
_MASK = 0xFFFFFFFF


def aor_hash(key: bytes) -> int:
    """FNV-1a (32 bits) of ``key`` with every byte ORed with 0x20: ASCII letters fold to
    lower case in one instruction, the same in the BPF program and here."""
    h = FNV_OFFSET
    for byte in key:
        h = ((h ^ (byte | 0x20)) * _FNV_PRIME) & _MASK
    return h


# classic BPF opcodes (linux/filter.h)
_LD_W_ABS, _LD_H_ABS, _LD_B_ABS = 0x20, 0x28, 0x30
_LD_W_IND, _LD_B_IND = 0x40, 0x50
_LD_IMM, _LD_MEM = 0x00, 0x60
_LDX_IMM, _LDX_MEM = 0x01, 0x61
_ST, _STX = 0x02, 0x03
_ADD_K, _MUL_K, _AND_K, _OR_K, _MOD_K, _XOR_X = 0x04, 0x24, 0x54, 0x44, 0x94, 0xAC
_SUB_K, _ADD_X = 0x14, 0x0C
_JA, _JEQ_K, _JGT_K, _JGE_K = 0x05, 0x15, 0x25, 0x35
_RET_A = 0x16
_TAX, _TXA = 0x07, 0x87
_SKF_AD_RANDOM = (-0x1000 + 56) & _MASK
_INSN = struct.Struct("=HBBI")  # struct sock_filter: code, jt, jf, k
_MAX_INSNS = 4096


@dataclass(frozen=True)
class SteerWindows:
    """How far into a datagram the program looks (bytes), sized to fit the instruction cap."""

    to_line: tuple[int, int] = (12, 448)  # offsets searched for "\nT" of the To header line
    uri: int = 40  # bytes after "To:" searched for "sip:" (display names shorter than that)
    key: int = 48  # longest user@host hashed
    branch: tuple[int, int] = (12, 192)  # offsets searched for "bK-w" in a response


STEER_WINDOWS = SteerWindows()


@dataclass
class _Assembler:
    """Instructions with symbolic jump targets, resolved when the program is packed."""

    insns: list[list] = field(default_factory=list)  # [code, jt, jf, k]
    labels: dict[str, int] = field(default_factory=dict)

    def op(self, code: int, k: int = 0, jt: int | str = 0, jf: int | str = 0) -> None:
        self.insns.append([code, jt, jf, k & _MASK])

    def label(self, name: str) -> None:
        self.labels[name] = len(self.insns)

    def ja(self, target: str) -> None:
        self.insns.append([_JA, 0, 0, target])

    def pack(self) -> bytes:
        out = []
        for at, (code, jt, jf, k) in enumerate(self.insns):
            if isinstance(k, str):
                k = self.labels[k] - at - 1
            jt, jf = (self.labels[j] - at - 1 if isinstance(j, str) else j for j in (jt, jf))
            if not (0 <= jt <= 255 and 0 <= jf <= 255 and k >= 0):
                raise ValueError(f"jump out of range at instruction {at}")
            out.append(_INSN.pack(code, jt, jf, k))
        if len(out) > _MAX_INSNS:
            raise ValueError(f"steering program of {len(out)} instructions is over the kernel's {_MAX_INSNS}")
        return b"".join(out)


def _random_tail(a: _Assembler, count: int) -> None:
    a.op(_LD_W_ABS, _SKF_AD_RANDOM)
    a.op(_MOD_K, count)
    a.op(_RET_A)


def random_program(count: int) -> bytes:
    """The packed program handing each datagram to a random one of ``count`` sockets."""
    a = _Assembler()
    _random_tail(a, count)
    return a.pack()


def steering_program(count: int, windows: SteerWindows = STEER_WINDOWS) -> bytes:
    """The packed ``struct sock_filter`` array steering each datagram of a group of
    ``count`` sockets to its owner (see the module docstring)."""
    if not 1 <= count <= 99:
        raise ValueError("steering needs 1 to 99 workers")
    a = _Assembler()
    # scratch memory: M[0] the hash, M[1] the base offset of the key
    a.op(_LD_W_ABS, 0)
    a.op(_JEQ_K, int.from_bytes(b"SIP/", "big"), 0, 1)
    a.ja("response")

    # -- request: find the To header line ---------------------------------------------------
    start, end = windows.to_line
    for k in range(start, end):
        a.op(_LD_H_ABS, k)
        a.op(_AND_K, 0xFFDF)  # fold 't' to 'T'
        a.op(_JEQ_K, 0x0A54, 0, 2)  # "\nT"
        a.op(_LDX_IMM, k)
        a.ja("to_line")
    a.ja("random")

    a.label("to_line")  # X = offset of the "\n" before "To" / "t"
    a.op(_LD_B_IND, 2)
    a.op(_JEQ_K, ord(":"), "to_value", 0)
    a.op(_JEQ_K, ord(" "), "to_value", 0)
    a.op(_JEQ_K, ord("\t"), "to_value", 0)
    a.op(_OR_K, 0x20)
    a.op(_JEQ_K, ord("o"), 0, "random_near")
    a.op(_LD_B_IND, 3)
    a.op(_JEQ_K, ord(":"), "to_value", 0)
    a.op(_JEQ_K, ord(" "), "to_value", 0)
    a.op(_JEQ_K, ord("\t"), "to_value", "random_near")
    a.label("random_near")
    a.ja("random")

    a.label("to_value")  # the URI: the first "sip:" within the window
    for j in range(2, 2 + windows.uri):
        a.op(_LD_W_IND, j)
        a.op(_JEQ_K, int.from_bytes(b"sip:", "big"), 0, 4)
        a.op(_TXA)
        a.op(_ADD_K, j + 4)
        a.op(_TAX)
        a.ja("hash")
    a.ja("random")

    # -- the key: user@host up to the first byte <= ' ' or one of : ; < = > ? ----------------
    a.label("hash")  # X = offset of the key
    a.op(_STX, 1)
    a.op(_LD_IMM, FNV_OFFSET)
    a.op(_ST, 0)
    for i in range(windows.key):
        a.op(_LD_B_IND, i)
        a.op(_JGT_K, 0x20, 0, f"end{i}")
        a.op(_JGE_K, 0x40, f"mix{i}", 0)
        a.op(_JGE_K, 0x3A, f"end{i}", f"mix{i}")
        a.label(f"mix{i}")
        a.op(_OR_K, 0x20)
        a.op(_TAX)
        a.op(_LD_MEM, 0)
        a.op(_XOR_X)
        a.op(_MUL_K, _FNV_PRIME)
        a.op(_ST, 0)
        a.op(_LDX_MEM, 1)
        a.ja(f"next{i}")
        a.label(f"end{i}")
        a.ja("owner")
        a.label(f"next{i}")
    a.ja("random")  # longer than the window
    a.label("owner")
    a.op(_LD_MEM, 0)
    a.op(_MOD_K, count)
    a.op(_RET_A)

    # -- response: the worker number in our branch -----------------------------------------
    a.label("response")
    start, end = windows.branch
    for k in range(start, end):
        a.op(_LD_W_ABS, k)
        a.op(_JEQ_K, int.from_bytes(b"bK-w", "big"), 0, 2)
        a.op(_LDX_IMM, k + 4)
        a.ja("branch")
    a.ja("random")
    a.label("branch")  # X = offset of the worker number
    a.op(_LD_B_IND, 0)
    a.op(_SUB_K, ord("0"))
    a.op(_JGE_K, 10, "random_far", 0)
    a.op(_ST, 0)
    a.op(_LD_B_IND, 1)
    a.op(_JEQ_K, ord("-"), "branch_one", 0)
    a.op(_SUB_K, ord("0"))
    a.op(_JGE_K, 10, "random_far", 0)
    a.op(_TAX)
    a.op(_LD_MEM, 0)
    a.op(_MUL_K, 10)
    a.op(_ADD_X)
    a.op(_RET_A)
    a.label("branch_one")
    a.op(_LD_MEM, 0)
    a.op(_RET_A)
    a.label("random_far")
    a.label("random")
    _random_tail(a, count)
    return a.pack()


_SO_ATTACH_REUSEPORT_CBPF = getattr(socket, "SO_ATTACH_REUSEPORT_CBPF", 51)  # Linux >= 4.5


def attach_program(sock: socket.socket, program: bytes) -> None:
    """Attach a packed classic BPF program to the SO_REUSEPORT group of ``sock``."""
    import ctypes

    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = struct.pack("HP", len(program) // _INSN.size, ctypes.addressof(buffer))  # struct sock_fprog
    sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_REUSEPORT_CBPF, fprog)


def steer_datagrams(sock: socket.socket, count: int) -> None:
    """Steer the datagrams of ``sock``'s group of ``count`` sockets to their owners; raises
    OSError where the kernel refuses the program."""
    attach_program(sock, steering_program(count))
