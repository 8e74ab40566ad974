"""Boot storm: N simulated machines boot at the same moment, against pxelab and against dnsmasq
(DHCP + TFTP) with nginx (HTTP, per-MAC scripts pre-rendered to files), in the same run.

Each machine, from its own address (routed to a client namespace, one veth from the server's):
a DHCP DORA with its own chaddr (relay-style, giaddr set), a TFTP read of a 1 MiB `ipxe.efi`
(blksize 1468; every other machine asks windowsize 16), `GET /boot.ipxe`, `GET /boot?mac=`, then
the kernel (16 MiB) and initrd (64 MiB) the script names, over one keep-alive HTTP connection.
The load generator is one asyncio process (`--generate`) in the client namespace.

Per N and stack: the time until the last machine is done, the median and p99 per machine,
failures and retries, the server's CPU and peak RSS, and the generator's CPU. Writes the rows
(bench/run.py gathers them) and a plot, docs/storm.png. Needs root. Not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import MIB, NGINX_CONF, ROOT, Row, cpu_seconds, emit, pin, ratio, rss_bytes, stop

SERVER_NS, CLIENT_NS = f"pxstorm{os.getpid()}s", f"pxstorm{os.getpid()}c"
SERVER_IP, RELAY_IP, PREFIX = "10.251.0.1", "10.251.0.2", 16
POOL = ("10.251.1.1", "10.251.8.254")
MACHINES_NET = "10.252"
"""Each machine's own address is 10.252.x.y, routed from the server to the client namespace."""
HTTP_PORT = 8080
BLKSIZE = 1468
KERNEL, INITRD, IPXE = 16 * MIB, 64 * MIB, 1 * MIB
SIZES = (100, 250, 500, 1000)
MAC_BASE = 0x525400A00000
TFTP_TIMEOUT, TFTP_TRIES = 1.0, 8
"""The simulated firmware's TFTP retransmission timer and how many times it tries."""
DHCP_TIMEOUTS = (1.0, 2.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0)
"""The simulated firmware's DHCP retransmission timers (PXE firmware backs off to 4 s and more)."""
HTTP_TIMEOUT, HTTP_TRIES = 60.0, 3


def mac_of(i: int) -> str:
    raw = (MAC_BASE + i).to_bytes(6, "big")
    return ":".join(f"{b:02x}" for b in raw)


def address_of(i: int) -> str:
    return f"{MACHINES_NET}.{16 + i // 250}.{1 + i % 250}"


# --- the load generator (runs in the client namespace) ---------------------------------------


@dataclass
class Machine:
    """One simulated machine's outcome."""

    index: int
    seconds: float = 0.0
    """From the go moment to its initrd's last byte (or to its failure)."""
    failed: str = ""
    """Why it failed ("" when it booted)."""
    retries: int = 0
    """DHCP, TFTP and HTTP retransmissions or retried requests."""
    stages: dict[str, float] = field(default_factory=dict)
    """Seconds from go to the end of each stage."""


def _dhcp_packet(kind: int, xid: int, mac: bytes, extra: bytes = b"") -> bytes:
    header = struct.pack(
        "!BBBBIHH4s4s4s4s16s64s128s",
        1, 1, 6, 1, xid, 0, 0, bytes(4), bytes(4), bytes(4),
        socket.inet_aton(RELAY_IP), mac + bytes(10), b"", b"",
    )  # fmt: skip
    arch = b"PXEClient:Arch:00007:UNDI:003016"
    options = bytes([53, 1, kind, 93, 2, 0, 7, 60, len(arch)]) + arch + bytes([55, 4, 1, 3, 66, 67])
    packet = header + b"\x63\x82\x53\x63" + options + extra + b"\xff"
    return packet.ljust(300, b"\0")


def _dhcp_options(data: bytes) -> dict[int, bytes]:
    found, i = {}, 240
    while i < len(data) and data[i] != 255:
        if data[i] == 0:
            i += 1
            continue
        found[data[i]] = data[i + 2 : i + 2 + data[i + 1]]
        i += 2 + data[i + 1]
    return found


class DhcpRelay(asyncio.DatagramProtocol):
    """One socket on the relay's port 67 for every machine; replies go to their xid's waiter."""

    def __init__(self) -> None:
        self.waiting: dict[int, asyncio.Queue[bytes]] = {}
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) >= 240 and (queue := self.waiting.get(int.from_bytes(data[4:8], "big"))):
            queue.put_nowait(data)

    async def exchange(self, machine: Machine, kind: int, xid: int, mac: bytes, extra: bytes,
                       want: int) -> bytes:  # fmt: skip
        """Send until a reply of type `want` comes (DHCP_TRIES times at most)."""
        queue = self.waiting.setdefault(xid, asyncio.Queue())
        assert self.transport is not None
        packet = _dhcp_packet(kind, xid, mac, extra)
        for attempt, timeout in enumerate(DHCP_TIMEOUTS):
            if attempt:
                machine.retries += 1
            self.transport.sendto(packet, (SERVER_IP, 67))
            deadline = time.monotonic() + timeout
            while (left := deadline - time.monotonic()) > 0:
                try:
                    reply = await asyncio.wait_for(queue.get(), left)
                except TimeoutError:
                    break
                if _dhcp_options(reply).get(53) == bytes([want]):
                    return reply
        tries = len(DHCP_TIMEOUTS)
        raise RuntimeError(f"DHCP: no {'OFFER' if want == 2 else 'ACK'} after {tries} tries")


async def dora(relay: DhcpRelay, machine: Machine) -> None:
    mac = (MAC_BASE + machine.index).to_bytes(6, "big")
    xid = random.getrandbits(32)
    offer = await relay.exchange(machine, 1, xid, mac, b"", 2)
    server_id = _dhcp_options(offer).get(54, socket.inet_aton(SERVER_IP))
    requested = bytes([50, 4]) + offer[16:20] + bytes([54, 4]) + server_id
    await relay.exchange(machine, 3, xid, mac, requested, 5)
    relay.waiting.pop(xid, None)


class TftpClient(asyncio.DatagramProtocol):
    """A firmware-like TFTP read driven from datagram_received (no task per packet): RRQ, OACK,
    windows of DATA, ACKs; a retransmission every TFTP_TIMEOUT without progress."""

    def __init__(self, machine: Machine, windowsize: int) -> None:
        self.machine = machine
        options = {"blksize": str(BLKSIZE), "tsize": "0"}
        if windowsize > 1:
            options["windowsize"] = str(windowsize)
        self.last: tuple[bytes, tuple[str, int]] = (
            b"\0\1ipxe.efi\0octet\0"
            + b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in options.items()),
            (SERVER_IP, 69),
        )
        self.blksize, self.window, self.expected, self.got, self.in_window = 512, 1, 1, 0, 0
        self.tid: tuple[str, int] | None = None
        self.progress = self.tries = 0
        self.done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.DatagramTransport | None = None
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.sendto(*self.last)  # type: ignore[union-attr]
        self._arm(self.progress)

    def _arm(self, seen: int) -> None:
        self.timer = asyncio.get_running_loop().call_later(TFTP_TIMEOUT, self._check, seen)

    def _check(self, seen: int) -> None:
        if self.done.done() or self.transport is None:
            return
        if self.progress == seen:
            self.tries += 1
            if self.tries >= TFTP_TRIES:
                self._end(RuntimeError(f"TFTP: nothing for {TFTP_TRIES} timeouts"))
                return
            self.machine.retries += 1
            self.transport.sendto(*self.last)
        else:
            self.tries = 0
        self._arm(self.progress)

    def _end(self, result: int | Exception) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if not self.done.done():
            if isinstance(result, Exception):
                self.done.set_exception(result)
            else:
                self.done.set_result(result)

    def _send(self, data: bytes) -> None:
        assert self.transport is not None and self.tid is not None
        self.last = (data, self.tid)
        self.transport.sendto(data, self.tid)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.tid is None:
            self.tid = addr
        elif addr != self.tid:
            return
        opcode = data[:2]
        if opcode == b"\0\6":  # OACK
            fields = data[2:].split(b"\0")
            granted = dict(zip(fields[0::2], fields[1::2], strict=False))
            self.blksize = int(granted.get(b"blksize", b"512"))
            self.window = int(granted.get(b"windowsize", b"1"))
            self.progress += 1
            self._send(b"\0\4\0\0")
            return
        if opcode == b"\0\5":
            self._end(RuntimeError(f"TFTP: error {data[2:4].hex()} {data[4:-1]!r}"))
            return
        if opcode != b"\0\3":
            return
        block = int.from_bytes(data[2:4], "big")
        if block != self.expected & 0xFFFF:
            if self.in_window:  # a gap: ACK what we have, the server goes on from there
                self._send(b"\0\4" + ((self.expected - 1) & 0xFFFF).to_bytes(2, "big"))
                self.in_window = 0
            return
        self.progress += 1
        size = len(data) - 4
        self.got += size
        self.expected += 1
        self.in_window += 1
        last = size < self.blksize
        if last or self.in_window >= self.window:
            self._send(b"\0\4" + data[2:4])
            self.in_window = 0
        if last:
            self._end(self.got)

    def error_received(self, exc: Exception) -> None:
        pass


async def tftp_read(machine: Machine, local: str, windowsize: int) -> int:
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_datagram_endpoint(
        lambda: TftpClient(machine, windowsize), local_addr=(local, 0)
    )
    try:
        return await client.done
    finally:
        transport.close()


class Http:
    """One keep-alive HTTP/1.1 connection from the machine's address; bodies read into a
    shared buffer (discarded) unless kept."""

    BUFFER = bytearray(1 << 20)

    def __init__(self, local: str, server: str, port: int) -> None:
        self.local, self.server, self.port = local, server, port
        self.sock: socket.socket | None = None
        self.pending = b""

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.bind((self.local, 0))
        await loop.sock_connect(sock, (self.server, self.port))
        self.sock, self.pending = sock, b""

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    async def get(self, path: str, keep: bool) -> tuple[int, bytes]:
        """Status and body (empty unless keep); the body's length is checked."""
        loop = asyncio.get_running_loop()
        if self.sock is None:
            await self.connect()
        sock = self.sock
        assert sock is not None
        request = f"GET {path} HTTP/1.1\r\nHost: {self.server}:{self.port}\r\n\r\n"
        await loop.sock_sendall(sock, request.encode())
        head = self.pending
        while b"\r\n\r\n" not in head:
            chunk = await loop.sock_recv(sock, 65536)
            if not chunk:
                raise ConnectionError("connection closed before the response headers")
            head += chunk
        header, rest = head.split(b"\r\n\r\n", 1)
        lines = header.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        body = bytearray(rest[:length]) if keep else bytearray()
        received = min(len(rest), length)
        self.pending = rest[length:]
        view = memoryview(self.BUFFER)
        while received < length:
            n = await loop.sock_recv_into(sock, view[: min(len(view), length - received)])
            if not n:
                raise ConnectionError(f"connection closed after {received} of {length} bytes")
            if keep:
                body += view[:n]
            received += n
        return status, bytes(body)


async def http_fetch(conn: Http, machine: Machine, path: str, keep: bool = False) -> bytes:
    for attempt in range(HTTP_TRIES):
        if attempt:
            machine.retries += 1
        try:
            status, body = await asyncio.wait_for(conn.get(path, keep), HTTP_TIMEOUT)
        except (OSError, ConnectionError, TimeoutError) as exc:
            conn.close()
            error = f"HTTP {path}: {exc!r}"
            continue
        if status == 200:
            return body
        error = f"HTTP {path}: status {status}"
    raise RuntimeError(error)


async def boot_one(relay: DhcpRelay, machine: Machine, go: float) -> None:
    local = address_of(machine.index)
    try:
        await dora(relay, machine)
        machine.stages["dhcp"] = time.monotonic() - go
        got = await tftp_read(machine, local, 16 if machine.index % 2 else 1)
        if got != IPXE:
            raise RuntimeError(f"TFTP: {got} bytes, not {IPXE}")
        machine.stages["tftp"] = time.monotonic() - go
        conn = Http(local, SERVER_IP, HTTP_PORT)
        try:
            await http_fetch(conn, machine, "/boot.ipxe")
            script = await http_fetch(conn, machine, f"/boot?mac={mac_of(machine.index)}", True)
            urls = {}
            for line in script.decode().splitlines():
                words = line.split()
                if words and words[0] in ("kernel", "initrd"):
                    urls[words[0]] = words[1]
            if set(urls) != {"kernel", "initrd"}:
                raise RuntimeError(f"script without kernel and initrd: {script[:200]!r}")
            machine.stages["script"] = time.monotonic() - go
            for name in ("kernel", "initrd"):
                url = urls[name]
                path = url.split(f":{HTTP_PORT}", 1)[1]
                await http_fetch(conn, machine, path)
                machine.stages[name] = time.monotonic() - go
        finally:
            conn.close()
    except Exception as exc:
        machine.failed = str(exc)[:200]
    machine.seconds = time.monotonic() - go


async def generate(count: int) -> list[Machine]:
    loop = asyncio.get_running_loop()
    transport, relay = await loop.create_datagram_endpoint(
        DhcpRelay, local_addr=(RELAY_IP, 67), allow_broadcast=True
    )
    # The generator is busy with TFTP and HTTP while replies come: a deep buffer keeps them
    # (otherwise its own drops look like the server's).
    sock = transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_RCVBUFFORCE", 33), 16 << 20)
    machines = [Machine(i) for i in range(count)]
    go = time.monotonic()
    await asyncio.gather(*(boot_one(relay, m, go) for m in machines))
    return machines


def generator_main(count: int) -> int:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    machines = asyncio.run(generate(count))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime
    json.dump({"cpu": cpu, "machines": [asdict(m) for m in machines]}, sys.stdout)
    return 0


# --- the orchestrator ---------------------------------------------------------------------


def sh(*cmd: str, check: bool = True, stdin: str | None = None) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, input=stdin)
    if check and proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)}: {proc.stderr.strip()}")
    return proc.stdout


def ns(name: str, *cmd: str) -> list[str]:
    return ["ip", "netns", "exec", name, *cmd]


@contextmanager
def network(count: int) -> Iterator[None]:
    """Server and client namespaces, one veth between them; the machines' addresses on the
    client's loopback, routed from the server through the relay address (one ARP entry)."""
    sh("ip", "netns", "add", SERVER_NS)
    try:
        sh("ip", "netns", "add", CLIENT_NS)
        sh(*ns(SERVER_NS, "ip", "link", "add", "veth0", "type", "veth", "peer", "name", "veth1",
               "netns", CLIENT_NS))  # fmt: skip
        for name, dev, ip in ((SERVER_NS, "veth0", SERVER_IP), (CLIENT_NS, "veth1", RELAY_IP)):
            sh(*ns(name, "ip", "addr", "add", f"{ip}/{PREFIX}", "dev", dev))
            sh(*ns(name, "ip", "link", "set", dev, "up"))
            sh(*ns(name, "ip", "link", "set", "lo", "up"))
        sh(*ns(SERVER_NS, "ip", "route", "add", f"{MACHINES_NET}.0.0/16", "via", RELAY_IP))
        batch = "".join(f"addr add {address_of(i)}/32 dev lo\n" for i in range(count))
        sh(*ns(CLIENT_NS, "ip", "-batch", "-"), stdin=batch)
        yield
    finally:
        sh("ip", "netns", "del", CLIENT_NS, check=False)
        sh("ip", "netns", "del", SERVER_NS, check=False)


def lay_out(work: Path, count: int) -> None:
    """Host files, the images and ipxe.efi for both stacks; nginx's pre-rendered scripts."""
    from pxelab.boot.render import Renderer
    from pxelab.hosts.inventory import parse_host

    for d in ("hosts", "images/storm/amd64", "tftp", "scripts"):
        (work / d).mkdir(parents=True, exist_ok=True)
    (work / "tftp" / "ipxe.efi").write_bytes(os.urandom(IPXE))
    for name, size in (("vmlinuz", KERNEL), ("initrd", INITRD)):
        with (work / "images" / "storm" / "amd64" / name).open("wb") as f:
            block = os.urandom(MIB)
            for _ in range(size // MIB):
                f.write(block)
    renderer, base = Renderer(), f"http://{SERVER_IP}:{HTTP_PORT}"
    for i in range(count):
        data = {"name": f"storm-{i}", "mac": mac_of(i), "distro": "storm", "kernel_args": "quiet"}
        (work / "hosts" / f"storm-{i}.json").write_text(json.dumps(data))
        script = renderer.boot_script(parse_host(data, f"storm-{i}.json"), base)
        (work / "scripts" / f"{mac_of(i)}.ipxe").write_text(script)
    (work / "boot.ipxe").write_text(renderer.chain_script(base))
    subprocess.run(
        ["cat", *(str(p) for p in (work / "images").rglob("*") if p.is_file())],
        stdout=subprocess.DEVNULL,
        check=True,
    )  # fmt: skip  (page cache)


@dataclass
class Stack:
    """The processes of one stack under test."""

    name: str
    procs: list[subprocess.Popen[bytes]]

    @property
    def pids(self) -> list[int]:
        found = []
        for proc in self.procs:
            found.append(proc.pid)
            found += _descendants(proc.pid)
        return found


def _descendants(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with suppress(OSError):
            for kid in (int(x) for x in (task / "children").read_text().split()):
                found += [kid, *_descendants(kid)]
    return found


def _wait_udp(port: int, proc: subprocess.Popen[bytes], what: str, log: Path) -> None:
    deadline = time.monotonic() + 30
    while f":{port} " not in sh(*ns(SERVER_NS, "ss", "-Hlun", "sport", "=", str(port))):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start: {log.read_text()[-2000:]}")
        time.sleep(0.1)


def _wait_tcp(port: int, proc: subprocess.Popen[bytes], what: str, log: Path) -> None:
    deadline = time.monotonic() + 30
    while f":{port} " not in sh(*ns(SERVER_NS, "ss", "-Hltn", "sport", "=", str(port))):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start: {log.read_text()[-2000:]}")
        time.sleep(0.1)


@contextmanager
def pxelab_stack(work: Path, run: Path) -> Iterator[Stack]:
    log_path = run / "pxelab.log"
    log = log_path.open("wb")
    argv = [
        sys.executable, "-m", "pxelab", "serve", "--interface", "veth0",
        "--dhcp-range", "-".join(POOL), "--lease-time", "3600",
        "--http-port", str(HTTP_PORT), "--state-dir", str(run / "state"),
        "--hosts-dir", str(work / "hosts"), "--images-dir", str(work / "images"),
        "--tftp-root", str(work / "tftp"), "--router-advertisements", "off",
    ]  # fmt: skip
    proc = subprocess.Popen(ns(SERVER_NS, *pin("server"), *argv), cwd=ROOT, stdout=log, stderr=log)
    try:
        _wait_udp(67, proc, "pxelab", log_path)
        _wait_tcp(HTTP_PORT, proc, "pxelab", log_path)
        time.sleep(0.5)
        yield Stack("pxelab", [proc])
    finally:
        stop(proc)
        log.close()


@contextmanager
def reference_stack(work: Path, run: Path) -> Iterator[Stack]:
    dns_log_path = run / "dnsmasq.log"
    dns_log = dns_log_path.open("wb")
    argv = [
        "dnsmasq", "--no-daemon", "--port=0", "--interface=veth0", "--bind-interfaces",
        f"--dhcp-range={POOL[0]},{POOL[1]},255.255.0.0,1h", "--dhcp-authoritative",
        "--no-ping", "--dhcp-lease-max=100000", "--user=root", "--no-resolv",
        f"--dhcp-leasefile={run / 'dnsmasq.leases'}", f"--pid-file={run / 'dnsmasq.pid'}",
        "--dhcp-userclass=set:ipxe,iPXE",
        f"--dhcp-boot=tag:ipxe,http://{SERVER_IP}:{HTTP_PORT}/boot.ipxe",
        "--dhcp-boot=tag:!ipxe,ipxe.efi",
        "--enable-tftp", f"--tftp-root={work / 'tftp'}", "--tftp-max=4096",
    ]  # fmt: skip
    dnsmasq = subprocess.Popen(
        ns(SERVER_NS, *pin("server"), *argv), stdout=dns_log, stderr=subprocess.STDOUT
    )
    nginx_dir = run / "nginx"
    nginx_dir.mkdir(parents=True, exist_ok=True)
    conf = NGINX_CONF.format(work=nginx_dir, root=work, port=HTTP_PORT, address=SERVER_IP)
    (nginx_dir / "nginx.conf").write_text(conf)
    ng_log_path = run / "nginx.out"
    ng_log = ng_log_path.open("wb")
    ng = subprocess.Popen(
        ns(SERVER_NS, *pin("server"), "nginx", "-c", str(nginx_dir / "nginx.conf"), "-p", str(nginx_dir)),
        stdout=ng_log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        _wait_udp(67, dnsmasq, "dnsmasq", dns_log_path)
        _wait_tcp(HTTP_PORT, ng, "nginx", ng_log_path)
        time.sleep(0.5)
        yield Stack("dnsmasq+nginx", [dnsmasq, ng])
    finally:
        stop(ng, signal.SIGQUIT)
        stop(dnsmasq)
        dns_log.close()
        ng_log.close()


@dataclass
class Storm:
    """One stack's storm of N machines."""

    stack: str
    machines: int
    total_s: float
    median_s: float
    p99_s: float
    failures: int
    retries: int
    server_cpu_s: float
    server_rss_peak: int
    generator_cpu_s: float
    first_failure: str = ""
    stage_medians: dict[str, float] = field(default_factory=dict)


def storm(stack: Stack, count: int) -> Storm:
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.1):
            peak[0] = max(peak[0], rss_bytes(stack.pids))

    sampler = threading.Thread(target=sample, daemon=True)
    pids = stack.pids
    cpu0 = cpu_seconds(pids)
    sampler.start()
    gen = subprocess.Popen(
        ns(CLIENT_NS, *pin("load"), sys.executable, str(Path(__file__).resolve()), "--generate",
           str(count)),
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    out, err = gen.communicate(timeout=900)
    done.set()
    sampler.join()
    server_cpu = cpu_seconds(pids) - cpu0
    if gen.returncode:
        raise RuntimeError(f"generator failed: {err.decode()[-2000:]}")
    report = json.loads(out)
    machines = [Machine(**m) for m in report["machines"]]
    times = sorted(m.seconds for m in machines)
    failed = [m for m in machines if m.failed]
    stages = {
        name: statistics.median(m.stages.get(name, m.seconds) for m in machines)
        for name in ("dhcp", "tftp", "script", "kernel", "initrd")
    }
    return Storm(
        stack.name,
        count,
        times[-1],
        statistics.median(times),
        times[min(len(times) - 1, int(len(times) * 0.99))],
        len(failed),
        sum(m.retries for m in machines),
        server_cpu,
        max(peak[0], rss_bytes(stack.pids)),
        report["cpu"],
        failed[0].failed if failed else "",
        stages,
    )


def run_storms(sizes: list[int], work: Path, plot_path: Path) -> list[Storm]:
    """Each N against both stacks; its row and the plot are written as soon as both are done,
    so a run stopped by its time budget keeps the sizes it finished."""
    results: list[Storm] = []
    lay_out(work, max(sizes))
    with network(max(sizes)):
        for count in sizes:
            for make in (pxelab_stack, reference_stack):
                run = work / f"{make.__name__}-{count}"
                run.mkdir()
                with make(work, run) as stack:
                    result = storm(stack, count)
                results.append(result)
                print(
                    f"  {result.stack:14} N={count:5}: done in {result.total_s:6.2f} s, median "
                    f"{result.median_s:.2f} s, p99 {result.p99_s:.2f} s, failures "
                    f"{result.failures}, retries {result.retries}, server CPU "
                    f"{result.server_cpu_s:.1f} s, RSS peak {result.server_rss_peak / MIB:.0f} MiB, "
                    f"generator CPU {result.generator_cpu_s:.1f} s; stage medians "
                    + ", ".join(f"{k} {v:.2f}" for k, v in result.stage_medians.items())
                    + (f"; first failure: {result.first_failure}" if result.first_failure else ""),
                    flush=True,
                )
            emit(rows([r for r in results if r.machines == count]))
            plot(results, plot_path)
    return results


def bottleneck(s: Storm) -> str:
    """What runs out first, from the figures: the server's core, or the shared machine."""
    busy = s.server_cpu_s / s.total_s if s.total_s else 0.0
    if s.stack == "pxelab" and busy >= 0.85:
        return f"pxelab's one core ({busy:.0%} busy)"
    gen = s.generator_cpu_s / s.total_s if s.total_s else 0.0
    return f"server {busy:.0%} of a core, load generator {gen:.0%}: the 2 shared cores"


def rows(results: list[Storm]) -> list[Row]:
    out = []
    by = {(r.stack, r.machines): r for r in results}
    for count in sorted({r.machines for r in results}):
        p, d = by.get(("pxelab", count)), by.get(("dnsmasq+nginx", count))
        if p is None or d is None:
            continue
        r = ratio(p.total_s, d.total_s)
        met = r is not None and r <= 1.0 and p.failures == 0 and p.p99_s <= 2 * p.median_s
        out.append(
            Row(
                f"Boot storm, {count} machines at once (DORA, TFTP 1 MiB, scripts, 80 MiB HTTP)",
                f"{p.total_s:.1f} s to the last",
                f"{d.total_s:.1f} s (dnsmasq DHCP+TFTP, nginx)",
                r,
                "<= 1.0x, 0 failures, p99 <= 2x median",
                met,
                f"pxelab median {p.median_s:.1f} s, p99 {p.p99_s:.1f} s, failures {p.failures}, "
                f"retries {p.retries}, CPU {p.server_cpu_s:.1f} s, RSS peak "
                f"{p.server_rss_peak / MIB:.0f} MiB; reference median {d.median_s:.1f} s, p99 "
                f"{d.p99_s:.1f} s, failures {d.failures}, retries {d.retries}, CPU "
                f"{d.server_cpu_s:.1f} s, RSS peak {d.server_rss_peak / MIB:.0f} MiB; "
                f"bound: {bottleneck(p)}",
            )
        )
    return out


def plot(results: list[Storm], path: Path) -> None:
    """Time to the last machine done against N, for both stacks (matplotlib, PNG)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("storm: matplotlib is missing (pip install '.[test]'): no plot", flush=True)
        return
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    for stack, style in (("pxelab", "o-"), ("dnsmasq+nginx", "s--")):
        points = sorted((r.machines, r.total_s, r.median_s) for r in results if r.stack == stack)
        if points:
            ax.plot([p[0] for p in points], [p[1] for p in points], style, label=f"{stack}: last")
            ax.plot([p[0] for p in points], [p[2] for p in points], style, alpha=0.4,
                    label=f"{stack}: median")  # fmt: skip
    for r in results:
        if r.failures:
            ax.annotate(f"{r.failures} failed", (r.machines, r.total_s), fontsize=8,
                        textcoords="offset points", xytext=(4, -12))  # fmt: skip
    ax.set_xlabel("machines booting at once")
    ax.set_ylabel("seconds from power-on")
    ax.set_title("Boot storm: DORA, TFTP 1 MiB, scripts, 80 MiB over HTTP")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    print(f"storm: wrote {path}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="machine counts")
    parser.add_argument("--plot", type=Path, default=ROOT / "docs" / "storm.png")
    parser.add_argument("--generate", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate:
        return generator_main(args.generate)
    if os.geteuid() != 0:
        print("storm: needs root (namespaces)", file=sys.stderr)
        return 1
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # dnsmasq's TFTP inherits it
    sizes = [int(x) for x in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="pxelab-storm-") as tmp:
        results = run_storms(sizes, Path(tmp), args.plot)
    if not results:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
