"""Send a TFTP window in few syscalls: runs of equal-sized DATA blocks by UDP GSO (`UDP_SEGMENT`).

One `sendmsg` carries a run of datagrams as an iovec of the session's own buffers (nothing is
joined or copied in Python); the kernel cuts it every `size` bytes, and the last datagram of a run
may be shorter. Where the kernel or device refuses GSO, `Gso.enabled` turns off and every datagram
goes on its own `send`.
"""

from __future__ import annotations

import errno
import logging
import socket
import struct
import sys
from collections.abc import Sequence

__all__ = ["GSO", "MAX_BYTES", "MAX_SEGMENTS", "Gso", "run_end", "send_run"]

log = logging.getLogger("pxelab.tftp")

SOL_UDP = 17
"""IPPROTO_UDP, the level of UDP socket options."""
UDP_SEGMENT = 103
"""setsockopt/cmsg type from <linux/udp.h> (Linux 4.18): the GSO segment size."""
MAX_SEGMENTS = 64
"""Datagrams per `sendmsg` at most (the kernel's UDP_MAX_SEGMENTS is 64 on older kernels)."""
MAX_BYTES = 65000
"""Bytes per `sendmsg` at most: one UDP super-datagram must stay under 65,507 bytes."""
_REFUSED = frozenset({errno.EIO, errno.EINVAL, errno.ENOPROTOOPT, errno.EOPNOTSUPP})
"""What a kernel or device without UDP GSO answers (EIO: no checksum offload on the device)."""


class Gso:
    """Whether UDP GSO is used: on for Linux until the first refusal, then off for the process."""

    def __init__(self) -> None:
        self.enabled = sys.platform.startswith("linux")
        """False: one `send` per datagram."""
        self._cmsg: dict[int, list[tuple[int, int, bytes]]] = {}

    def ancillary(self, size: int) -> list[tuple[int, int, bytes]]:
        """The UDP_SEGMENT control message for segments of `size` bytes (made once per size)."""
        cmsg = self._cmsg.get(size)
        if cmsg is None:
            cmsg = self._cmsg[size] = [(SOL_UDP, UDP_SEGMENT, struct.pack("=H", size))]
        return cmsg

    def refused(self, exc: OSError) -> bool:
        """True (and GSO off from now on) when exc says the kernel or device cannot do GSO."""
        if exc.errno not in _REFUSED:
            return False
        if self.enabled:
            log.info("UDP GSO unavailable (%s): one send per TFTP block from now on", exc)
        self.enabled = False
        return True


GSO = Gso()
"""The process's GSO switch."""


def run_end(datagrams: Sequence[bytes], start: int) -> int:
    """End (exclusive) of the run from `start` that one GSO send can carry: datagrams of the
    first one's size, then at most one shorter, within MAX_SEGMENTS and MAX_BYTES."""
    size = len(datagrams[start])
    total, end, count = size, start + 1, len(datagrams)
    while end < count and end - start < MAX_SEGMENTS:
        length = len(datagrams[end])
        if length > size or total + length > MAX_BYTES:
            break
        total += length
        end += 1
        if length < size:
            break  # a shorter datagram ends the run: the kernel cuts every `size` bytes
    return end


def send_run(sock: socket.socket, datagrams: Sequence[bytes], size: int) -> None:
    """Send datagrams (a run from `run_end`) on a connected socket in one GSO `sendmsg`."""
    sock.sendmsg(datagrams, GSO.ancillary(size))
