"""The undionly.kpxe path for BIOS PXE clients that are not iPXE yet: a crafted arch-0 DHCP
client gets `undionly.kpxe` from the real daemon, then fetches it over TFTP with curl.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pxelab.testing import bootlab
from pxelab.testing.netns import Lab, lab

ROOT = Path(__file__).resolve().parents[2]
MAC = "52:54:00:b1:05:99"
BIOS_PXE = {93: "0000", 60: b"PXEClient:Arch:00000:UNDI:002001".hex(), 97: "00" + "22" * 16}


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Lab, bootlab.Daemon]]:
    with lab() as the_lab:
        dirs = bootlab.prepare(
            tmp_path / "lab", [{"name": "bios-pxe", "mac": MAC, "ip": the_lab.ip(60)}]
        )
        daemon = bootlab.start_daemon(the_lab, dirs)
        try:
            yield the_lab, daemon
        finally:
            daemon.stop()


@pytest.mark.netns
def test_bios_pxe_client_gets_undionly_over_tftp(served: tuple[Lab, bootlab.Daemon]) -> None:
    the_lab, daemon = served
    client = the_lab.add_client(MAC)
    config = {
        "iface": "eth0",
        "mac": MAC,
        "options": [[c, v] for c, v in BIOS_PXE.items()],
        "request": True,
    }
    helper = ROOT / "tests" / "integration" / "dhcp_server_helper.py"  # the scapy client
    proc = client.run(sys.executable, str(helper), "discover", json.dumps(config), timeout=60)
    offer, ack = (json.loads(line) for line in proc.stdout.splitlines())
    assert offer is not None and ack is not None, daemon.text()
    assert ack["file"] == "undionly.kpxe" and ack["yiaddr"] == the_lab.ip(60)
    server = ack["siaddr"]
    assert server == the_lab.server_ip
    client.run("ip", "addr", "add", f"{ack['yiaddr']}/24", "dev", "eth0")
    fetched = daemon.log.parent / "fetched.kpxe"
    client.run(
        "curl",
        "-sS",
        "--max-time",
        "20",
        "-o",
        str(fetched),
        f"tftp://{server}/{ack['file']}",
        timeout=30,
    )
    assert fetched.read_bytes() == (bootlab.IPXE_DIR / "undionly.kpxe").read_bytes()
    # curl exits once it has sent its last ACK, maybe before the daemon has read it and logged
    # the transfer: wait for that line (a positive signal) rather than read the log at once
    deadline = time.monotonic() + 60
    while "RRQ 'undionly.kpxe': sent" not in (log := daemon.text()):
        assert time.monotonic() < deadline, log
        time.sleep(0.05)
    assert "(arch x86 BIOS (0)): ACK" in log and "file=undionly.kpxe" in log, log
