"""The status page's pure rules: which events are problems, where the latest boot starts, progress."""

from __future__ import annotations

import time

import pytest

from pxelab.events import Event, TftpOutcome
from pxelab.http.status import boot_progress, current_boot, is_problem

MAC = "52:54:00:5a:00:01"


def _dhcp(kind: str, address: str = "", file: str = "", *, mac: str = "", ip: str = "") -> Event:
    """A DHCP reply's event, as the DHCP server records it."""
    return Event(time.time(), "dhcp", mac=mac, ip=ip, message_type=kind, address=address, file=file)


def _sent(file: str, size: int, *, ip: str = "") -> Event:
    """A completed TFTP transfer's event, as the TFTP server records it."""
    outcome = TftpOutcome.COMPLETED
    return Event(
        time.time(), "tftp", ip=ip, file=file, outcome=outcome, bytes_acked=size, size=size
    )


def _not_found(file: str, *, ip: str = "") -> Event:
    """A TFTP request for a missing file."""
    return Event(
        time.time(),
        "tftp",
        ip=ip,
        file=file,
        outcome=TftpOutcome.ERROR,
        error_code=1,
        error="file not found",
    )


def _timed_out(file: str, *, ip: str = "") -> Event:
    """A TFTP transfer of a 9-byte file whose client stopped answering."""
    outcome = TftpOutcome.TIMED_OUT
    return Event(time.time(), "tftp", ip=ip, file=file, outcome=outcome, bytes_acked=0, size=9)


@pytest.mark.parametrize(
    ("event", "detail", "problem"),
    [
        (Event(0.0, "error", error="anything"), "anything", True),
        (_dhcp("NAK", "10.0.0.5"), "NAK 10.0.0.5", True),
        (_dhcp("ACK", "10.0.0.5", "ipxe.efi"), "ACK 10.0.0.5 ipxe.efi", False),
        (_sent("ipxe.efi", 1024), "ipxe.efi: sent 1024 bytes", False),
        (
            Event(
                0.0,
                "tftp",
                file="ipxe.efi",
                outcome=TftpOutcome.SIZE_PROBE,
                tsize=9,
                error_code=8,
                error="size only",
            ),
            "ipxe.efi: aborted after OACK (tsize 9), client error 8 (size only)",
            False,
        ),
        (_not_found("ipxe.efi"), "ipxe.efi: error 1 (file not found)", True),
        (_timed_out("ipxe.efi"), "ipxe.efi: timed out, 0 of 9 bytes acknowledged", True),
        (
            Event(0.0, "tftp", file="x", outcome=TftpOutcome.UPLOAD_REFUSED, error="read-only"),
            "x: upload refused (read-only)",
            True,
        ),
        (
            Event(0.0, "kernel", path="/images/demo/amd64/vmlinuz"),
            "/images/demo/amd64/vmlinuz",
            False,
        ),
    ],
)
def test_which_events_are_errors(event: Event, detail: str, problem: bool) -> None:
    assert event.detail == detail
    assert is_problem(event) is problem


@pytest.mark.parametrize(
    ("stages", "latest"),
    [
        ([], []),
        (
            ["dhcp", "dhcp", "tftp", "dhcp", "ipxe", "script"],
            ["dhcp", "dhcp", "tftp", "dhcp", "ipxe", "script"],
        ),
        (["dhcp", "tftp", "script", "kernel", "dhcp", "tftp"], ["dhcp", "tftp"]),
        (
            ["script", "kernel", "initrd", "installed", "reinstall", "script"],
            ["script"],
        ),
        (["script", "kernel", "initrd", "installed", "local-boot"], ["local-boot"]),
        (["ipxe", "script", "script", "kernel"], ["ipxe", "script", "script", "kernel"]),
        (["script", "kernel", "error", "ipxe"], ["ipxe"]),
        (["tftp", "tftp", "tftp"], ["tftp", "tftp", "tftp"]),
    ],
)
def test_the_latest_boot(stages: list[str], latest: list[str]) -> None:
    events = [Event(float(i), stage, mac=MAC) for i, stage in enumerate(stages)]
    assert [e.stage for e in current_boot(events)] == latest


def test_boot_progress_steps() -> None:
    stages = ["dhcp", "tftp", "script", "kernel", "initrd", "installed", "dhcp", "http-boot"]
    events = [Event(float(i), stage, mac=MAC) for i, stage in enumerate(stages)]
    done = [label for label, reached in boot_progress(events) if reached]
    assert done == ["DHCP", "TFTP"]
