"""HTTP against nginx (sendfile, one worker) on loopback, and pxelab's start and memory.

Scenarios (`--only NAME`, default all):
  bigfile   a 512 MiB file to 1 and to 16 curl clients at once: aggregate MB/s, server CPU per GiB
  script    the per-MAC iPXE script (/boot?mac=) under wrk -c32: req/s and p99; nginx serves the
            same script pre-rendered to a file
  ready     `pxelab serve` with DHCP, TFTP and HTTP in a namespace: start to its ready line
  rss       pxelab's RSS, sampled while 16 clients stream a 4 GiB sparse file
  slow      a normal client's wait for its script while 1,000 slow or idle connections are open
            (the test, tests/integration/test_http_load.py, checks that it is served at all)
Not a test: bench/run.py (`make bench`) runs it as root and gathers its rows.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchlib import (
    GIB,
    MIB,
    Row,
    Server,
    Wrk,
    cpu_seconds,
    emit,
    free_port,
    nginx,
    pxelab,
    ratio,
    rss_bytes,
    write_script,
    wrk,
)

MAC = "52:54:00:be:00:07"
QUICK = False
"""--quick: every case once, short runs (a check before a full run, not a figure to quote)."""


def layout(work: Path) -> None:
    """Hosts (50, one of them MAC) and the images dir shared by pxelab and nginx."""
    import json

    for d in ("hosts", "images/demo/amd64", "tftp", "state", "images/scripts"):
        (work / d).mkdir(parents=True, exist_ok=True)
    for i in range(50):
        mac = MAC if i == 7 else f"52:54:00:be:00:{i:02x}"
        host = {"name": f"bench-{i}", "mac": mac, "distro": "demo", "kernel_args": "quiet"}
        (work / "hosts" / f"bench-{i}.json").write_text(json.dumps(host))


def curl_all(url: str, clients: int, max_time: float | None = None) -> tuple[float, int]:
    """Seconds until every one of `clients` parallel curls ends, and the bytes they got."""
    argv = ["curl", "-s", "-o", "/dev/null", "-w", "%{size_download}", url]
    if max_time:
        argv[1:1] = ["--max-time", str(max_time)]
    start = time.monotonic()
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE) for _ in range(clients)]
    got = sum(int(float(p.communicate()[0] or 0)) for p in procs)
    return time.monotonic() - start, got


def bigfile(work: Path) -> list[Row]:
    layout(work)
    big = work / "images" / "demo" / "amd64" / "big.img"
    block = bytes(range(256)) * 4096
    mib = 128 if QUICK else 512
    with big.open("wb") as f:
        for i in range(mib):
            f.write(block[i:] + block[:i])
    subprocess.run(["cat", str(big)], stdout=subprocess.DEVNULL, check=True)  # page cache
    rows = []
    with pxelab(work, free_port()) as px, nginx(work / "nginx", work, free_port()) as ng:
        for clients, repeats in ((1, 1), (16, 1)) if QUICK else ((1, 5), (16, 5)):
            results: dict[str, list[tuple[float, float]]] = {"pxelab": [], "nginx": []}
            for _ in range(repeats):
                for server in (px, ng):  # interleaved: both see the same machine noise
                    url = f"http://127.0.0.1:{server.port}/images/demo/amd64/big.img"
                    cpu0 = cpu_seconds(server.pids)
                    seconds, got = curl_all(url, clients)
                    cpu = cpu_seconds(server.pids) - cpu0
                    if got != clients * mib * MIB:
                        raise RuntimeError(f"{server.name}: got {got} bytes")
                    results[server.name].append((got / seconds / 1e6, cpu / (got / GIB)))
                    print(f"  {server.name} {clients} clients: {got / seconds / 1e6:.0f} MB/s, "
                          f"{cpu / (got / GIB):.2f} CPU s/GiB", flush=True)  # fmt: skip
            (p_mbs, p_cpu), (n_mbs, n_cpu) = (
                (statistics.median(x for x, _ in v), statistics.median(c for _, c in v))
                for v in (results["pxelab"], results["nginx"])
            )
            r = ratio(p_mbs, n_mbs)
            rows.append(
                Row(
                    f"HTTP {mib} MiB file, {clients} client{'s' if clients > 1 else ''} (curl)",
                    f"{p_mbs:.0f} MB/s",
                    f"{n_mbs:.0f} MB/s",
                    r,
                    ">= 0.95x",
                    r is not None and r >= 0.95,
                    f"server CPU per GiB: pxelab {p_cpu:.2f} s, nginx {n_cpu:.2f} s "
                    f"(median of {repeats})",
                )
            )
    return rows


def render_script(work: Path, port: int) -> None:
    """The per-MAC script as pxelab would render it for nginx's port, as images/scripts/<mac>.ipxe."""
    from pxelab.boot.render import Renderer
    from pxelab.hosts.inventory import Inventory

    host = Inventory(work / "hosts").lookup(MAC)
    assert host is not None
    script = Renderer().boot_script(host, f"http://127.0.0.1:{port}")
    write_script(work / "images" / "scripts", MAC, script)


def script(work: Path) -> list[Row]:
    layout(work)
    nport = free_port()
    render_script(work, nport)
    rows = []
    rounds, seconds = (1, 3) if QUICK else (3, 6)
    with pxelab(work, free_port()) as px, nginx(work / "nginx", work / "images", nport) as ng:
        got: dict[str, list[Wrk]] = {"pxelab": [], "nginx": []}
        for server in (px, ng):
            url = f"http://127.0.0.1:{server.port}/boot?mac={MAC}"
            check = subprocess.run(["curl", "-sf", url], capture_output=True, text=True)
            if "kernel " not in check.stdout:
                raise RuntimeError(f"{server.name}: {url} gave {check.stdout!r}")
            wrk(url, seconds=2)  # warm up
        for _ in range(rounds):
            for server in (px, ng):  # interleaved: both see the same machine noise
                url = f"http://127.0.0.1:{server.port}/boot?mac={MAC}"
                cpu0 = cpu_seconds(server.pids)
                result = wrk(url, seconds=seconds)
                got[server.name].append(result)
                cpu = cpu_seconds(server.pids) - cpu0
                print(f"  {server.name}: {result.rps:.0f} req/s, p50 {result.p50_ms:.2f} ms, "
                      f"p99 {result.p99_ms:.2f} ms, errors {result.errors}, "
                      f"server CPU {cpu / seconds:.0%}", flush=True)  # fmt: skip
    p, n = (median_wrk(got[name]) for name in ("pxelab", "nginx"))
    r = ratio(p.rps, n.rps)
    spread = ", ".join(
        f"{name} {min(w.rps for w in runs):.0f}-{max(w.rps for w in runs):.0f} req/s"
        for name, runs in got.items()
    )
    rows.append(
        Row(
            f"HTTP per-MAC iPXE script, wrk -t2 -c32 {seconds} s, median of {rounds}",
            f"{p.rps:.0f} req/s, p99 {p.p99_ms:.2f} ms",
            f"{n.rps:.0f} req/s, p99 {n.p99_ms:.2f} ms (static file)",
            r,
            ">= 0.5x nginx, p99 < 5 ms",
            r is not None and r >= 0.5 and p.p99_ms < 5 and p.errors == 0,
            f"p50 pxelab {p.p50_ms:.2f} ms, nginx {n.p50_ms:.2f} ms; errors {p.errors}/{n.errors}; "
            f"ranges: {spread}",
        )
    )
    return rows


def median_wrk(runs: list[Wrk]) -> Wrk:
    """The run with the median rate (its own p50 and p99 with it); errors summed."""
    ordered = sorted(runs, key=lambda w: w.rps)
    middle = ordered[len(ordered) // 2]
    return Wrk(middle.rps, middle.p50_ms, middle.p99_ms, sum(w.errors for w in runs))


def ready(work: Path) -> list[Row]:
    """Start to ready: pxelab with DHCP+TFTP+HTTP in a lab namespace; nginx on loopback."""
    from pxelab.testing import bootlab
    from pxelab.testing.netns import lab

    runs = 1 if QUICK else 5
    layout(work)
    times, cpus = [], []
    with lab() as the_lab:
        dirs = bootlab.LabDirs(work)
        for _ in range(runs):
            start = time.monotonic()
            daemon = bootlab.start_daemon(the_lab, dirs, "--log-level", "info")
            # start_daemon returns once the ready line is in the log (polled every 50 ms)
            took = time.monotonic() - start
            cpus.append(cpu_seconds([daemon.proc.pid]))  # `ip netns exec` execs pxelab
            daemon.stop()
            times.append(took)
            daemon.log.unlink(missing_ok=True)
    nginx_times = []
    for i in range(runs):
        port = free_port()
        with nginx(work / f"nginx{i}", work / "images", port) as ng:
            nginx_times.append(time.monotonic() - ng.started)
    t, n = statistics.median(times), statistics.median(nginx_times)
    print(f"  pxelab start to ready: {', '.join(f'{x:.3f}' for x in times)} s; CPU "
          f"{', '.join(f'{x:.2f}' for x in cpus)} s", flush=True)  # fmt: skip
    return [
        Row(
            "Daemon start to ready (DHCP+TFTP+HTTP in a netns)",
            f"{t:.2f} s",
            f"{n:.3f} s (nginx alone)",
            None,
            "< 1 s",
            t < 1.0,
            f"median of {runs}; pxelab: Popen to its 'pxelab ready' log line (polled every "
            f"50 ms), CPU used by then {statistics.median(cpus):.2f} s (the rest is waiting for "
            "a core); nginx: Popen to its port accepting",
        )
    ]


def stream_rss(server: Server, url: str, seconds: float) -> tuple[list[int], int]:
    """RSS samples (every 0.1 s) while 16 curls stream url for `seconds`; bytes they got."""
    argv = ["curl", "-s", "--max-time", str(seconds), "-o", "/dev/null", "-w", "%{size_download}"]
    procs = [subprocess.Popen([*argv, url], stdout=subprocess.PIPE) for _ in range(16)]
    samples = []
    while any(p.poll() is None for p in procs):
        samples.append(rss_bytes(server.pids))
        time.sleep(0.1)
    got = sum(int(float(p.communicate()[0] or 0)) for p in procs)
    return samples, got


def rss(work: Path) -> list[Row]:
    layout(work)
    sparse = work / "images" / "demo" / "amd64" / "sparse.img"
    with sparse.open("wb") as f:
        f.truncate(4 * GIB)
    path = "/images/demo/amd64/sparse.img"
    with pxelab(work, free_port()) as px:
        idle = rss_bytes(px.pids)
        samples, got = stream_rss(px, f"http://127.0.0.1:{px.port}{path}", 4 if QUICK else 20)
        after = rss_bytes(px.pids)
    with nginx(work / "nginx", work, free_port()) as ng:
        n_samples, _ = stream_rss(ng, f"http://127.0.0.1:{ng.port}{path}", 2 if QUICK else 10)
    steady = samples[10:] or samples  # after the first second
    peak, low = max(samples), min(steady)
    flat = max(steady) - low
    return [
        Row(
            f"RSS while 16 clients stream a 4 GiB sparse file, {4 if QUICK else 20} s",
            f"{peak / MIB:.0f} MiB peak",
            f"{max(n_samples) / MIB:.0f} MiB peak (nginx, 10 s)",
            None,
            "< 100 MB, flat",
            peak < 100 * 1e6 and flat < 10 * MIB,
            f"pxelab idle {idle / MIB:.0f} MiB, after {after / MIB:.0f} MiB, spread after 1 s "
            f"{flat / MIB:.1f} MiB over {len(samples)} samples; {got / GIB:.0f} GiB sent",
        )
    ]


def slow(work: Path, connections: int = 1000, requests: int = 20) -> list[Row]:
    """A normal client's request time while `connections` slowloris or idle connections are open."""
    import resource
    import socket
    import urllib.request

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4 * connections)), hard))
    layout(work)
    waits: list[float] = []
    with pxelab(work, free_port()) as px:
        url = f"http://127.0.0.1:{px.port}/boot?mac={MAC}"
        held: list[socket.socket] = []
        try:
            for i in range(connections):
                sock = socket.create_connection(("127.0.0.1", px.port), timeout=10)
                if i % 2:  # half slowloris: a request line and a header, never finished
                    sock.sendall(b"GET /boot.ipxe HTTP/1.1\r\nHost: x\r\nX-a: ")
                held.append(sock)
            for _ in range(requests):
                for sock in held[1::2][:200]:
                    sock.sendall(b"a")  # trickle, as slowloris does
                start = time.monotonic()
                with urllib.request.urlopen(url, timeout=30) as resp:
                    resp.read()
                waits.append(time.monotonic() - start)
        finally:
            for sock in held:
                sock.close()
    worst, median = max(waits), statistics.median(waits)
    print(f"  normal client beside {connections} slow ones: median {median * 1000:.1f} ms, "
          f"worst {worst * 1000:.1f} ms", flush=True)  # fmt: skip
    return [
        Row(
            f"HTTP script for a normal client beside {connections} slow/idle connections",
            f"worst {worst * 1000:.0f} ms",
            "",
            None,
            "< 2 s",
            worst < 2.0,
            f"{requests} requests, median {median * 1000:.1f} ms; half the connections trickle "
            "an unfinished header (slowloris), half are silent",
        )
    ]


SCENARIOS: dict[str, Callable[[Path], list[Row]]] = {
    "bigfile": bigfile,
    "script": script,
    "ready": ready,
    "rss": rss,
    "slow": slow,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", action="append", choices=sorted(SCENARIOS))
    parser.add_argument("--quick", action="store_true", help="every case once, short runs")
    args = parser.parse_args()
    global QUICK
    QUICK = args.quick
    rows: list[Row] = []
    for name in args.only or SCENARIOS:
        print(f"http_bench: {name}", flush=True)
        with tempfile.TemporaryDirectory(prefix=f"pxelab-bench-{name}-") as tmp:
            rows += SCENARIOS[name](Path(tmp))
    emit(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
