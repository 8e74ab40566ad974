"""What the bench scenarios share: result rows, process CPU and RSS from /proc, nginx and pxelab
on loopback, and wrk's output. Not a test; imported by the scripts in bench/.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from pathlib import Path

from pxelab.testing.netns import stop_process

ROOT = Path(__file__).resolve().parents[1]
ROWS_ENV = "PXELAB_BENCH_ROWS"
"""bench/run.py sets this to a file; scenarios append their rows to it as JSON lines."""
TICK = os.sysconf("SC_CLK_TCK")
CPUS = os.cpu_count() or 1
PINNED = CPUS >= 4
"""With 4 CPUs or more, servers run on the first half and load generators on the rest."""
SERVER_CPUS = f"0-{CPUS // 2 - 1}"
LOAD_CPUS = f"{CPUS // 2}-{CPUS - 1}"


def pin(role: str) -> list[str]:
    """The `taskset` prefix for a server ("server") or a load generator ("load"), or [] when
    the machine has fewer than 4 CPUs (then they share every core: `sharing()` says so)."""
    if not PINNED:
        return []
    return ["taskset", "-c", SERVER_CPUS if role == "server" else LOAD_CPUS]


def sharing() -> str:
    """One line for the report: pinned or shared CPUs."""
    if PINNED:
        return (
            f"servers pinned to CPUs {SERVER_CPUS}, load generators to CPUs {LOAD_CPUS} (taskset)"
        )
    return (
        f"servers and load generators share the {CPUS} CPUs: no taskset (it needs at least 4), "
        "so every ratio includes the clients' competition for the same cores"
    )


GIB = 1 << 30
MIB = 1 << 20


@dataclass(frozen=True)
class Row:
    """One line of the summary table."""

    scenario: str
    """What was measured, and how (clients, sizes)."""
    pxelab: str
    """pxelab's figure, with its unit."""
    reference: str
    """The reference server's figure (or "" when the target is absolute)."""
    ratio: float | None
    """pxelab / reference, when both are numbers of the same kind."""
    target: str
    """The target from the issue, e.g. ">= 0.95x" or "< 1 s"."""
    met: bool | None
    """Whether the target is met (None: no target, or not measurable)."""
    note: str = ""
    """Anything the reader needs: CPU per GB, what the reference was."""


def emit(rows: Sequence[Row]) -> None:
    """Print rows as a markdown table, and append them to $PXELAB_BENCH_ROWS if it is set."""
    print()
    print("| scenario | pxelab | reference | ratio | target | met | note |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        ratio = f"{r.ratio:.2f}x" if r.ratio is not None else ""
        met = {True: "yes", False: "NO", None: ""}[r.met]
        print(
            f"| {r.scenario} | {r.pxelab} | {r.reference} | {ratio} | {r.target} | {met} | {r.note} |"
        )
    out = os.environ.get(ROWS_ENV)
    if out:
        with open(out, "a") as f:
            for r in rows:
                f.write(json.dumps(asdict(r)) + "\n")


def cpu_seconds(pids: Sequence[int]) -> float:
    """utime + stime of these processes, in seconds (0 for one that is gone)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # fields 14 and 15 of stat(5)
    return total / TICK


def rss_bytes(pids: Sequence[int]) -> int:
    """VmRSS of these processes, summed."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def children(pid: int) -> list[int]:
    """pid and its direct children (nginx's master and workers)."""
    found = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with suppress(OSError):
            found += [int(x) for x in (task / "children").read_text().split()]
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_port(port: int, timeout: float, host: str = "127.0.0.1", step: float = 0.002) -> float:
    """Seconds until a TCP connect to host:port succeeds; TimeoutError after timeout."""
    start = time.monotonic()
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return time.monotonic() - start
        except OSError:
            if time.monotonic() - start > timeout:
                raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s") from None
            time.sleep(step)


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 10) -> None:
    stop_process(proc, sig, timeout)


NGINX_CONF = """\
worker_processes 1;
daemon off;
user root;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    access_log {work}/nginx-access.log;
    default_type application/octet-stream;
    client_body_temp_path {work}/tmp-body;
    proxy_temp_path {work}/tmp-proxy;
    fastcgi_temp_path {work}/tmp-fastcgi;
    uwsgi_temp_path {work}/tmp-uwsgi;
    scgi_temp_path {work}/tmp-scgi;
    server {{
        listen {address}:{port};
        root {root};
        location = /boot {{ default_type text/plain; try_files /scripts/$arg_mac.ipxe =404; }}
        location = /boot.ipxe {{ default_type text/plain; }}
    }}
}}
"""
"""nginx as a boot server: one worker (pxelab is one process), sendfile, an access log like
pxelab's, /images/ from root, and /boot?mac= mapped to pre-rendered scripts/<mac>.ipxe."""


@dataclass
class Server:
    """A server under test: its process, the pids to account, its port."""

    name: str
    proc: subprocess.Popen[bytes]
    port: int
    started: float
    """time.monotonic() just before the process was started."""

    @property
    def pids(self) -> list[int]:
        return children(self.proc.pid)


@contextmanager
def nginx(
    work: Path, root: Path, port: int, address: str = "127.0.0.1", argv_prefix: Sequence[str] = ()
) -> Iterator[Server]:
    """nginx serving root on address:port (argv_prefix: e.g. `ip netns exec NS`)."""
    work.mkdir(parents=True, exist_ok=True)
    conf = work / "nginx.conf"
    conf.write_text(NGINX_CONF.format(work=work, root=root, port=port, address=address))
    log = (work / "nginx.out").open("wb")
    started = time.monotonic()
    proc = subprocess.Popen(
        [*argv_prefix, *pin("server"), "nginx", "-c", str(conf), "-p", str(work)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        if not argv_prefix:
            wait_port(port, 10, address)
        yield Server("nginx", proc, port, started)
    finally:
        stop(proc, signal.SIGQUIT)
        log.close()


@contextmanager
def pxelab(work: Path, port: int, *extra: str) -> Iterator[Server]:
    """`pxelab serve` on 127.0.0.1:port, HTTP only, from work/{hosts,images,tftp,state}."""
    log = (work / "pxelab.log").open("wb")
    argv = [
        *pin("server"), sys.executable, "-m", "pxelab", "serve",
        "--http-address", "127.0.0.1", "--http-port", str(port), "--tftp-port", "0",
        "--hosts-dir", str(work / "hosts"), "--images-dir", str(work / "images"),
        "--tftp-root", str(work / "tftp"), "--state-dir", str(work / "state"),
        *extra,
    ]  # fmt: skip
    started = time.monotonic()
    proc = subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    try:
        wait_port(port, 20)
        yield Server("pxelab", proc, port, started)
    finally:
        stop(proc)
        log.close()


@dataclass(frozen=True)
class Wrk:
    """What wrk reports."""

    rps: float
    """Requests per second."""
    p50_ms: float
    p99_ms: float
    errors: int
    """Socket errors and non-2xx responses."""


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]


def wrk(url: str, connections: int = 32, seconds: int = 10, threads: int = 2) -> Wrk:
    argv = [
        *pin("load"),
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
        url,
    ]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    if not (rps and p50 and p99):
        raise RuntimeError(f"wrk output not understood:\n{out}")
    errors = sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors += int(non2xx.group(1)) if non2xx else 0
    return Wrk(float(rps.group(1)), _ms(p50.group(1)), _ms(p99.group(1)), errors)


def write_script(directory: Path, mac: str, text: str) -> None:
    """A pre-rendered per-MAC script for nginx's /boot?mac=: iPXE sends the MAC as 52%3A54%3A…,
    and nginx's $arg_mac is not decoded, so the file is there under both names."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in (mac, mac.replace(":", "%3A")):
        (directory / f"{name}.ipxe").write_text(text)


def ratio(a: float, b: float) -> float | None:
    return a / b if b else None
