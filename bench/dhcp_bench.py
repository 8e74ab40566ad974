"""DHCP throughput: perfdhcp (kea-admin) against pxelab (SQLite, or PostgreSQL with one or two
instances) and dnsmasq, perfdhcp acting as a relay. Not a test: `make bench` runs it (root).

The client namespace holds a bridge; each server namespace hangs off it by a veth pair (the
second one serves the second pxelab instance on the shared database). For each server the rate
goes up until more than 1% of the DORA exchanges are dropped; the table shows the highest rate
achieved at <= 1% drops, the average DISCOVER-OFFER and REQUEST-ACK delays there, and the server
CPU per DORA (for PostgreSQL: pxelab's processes + the database's). perfdhcp addresses one
server per process, so two instances get two perfdhcp processes at half the rate each, with
their own MAC ranges. After the ramp, one more two-instance run captures every ACK on the
client's bridge and compares them with the database: no address may go to two MACs.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

from benchlib import children, cpu_seconds, pin

from pxelab.dhcp.options import message_type
from pxelab.dhcp.packet import MessageType, parse
from pxelab.errors import MalformedPacket
from pxelab.testing.netns import stop_process
from pxelab.testing.postgres import PostgresCluster, postgres_cluster

ROOT = Path(__file__).resolve().parents[1]
SERVER_NS = (f"pxbench{os.getpid()}s", f"pxbench{os.getpid()}t")
CLIENT_NS = f"pxbench{os.getpid()}c"
SERVER_IPS, CLIENT_IPS, PREFIX = ("10.250.0.1", "10.250.0.3"), ("10.250.0.2", "10.250.0.4"), 16
"""A client address per perfdhcp process: each binds port 67 on its own (the relay's port)."""
BRIDGE = "br0"
POOL = ("10.250.1.1", "10.250.254.254")
RATES = (250, 500, 750, 1000, 1250, 1500, 1750, 2000, 2500, 3000, 3500, 4000, 5000, 6000, 8000)
CLIENTS = 50000
PG1, PG2, PG2B = "pxelab postgres", "pxelab postgres x2", "pxelab postgres x2 both"
PGSYNC = "pxelab postgres sync"
"""Configurations on PostgreSQL: one instance; two, each sent half the clients (PG2) or both
sent every packet (PG2B: perfdhcp broadcasts, so both answer every DISCOVER and the client takes
the first OFFER, as behind a relay with both as helpers); one with synchronous_commit on."""
PG = (PG1, PG2, PG2B, PGSYNC)
KINDS = ("pxelab", *PG, "dnsmasq", "dnsmasq --leasefile-ro")
DEFAULT_SERVERS = ("pxelab", "dnsmasq", "dnsmasq --leasefile-ro")


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if check and proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)}: {proc.stderr.strip()}")
    return proc


def ns(name: str, *cmd: str) -> list[str]:
    return ["ip", "netns", "exec", name, *cmd]


@contextmanager
def lab() -> Iterator[None]:
    """The client namespace with a bridge, and two server namespaces on it; deleted on exit."""
    made: list[str] = []
    try:
        for name in (CLIENT_NS, *SERVER_NS):
            sh("ip", "netns", "add", name)
            made.append(name)
            sh(*ns(name, "ip", "link", "set", "lo", "up"))
        sh(*ns(CLIENT_NS, "ip", "link", "add", BRIDGE, "type", "bridge"))
        for index, (name, ip) in enumerate(zip(SERVER_NS, SERVER_IPS, strict=True)):
            port = f"port{index}"
            sh(*ns(name, "ip", "link", "add", "veth0", "type", "veth", "peer", "name", port,
                   "netns", CLIENT_NS))  # fmt: skip
            sh(*ns(name, "ip", "addr", "add", f"{ip}/{PREFIX}", "dev", "veth0"))
            sh(*ns(name, "ip", "link", "set", "veth0", "up"))
            sh(*ns(CLIENT_NS, "ip", "link", "set", port, "master", BRIDGE, "up"))
        for ip in CLIENT_IPS:
            sh(*ns(CLIENT_NS, "ip", "addr", "add", f"{ip}/{PREFIX}", "dev", BRIDGE))
        sh(*ns(CLIENT_NS, "ip", "link", "set", BRIDGE, "up"))
        yield
    finally:
        for name in reversed(made):
            sh("ip", "netns", "del", name, check=False)


@dataclass(frozen=True)
class Result:
    """One rate step against one configuration (one or two perfdhcp processes)."""

    rate: int
    """Asked DORA/s (the sum over the perfdhcp processes)."""
    achieved: float
    """4-way exchanges per second perfdhcp reports (summed)."""
    drops: float
    """Worst drop ratio of the two exchanges, in percent (the worst process)."""
    offer_ms: float
    """Average DISCOVER -> OFFER delay (mean over the processes)."""
    ack_ms: float
    """Average REQUEST -> ACK delay (mean over the processes)."""
    acks: int
    """ACKs perfdhcp received: the completed DORAs."""
    server_cpu: float
    """CPU seconds of the DHCP server processes during the run."""
    db_cpu: float
    """CPU seconds of the PostgreSQL processes during the run (0 without it)."""

    def cpu_text(self) -> str:
        """Server CPU per completed DORA, split into pxelab and PostgreSQL when there is one."""
        if not self.acks:
            return "?"
        own, db = self.server_cpu / self.acks * 1e6, self.db_cpu / self.acks * 1e6
        return f"{own + db:.0f} us" + (f" ({own:.0f} + PG {db:.0f})" if self.db_cpu else "")


def start_perfdhcp(index: int, rate: int, period: int, both: bool) -> subprocess.Popen[str]:
    """perfdhcp number `index` (own relay address, own MACs) against server number `index`;
    with `both`, to the broadcast address from the bridge (every server gets every packet)."""
    target = [] if both else [SERVER_IPS[index]]
    local = BRIDGE if both else CLIENT_IPS[index]
    return subprocess.Popen(
        ns(CLIENT_NS, *pin("load"), "perfdhcp", "-4", "-l", local, "-r", str(rate), "-R", str(CLIENTS),
           "-b", f"mac=00:0c:{index + 1:02x}:00:00:00", "-p", str(period), "-W", "1000000",
           "-d", "2", *target),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def perfdhcp_figures(out: str, err: str) -> tuple[float, float, float, float, int]:
    """Achieved rate, worst drop %, offer and ack delays, ACKs received: from perfdhcp's stdout."""
    achieved = re.search(r"Rate: ([\d.]+) 4-way exchanges/second", out)
    drops = [float(x) for x in re.findall(r"drops ratio: ([\d.]+) ?%", out)]
    delays = [float(x) for x in re.findall(r"avg delay: ([\d.]+) ms", out)]
    received = [int(x) for x in re.findall(r"received packets: (\d+)", out)]
    if achieved is None or len(drops) < 2 or len(delays) < 2 or len(received) < 2:
        raise RuntimeError(f"perfdhcp output not understood:\n{out}\n{err}")
    return float(achieved.group(1)), max(drops), delays[0], delays[1], received[1]


@dataclass
class Running:
    """The server processes of one configuration, and its database when it has one."""

    procs: list[subprocess.Popen[bytes]]
    """One per instance, in server namespace order."""
    db: str | None
    """The PostgreSQL database name, or None."""
    both: bool = False
    """One perfdhcp, broadcasting to every instance (else one per instance)."""


def measure(running: Running, rate: int, period: int, postmaster: int | None) -> Result:
    """One perfdhcp per instance, the rate split between them; their figures combined."""
    pids = [p.pid for p in running.procs]
    db_before = {pid: cpu_seconds([pid]) for pid in children(postmaster)} if postmaster else {}
    own_before = cpu_seconds(pids)
    count = 1 if running.both else len(running.procs)
    clients = [
        start_perfdhcp(i, max(1, round(rate / count)), period, running.both) for i in range(count)
    ]
    figures = [perfdhcp_figures(*c.communicate(timeout=period + 60)) for c in clients]
    own = cpu_seconds(pids) - own_before
    db = 0.0
    if postmaster:
        db = sum(cpu_seconds([pid]) - db_before.get(pid, 0.0) for pid in children(postmaster))
    return Result(
        rate,
        sum(f[0] for f in figures),
        max(f[1] for f in figures),
        sum(f[2] for f in figures) / count,
        sum(f[3] for f in figures) / count,
        sum(f[4] for f in figures),
        own,
        db,
    )


def pxelab_argv(work: Path, state_url: str | None) -> list[str]:
    argv = [sys.executable, "-m", "pxelab", "serve", "--interface", "veth0",
            "--dhcp-range", "-".join(POOL), "--lease-time", "3600", "--tftp-port", "0",
            "--http-port", "0", "--state-dir", str(work / "state"),
            "--hosts-dir", str(work / "hosts"), "--images-dir", str(work / "images"),
            "--tftp-root", str(work / "tftp"), "--router-advertisements", "off",
            "--log-level", "warning"]  # fmt: skip
    return argv + (["--state-url", state_url] if state_url else [])


def dnsmasq_argv(kind: str, work: Path) -> list[str]:
    argv = ["dnsmasq", "--no-daemon", "--port=0", "--interface=veth0", "--bind-interfaces",
            f"--dhcp-range={POOL[0]},{POOL[1]},255.255.0.0,1h", "--dhcp-authoritative",
            "--no-ping", "--dhcp-lease-max=100000", "--user=root", "--no-resolv",
            f"--dhcp-leasefile={work / 'dnsmasq.leases'}", f"--pid-file={work / 'pid'}"]  # fmt: skip
    return argv + (["--leasefile-ro"] if kind == "dnsmasq --leasefile-ro" else [])


def start(argv: list[str], namespace: str, work: Path) -> subprocess.Popen[bytes]:
    """Start a DHCP server in a namespace; returns once port 67 is bound there."""
    work.mkdir(parents=True, exist_ok=True)
    with (work / "server.log").open("w") as log:
        proc = subprocess.Popen(
            ns(namespace, *pin("server"), *argv), cwd=ROOT, stdout=log, stderr=log
        )
    deadline = time.monotonic() + 30
    while ":67 " not in sh(*ns(namespace, "ss", "-Hlun", "sport", "=", "67")).stdout:
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_process(proc)
            raise RuntimeError(f"{argv[0]} did not start: {(work / 'server.log').read_text()}")
        time.sleep(0.1)
    return proc


@contextmanager
def servers(kind: str, work: Path, cluster: PostgresCluster | None) -> Iterator[Running]:
    """Start the configuration `kind` (a fresh database for PostgreSQL) and stop it on exit."""
    db_url = db = None
    if cluster is not None and kind in PG:
        db_url = cluster.create_database()
        db = db_url.split("/")[3].split("?")[0]
        # off: the durability of the SQLite store (WAL, synchronous=NORMAL): a crash of either
        # process loses nothing, a power cut may lose the last fraction of a second
        commit = "on" if kind == PGSYNC else "off"
        cluster.psql(f"ALTER DATABASE {db} SET synchronous_commit = {commit}")
    count = 2 if kind in (PG2, PG2B) else 1
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for i in range(count):
            where = work / f"instance{i}"
            dnsmasq = kind.startswith("dnsmasq")
            argv = dnsmasq_argv(kind, where) if dnsmasq else pxelab_argv(where, db_url)
            procs.append(start(argv, SERVER_NS[i], where))
        time.sleep(0.5)
        yield Running(procs, db, kind == PG2B)
    finally:
        for proc in procs:
            stop_process(proc)


def postmaster_pid(cluster: PostgresCluster | None) -> int | None:
    """The cluster's server process (its children are the backends and helpers)."""
    if cluster is None:
        return None
    return int((cluster.data / "postmaster.pid").read_text().split()[0])


def database_check(cluster: PostgresCluster, db: str) -> str:
    """What the shared database holds after a run: bound leases per instance, and the MACs
    bound to two addresses (the primary key on `ip` already forbids an address with two rows)."""
    per_instance = cluster.psql(
        "SELECT count(*) FROM leases WHERE state = 'bound' GROUP BY instance ORDER BY 1 DESC", db
    ).split()
    two = cluster.psql(
        "SELECT count(*) FROM (SELECT mac FROM leases WHERE state = 'bound' "
        "GROUP BY mac HAVING count(*) > 1) m",
        db,
    )
    rows = cluster.psql("SELECT count(*) - count(DISTINCT ip) FROM leases", db)
    return (
        f"database: {sum(map(int, per_instance))} bound leases "
        f"({' + '.join(per_instance) or '0'} per instance), {rows} addresses in two rows, "
        f"{two} MACs bound to two addresses"
    )


def capture_acks(interface: str, out: Path) -> None:
    """Write `ip mac server` for every DHCPACK a server sends over `interface`, until SIGTERM
    (run inside the client namespace: `--capture-acks`)."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0800))
    sock.setsockopt(socket.SOL_SOCKET, 33, 64 << 20)  # SO_RCVBUFFORCE: no drops in a burst
    sock.bind((interface, 0x0800))
    with out.open("w") as file:
        try:
            while True:
                data = sock.recv(4096)
                ihl = (data[0] & 15) * 4
                source = socket.inet_ntoa(data[12:16])
                if data[9] != 17 or source not in SERVER_IPS:
                    continue
                if struct.unpack_from("!H", data, ihl)[0] != 67:
                    continue
                try:
                    packet = parse(data[ihl + 8 :])
                    if message_type(packet) is MessageType.ACK:
                        file.write(f"{packet.yiaddr} {packet.mac} {source}\n")
                except MalformedPacket:
                    continue
        except KeyboardInterrupt:
            pass


def wire_check(work: Path, cluster: PostgresCluster, kind: str, rate: int, period: int) -> str:
    """One more two-instance run with every ACK captured: addresses ACKed to two MACs, and ACKs
    the database disagrees with (no client releases and leases last an hour, so each ACK must
    still be the database's row for that address)."""
    acks_file = work / f"acks-{kind.replace(' ', '_')}.txt"
    with servers(kind, work / f"check-{kind.replace(' ', '_')}", cluster) as running:
        capture = subprocess.Popen(
            ns(CLIENT_NS, sys.executable, __file__, "--capture-acks", str(acks_file)), cwd=ROOT
        )
        time.sleep(1.0)
        result = measure(running, rate, period, None)
        time.sleep(0.5)
        stop_process(capture)
        db = running.db or ""
    acked: dict[str, set[str]] = {}
    pairs = set()
    for line in acks_file.read_text().splitlines():
        ip, mac, _server = line.split()
        acked.setdefault(ip, set()).add(mac)
        pairs.add((ip, mac))
    rows = {}
    for line in cluster.psql("SELECT ip, mac FROM leases WHERE state = 'bound'", db).splitlines():
        ip, mac = line.split("|")
        rows[str(IPv4Address(int(ip)))] = mac
    doubles = sum(1 for macs in acked.values() if len(macs) > 1)
    disagree = sum(1 for ip, mac in pairs if rows.get(ip) != mac)
    return (
        f"at {rate}/s: {result.acks} ACKs received by perfdhcp, {len(pairs)} distinct "
        f"(address, MAC) ACKed on the wire, {doubles} addresses ACKed to two MACs, "
        f"{disagree} ACKs the database disagrees with; {database_check(cluster, db)}"
    )


def ramp(
    work: Path,
    period: int,
    rates: Sequence[int],
    kinds: Sequence[str],
    cluster: PostgresCluster | None,
) -> dict[str, Result | None]:
    """Per rate step, each configuration still at <= 1% drops gets one fresh run (new processes,
    empty lease store), so all see the same machine load; the best run at <= 1% per kind."""
    best: dict[str, Result | None] = dict.fromkeys(kinds)
    running = list(kinds)
    for step, rate in enumerate(rates):
        for kind in list(running):
            with servers(kind, work / f"{kind.replace(' ', '_')}-{step}", cluster) as live:
                result = measure(live, rate, period, postmaster_pid(cluster) if live.db else None)
            print(f"  {kind:24} asked {rate:6}/s: {result.achieved:8.1f} DORA/s, drops "
                  f"{result.drops:5.2f}%, offer {result.offer_ms:.3f} ms, ack {result.ack_ms:.3f} ms, "
                  f"cpu {result.cpu_text()}/DORA", flush=True)  # fmt: skip
            if live.db and cluster is not None and kind in (PG2, PG2B):
                print(f"    {database_check(cluster, live.db)}", flush=True)
            if result.drops > 1.0:
                running.remove(kind)
            else:
                best[kind] = result
        if not running:
            break
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--period", type=int, default=8, help="seconds per rate step")
    parser.add_argument("--rates", default=",".join(map(str, RATES)), help="rate steps")
    parser.add_argument(
        "--servers",
        default=",".join(DEFAULT_SERVERS),
        help=f"comma-separated configurations, of: {', '.join(KINDS)}",
    )
    parser.add_argument("--capture-acks", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.capture_acks:
        capture_acks(BRIDGE, args.capture_acks)
        return 0
    kinds = [k.strip() for k in args.servers.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        parser.error(f"unknown server {unknown[0]!r}; known: {', '.join(KINDS)}")
    if os.geteuid() != 0:
        print("bench: needs root (namespaces)", file=sys.stderr)
        return 1
    for tool in ("perfdhcp", "dnsmasq"):
        if shutil.which(tool) is None:
            print(f"bench: {tool} is missing; run scripts/setup.sh", file=sys.stderr)
            return 1
    rates = tuple(int(r) for r in args.rates.split(","))
    checks: list[str] = []
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pxelab-bench-")))
        cluster = None
        if set(PG) & set(kinds):
            cluster = stack.enter_context(postgres_cluster(fsync=True))
            version = cluster.psql("SHOW server_version").split()[0]
            print(f"PostgreSQL {version}: a throwaway cluster on a Unix socket in {tmp.parent}, "
                  f"fsync on; synchronous_commit off except in '{PGSYNC}'", flush=True)  # fmt: skip
        stack.enter_context(lab())
        best = ramp(tmp, args.period, rates, kinds, cluster)
        for kind in (PG2, PG2B):
            if cluster is not None and kind in kinds:
                two = best[kind]
                check = wire_check(tmp, cluster, kind, two.rate if two else rates[0], args.period)
                checks.append(f"check ({kind}) {check}")
                print(checks[-1], flush=True)
    print()
    print("| server | highest rate asked at <= 1% drops | DORA/s achieved | drops |"
          " DISCOVER-OFFER avg | REQUEST-ACK avg | server CPU per DORA |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for kind, result in best.items():
        if result is None:
            print(f"| {kind} | none (over 1% at {rates[0]}/s) | | | | | |")
        else:
            print(f"| {kind} | {result.rate}/s | {result.achieved:.0f} | {result.drops:.2f}% | "
                  f"{result.offer_ms:.3f} ms | {result.ack_ms:.3f} ms | {result.cpu_text()} |")  # fmt: skip
    for check in checks:
        print(f"\n{check}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
