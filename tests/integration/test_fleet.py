"""Machines that register themselves: DHCP requests from MACs nothing serves are stored,
listed by `pxelab hosts seen` and GET /api/hosts/seen and the status page, and adopted with
`pxelab hosts adopt`; GET /api/profiles shows the profiles and the broken ones.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from pxelab.app.daemon import remember_seen
from pxelab.app.dhcp import fleet_observer
from pxelab.boot.render import Renderer
from pxelab.dhcp.context import DhcpContext
from pxelab.dhcp.packet import DhcpPacket, MessageType, Op, OptionCode, build, parse
from pxelab.dhcp.server import start_dhcp
from pxelab.events import Event, Timeline
from pxelab.hosts.fleet import Fleet
from pxelab.hosts.install import InstallStore
from pxelab.http.app import make_app
from pxelab.state import SeenRecord
from pxelab.state.sqlite import FILE_NAME, SqliteStore
from tests.auth_helpers import guard_with_token
from tests.netns import require_root

Client = TestClient[web.Request, web.Application]
STRANGER = "52:54:00:5e:00:01"


def pxelab(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    dirs = ["--hosts-dir", str(root / "hosts"), "--profiles-dir", str(root / "profiles")]
    dirs += ["--state-dir", str(root / "state")]
    argv = [sys.executable, "-m", "pxelab", "hosts", *args, *dirs]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    for name in ("hosts", "profiles", "state"):
        (tmp_path / name).mkdir()
    opened = SqliteStore(tmp_path / "state" / FILE_NAME, poll_interval=0)
    await opened.open()
    yield opened
    await opened.close()


@pytest.mark.root
async def test_a_machine_nothing_serves_is_stored_listed_and_adopted(
    tmp_path: Path, store: SqliteStore
) -> None:
    require_root()
    (tmp_path / "profiles" / "web.json").write_text(json.dumps({"kernel_args": "role=web"}))
    fleet = Fleet(tmp_path / "hosts", tmp_path / "profiles", rescan_on_lookup=False)
    ctx = DhcpContext(
        server_ip=IPv4Address("127.0.0.1"),
        network=IPv4Network("127.0.0.0/8"),
        pool_start=IPv4Address("127.0.0.100"),
        pool_end=IPv4Address("127.0.0.120"),
    )
    server = await start_dhcp(ctx, fleet, "lo", port=0, observer=fleet_observer(fleet))
    relay_ip = f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(2, 254)}"
    relay = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    loop = asyncio.get_running_loop()
    try:
        relay.bind((relay_ip, 67))
        relay.setblocking(False)
        request = DhcpPacket(
            op=Op.BOOTREQUEST,
            xid=9,
            hops=1,
            giaddr=IPv4Address(relay_ip),
            chaddr=bytes.fromhex(STRANGER.replace(":", "")),
            options=((OptionCode.MESSAGE_TYPE, bytes((MessageType.DISCOVER,))), (93, b"\0\x0b")),
        )
        await loop.sock_sendto(relay, build(request), ("127.0.0.1", server.port))
        assert parse(await asyncio.wait_for(loop.sock_recv(relay, 2048), 2)).xid == 9
    finally:
        relay.close()
        server.close()
        await server.wait_closed()
    await remember_seen(fleet, store)
    [record] = await store.seen()
    assert (record.mac, record.arch, record.firmware) == (STRANGER, "aarch64", "uefi")
    await remember_seen(fleet, store)  # nothing new: nothing written, nothing lost
    assert len(await store.seen()) == 1
    await store.close()

    listed = pxelab(tmp_path, "seen", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [r["mac"] for r in json.loads(listed.stdout)] == [STRANGER]
    table = pxelab(tmp_path, "seen")
    assert STRANGER in table.stdout and "aarch64" in table.stdout and "FIRST SEEN" in table.stdout

    missing = pxelab(tmp_path, "adopt", STRANGER, "--name", "web1", "--profile", "nope")
    assert missing.returncode == 2 and "key 'profile': no profile 'nope'" in missing.stderr
    adopted = pxelab(tmp_path, "adopt", STRANGER.upper(), "--name", "web1", "--profile", "web")
    assert adopted.returncode == 0, adopted.stderr
    assert "adopted web1 (52:54:00:5e:00:01, aarch64, profile web)" in adopted.stdout
    data = json.loads((tmp_path / "hosts" / "web1.json").read_text())
    assert data == {"name": "web1", "mac": STRANGER, "profile": "web", "arch": "aarch64"}
    assert json.loads(pxelab(tmp_path, "seen", "--json").stdout) == []
    again = pxelab(tmp_path, "adopt", STRANGER, "--name", "web2")
    assert again.returncode == 1 and "already has mac" in again.stderr
    await store.open()


async def test_api_lists_seen_machines_and_profiles(tmp_path: Path, store: SqliteStore) -> None:
    profiles = tmp_path / "profiles"
    (profiles / "lab.json").write_text(
        json.dumps({"distro": "demo", "match": {"mac_prefix": "52:54:00", "firmware": "uefi"}})
    )
    (profiles / "broken.json").write_text("{")
    (tmp_path / "hosts" / "known.json").write_text(json.dumps({"mac": "02:00:00:00:00:01"}))
    await store.note_seen(
        [
            SeenRecord(STRANGER, "x86_64", "bios", "10.0.0.7", 1.0, 5.0),
            SeenRecord("02:00:00:00:00:01", "", "", "", 1.0, 2.0),  # a host file covers it now
        ]
    )
    fleet = Fleet(tmp_path / "hosts", profiles)
    timeline = Timeline()
    fleet.observe("52:54:00:77:00:01", "x86_64", "uefi", "", 1.0)  # served from profile lab
    timeline.record(Event(1.0, "dhcp", mac="52:54:00:77:00:01", message_type="OFFER"))
    app = make_app(
        fleet,
        Renderer(),
        tmp_path / "images",
        timeline,
        install_store=InstallStore(store),
        guard=await guard_with_token(),
        store=store,
    )
    async with TestClient(TestServer(app)) as client:
        seen = await (await client.get("/api/hosts/seen")).json()
        assert seen == {
            "seen": [
                {
                    "mac": STRANGER,
                    "arch": "x86_64",
                    "firmware": "bios",
                    "address": "10.0.0.7",
                    "first_seen": 1.0,
                    "last_seen": 5.0,
                }
            ]
        }
        body = await (await client.get("/api/profiles")).json()
        assert body["profiles"] == [
            {
                "name": "lab",
                "source": str(profiles / "lab.json"),
                "match": {"mac_prefix": "525400", "firmware": "uefi"},
                "specificity": [2, 6],
                "keys": {"distro": "demo"},
            }
        ]
        assert "invalid JSON" in body["broken_files"][str(profiles / "broken.json")]
        page = await (await client.get("/")).text()
        assert "Seen, not configured" in page and STRANGER in page
        assert '02:00:00:00:00:01</code></td><td data-label="Arch">' not in page
        hosts_section = page[: page.index('id="errors"')]
        assert "lab-525400770001" in hosts_section  # a host from a profile is a host


def test_explain_says_where_each_value_came_from(tmp_path: Path) -> None:
    for name in ("hosts", "profiles", "state"):
        (tmp_path / name).mkdir()
    profile = {"distro": "debian-12", "kernel_args": "console=ttyS0"}
    (tmp_path / "profiles" / "lab.json").write_text(
        json.dumps({**profile, "match": {"mac_prefix": "52:54:00", "firmware": "uefi"}})
    )

    def explain(*args: str) -> subprocess.CompletedProcess[str]:
        dirs = [
            "--hosts-dir",
            str(tmp_path / "hosts"),
            "--profiles-dir",
            str(tmp_path / "profiles"),
        ]
        dirs += ["--state-dir", str(tmp_path / "state")]
        argv = [sys.executable, "-m", "pxelab", "explain", *args, *dirs]
        return subprocess.run(argv, capture_output=True, text=True, timeout=60)

    unknown = explain(STRANGER)
    assert unknown.returncode == 1 and "selectors on arch or firmware need --arch" in unknown.stderr
    done = explain(STRANGER, "--arch", "uefi-x64", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["host"]["name"] == "lab-5254005e0001"
    origins = result["origins"]
    assert origins["distro"] == f"profile lab ({tmp_path / 'profiles' / 'lab.json'})"
    assert origins["template"] == "default (from distro debian-12)"
    assert origins["arch"] == "the DHCP request (option 93)" and origins["kernel"] == "default"
    assert "log_host=" not in result["script"]  # the CLI knows no running receiver
