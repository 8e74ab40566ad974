"""`pxelab hosts …` and `pxelab explain` in-process, on temporary directories."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from pxelab.cli.main import main
from pxelab.hosts.install import HostState, InstallState, InstallStore
from pxelab.hosts.inventory import load_host_file
from pxelab.state.sqlite import FILE_NAME, SqliteStore

MAC = "52:54:00:00:01:01"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5 me@lab"


def _run(tmp_path: Path, *argv: str) -> int:
    dirs = ["--hosts-dir", str(tmp_path / "hosts"), "--state-dir", str(tmp_path / "state")]
    return main([*argv, *dirs])


def test_add_list_show_reinstall_rm(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(tmp_path, "hosts", "add", "web-1", "--mac", MAC.upper(), "--distro", "ubuntu-24.04",
                "--ssh-key", KEY, "--kernel-args", "quiet", "--ip", "10.0.0.5") == 0  # fmt: skip
    path = tmp_path / "hosts" / "web-1.json"
    host = load_host_file(path)
    assert (host.mac, host.template, host.ssh_keys, str(host.ip)) == (
        MAC,
        "ubuntu",
        (KEY,),
        "10.0.0.5",
    )
    assert "added web-1" in capsys.readouterr().out

    assert _run(tmp_path, "hosts", "add", "web-1", "--mac", "52:54:00:00:01:02") == 1  # exists
    assert _run(tmp_path, "hosts", "add", "web-2", "--mac", MAC) == 1  # MAC taken
    assert "already has mac" in capsys.readouterr().err

    assert _run(tmp_path, "hosts", "list") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["NAME", "MAC", "ARCH", "TEMPLATE", "DISTRO", "IP", "STATE"]
    assert out[1].split() == [
        "web-1",
        MAC,
        "x86_64",
        "ubuntu",
        "ubuntu-24.04",
        "10.0.0.5",
        "install",
    ]

    _set_state(tmp_path / "state", InstallState.INSTALLED)
    assert _run(tmp_path, "hosts", "show", "web-1") == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["state"] == "installed" and shown["host"]["mac"] == MAC.upper()

    assert _run(tmp_path, "hosts", "reinstall", MAC.replace(":", "-")) == 0
    assert _state(tmp_path / "state").state is InstallState.INSTALL
    assert "will install again" in capsys.readouterr().out
    assert _run(tmp_path, "hosts", "list", "--json") == 0
    assert json.loads(capsys.readouterr().out)[0]["state"] == "install"

    assert _run(tmp_path, "hosts", "rm", "web-1") == 0
    assert not path.exists()
    assert _run(tmp_path, "hosts", "rm", "web-1") == 1
    assert _run(tmp_path, "hosts", "reinstall", "nobody") == 1
    assert "no host 'nobody'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--mac", "nope"], "key 'mac'"),
        (["--mac", MAC, "--kernel-args", "a || shell"], "key 'kernel_args'"),
        (["--mac", MAC, "--ssh-key", "not a key"], "key 'ssh_keys'"),
    ],
)
def test_add_refuses_what_the_daemon_would_refuse(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    assert _run(tmp_path, "hosts", "add", "h", *extra) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "hosts" / "h.json").exists()


def test_bad_name_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(tmp_path, "hosts", "add", "bad\nname", "--mac", MAC) == 2
    assert "key 'name'" in capsys.readouterr().err


def test_explain(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "tftp").mkdir()
    (tmp_path / "tftp" / "ipxe.efi").write_bytes(b"efi")
    _run(tmp_path, "hosts", "add", "n1", "--mac", MAC, "--distro", "debian-12")
    capsys.readouterr()
    common = ["--tftp-root", str(tmp_path / "tftp"), "--address", "10.0.0.1", "--http-port", "8080"]
    assert _run(tmp_path, "explain", MAC, *common) == 0
    text = capsys.readouterr().out
    assert "x86-64 UEFI PXE [uefi-x64]: ipxe.efi" in text
    assert "TFTP serves ipxe.efi: present in the TFTP root" in text
    assert "iPXE (second DHCP round) [ipxe]: http://10.0.0.1:8080/boot.ipxe" in text
    assert "url=http://10.0.0.1:8080/preseed/n1" in text
    assert "install data preseed (this host's installer reads it):" in text
    assert _run(tmp_path, "explain", MAC, "--arch", "bios", "--json", *common) == 0
    result = json.loads(capsys.readouterr().out)
    assert [a["boot_file"] for a in result["dhcp"]["answers"]] == ["undionly.kpxe"]
    assert _run(tmp_path, "explain", "52:54:00:00:09:09", *common) == 1
    assert _run(tmp_path, "explain", "nope", *common) == 2


def _set_state(state_dir: Path, state: InstallState) -> None:
    """Record a state in the store of state_dir, as the daemon does on an install callback."""

    async def write() -> None:
        store = SqliteStore(state_dir / FILE_NAME)
        await store.open()
        try:
            await InstallStore(store).set(MAC, state, 1.0, "10.0.0.5")
        finally:
            await store.close()

    asyncio.run(write())


def _state(state_dir: Path) -> HostState:
    """The state the store of state_dir holds for MAC."""

    async def read() -> HostState:
        store = SqliteStore(state_dir / FILE_NAME)
        await store.open()
        try:
            return InstallStore(store).get(MAC)
        finally:
            await store.close()

    return asyncio.run(read())


def test_explain_says_what_the_daemon_does_for_arm64_and_a_pvmlab_tree(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No ipxe-arm64.efi in the TFTP root: DHCP hands out GRUB, so explain says GRUB (the same
    function decides for both); the kernel is found in pvmlab's `aarch64/` directory, and a
    missing initrd lists every path tried."""
    (tmp_path / "tftp").mkdir()
    (tmp_path / "images/demo/aarch64").mkdir(parents=True)
    (tmp_path / "images/demo/aarch64/vmlinuz").write_bytes(b"kernel")
    _run(tmp_path, "hosts", "add", "a1", "--mac", MAC, "--arch", "aarch64", "--distro", "demo")
    capsys.readouterr()
    common = ["--tftp-root", str(tmp_path / "tftp"), "--images-dir", str(tmp_path / "images")]
    common += ["--address", "10.0.0.1", "--http-port", "8080", "--dns", "10.0.0.53"]
    assert _run(tmp_path, "explain", MAC, *common) == 0
    text = capsys.readouterr().out
    assert "ARM64 UEFI PXE [uefi-arm64]: grubnetaa64.efi" in text
    assert "TFTP serves grubnetaa64.efi: MISSING in the TFTP root" in text
    assert "ARM64 UEFI HTTP boot [http-arm64]: http://10.0.0.1:8080/tftp/grubnetaa64.efi" in text
    assert "DNS servers (option 6): 10.0.0.53 (the 'dns' setting)" in text
    assert "  kernel: demo/aarch64/vmlinuz\n" in text
    assert "  initrd: MISSING, tried demo/aarch64/initrd, demo/arm64/initrd, demo/initrd\n" in text
    assert "kernel http://10.0.0.1:8080/images/demo/aarch64/vmlinuz" in text
    (tmp_path / "tftp" / "ipxe-arm64.efi").write_bytes(b"efi")
    assert _run(tmp_path, "explain", MAC, "--arch", "uefi-arm64", *common) == 0
    assert "ARM64 UEFI PXE [uefi-arm64]: ipxe-arm64.efi" in capsys.readouterr().out
