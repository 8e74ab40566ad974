"""Deep receive buffers: granted past the default, never an error."""

from __future__ import annotations

import socket

from pxelab.sockbuf import deepen_receive_buffer


def test_a_receive_buffer_is_deepened_or_left_as_it_was() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        before = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        granted = deepen_receive_buffer(sock, 1 << 20)
        assert granted == sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        assert granted >= before
        # Linux doubles the request for its bookkeeping; rmem_max caps it without privileges
        with open("/proc/sys/net/core/rmem_max") as f:
            assert granted >= min(1 << 20, int(f.read()))
