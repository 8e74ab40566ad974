"""The TFTP root's loaders, followed live: the scan, its one log line, and the DHCP and DHCPv6
cores that take the new boot files without losing a lease."""

from __future__ import annotations

import logging
from dataclasses import replace
from ipaddress import IPv6Address, IPv6Network
from pathlib import Path

import pytest
from scapy.layers.dhcp6 import (
    DUID_LL,
    DHCP6_Advertise,
    DHCP6_Solicit,
    DHCP6OptBootFileUrl,
    DHCP6OptClientArchType,
    DHCP6OptClientId,
    DHCP6OptIA_NA,
)

from pxelab.boot.loaders import LoaderWatch, boot_files_for, present_loaders
from pxelab.dhcp.arch import BootFiles
from pxelab.dhcp.context import Sender
from pxelab.dhcp.packet import MessageType, OptionCode
from pxelab.dhcp.reply import DhcpReply
from pxelab.dhcp6.context import Dhcp6Context, Dhcp6Reply, Sender6
from pxelab.dhcp6.core import Dhcp6Core, Pool6
from pxelab.dhcp6.leases import Lease6Table
from pxelab.dhcp6.options import duid_ll
from pxelab.dhcp6.packet import build, parse
from tests.unit.test_dhcp_core import LOCAL, core, packet, pool
from tests.unit.test_dhcp_policy import arch

ARM64 = {93: arch(11)}
NO_ARM64_IPXE = BootFiles(uefi_arm64=None)


def test_boot_files_for_what_the_root_holds(tmp_path: Path) -> None:
    assert present_loaders(tmp_path / "missing") == frozenset()
    (tmp_path / "ipxe.efi").write_bytes(b"x")
    (tmp_path / "ipxe-arm64.efi").mkdir()  # a directory is no loader
    (tmp_path / "grubnetaa64.efi").symlink_to(tmp_path / "nowhere")  # nor a dangling link
    assert present_loaders(tmp_path) == frozenset({"ipxe.efi"})
    assert boot_files_for(present_loaders(tmp_path)) == NO_ARM64_IPXE
    assert boot_files_for(frozenset({"ipxe-arm64.efi"})) == BootFiles()


def test_a_watch_sees_the_arm64_loader_come_and_go_and_says_so_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "ipxe.efi").write_bytes(b"x")
    watch = LoaderWatch(tmp_path)
    told: list[BootFiles] = []
    watch.subscribe(told.append)
    caplog.set_level(logging.INFO, "pxelab.loaders")
    assert watch.scan() is False  # the first look is no change
    assert watch.boot_files == NO_ARM64_IPXE and watch.present == frozenset({"ipxe.efi"})
    (tmp_path / "ipxe-arm64.efi").write_bytes(b"arm64")
    assert watch.scan() is True
    assert watch.boot_files == BootFiles()
    assert watch.scan() is False  # nothing new: nothing to say
    watch.publish()
    (tmp_path / "ipxe-arm64.efi").unlink()
    (tmp_path / "undionly.kpxe").write_bytes(b"bios")
    assert watch.scan() is True
    watch.publish()
    assert told == [BootFiles(), NO_ARM64_IPXE]
    lines = [r.getMessage() for r in caplog.records if r.name == "pxelab.loaders"]
    assert lines == [
        f"boot loaders in {tmp_path} changed: added ipxe-arm64.efi; "
        "now ipxe-arm64.efi, ipxe.efi; arm64 UEFI gets ipxe-arm64.efi",
        f"boot loaders in {tmp_path} changed: added undionly.kpxe; removed ipxe-arm64.efi; "
        "now ipxe.efi, undionly.kpxe; arm64 UEFI gets grubnetaa64.efi",
    ]


def _file(reply: object) -> bytes | None:
    assert isinstance(reply, DhcpReply), reply
    return reply.packet.option(OptionCode.BOOTFILE_NAME)


def test_the_dhcp_core_takes_new_boot_files_and_keeps_its_leases() -> None:
    local = pool(replace(LOCAL, boot_files=NO_ARM64_IPXE), "eth0")
    the_core = core(local)
    sender = Sender("0.0.0.0", 68, "eth0")
    offer = the_core.handle(packet(MessageType.DISCOVER, options=ARM64), sender, 0)
    assert _file(offer) == b"grubnetaa64.efi"
    the_core.use_boot_files(BootFiles())
    again = the_core.handle(packet(MessageType.DISCOVER, options=ARM64), sender, 1)
    assert _file(again) == b"ipxe-arm64.efi"
    assert isinstance(offer, DhcpReply) and isinstance(again, DhcpReply)
    assert again.packet.yiaddr == offer.packet.yiaddr  # the same offer: the table stayed
    assert the_core.pools[0].leases is local.leases


def test_the_dhcp6_core_takes_new_boot_files_and_keeps_its_leases() -> None:
    prefix = IPv6Network("2001:db8:77::/64")
    ctx = Dhcp6Context(
        server_duid=duid_ll(bytes.fromhex("020000000001")),
        server_ip=IPv6Address("2001:db8:77::1"),
        prefix=prefix,
        pool_start=IPv6Address("2001:db8:77::100"),
        pool_end=IPv6Address("2001:db8:77::1ff"),
        boot_files=NO_ARM64_IPXE,
    )
    leases = Lease6Table(ctx.pool_start, ctx.pool_end)
    the_core = Dhcp6Core([Pool6(ctx, leases, "eth0")], _NoHosts6())
    solicit = parse(
        bytes(
            DHCP6_Solicit(trid=1)
            / DHCP6OptClientId(duid=DUID_LL(lladdr="52:54:00:00:00:0b"))
            / DHCP6OptIA_NA(iaid=1)
            / DHCP6OptClientArchType(archtypes=[11])
        )
    )
    sender = Sender6("fe80::5054:ff:fe00:b", 546, "eth0")

    def url(now: float) -> bytes:
        outcome = the_core.handle(solicit, sender, now)
        assert isinstance(outcome, Dhcp6Reply), outcome
        return bytes(DHCP6_Advertise(build(outcome.message))[DHCP6OptBootFileUrl].optdata)

    assert url(0) == b"tftp://[2001:db8:77::1]/grubnetaa64.efi"
    the_core.use_boot_files(BootFiles())
    assert url(1) == b"tftp://[2001:db8:77::1]/ipxe-arm64.efi"
    assert the_core.pools[0].leases is leases


class _NoHosts6:
    def lookup(self, mac: str) -> None:
        return None

    def reserved6(self) -> dict[IPv6Address, str]:
        return {}
