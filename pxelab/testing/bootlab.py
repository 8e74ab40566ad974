"""A boot lab on disk and in a namespace: host files, a test kernel+initrd, iPXE, and the daemon.

Used by the end-to-end tests and by `pxelab demo`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pxelab.files import write_atomic
from pxelab.testing.initrd import Kernel, build_initrd, find_kernel
from pxelab.testing.netns import Lab, NetNs, stop_process
from pxelab.testing.qemu import QemuVm

IPXE_DIR = Path("/usr/lib/ipxe")
IPXE_FILES = ("ipxe.efi", "snponly.efi", "undionly.kpxe")
"""Debian's iPXE builds (package ipxe) copied into the lab's TFTP root."""

READY = "pxelab ready"
"""What the daemon logs once every socket is bound."""
_READY_PORT = re.compile(r"pxelab ready: http on \S+?:(\d+)")


@dataclass(frozen=True)
class LabDirs:
    """The directories of one lab, all under `root`."""

    root: Path
    """Top of the lab's files."""

    @property
    def hosts(self) -> Path:
        return self.root / "hosts"

    @property
    def profiles(self) -> Path:
        return self.root / "profiles"

    @property
    def images(self) -> Path:
        return self.root / "images"

    @property
    def tftp(self) -> Path:
        return self.root / "tftp"

    @property
    def state(self) -> Path:
        return self.root / "state"


def write_profile(dirs: LabDirs, name: str, profile: Mapping[str, Any]) -> Path:
    """Write one profile file, named after the profile."""
    path = dirs.profiles / f"{name}.json"
    write_atomic(path, json.dumps(dict(profile), indent=2) + "\n")
    return path


def write_host(dirs: LabDirs, host: Mapping[str, Any]) -> Path:
    """Write one host file, named after the host."""
    path = dirs.hosts / f"{host['name']}.json"
    write_atomic(path, json.dumps(host, indent=2) + "\n")
    return path


GRUB_FILES = {
    "shimx64.efi": Path("/usr/lib/shim/shimx64.efi.signed"),
    "grubx64.efi": Path("/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed"),
}
"""x86-64 Secure Boot chain (shim-signed, grub-efi-amd64-signed): TFTP name -> Debian's file."""
ARM64_GRUB = "usr/lib/grub/arm64-efi-signed/grubnetaa64.efi.signed"
"""Debian's signed arm64 network GRUB, inside the arm64 inputs root."""


def arm64_root() -> Path:
    """Debian's arm64 kernel, busybox and GRUB, unpacked by scripts/setup.sh (or $PXELAB_ARM64_ROOT)."""
    default = Path(__file__).resolve().parents[2] / ".cache" / "arm64" / "root"
    return Path(os.environ.get("PXELAB_ARM64_ROOT", default))


DEBIAN_INSTALLER = Path("/usr/lib/debian-installer/images/12/amd64/text/debian-installer/amd64")
"""Debian 12's netboot installer, `linux` and `initrd.gz` (debian-installer-12-netboot-amd64)."""


def add_debian_installer(dirs: LabDirs, distro: str = "debian-12") -> Path:
    """Copy Debian's netboot installer into images/<distro>/amd64/ (as `linux`, `initrd.gz`)."""
    image_dir = dirs.images / distro / "amd64"
    image_dir.mkdir(parents=True, exist_ok=True)
    for name in ("linux", "initrd.gz"):
        source = DEBIAN_INSTALLER / name
        if not source.is_file():
            raise FileNotFoundError(
                f"{source} is missing: install Debian's debian-installer-12-netboot-amd64 package"
            )
        shutil.copyfile(source, image_dir / name)
    return image_dir


def _image(image_dir: Path, kernel: Kernel, busybox: Path) -> None:
    image_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(kernel.vmlinuz, image_dir / "vmlinuz")
    (image_dir / "initrd").write_bytes(build_initrd(kernel, busybox))


def prepare(root: Path, hosts: Iterable[Mapping[str, Any]], distro: str = "demo") -> LabDirs:
    """Lay out a lab: the test kernel and initrd as images/<distro>/amd64/ (and arm64/ when the
    arm64 inputs are there), iPXE and the signed shim and GRUB in the TFTP root, host files."""
    dirs = LabDirs(root)
    for d in (dirs.hosts, dirs.profiles, dirs.tftp, dirs.state):
        d.mkdir(parents=True, exist_ok=True)
    _image(dirs.images / distro / "amd64", find_kernel(), Path("/bin/busybox"))
    for name in IPXE_FILES:
        source = IPXE_DIR / name
        if not source.is_file():
            raise FileNotFoundError(f"{source} is missing: install Debian's ipxe package")
        shutil.copyfile(source, dirs.tftp / name)
    for name, source in GRUB_FILES.items():
        if source.is_file():
            shutil.copyfile(source, dirs.tftp / name)
    arm64 = arm64_root()
    if (arm64 / ARM64_GRUB).is_file():
        shutil.copyfile(arm64 / ARM64_GRUB, dirs.tftp / "grubnetaa64.efi")
        kernel = find_kernel(arm64 / "boot", arm64 / "lib" / "modules")
        _image(dirs.images / distro / "arm64", kernel, arm64 / "bin" / "busybox")
    for host in hosts:
        write_host(dirs, host)
    return dirs


@dataclass
class Daemon:
    """`pxelab serve` running as a child process; its log goes to `log`."""

    proc: subprocess.Popen[bytes]
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    @property
    def http_port(self) -> int:
        """The HTTP port from the daemon's ready line."""
        found = _READY_PORT.search(self.text())
        if found is None:
            raise RuntimeError(f"pxelab has not logged its HTTP port:\n{self.text()}")
        return int(found.group(1))

    def wait_for(self, needle: str, timeout: float = 60) -> None:
        """Until the log holds needle; the timeout only bounds a hang (a loaded machine)."""
        deadline = time.monotonic() + timeout
        while needle not in self.text():
            if self.proc.poll() is not None:
                raise RuntimeError(f"pxelab exited with {self.proc.returncode}:\n{self.text()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"pxelab did not log {needle!r} in {timeout}s:\n{self.text()}")
            time.sleep(0.05)

    def stop(self, timeout: float = 10, sig: int = signal.SIGTERM) -> int:
        """Send sig (SIGTERM), then wait; the exit code (SIGKILL after timeout)."""
        return stop_process(self.proc, sig, timeout)


@contextmanager
def running(daemon: Daemon, *logs: Path) -> Iterator[list[QemuVm]]:
    """Watch a boot: append the VMs you start to the yielded list. On failure pxelab's log, each
    VM's serial log and the extra logs are printed; at the end every VM and the daemon stop."""
    vms: list[QemuVm] = []
    try:
        yield vms
    except BaseException:
        print("---- pxelab log ----\n" + daemon.text())
        for vm in vms:
            print(f"---- serial log {vm.serial_log} ----\n" + vm.text())
        for log in logs:
            print(f"---- {log} ----\n" + log.read_text(errors="replace"))
        raise
    finally:
        for vm in vms:
            vm.stop()
        daemon.stop()


def launch(dirs: LabDirs, args: list[str], ns: NetNs | None = None) -> Daemon:
    """`python -m pxelab serve` on dirs with args (in ns, if given), once it is ready.

    Each start logs to a file of its own, so a restarted daemon's log holds only its own lines.
    """
    log = dirs.root / f"pxelab-{time.monotonic_ns()}.log"
    argv = [
        sys.executable, "-m", "pxelab", "serve",
        "--hosts-dir", str(dirs.hosts),
        "--profiles-dir", str(dirs.profiles),
        "--images-dir", str(dirs.images),
        "--tftp-root", str(dirs.tftp),
        "--state-dir", str(dirs.state),
        *args,
    ]  # fmt: skip
    with log.open("ab") as out:
        kwargs: dict[str, Any] = {"stdin": subprocess.DEVNULL, "stdout": out, "stderr": out}
        proc = ns.popen(*argv, **kwargs) if ns else subprocess.Popen(argv, **kwargs)
    daemon = Daemon(proc, log)
    daemon.wait_for(READY)
    return daemon


def create_token(dirs: LabDirs, name: str, *extra: str) -> str:
    """`pxelab token create NAME` on the lab's state (the daemon may be running): the token.
    `extra` flags go along (`--state-url URL` for a shared database)."""
    argv = [sys.executable, "-m", "pxelab", "token", "create", name, "--state-dir", str(dirs.state)]
    argv += extra
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"pxelab token create {name} failed: {done.stderr}")
    return done.stdout.strip()


def start_daemon(lab: Lab, dirs: LabDirs, *extra: str, http_port: int = 8080) -> Daemon:
    """`pxelab serve` in the lab's server namespace, answering DHCP on its bridge (root)."""
    args = ["--interface", lab.bridge, "--dhcp-range", f"{lab.ip(100)}-{lab.ip(199)}"]
    return launch(dirs, [*args, "--http-port", str(http_port), *extra], lab.server)


def start_daemon_usernet(dirs: LabDirs, *extra: str) -> Daemon:
    """`pxelab serve` on 127.0.0.1, HTTP only, on a free port: for QEMU user-mode guests, no root."""
    args = ["--http-address", "127.0.0.1", "--http-port", "0", "--tftp-port", "0"]
    args += ["--syslog-port", "0"]  # port 514 needs root; user-mode guests cannot reach it
    return launch(dirs, [*args, *extra], None)


@dataclass
class DnsRecorder:
    """dnsmasq in a lab namespace with no upstream: answers nothing, logs every query it gets."""

    proc: subprocess.Popen[bytes]
    log: Path

    def text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for_query(self, name: str, timeout: float, *others: Any) -> str:
        """The first log line of a query for name; TimeoutError (with the log) if none comes.

        others (QemuVm, Daemon) are watched too: the wait ends early when one of them exits."""
        pattern = re.compile(rf"query\[\w+\] {re.escape(name)} from \S+")
        deadline = time.monotonic() + timeout
        while not (found := pattern.search(self.text())):
            gone = [p for p in (self, *others) if p.proc.poll() is not None]
            if gone or time.monotonic() > deadline:
                why = f"{type(gone[0]).__name__} exited" if gone else f"none after {timeout:.0f}s"
                raise TimeoutError(f"no DNS query for {name}: {why}; queries:\n{self.text()}")
            time.sleep(0.2)
        return found.group(0)

    def stop(self) -> None:
        stop_process(self.proc, timeout=5)


def start_dns(ns: NetNs, address: str, workdir: Path) -> DnsRecorder:
    """A DNS server on address:53 in ns (Debian's dnsmasq-base) that records queries in its log
    and never forwards them: point a lab's `dns` here and no query leaves the namespace."""
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "dnsmasq.log"
    argv = [
        "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
        "--log-queries", f"--log-facility={log}", f"--pid-file={workdir / 'dnsmasq.pid'}",
        "--user=root", "--bind-interfaces", f"--listen-address={address}", "--port=53",
    ]  # fmt: skip
    with (workdir / "dnsmasq.stderr").open("ab") as err:
        proc = ns.popen(*argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err)
    recorder = DnsRecorder(proc, log)
    deadline = time.monotonic() + 10
    while "started, version" not in recorder.text():
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_process(proc)
            stderr = (workdir / "dnsmasq.stderr").read_text(errors="replace")
            raise RuntimeError(f"dnsmasq did not start on {address}:53: {stderr}{recorder.text()}")
        time.sleep(0.05)
    return recorder
