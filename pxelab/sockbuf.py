"""Deep receive buffers for the UDP sockets a rack powering on floods (DHCP, the TFTP listener)."""

from __future__ import annotations

import socket

__all__ = ["RECEIVE_BUFFER", "deepen_receive_buffer"]

RECEIVE_BUFFER = 4 << 20
"""Bytes of queued datagrams per socket: ~5,000 DHCP requests (the default, 208 KiB, holds ~270)."""
_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
"""Linux: SO_RCVBUF past net.core.rmem_max, for a process with CAP_NET_ADMIN (root at start)."""


def deepen_receive_buffer(sock: socket.socket, size: int = RECEIVE_BUFFER) -> int:
    """Ask for a receive buffer of `size` bytes (past rmem_max when allowed); the size granted.

    Never fails: a socket keeps the buffer it had when neither option is allowed."""
    for option in (_SO_RCVBUFFORCE, socket.SO_RCVBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, size)
            break
        except OSError:
            continue
    granted: int = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    return granted
