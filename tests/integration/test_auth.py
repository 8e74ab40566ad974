"""The control plane against the real daemon with curl, over HTTP and HTTPS (issue 20).

Every state-changing endpoint x (no token, wrong token, revoked token, good token) x (HTTP,
HTTPS); signed install callbacks (tampered, another host's, replayed after a reinstall); a token
created and revoked with the CLI while the daemon runs; cross-origin refusal; the audit trail;
api_auth = "all"; api_https_only; a bad certificate or key at start; two instances on one
PostgreSQL sharing tokens, the secret, the audit trail and status-page sessions (also across a
restart).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pxelab.testing.bootlab import Daemon, LabDirs, create_token, start_daemon_usernet
from pxelab.testing.postgres import PostgresCluster

MAC = "52:54:00:00:20:01"
OTHER = "52:54:00:00:20:02"
_HTTPS_PORT = re.compile(r"https on \S+?:(\d+)")


def make_cert(directory: Path, name: str = "server") -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 with `openssl req`, as the README says."""
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


@dataclass
class Reply:
    """What curl got: the status, the headers (lower-case names) and the body."""

    status: int
    headers: dict[str, str]
    body: str


@dataclass
class Lab:
    """The daemon, its directories, its certificate, and the operator's tokens."""

    daemon: Daemon
    dirs: LabDirs
    cert: Path
    good: str
    revoked: str

    @property
    def https_port(self) -> int:
        found = _HTTPS_PORT.search(self.daemon.text())
        assert found is not None, self.daemon.text()
        return int(found.group(1))

    def url(self, scheme: str, path: str) -> str:
        port = self.daemon.http_port if scheme == "http" else self.https_port
        return f"{scheme}://127.0.0.1:{port}{path}"

    def curl(
        self,
        scheme: str,
        path: str,
        method: str = "POST",
        token: str | None = None,
        headers: dict[str, str] | None = None,
        form: str | None = None,
    ) -> Reply:
        argv = ["curl", "-sS", "-X", method, "-D", "-", "--cacert", str(self.cert)]
        if form is not None:
            argv += ["--data", form]
        for name, value in {
            **({"Authorization": f"Bearer {token}"} if token is not None else {}),
            **(headers or {}),
        }.items():
            argv += ["-H", f"{name}: {value}"]
        done = subprocess.run(
            [*argv, self.url(scheme, path)], capture_output=True, text=True, timeout=30
        )
        assert done.returncode == 0, done.stderr
        head, _, body = done.stdout.partition("\n\n")  # text mode: CRLF reads as \n
        lines = head.split("\n")
        fields = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
        return Reply(int(lines[0].split()[1]), {k.lower(): v for k, v in fields.items()}, body)

    def cli(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pxelab", *argv, "--state-dir", str(self.dirs.state)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip


def _dirs(root: Path) -> LabDirs:
    dirs = LabDirs(root)
    for d in (dirs.hosts, dirs.images, dirs.tftp, dirs.state):
        d.mkdir()
    for name, mac in (("a1", MAC), ("a2", OTHER)):
        data = {"name": name, "mac": mac, "distro": "demo"}
        (dirs.hosts / f"{name}.json").write_text(json.dumps(data))
    return dirs


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    root = tmp_path_factory.mktemp("auth")
    dirs = _dirs(root)
    cert, key = make_cert(root)
    good = create_token(dirs, "ops")
    revoked = create_token(dirs, "old")
    tls = ["--tls-cert", str(cert), "--tls-key", str(key), "--https-port", "0"]
    daemon = start_daemon_usernet(dirs, *tls)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pxelab", "token", "revoke", "old", "--state-dir", str(dirs.state)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        yield Lab(daemon, dirs, cert, good, revoked)
    finally:
        assert daemon.stop() == 0


WRITES = [f"/api/hosts/{MAC}/reinstall", f"/api/hosts/{MAC}/installed"]
"""Every state-changing endpoint of the API (host and asset changes would join this list)."""


@pytest.mark.parametrize("scheme", ["http", "https"])
@pytest.mark.parametrize("path", WRITES)
@pytest.mark.parametrize("who", ["none", "wrong", "revoked", "good"])
def test_matrix_every_write_needs_a_good_token(lab: Lab, scheme: str, path: str, who: str) -> None:
    token = {"none": None, "wrong": "pxl_" + "x" * 43, "revoked": lab.revoked, "good": lab.good}[
        who
    ]
    before = json.loads(lab.curl(scheme, f"/api/hosts/{MAC}", "GET").body)
    reply = lab.curl(scheme, path, token=token)
    after = json.loads(lab.curl(scheme, f"/api/hosts/{MAC}", "GET").body)
    if who == "good":
        assert reply.status == 200, reply
        assert after["state"] == ("install" if path.endswith("reinstall") else "installed")
        return
    assert reply.status == 401, reply
    challenge = reply.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="pxelab"')
    assert ("invalid_token" in challenge) is (who != "none")
    assert (after["state"], after["state_changed"]) == (before["state"], before["state_changed"])


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_cross_origin_browser_request_changes_nothing(lab: Lab, scheme: str) -> None:
    for token in (None, lab.good):  # not even with a token: a page elsewhere cannot act
        reply = lab.curl(
            scheme,
            f"/api/hosts/{MAC}/reinstall",
            token=token,
            headers={"Origin": "http://evil.example"},
        )
        assert reply.status == 403 and "cross-origin" in reply.body
    same = lab.curl(
        scheme,
        f"/api/hosts/{MAC}/reinstall",
        token=lab.good,
        headers={"Origin": lab.url(scheme, "").removesuffix("/")},
    )
    assert same.status == 200


def _callback_url(lab: Lab, mac: str) -> str:
    """The signed callback the generic boot script hands the host on its kernel line."""
    script = lab.curl("http", f"/boot?mac={mac}", "GET").body
    found = re.search(r"pxelab\.installed_url=(\S+)", script)
    assert found is not None, script
    return found.group(1)


def test_signed_callbacks_tampering_other_hosts_and_replays(lab: Lab) -> None:
    assert lab.curl("http", f"/api/hosts/{MAC}/reinstall", token=lab.good).status == 200
    url = _callback_url(lab, MAC)
    path = url.split(str(lab.daemon.http_port), 1)[1]
    assert re.fullmatch(rf"/api/hosts/{MAC}/installed/\d+\.[0-9a-f]{{32}}", path), path
    generation, signature = path.rsplit("/", 1)[1].split(".")

    tampered = path[:-1] + ("0" if path[-1] != "0" else "1")
    other = _callback_url(lab, OTHER).rsplit("/", 1)[1]
    for bad, why in (
        (tampered, "bad signature"),
        (f"/api/hosts/{MAC}/installed/{other}", "bad signature"),  # another host's
        (f"/api/hosts/{MAC}/installed/{generation}.", "missing signature"),
        (f"/api/hosts/{MAC}/installed/{int(generation) + 1}.{signature}", "bad signature"),
        (f"/api/hosts/{OTHER}/installed/{generation}.{signature}", "bad signature"),
    ):
        reply = lab.curl("http", bad)
        assert reply.status == 403 and why in reply.body, (bad, reply)
    assert json.loads(lab.curl("http", f"/api/hosts/{MAC}", "GET").body)["state"] == "install"

    done = lab.curl("http", path)  # the installer: no token, plain HTTP
    assert done.status == 200 and json.loads(done.body)["state"] == "installed"
    assert lab.curl("http", f"/api/hosts/{MAC}/reinstall", token=lab.good).status == 200
    replay = lab.curl("http", path)  # the old install's callback, after a reinstall
    assert replay.status == 403 and "replay" in replay.body
    assert json.loads(lab.curl("http", f"/api/hosts/{MAC}", "GET").body)["state"] == "install"
    fresh = _callback_url(lab, MAC)
    assert fresh != url and f"/installed/{int(generation) + 1}." in fresh
    assert lab.curl("https", fresh.split(str(lab.daemon.http_port), 1)[1]).status == 200

    log = lab.daemon.text()
    assert "audit: REFUSED installed 52:54:00:00:20:01 by (nobody) from 127.0.0.1" in log
    assert "audit: allowed installed 52:54:00:00:20:01 by signed callback from 127.0.0.1" in log


def test_a_token_made_and_revoked_while_the_daemon_runs(lab: Lab) -> None:
    path = f"/api/hosts/{OTHER}/reinstall"
    made = lab.cli("token", "create", "late")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert lab.curl("https", path, token=token).status == 200
    assert "late" in lab.cli("token", "list").stdout
    assert lab.cli("token", "create", "late").returncode == 1  # the name is taken
    assert lab.cli("token", "revoke", "late").returncode == 0
    assert lab.curl("https", path, token=token).status == 401
    assert "late" not in lab.cli("token", "list").stdout


def test_the_audit_trail_api_and_cli(lab: Lab) -> None:
    lab.curl("http", f"/api/hosts/{MAC}/reinstall", token="pxl_wrong")
    assert lab.curl("https", f"/api/hosts/{MAC}/reinstall", token=lab.good).status == 200
    for token in (None, "pxl_wrong", lab.revoked):
        assert lab.curl("http", "/api/audit", "GET", token=token).status == 401
    reply = lab.curl("https", "/api/audit", "GET", token=lab.good)
    records = json.loads(reply.body)["records"]
    refused = [r for r in records if not r["allowed"] and r["reason"] == "unknown or revoked token"]
    assert refused and refused[-1]["client"] == "127.0.0.1" and refused[-1]["who"] == ""
    last = [r for r in records if r["allowed"] and r["action"] == "reinstall"][-1]
    assert (last["who"], last["target"], last["client"]) == ("ops", MAC, "127.0.0.1")
    assert last["time"] > 0
    assert any(r["action"] == "token-revoke" and r["who"] == "cli" for r in records)
    reinstall = subprocess.run(
        [sys.executable, "-m", "pxelab", "hosts", "reinstall", "a1", "--state-dir",
         str(lab.dirs.state), "--hosts-dir", str(lab.dirs.hosts)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert reinstall.returncode == 0, reinstall.stderr
    text = lab.cli("audit", "--limit", "500").stdout
    assert f"allowed reinstall {MAC} by ops from 127.0.0.1" in text
    assert f"REFUSED reinstall {MAC} by (nobody) from 127.0.0.1: unknown or revoked token" in text
    assert f"allowed reinstall {MAC} by cli from cli" in text


def test_reads_stay_open_and_boot_paths_never_need_a_token(lab: Lab) -> None:
    for path in ("/", "/metrics", "/api/hosts", f"/boot?mac={MAC}", "/boot.ipxe"):
        assert lab.curl("http", path, "GET").status == 200, path


def test_api_auth_all_and_https_only(tmp_path: Path) -> None:
    dirs = _dirs(tmp_path)
    cert, key = make_cert(tmp_path)
    good = create_token(dirs, "ops")
    daemon = start_daemon_usernet(
        dirs,
        *("--tls-cert", str(cert), "--tls-key", str(key), "--https-port", "0"),
        *("--api-auth", "all", "--api-https-only", "on"),
    )
    try:
        lab = Lab(daemon, dirs, cert, good, "")
        for path in ("/api/hosts", "/metrics", "/status/events"):
            reply = lab.curl("https", path, "GET")
            assert reply.status == 401 and "www-authenticate" in reply.headers, path
        for path in ("/api/hosts", "/metrics"):
            assert lab.curl("https", path, "GET", token=good).status == 200, path
        page = lab.curl("https", "/", "GET")
        assert page.status == 303 and page.headers["location"] == "/status/signin"
        for path in (f"/boot?mac={MAC}", "/boot.ipxe", "/status/signin", "/status/status.css"):
            assert lab.curl("http", path, "GET").status == 200, path

        insecure = lab.curl("http", "/status/signin", form=f"token={good}")
        assert insecure.status == 403 and "set-cookie" not in insecure.headers
        signin = lab.curl("https", "/status/signin", form=f"token={good}")
        assert signin.status == 303, signin
        cookie = signin.headers["set-cookie"]
        for attribute in ("HttpOnly", "SameSite=Strict", "Secure", "Path=/"):
            assert attribute in cookie, cookie
        session = {"Cookie": cookie.split(";")[0]}
        assert lab.curl("https", "/api/hosts", "GET", headers=session).status == 200  # a read
        page = lab.curl("https", "/", "GET", headers=session)
        assert page.status == 200 and "signed in as ops" in page.body
        cookie_write = lab.curl("https", f"/api/hosts/{MAC}/reinstall", headers=session)
        assert cookie_write.status == 401  # never an /api/* write

        plain = lab.curl("http", f"/api/hosts/{MAC}/reinstall", token=good)
        assert plain.status == 403 and "HTTPS" in plain.body
        assert lab.curl("https", f"/api/hosts/{MAC}/reinstall", token=good).status == 200
        signed = _callback_url(lab, MAC).split(str(daemon.http_port), 1)[1]
        assert lab.curl("http", signed).status == 200  # machines have no TLS: plain HTTP
    finally:
        assert daemon.stop() == 0


def test_a_bad_certificate_or_key_stops_the_start_with_one_line(tmp_path: Path) -> None:
    dirs = _dirs(tmp_path)
    cert, key = make_cert(tmp_path)
    _, other_key = make_cert(tmp_path, "other")
    locked = tmp_path / "locked.key"
    subprocess.run(
        ["openssl", "pkey", "-in", str(key), "-aes256", "-passout", "pass:secret", "-out", str(locked)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    base = [sys.executable, "-m", "pxelab", "serve", "--http-address", "127.0.0.1"]
    base += ["--http-port", "0", "--tftp-port", "0", "--state-dir", str(dirs.state)]
    base += ["--hosts-dir", str(dirs.hosts), "--images-dir", str(dirs.images)]
    for tls, expected in (
        (["--tls-cert", str(cert), "--tls-key", str(other_key)], "is not the private key of"),
        (
            ["--tls-cert", str(tmp_path / "junk.pem"), "--tls-key", str(key)],
            "not a PEM certificate",
        ),
        (["--tls-cert", str(cert), "--tls-key", str(cert)], "not a PEM private key"),
        (["--tls-cert", str(cert), "--tls-key", str(locked)], "is encrypted"),
        (["--tls-cert", str(tmp_path / "none.pem"), "--tls-key", str(key)], "cannot read"),
        (["--tls-cert", str(cert)], "go together"),
        (["--api-https-only", "on"], "needs HTTPS"),
    ):
        done = subprocess.run([*base, *tls], capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], done.stderr


def test_two_instances_on_one_database_share_tokens_secret_and_audit(
    tmp_path: Path, pg_cluster: PostgresCluster
) -> None:
    url = pg_cluster.create_database()
    dirs = _dirs(tmp_path)
    made = subprocess.run(
        [sys.executable, "-m", "pxelab", "token", "create", "ops", "--state-url", url],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    first = start_daemon_usernet(dirs, "--state-url", url)
    second = start_daemon_usernet(dirs, "--state-url", url)
    try:
        one = Lab(first, dirs, tmp_path / "none.pem", token, "")
        two = Lab(second, dirs, tmp_path / "none.pem", token, "")
        assert one.curl("http", f"/api/hosts/{MAC}/reinstall", token=token).status == 200
        assert two.curl("http", f"/api/hosts/{OTHER}/reinstall", token=token).status == 200
        signed = _callback_url(one, MAC).split(str(first.http_port), 1)[1]
        assert two.curl("http", signed).status == 200  # the other instance knows the secret
        audit = json.loads(two.curl("http", "/api/audit", "GET", token=token).body)["records"]
        done = [(r["who"], r["action"], r["target"]) for r in audit if r["allowed"]]
        assert ("ops", "reinstall", MAC) in done and ("ops", "reinstall", OTHER) in done
        assert ("signed callback", "installed", MAC) in done
    finally:
        assert first.stop() == 0 and second.stop() == 0


def _signed_in(lab: Lab, cookie: dict[str, str]) -> str | None:
    """The CSRF token of the page's forms when the cookie's session is live there, else None."""
    page = lab.curl("http", "/", "GET", headers=cookie)
    assert page.status == 200, page
    if "signed in as ops" not in page.body:
        return None
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page.body)
    assert found is not None, page.body
    return found.group(1)


def _until_signed_out(lab: Lab, cookie: dict[str, str], limit: float = 15.0) -> None:
    """The limit bounds a hang (about a second when idle; tests/integration/test_sessions.py
    shows that the NOTIFY, not the cache's expiry, ends it on PostgreSQL)."""
    deadline = time.monotonic() + limit
    while _signed_in(lab, cookie) is not None:
        assert time.monotonic() < deadline, "the session still works"
        time.sleep(0.05)


def test_page_sessions_are_shared_by_instances_and_outlive_a_restart(
    tmp_path: Path, pg_cluster: PostgresCluster
) -> None:
    """Sign in on one, act on the other; a restart keeps the session; sign-out on one and a
    revocation with the CLI end it on every instance within a second."""
    url = pg_cluster.create_database()
    dirs = _dirs(tmp_path)
    cli = [sys.executable, "-m", "pxelab", "token"]
    made = subprocess.run([*cli, "create", "ops", "--state-url", url], capture_output=True, text=True, timeout=60)  # fmt: skip
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    daemons = [start_daemon_usernet(dirs, "--state-url", url) for _ in range(2)]
    try:
        one, two = (Lab(d, dirs, tmp_path / "none.pem", token, "") for d in daemons)
        signin = one.curl("http", "/status/signin", form=f"token={token}")
        assert signin.status == 303, signin
        cookie = {"Cookie": signin.headers["set-cookie"].split(";")[0]}
        csrf = _signed_in(two, cookie)
        assert csrf is not None and csrf == _signed_in(one, cookie)
        form = f"/status/hosts/{MAC}/reinstall"
        assert two.curl("http", form, headers=cookie, form=f"csrf={csrf}").status == 303

        assert daemons[0].stop() == 0  # a restart signs nobody out
        daemons[0] = start_daemon_usernet(dirs, "--state-url", url)
        one = Lab(daemons[0], dirs, tmp_path / "none.pem", token, "")
        assert _signed_in(one, cookie) == csrf
        out = one.curl("http", "/status/signout", headers=cookie, form=f"csrf={csrf}")
        assert out.status == 303
        _until_signed_out(two, cookie)
        assert two.curl("http", form, headers=cookie, form=f"csrf={csrf}").status == 403

        again = two.curl("http", "/status/signin", form=f"token={token}")
        cookie = {"Cookie": again.headers["set-cookie"].split(";")[0]}
        assert _signed_in(one, cookie) is not None and _signed_in(two, cookie) is not None
        revoked = subprocess.run([*cli, "revoke", "ops", "--state-url", url], capture_output=True, text=True, timeout=60)  # fmt: skip
        assert revoked.returncode == 0, revoked.stderr
        _until_signed_out(one, cookie)
        _until_signed_out(two, cookie)
    finally:
        assert all([d.stop() == 0 for d in daemons])
