"""Extraction benchmark: pycdlib (pxelab.assets.extract) vs bsdtar vs xorriso on one generated ISO.

Run: `.venv/bin/python bench/assets_extract.py [--size-mib 1024] [--repeat 3] [--dir DIR]`.
Builds an Ubuntu-shaped ISO (kernel 14 MiB, initrd 70 MiB, a squashfs of --size-mib), then times
each tool extracting (a) kernel + initrd and (b) the big file, with the ISO evicted from the page
cache before every run (cold) and once without eviction (warm). Peak RSS is the child's VmHWM.
Not part of the test suite; about 2-3 minutes and 2x --size-mib of disk.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SMALL = {"casper/vmlinuz": 14, "casper/initrd": 70}
BIG = "casper/filesystem.squashfs"


def write_random(path: Path, mib: int) -> None:
    block = os.urandom(1 << 20)
    with path.open("wb") as f:
        for i in range(mib):
            f.write(block[i % 256 :] + block[: i % 256])  # distinct blocks, cheap to make


def evict(path: Path) -> None:
    """Drop the file's pages from the page cache (no root needed for clean pages)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def commands(tool: str, iso: Path, out: Path, members: list[str]) -> list[str]:
    if tool == "bsdtar":
        return ["bsdtar", "-xf", str(iso), "-C", str(out), *members]
    if tool == "xorriso":
        cmd = ["xorriso", "-osirrox", "on", "-indev", str(iso)]
        for m in members:
            cmd += ["-extract", f"/{m}", str(out / m)]
        return cmd
    code = (
        "import sys; from pathlib import Path; from pxelab.assets.extract import extract; "
        "out = Path(sys.argv[2]); "
        "extract(Path(sys.argv[1]), {m: out / m for m in sys.argv[3:]})"
    )
    return [sys.executable, "-c", code, str(iso), str(out), *members]


def vm_hwm(pid: int) -> int:
    """The process's peak RSS in KiB (VmHWM of its current image), or 0 once it has exited."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def run(cmd: list[str]) -> tuple[float, int]:
    """(seconds, peak RSS in KiB) of one child process.

    wait4()'s ru_maxrss would include the forked Python before exec, so VmHWM of the exec'd
    image is sampled every 2 ms instead (it only grows, so the last sample is the peak).
    """
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    while True:
        peak = max(peak, vm_hwm(proc.pid))
        pid, status = os.waitpid(proc.pid, os.WNOHANG)
        if pid:
            break
        time.sleep(0.002)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        assert proc.stderr is not None
        raise SystemExit(f"{cmd[0]} failed: {proc.stderr.read().decode()[:500]}")
    return elapsed, peak


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="size of the big file")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", type=Path, help="work directory (default: a temporary one)")
    args = parser.parse_args()
    for tool in ("bsdtar", "xorriso"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is missing: scripts/setup.sh installs it")
    work = Path(tempfile.mkdtemp(prefix="pxelab-bench-", dir=args.dir))
    try:
        src = work / "src"
        (src / "casper").mkdir(parents=True)
        for name, mib in {**SMALL, BIG: args.size_mib}.items():
            write_random(src / name, mib)
        iso = work / "ubuntu-like.iso"
        t0 = time.perf_counter()
        subprocess.run(
            ["xorriso", "-as", "mkisofs", "-R", "-J", "-o", str(iso), str(src)],
            check=True,
            capture_output=True,
        )
        shutil.rmtree(src)
        print(
            f"ISO: {iso.stat().st_size / 2**30:.2f} GiB, built in {time.perf_counter() - t0:.1f} s"
        )
        startup, _ = run([sys.executable, "-c", "import pxelab.assets.extract"])
        print(f"(pycdlib rows include starting Python and importing pycdlib: {startup:.2f} s)")
        print(
            f"{'tool':<8} {'files':<16} {'cache':<5} {'median s':>9} {'MiB/s':>7} {'peak RSS MiB':>13}"
        )
        for label, members in (("kernel+initrd", list(SMALL)), ("squashfs", [BIG])):
            mib = sum(SMALL.values()) if label == "kernel+initrd" else args.size_mib
            for tool in ("pycdlib", "bsdtar", "xorriso"):
                for cache in ("cold", "warm"):
                    times, rss = [], []
                    for _ in range(args.repeat if cache == "cold" else 1):
                        out = work / "out"
                        (out / "casper").mkdir(parents=True)
                        if cache == "cold":
                            evict(iso)
                        seconds, peak = run(commands(tool, iso, out, members))
                        times.append(seconds)
                        rss.append(peak)
                        shutil.rmtree(out)
                    med = statistics.median(times)
                    print(
                        f"{tool:<8} {label:<16} {cache:<5} {med:>9.2f} {mib / med:>7.0f} "
                        f"{max(rss) / 1024:>13.1f}",
                        flush=True,
                    )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
