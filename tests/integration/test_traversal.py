"""Traversal suite against the running daemon: every way out of the TFTP root and the HTTP
images and TFTP trees is refused and logged, and the secret next to them never leaks."""

from __future__ import annotations

import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

TOKEN = secrets.token_hex(16)

TFTP_NAMES = [
    "../secret",
    "../../../../../../etc/passwd",
    "sub/../../secret",
    "..",
    "/../secret",
    "..\\secret",
    "sub\\..\\..\\secret",
    "link",  # a symlink inside the root pointing out
    "dirlink/secret",  # a directory symlink pointing out
    "a" * 600,
    "sub/" + "b" * 300,
    "loop",  # a symlink to itself
    ".hidden",  # dot files are never served, as over HTTP
    "sub/.hidden",
    "images/.incoming/partial.iso",  # GRUB's view of the images dir: unverified downloads
    "/images/sub/../.incoming/partial.iso",
]
LOOKALIKES = ["%2e%2e/secret", "\u2025/secret"]
"""Names that only look like a way out: TFTP does not decode them, so they name missing files
(error 1, file not found), never a refusal and never the secret."""
HTTP_PATHS = [
    "/images/../secret",
    "/images/%2e%2e/secret",
    "/images/%2E%2E/%2e%2e/secret",
    "/images/%252e%252e/secret",
    "/images/..%2fsecret",
    "/images/..%5csecret",
    "/images/..\\secret",
    "/images/link",
    "/images/dirlink/secret",
    "/images/%00",
    "/images/sub%00/../../secret",
    "/images/" + "c" * 4000,
    "/tftp/../secret",
    "/tftp/%2e%2e/secret",
    "/tftp/link",
    "/tftp/dirlink/secret",
    "/images//etc/passwd",
    "/images/%2fetc%2fpasswd",
    "/images/loop",
    "/images/.incoming/partial.iso",  # unverified downloads are not served
    "/tftp/.hidden",
    "/tftp/sub/.hidden",
]


@dataclass
class Served:
    http: str
    tftp_port: int
    log: Path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    top = tmp_path_factory.mktemp("traversal")
    outside = top / "outside"
    outside.mkdir()
    (top / "secret").write_text(TOKEN)
    (outside / "secret").write_text(TOKEN)
    dirs = {name: top / name for name in ("hosts", "images", "tftp", "state_dir")}
    for path in dirs.values():
        path.mkdir()
    for root in (dirs["images"], dirs["tftp"]):
        (root / "sub").mkdir()
        (root / "ok.txt").write_text("fine")
        os.symlink(top / "secret", root / "link")
        os.symlink(outside, root / "dirlink")
        os.symlink("loop", root / "loop")
    for root in (dirs["tftp"], dirs["tftp"] / "sub"):
        (root / ".hidden").write_text(TOKEN)
    (dirs["images"] / ".incoming").mkdir()
    (dirs["images"] / ".incoming" / "partial.iso").write_text(TOKEN)
    port = 20000 + os.getpid() % 20000
    log = top / "pxelab.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pxelab", "serve", "--http-address", "127.0.0.1", "--http-port", "0",
             "--tftp-address", "127.0.0.1", "--tftp-port", str(port),
             *(arg for key, path in dirs.items() for arg in (f"--{key.replace('_', '-')}" if key != "tftp" else "--tftp-root", str(path)))
             ],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while not (found := re.search(r"http on 127\.0\.0\.1:(\d+)", log.read_text())):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        yield Served(f"http://127.0.0.1:{found.group(1)}", port, log)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0, log.read_text()[-3000:]


def _rrq(port: int, name: str) -> bytes:
    """Send one RRQ and return the first answer (DATA, OACK or ERROR)."""
    return _rrq_from(port, name)[1]


def _rrq_from(port: int, name: str) -> tuple[int, bytes]:
    """Send one RRQ; return the client's own port (the daemon's log names it) and the answer."""
    raw = name.encode("utf-8", "surrogateescape")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(b"\x00\x01" + raw + b"\x00octet\x00", ("127.0.0.1", port))
        return sock.getsockname()[1], sock.recv(70000)


def test_tftp_serves_what_is_inside(served: Served) -> None:
    answer = _rrq(served.tftp_port, "ok.txt")
    assert answer[:2] == b"\x00\x03" and answer[4:] == b"fine"


@pytest.mark.parametrize("name", TFTP_NAMES, ids=range(len(TFTP_NAMES)))
def test_tftp_refuses_every_way_out(served: Served, name: str) -> None:
    answer = _rrq(served.tftp_port, name)
    assert answer[:2] == b"\x00\x05", f"not an ERROR: {answer[:40]!r}"
    assert TOKEN.encode() not in answer
    assert int.from_bytes(answer[2:4], "big") == 2  # access violation, as the README promises


@pytest.mark.parametrize("name", LOOKALIKES, ids=range(len(LOOKALIKES)))
def test_tftp_lookalikes_are_only_missing_files(served: Served, name: str) -> None:
    answer = _rrq(served.tftp_port, name)
    assert answer[:4] == b"\x00\x05\x00\x01" and TOKEN.encode() not in answer, answer


def test_tftp_nul_and_control_bytes(served: Served) -> None:
    for raw in (b"ok.txt\x01", b"\xff\xfe..", b"ok.txt/../../secret"):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(5)
            sock.sendto(b"\x00\x01" + raw + b"\x00octet\x00", ("127.0.0.1", served.tftp_port))
            answer = sock.recv(70000)
        assert answer[:2] == b"\x00\x05" and TOKEN.encode() not in answer, raw


def _get(url: str) -> tuple[int, bytes]:
    request = urllib.request.Request(url, method="GET")
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_http_serves_what_is_inside(served: Served) -> None:
    assert _get(served.http + "/images/ok.txt") == (200, b"fine")
    assert _get(served.http + "/tftp/ok.txt") == (200, b"fine")


@pytest.mark.parametrize("path", HTTP_PATHS, ids=range(len(HTTP_PATHS)))
def _http_raw(served: Served, path: str) -> int:
    """GET `path` as a raw request line (urllib would normalise some); return the status."""
    with socket.create_connection(
        ("127.0.0.1", int(served.http.rsplit(":", 1)[1])), timeout=10
    ) as sock:
        sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode("latin-1")
        )
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert TOKEN.encode() not in answer
    return int(answer.split(b" ", 2)[1])


@pytest.mark.parametrize("path", HTTP_PATHS, ids=range(len(HTTP_PATHS)))
def test_http_refuses_every_way_out(served: Served, path: str) -> None:
    assert _http_raw(served, path) == 404


def test_every_refusal_is_logged(served: Served) -> None:
    """Self-contained: it makes its own requests and reads only the log lines they leave, and
    each request leaves exactly one line saying what happened (TFTP error 2, HTTP 404)."""
    start = len(served.log.read_bytes())
    clients = {_rrq_from(served.tftp_port, name)[0]: 2 for name in TFTP_NAMES}
    clients.update({_rrq_from(served.tftp_port, name)[0]: 1 for name in LOOKALIKES})
    assert len(clients) == len(TFTP_NAMES) + len(LOOKALIKES)  # one source port each
    statuses = {path: _http_raw(served, path) for path in HTTP_PATHS}
    assert set(statuses.values()) == {404}
    deadline = time.monotonic() + 30  # the lines are written as the answers go; wait for them
    while True:
        log = served.log.read_bytes()[start:].decode("utf-8", "replace")
        tftp = re.findall(r"pxelab\.tftp: 127\.0\.0\.1:(\d+) RRQ .*: (refused, )?error (\d) ", log)
        http = re.findall(r"pxelab\.http: 127\.0\.0\.1 GET (\S+) (\d{3}) ", log)
        if len(tftp) >= len(clients) and len(http) >= len(HTTP_PATHS):
            break
        assert time.monotonic() < deadline, log[-4000:]
        time.sleep(0.05)
    assert TOKEN not in log
    logged_tftp = {int(port): (bool(refused), int(code)) for port, refused, code in tftp}
    assert len(tftp) == len(logged_tftp) == len(clients)  # one line per request, no more
    assert logged_tftp == {port: (code == 2, code) for port, code in clients.items()}
    assert sorted(http) == sorted((path, "404") for path in HTTP_PATHS)
