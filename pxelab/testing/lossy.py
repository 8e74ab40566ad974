"""A lossy wire for test VMs: QEMU's UDP socket netdev on one side, a tap on the other, and
random loss and reordering in between (this kernel has no sch_netem, so it is done here).

    python -m pxelab.testing.lossy --tap TAP --listen 127.0.0.1:A --peer 127.0.0.1:B --loss 0.1
QEMU: -netdev socket,id=net0,udp=127.0.0.1:A,localaddr=127.0.0.1:B (see `socket_netdev`).
Prints its counts on SIGTERM.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import random
import selectors
import signal
import socket
import struct
import sys
import time
from dataclasses import dataclass, field

TUNSETIFF = 0x400454CA
IFF_TAP, IFF_NO_PI = 0x0002, 0x1000
HOLD_SECONDS = 0.02
"""A frame held back for reordering goes out after the next one, or after this long."""


def socket_netdev(listen_port: int, peer_port: int) -> str:
    """The QEMU -netdev that talks to a relay listening on listen_port (QEMU gets peer_port)."""
    return f"socket,id=net0,udp=127.0.0.1:{listen_port},localaddr=127.0.0.1:{peer_port}"


@dataclass
class Direction:
    """One way through the wire: its impairments and its counts."""

    name: str
    """`to-vm` or `from-vm`."""
    loss: float
    """Probability that a frame is dropped."""
    reorder: float
    """Probability that a frame is held back behind the next one."""
    rng: random.Random
    """The wire's random source (seeded: runs repeat)."""
    held: tuple[bytes, float] | None = None
    counts: dict[str, int] = field(
        default_factory=lambda: {"frames": 0, "dropped": 0, "reordered": 0}
    )

    def frames(self, frame: bytes, now: float) -> list[bytes]:
        """What goes out, in order, when frame comes in."""
        self.counts["frames"] += 1
        if self.rng.random() < self.loss:
            self.counts["dropped"] += 1
            return self.due(now)
        if self.held is None and self.rng.random() < self.reorder:
            self.counts["reordered"] += 1
            self.held = (frame, now + HOLD_SECONDS)
            return []
        out = [frame]
        if self.held is not None:
            out.append(self.held[0])  # the held one goes after a later one: reordered
            self.held = None
        return out

    def due(self, now: float) -> list[bytes]:
        """The held frame, once it has waited long enough."""
        if self.held is not None and now >= self.held[1]:
            frame, self.held = self.held[0], None
            return [frame]
        return []


def _open_tap(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TAP | IFF_NO_PI))
    os.set_blocking(fd, False)
    return fd


def _address(text: str) -> tuple[str, int]:
    host, port = text.rsplit(":", 1)
    return host, int(port)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tap", required=True)
    parser.add_argument("--listen", required=True, type=_address)
    parser.add_argument("--peer", required=True, type=_address)
    parser.add_argument("--loss", type=float, default=0.1)
    parser.add_argument("--reorder", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    to_vm = Direction("to-vm", args.loss, args.reorder, rng)
    from_vm = Direction("from-vm", args.loss, args.reorder, rng)
    tap = _open_tap(args.tap)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(args.listen)
    udp.setblocking(False)
    stop = False

    def on_term(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    selector = selectors.DefaultSelector()
    selector.register(tap, selectors.EVENT_READ, "tap")
    selector.register(udp, selectors.EVENT_READ, "udp")
    print("lossy wire ready", flush=True)
    while not stop:
        for key, _ in selector.select(HOLD_SECONDS):
            now = time.monotonic()
            try:
                if key.data == "tap":
                    for out in to_vm.frames(os.read(tap, 65536), now):
                        udp.sendto(out, args.peer)
                else:
                    data, _ = udp.recvfrom(65536)
                    for out in from_vm.frames(data, now):
                        os.write(tap, out)
            except (BlockingIOError, ConnectionRefusedError):
                continue  # nothing to read, or QEMU is not listening yet
        now = time.monotonic()
        for out in to_vm.due(now):
            udp.sendto(out, args.peer)
        for out in from_vm.due(now):
            os.write(tap, out)
    print(f"lossy wire: to-vm {to_vm.counts}, from-vm {from_vm.counts}", flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
