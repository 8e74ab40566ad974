"""TFTP: pxelab against dnsmasq and atftpd, side by side, with curl and atftp, in a private namespace.

Cases (1 MiB file, loopback of a fresh network namespace, each server in turn on port 69):
lockstep at blksize 1468 (curl), windowsize 16 (atftp; dnsmasq has no windowsize and answers
lockstep), and 16 parallel curl downloads. Prints a table with ratios; needs root. Not a test.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import ROOT, Row, cpu_seconds, emit, pin, ratio, stop

sys.path.insert(0, str(ROOT))
from pxelab.testing.netns import NetNs, lab

MIB = 1 << 20
HOST = "127.0.0.1"
FILE = "1m.bin"
BLKSIZE = 1468
PXELAB_RUNNER = """
import asyncio, signal, sys
from pathlib import Path
from pxelab.tftp.server import start_tftp
from pxelab.tftp.session import SessionConfig

async def main():
    server = await start_tftp(Path(sys.argv[1]), "127.0.0.1", 69, max_per_client=64,
                              config=SessionConfig(max_windowsize=64))
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    server.close()
    await server.wait_closed()

asyncio.run(main())
"""


@dataclass
class Result:
    """One server's figures."""

    lockstep_s: float = 0.0
    """Median seconds for 1 MiB, curl, blksize 1468."""
    window_s: float = 0.0
    """Median seconds for 1 MiB, atftp, blksize 1468, windowsize 16."""
    parallel_mib_s: float = 0.0
    """Aggregate MiB/s of 16 parallel curl downloads of 1 MiB."""
    cpu_us_per_block: float = 0.0
    """Server CPU per DATA block in the lockstep case."""
    spread: str = ""
    """Each case's range over the repeats, for the note."""


def server_argv(name: str, root: Path, work: Path) -> list[str]:
    if name == "pxelab":
        return [sys.executable, "-c", PXELAB_RUNNER, str(root)]
    if name == "dnsmasq":
        return [
            "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--port=0",
            "--enable-tftp", f"--tftp-root={root}", f"--listen-address={HOST}",
            "--bind-interfaces", "--user=root", f"--pid-file={work}/dnsmasq.pid",
            "--tftp-max=100", "--log-facility=-",
        ]  # fmt: skip
    return [
        "atftpd", "--daemon", "--no-fork", "--port", "69", "--bind-address", HOST,
        "--user", "root", "--group", "root", "--logfile", "/dev/null", "--maxthread", "100",
        str(root),
    ]  # fmt: skip


@contextmanager
def running(ns: NetNs, name: str, root: Path, work: Path) -> Iterator[subprocess.Popen[bytes]]:
    log = (work / f"{name}.log").open("wb")
    proc = ns.popen(
        *pin("server"),
        *server_argv(name, root, work),
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 15
        while fetch(ns, ["curl", "-s", "-o", "/dev/null", f"tftp://{HOST}/small.bin"]) != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start: see {work / (name + '.log')}")
            time.sleep(0.05)
        yield proc
    finally:
        stop(proc, signal.SIGTERM)
        log.close()


def fetch(ns: NetNs, argv: list[str], timeout: float = 30) -> int:
    return subprocess.run(
        ns.argv(*pin("load"), *argv), capture_output=True, timeout=timeout
    ).returncode


def timed(ns: NetNs, argv: list[str], out: Path, root: Path) -> float:
    start = time.monotonic()
    code = fetch(ns, argv)
    elapsed = time.monotonic() - start
    if code != 0 or out.read_bytes() != (root / FILE).read_bytes():
        raise RuntimeError(f"{' '.join(argv)} failed (exit {code}) or fetched wrong bytes")
    out.unlink()
    return elapsed


def measure(
    servers: dict[str, tuple[NetNs, list[int]]], root: Path, work: Path, repeats: int
) -> dict[str, Result]:
    """Every case, the servers taking turns run by run, so a load change hits them alike."""
    results = {name: Result() for name in servers}
    out = work / "out.bin"
    curl = ["curl", "-s", "--tftp-blksize", str(BLKSIZE), "-o", str(out), f"tftp://{HOST}/{FILE}"]
    atftp = [
        "atftp", "--option", f"blksize {BLKSIZE}", "--option", "windowsize 16",
        "-g", "-r", FILE, "-l", str(out), HOST, "69",
    ]  # fmt: skip
    lockstep: dict[str, list[float]] = {name: [] for name in servers}
    window: dict[str, list[float]] = {name: [] for name in servers}
    cpu: dict[str, float] = dict.fromkeys(servers, 0.0)
    for ns, _ in servers.values():
        timed(ns, curl, out, root)  # warm the page cache and pxelab's file cache
    for _ in range(repeats):
        for name, (ns, pids) in servers.items():
            cpu0 = cpu_seconds(pids)
            lockstep[name].append(timed(ns, curl, out, root))
            cpu[name] += cpu_seconds(pids) - cpu0
        for name, (ns, _) in servers.items():
            window[name].append(timed(ns, atftp, out, root))
    parallels: dict[str, list[float]] = {name: [] for name in servers}
    for _ in range(max(1, (repeats + 1) // 2)):
        for name, (ns, _) in servers.items():
            parallels[name].append(parallel(ns, root, work))
    blocks = repeats * (MIB // BLKSIZE + 1)
    for name, result in results.items():
        result.lockstep_s = statistics.median(lockstep[name])
        result.window_s = statistics.median(window[name])
        result.parallel_mib_s = statistics.median(parallels[name])
        result.cpu_us_per_block = cpu[name] / blocks * 1e6
        result.spread = (
            f"lockstep {min(lockstep[name]):.3f}-{max(lockstep[name]):.3f} s, "
            f"window {min(window[name]):.3f}-{max(window[name]):.3f} s, "
            f"parallel {min(parallels[name]):.1f}-{max(parallels[name]):.1f} MiB/s"
        )
    return results


def parallel(ns: NetNs, root: Path, work: Path, clients: int = 16) -> float:
    outs = [work / f"p{i}.bin" for i in range(clients)]
    start = time.monotonic()
    procs = [
        subprocess.Popen(
            ns.argv(
                *pin("load"),
                "curl",
                "-s",
                "--tftp-blksize",
                str(BLKSIZE),
                "-o",
                str(o),
                f"tftp://{HOST}/{FILE}",
            ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for o in outs
    ]
    codes = [p.wait(timeout=60) for p in procs]
    elapsed = time.monotonic() - start
    expected = (root / FILE).read_bytes()
    if codes != [0] * clients or any(o.read_bytes() != expected for o in outs):
        raise RuntimeError(f"parallel downloads failed: exit codes {codes}")
    for o in outs:
        o.unlink()
    return clients * len(expected) / MIB / elapsed


def _descendants(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids = [int(x) for x in (task / "children").read_text().split()]
        except OSError:
            continue
        for kid in kids:
            found += [kid, *_descendants(kid)]
    return found


def rows(results: dict[str, Result], repeats: int) -> list[Row]:
    px, dm, at = results["pxelab"], results["dnsmasq"], results["atftpd"]

    def row(
        scenario: str,
        value: Callable[[Result], float],
        unit: str,
        target: str,
        ok: Callable[[float], bool],
        note: str,
    ) -> Row:
        r = ratio(value(px), value(dm))
        return Row(
            scenario,
            f"{value(px):.3f} {unit}",
            f"{value(dm):.3f} {unit}",
            r,
            target,
            None if r is None else ok(r),
            note,
        )

    return [
        row(
            "TFTP 1 MiB, blksize 1468, lockstep (curl): time vs dnsmasq",
            lambda r: r.lockstep_s,
            "s",
            "<= 1.1x",
            lambda r: r <= 1.1,
            f"median of {repeats}; ranges: pxelab {px.spread}; dnsmasq {dm.spread}; "
            f"atftpd {at.lockstep_s:.3f} s; server CPU per block: pxelab "
            f"{px.cpu_us_per_block:.1f} us, dnsmasq {dm.cpu_us_per_block:.1f} us, "
            f"atftpd {at.cpu_us_per_block:.1f} us",
        ),
        row(
            "TFTP 1 MiB, blksize 1468, windowsize 16 (atftp): time vs dnsmasq",
            lambda r: r.window_s,
            "s",
            "<= 0.5x",
            lambda r: r <= 0.5,
            f"dnsmasq has no windowsize (lockstep); atftpd with windowsize {at.window_s:.3f} s "
            f"(pxelab/atftpd {px.window_s / at.window_s:.2f}x)",
        ),
        row(
            "TFTP 16 parallel curl downloads of 1 MiB: aggregate vs dnsmasq (median)",
            lambda r: r.parallel_mib_s,
            "MiB/s",
            ">= 1.0x",
            lambda r: r >= 1.0,
            f"atftpd {at.parallel_mib_s:.1f} MiB/s",
        ),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=7, help="runs per case (median)")
    args = parser.parse_args()
    names = ("pxelab", "dnsmasq", "atftpd")
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pxelab-tftp-bench-")))
        root = work / "root"
        root.mkdir()
        (root / FILE).write_bytes(os.urandom(MIB))
        (root / "small.bin").write_bytes(b"x")
        for path in (work, root):
            path.chmod(0o777)
        servers: dict[str, tuple[NetNs, list[int]]] = {}
        for name in names:  # one namespace each, all of them up at once
            ns = stack.enter_context(lab()).server
            proc = stack.enter_context(running(ns, name, root, work))
            servers[name] = (ns, [proc.pid, *_descendants(proc.pid)])
        results = measure(servers, root, work, args.repeats)
    for name in names:
        print(f"{name}: {results[name]}", flush=True)
    emit(rows(results, args.repeats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
