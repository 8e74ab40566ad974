"""The status page's pure rules: which events are problems, where the latest boot starts, progress."""

from __future__ import annotations

import pytest

from pxelab.events import Event
from pxelab.http.status import boot_progress, current_boot, is_problem

MAC = "52:54:00:5a:00:01"


@pytest.mark.parametrize(
    ("stage", "detail", "problem"),
    [
        ("error", "anything", True),
        ("dhcp", "NAK 10.0.0.5", True),
        ("dhcp", "ACK 10.0.0.5 ipxe.efi", False),
        ("tftp", "ipxe.efi: sent 1024 bytes", False),
        ("tftp", "ipxe.efi: aborted after OACK (tsize 9), client error 8 (size only)", False),
        ("tftp", "ipxe.efi: error 1 (file not found)", True),
        ("tftp", "ipxe.efi: timed out, 0 of 9 bytes acknowledged", True),
        ("kernel", "/images/demo/amd64/vmlinuz", False),
    ],
)
def test_which_events_are_errors(stage: str, detail: str, problem: bool) -> None:
    assert is_problem(Event(0.0, MAC, stage, detail)) is problem


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
    events = [Event(float(i), MAC, stage, "") for i, stage in enumerate(stages)]
    assert [e.stage for e in current_boot(events)] == latest


def test_boot_progress_steps() -> None:
    stages = ["dhcp", "tftp", "script", "kernel", "initrd", "installed", "dhcp", "http-boot"]
    events = [Event(float(i), MAC, stage, "") for i, stage in enumerate(stages)]
    done = [label for label, reached in boot_progress(events) if reached]
    assert done == ["DHCP", "TFTP"]
