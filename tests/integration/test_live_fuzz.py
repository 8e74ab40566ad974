"""Live fuzzing: random and mutated datagrams hit the running daemon's DHCP and TFTP ports
while a real client keeps getting its lease (udhcpc) and its file (curl over TFTP).

No wall-clock threshold: the fuzzer runs until it is stopped; the client's rounds start once the
daemon's log shows the junk arriving, and every round runs while the fuzzer still sends."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from pxelab.testing import bootlab
from pxelab.testing.netns import lab

MAC = "52:54:00:f0:22:01"
ROUNDS = 3
"""Leases and files the client gets while the fuzzer runs, at least."""
JUNK = 5000
"""Malformed datagrams the daemon logs while the client's rounds go on, at least (a count: the
rounds go on until that much junk has hit the daemon, however long that takes)."""

SENDER = r"""
import random, signal, socket, struct, sys, time
server = sys.argv[1]
rng = random.Random(1234)
discover = bytes.fromhex(
    "0101060012345678000080000000000000000000000000000000000052540000000100000000000000000000"
) + bytes(192) + b"\x63\x82\x53\x63\x35\x01\x01\x5d\x02\x00\x07\xff"
rrq = b"\x00\x01ipxe.efi\x00octet\x00blksize\x001468\x00tsize\x000\x00"
def mutate(seed):
    data = bytearray(seed)
    for _ in range(rng.randint(1, 8)):
        op = rng.randrange(3)
        if op == 0 and data:
            data[rng.randrange(len(data))] = rng.randrange(256)
        elif op == 1 and data:
            del data[rng.randrange(len(data)):][: rng.randint(1, 16)]
        else:
            data[rng.randrange(len(data) + 1):0] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    return bytes(data)
dhcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
dhcp.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
dhcp.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"eth0")  # broadcast, no route
dhcp.bind(("0.0.0.0", 68))
tftp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sent = 0
def stop(*_):
    print(sent, flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
while True:
    kind = rng.randrange(4)
    if kind == 0:
        payload = bytes(rng.randrange(256) for _ in range(rng.randint(0, 600)))
        dhcp.sendto(payload, ("255.255.255.255", 67))
    elif kind == 1:
        dhcp.sendto(mutate(discover), ("255.255.255.255", 67))
    elif kind == 2:
        tftp.sendto(mutate(rrq), (server, 69))
    else:
        tftp.sendto(bytes(rng.randrange(256) for _ in range(rng.randint(0, 100))), (server, 69))
    sent += 1
    if sent % 200 == 0:
        time.sleep(0.05)  # about 3,000 datagrams a second: hard, not a flood of the log
"""


def _junk_seen(log: str) -> int:
    """Malformed datagrams the daemon has logged so far."""
    return log.count("malformed") + log.count("Malformed")


@pytest.mark.netns
def test_real_clients_keep_working_under_fuzzing(tmp_path: Path) -> None:
    with lab() as the_lab:
        host = {"name": "steady", "mac": MAC, "ip": the_lab.ip(80), "distro": "demo"}
        dirs = bootlab.prepare(tmp_path / "lab", [host])
        daemon = bootlab.start_daemon(the_lab, dirs)
        try:
            fuzzer = the_lab.add_client("52:54:00:f0:22:ff")
            fuzzer.run("ip", "addr", "add", f"{the_lab.ip(90)}/24", "dev", "eth0")
            client = the_lab.add_client(MAC)
            client.run("ip", "addr", "add", f"{the_lab.ip(80)}/24", "dev", "eth0")
            sender = fuzzer.popen(sys.executable, "-c", SENDER, the_lab.server_ip,
                                  stdout=-1, stderr=-1, text=True)  # fmt: skip
            want = (dirs.tftp / "ipxe.efi").read_bytes()
            leases = files = 0
            try:
                deadline = time.monotonic() + 60
                while _junk_seen(daemon.text()) < 100:  # the fuzzing has reached the daemon
                    assert sender.poll() is None, sender.communicate()
                    assert time.monotonic() < deadline, daemon.text()[-3000:]
                    time.sleep(0.1)
                junk_before = _junk_seen(daemon.text())
                while leases < ROUNDS or _junk_seen(daemon.text()) < junk_before + JUNK:
                    assert time.monotonic() < deadline + 240, "the junk stopped arriving"
                    lease = client.run("udhcpc", "-i", "eth0", "-n", "-q", "-f", "-t", "4", "-T", "1",
                                       "-s", "/bin/true", timeout=30, check=False)  # fmt: skip
                    assert lease.returncode == 0, (lease.stderr, daemon.text()[-3000:])
                    leases += 1
                    got = tmp_path / f"ipxe-{files}.efi"
                    client.run("curl", "-sS", "--max-time", "20", "-o", str(got),
                               f"tftp://{the_lab.server_ip}/ipxe.efi", timeout=30)  # fmt: skip
                    assert got.read_bytes() == want
                    files += 1
                assert sender.poll() is None, "the fuzzer stopped before the client's rounds"
                sender.terminate()
                out, err = sender.communicate(timeout=30)
            finally:
                if sender.poll() is None:
                    sender.kill()
                    sender.wait()
            assert sender.returncode == 0, err
            sent = int(out)
            assert daemon.proc.poll() is None, "the daemon died under fuzzing"
        finally:
            code = daemon.stop()
        log = daemon.text()
        assert code == 0 and "Traceback" not in log, log[-5000:]
        assert leases == files >= ROUNDS
        assert _junk_seen(log) >= junk_before + JUNK, "the junk did not arrive during the rounds"
        assert sent > _junk_seen(log) > 100, (sent, _junk_seen(log))
        print(f"live fuzzing: {sent} datagrams, {leases} leases and {files} files meanwhile")
