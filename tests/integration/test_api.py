"""The JSON API, install data and /metrics on a real socket: the one-shot install end to end."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from pxelab.boot.render import Renderer
from pxelab.events import Event, TftpOutcome, Timeline
from pxelab.hosts.install import InstallStore
from pxelab.hosts.inventory import Inventory
from pxelab.http.app import make_app
from pxelab.http.auth import callback_credential
from pxelab.http.guard import GUARD
from tests.auth_helpers import AUTH, guard_with_token

MAC = "52:54:00:aa:bb:01"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5 admin@lab"
Client = TestClient[web.Request, web.Application]


def _write_hosts(hosts: Path) -> None:
    hosts.mkdir(parents=True, exist_ok=True)
    for name, data in {
        "ubu": {"mac": MAC, "distro": "ubuntu-24.04", "ssh_key": KEY, "ip": "10.0.0.21"},
        "fed": {"mac": "52:54:00:aa:bb:02", "distro": "fedora-41", "arch": "arm64"},
        "deb": {"mac": "52:54:00:aa:bb:03", "distro": "debian-12"},
        "nod": {"mac": "52:54:00:aa:bb:04"},
    }.items():
        (hosts / f"{name}.json").write_text(json.dumps({"name": name, **data}))


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[tuple[Client, Timeline, Path]]:
    _write_hosts(tmp_path / "hosts")
    (tmp_path / "images" / "ubuntu-24.04" / "amd64").mkdir(parents=True)
    (tmp_path / "images" / "ubuntu-24.04" / "amd64" / "vmlinuz").write_bytes(b"k" * 1000)
    (tmp_path / "tftp").mkdir()
    (tmp_path / "tftp" / "ipxe.efi").write_bytes(b"efi")
    timeline = Timeline()
    app = make_app(
        Inventory(tmp_path / "hosts"),
        Renderer(),
        tmp_path / "images",
        timeline,
        install_store=InstallStore(),
        tftp_root=tmp_path / "tftp",
        guard=await guard_with_token(),
    )
    async with TestClient(TestServer(app)) as client:
        yield client, timeline, tmp_path


async def test_one_shot_install_then_local_boot_then_reinstall(
    setup: tuple[Client, Timeline, Path],
) -> None:
    client, timeline, _ = setup
    first = await (await client.get("/boot", params={"mac": MAC})).text()
    assert "autoinstall" in first and "ds=nocloud-net;s=" in first
    seed = first.split("ds=nocloud-net;s=")[1].split()[0]
    base = f"http://{client.host}:{client.port}"
    assert seed == f"{base}/cloud-init/ubu/"
    user_data = await client.get("/cloud-init/ubu/user-data")
    assert user_data.status == 200
    callback = yaml.safe_load(await user_data.text())["autoinstall"]["late-commands"][0]
    secret = client.app[GUARD].secret
    assert secret is not None
    signed = f"{base}/api/hosts/{MAC}/installed/{callback_credential(secret, MAC, 0)}"
    assert callback == f"curl -fsS -X POST {signed}"

    unsigned = await client.post(f"/api/hosts/{MAC.upper().replace(':', '-')}/installed")
    assert unsigned.status == 401  # neither a token nor a signature
    done = await client.post(signed.removeprefix(base))  # the installer's own call, no token
    assert done.status == 200
    body = await done.json()
    assert body["state"] == "installed" and body["name"] == "ubu" and body["by"] == "127.0.0.1"
    assert (await (await client.get(f"/api/hosts/{MAC}")).json())["state"] == "installed"

    second = await (await client.get("/boot", params={"mac": MAC})).text()
    assert second.splitlines()[-1] == "exit" and "kernel" not in second
    events = (await (await client.get(f"/api/hosts/{MAC}/events")).json())["events"]
    assert [e["stage"] for e in events] == ["script", "install-data", "installed", "local-boot"]
    script, data, installed, local = events
    assert script["path"] == "/boot" and script["template"] == "boot-ubuntu.ipxe.j2"
    assert (
        script["detail"] == "boot script /boot (boot-ubuntu.ipxe.j2)"
        and script["ip"] == "127.0.0.1"
    )
    assert data["file"] == "user-data" and data["path"] == "/cloud-init/ubu/user-data"
    assert installed["state"] == "installed" and installed["method"] == "POST"
    assert local["state"] == "installed" and "template" not in local

    again = await client.post(f"/api/hosts/{MAC}/reinstall", headers=AUTH)
    assert (await again.json())["state"] == "install"
    assert (await client.post(signed.removeprefix(base))).status == 403  # a replay: generation 0
    assert "/installed/1." in await (await client.get("/cloud-init/ubu/user-data")).text()
    assert "autoinstall" in await (await client.get("/boot", params={"mac": MAC})).text()
    assert timeline.last(MAC) is not None and timeline.last(MAC).stage == "script"  # type: ignore[union-attr]


async def test_hosts_list_with_state_and_stage(setup: tuple[Client, Timeline, Path]) -> None:
    client, timeline, _ = setup
    await client.get("/boot", params={"mac": MAC})
    await client.get("/images/ubuntu-24.04/amd64/vmlinuz")  # the same client: mapped to MAC by IP
    stranger = "52:54:00:ff:ff:ff"
    timeline.record(
        Event(time.time(), "dhcp", mac=stranger, message_type="OFFER", address="10.0.0.99")
    )
    listing = await (await client.get("/api/hosts")).json()
    hosts = {h["name"]: h for h in listing["hosts"]}
    assert list(hosts) == ["deb", "fed", "nod", "ubu"]
    assert hosts["ubu"]["stage"] == "kernel" and hosts["ubu"]["state"] == "install"
    assert hosts["ubu"]["ip"] == "10.0.0.21" and hosts["ubu"]["template"] == "ubuntu"
    assert hosts["fed"]["arch"] == "aarch64" and hosts["fed"]["stage"] is None
    assert listing["unknown"][0]["mac"] == "52:54:00:ff:ff:ff"
    assert listing["unknown"][0]["stage"] == "dhcp"
    one = await (await client.get(f"/api/hosts/{MAC}")).json()
    assert one["ssh_keys"] == [KEY] and one["source"].endswith("ubu.json")


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/api/hosts/nope", 400),
        ("GET", "/api/hosts/52:54:00:00:00:00", 404),
        ("GET", "/api/hosts/52:54:00:00:00:00/events", 404),
        ("POST", "/api/hosts/52:54:00:00:00:00/installed", 404),
        ("POST", "/api/hosts/zz/installed", 400),
        ("GET", "/api/hosts/52:54:00:aa:bb:01/installed", 405),
        ("GET", "/api/explain/52:54:00:00:00:00", 404),
        ("GET", "/api/explain/52:54:00:aa:bb:01?arch=sparc", 400),
        ("GET", "/cloud-init/nobody/user-data", 404),
        ("GET", "/cloud-init/ubu/vendor-data", 404),
        ("GET", "/kickstart/nobody", 404),
        ("GET", "/kickstart/nod", 500),  # no distro: no image directory, a real error
        ("GET", "/preseed/nod", 500),
    ],
)
async def test_errors_are_real_http_errors(
    setup: tuple[Client, Timeline, Path], method: str, path: str, status: int
) -> None:
    client, _, _ = setup
    resp = await client.request(method, path, headers=AUTH)
    assert resp.status == status
    text = await resp.text()
    assert "#cloud-config" not in text and "#!ipxe" not in text


async def test_install_data_by_name_or_mac(setup: tuple[Client, Timeline, Path]) -> None:
    client, timeline, _ = setup
    meta = yaml.safe_load(await (await client.get(f"/cloud-init/{MAC}/meta-data")).text())
    assert meta == {"instance-id": "ubu-525400aabb01", "local-hostname": "ubu"}
    net = yaml.safe_load(await (await client.get("/cloud-init/ubu/network-config")).text())
    assert net["ethernets"]["boot"]["match"]["macaddress"] == MAC
    kickstart = await (await client.get("/kickstart/fed")).text()
    assert "url --url=http://" in kickstart and "/images/fedora-41/arm64/" in kickstart
    assert "%post\ncurl -fsS -X POST http://" in kickstart
    assert "/api/hosts/52:54:00:aa:bb:02/installed/0." in kickstart  # signed
    preseed = await (await client.get("/preseed/deb")).text()
    assert "d-i netcfg/get_hostname string deb" in preseed
    assert [e.stage for e in timeline.events("52:54:00:aa:bb:02")] == ["install-data"]


async def test_explain_over_http(setup: tuple[Client, Timeline, Path]) -> None:
    client, _, _ = setup
    result = await (await client.get(f"/api/explain/{MAC}")).json()
    answers = {a["client"]: a for a in result["dhcp"]["answers"]}
    assert answers["uefi-x64"]["tftp"] == {"file": "ipxe.efi", "exists": True, "via": "tftp"}
    assert answers["ipxe"]["boot_file"] == f"http://127.0.0.1:{client.port}/boot.ipxe"
    assert result["script"] == await (await client.get("/boot", params={"mac": MAC})).text()
    assert result["urls"]["iso"].endswith("/images/ubuntu-24.04/amd64/live-server.iso")
    assert set(result["install_data"]) == {
        "meta-data",
        "user-data",
        "network-config",
        "kickstart",
        "preseed",
    }
    one = await (
        await client.get("/api/explain/52:54:00:aa:bb:02", params={"arch": "uefi-arm64"})
    ).json()
    assert [a["boot_file"] for a in one["dhcp"]["answers"]] == ["ipxe-arm64.efi"]


def metric_samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text exposition, parsed by prometheus_client's own parser."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_metrics_count_requests_bytes_and_timeline_events(
    setup: tuple[Client, Timeline, Path],
) -> None:
    client, timeline, _ = setup
    assert len(await (await client.get("/images/ubuntu-24.04/amd64/vmlinuz")).read()) == 1000
    missing = await (await client.get("/images/nope")).read()
    assert (await client.post(f"/api/hosts/{MAC}/installed", headers=AUTH)).status == 200
    now, ip = time.time(), "10.0.0.21"
    timeline.record(Event(now, "dhcp", mac=MAC, message_type="ACK", address=ip, file="ipxe.efi"))
    done, stalled = TftpOutcome.COMPLETED, TftpOutcome.TIMED_OUT
    timeline.record(Event(now, "tftp", ip=ip, file="ipxe.efi", outcome=done, bytes_acked=1024))
    timeline.record(Event(now, "tftp", ip=ip, file="x.efi", outcome=stalled, bytes_acked=0))
    resp = await client.get("/metrics")
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/plain")
    samples = metric_samples(await resp.text())
    images = (("route", "/images/{path}"),)
    expected = {
        ("pxelab_http_requests_total", (*images, ("status", "200"))): 1.0,
        ("pxelab_http_requests_total", (*images, ("status", "404"))): 1.0,
        ("pxelab_http_sent_bytes_total", images): 1000.0 + len(missing),
        ("pxelab_dhcp_replies_total", (("type", "ACK"),)): 1.0,
        ("pxelab_tftp_transfers_total", (("result", "completed"),)): 1.0,
        ("pxelab_tftp_transfers_total", (("result", "failed"),)): 1.0,
        ("pxelab_tftp_sent_bytes_total", ()): 1024.0,
        ("pxelab_errors_total", (("service", "tftp"),)): 1.0,
        ("pxelab_installs_completed_total", ()): 1.0,
        ("pxelab_boot_events_total", (("stage", "installed"),)): 1.0,
    }
    assert {key: samples.get(key) for key in expected} == expected
    # nothing else was counted in these families: no other DHCP reply, TFTP result or error
    for family in (
        "pxelab_dhcp_replies_total",
        "pxelab_tftp_transfers_total",
        "pxelab_errors_total",
    ):
        counted = {k: v for k, v in samples.items() if k[0] == family and v}
        assert counted == {k: v for k, v in expected.items() if k[0] == family}, family


async def test_a_forged_host_header_cannot_reach_a_script(
    setup: tuple[Client, Timeline, Path],
) -> None:
    client, _, _ = setup
    for host in ("a b", "x;reboot", "x$(id)", "h||shell", "a/b"):
        resp = await client.get("/boot", params={"mac": MAC}, headers={"Host": host})
        assert resp.status == 400, host


async def test_chain_script_lands_in_the_timeline_of_the_mac_dhcp_saw(
    setup: tuple[Client, Timeline, Path],
) -> None:
    client, timeline, _ = setup
    ip = "127.0.0.1"
    ack = Event(
        time.time(), "dhcp", mac=MAC, ip=ip, message_type="ACK", address=ip, file="boot.ipxe"
    )
    timeline.record(ack)
    assert (await client.get("/boot.ipxe")).status == 200
    await client.get("/boot", params={"mac": MAC})
    assert [e.stage for e in timeline.events(MAC)] == ["dhcp", "ipxe", "script"]
