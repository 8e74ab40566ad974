"""The control plane's pure rules: tokens, signed install callbacks, origins, sessions."""

from __future__ import annotations

import time

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from pxelab.boot.render import Renderer
from pxelab.hosts.inventory import parse_host
from pxelab.http import auth
from pxelab.http.audit import MemoryAuthStore
from pxelab.http.auth import ApiAuth
from pxelab.http.guard import COOKIE, Guard
from pxelab.state import Change, SessionRecord, TokenRecord

SECRET = b"s" * 32
MAC = "52:54:00:00:00:01"


def _record(name: str, token: str) -> TokenRecord:
    return TokenRecord(name, auth.token_digest(token), 0.0)


def test_tokens_are_random_prefixed_and_stored_as_hashes() -> None:
    one, two = auth.new_token(), auth.new_token()
    assert one != two and one.startswith("pxl_") and len(one) > 40
    assert auth.token_digest(one) != one and len(auth.token_digest(one)) == 64
    records = [_record("a", one), _record("b", two)]
    assert auth.match_token(two, records) == records[1]
    assert auth.match_token(two[:-1], records) is None
    assert auth.match_token("", records) is None


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc", "abc"),
        ("bearer  abc ", "abc"),
        ("Basic abc", None),
        ("Bearer", None),
        ("Bearer ", None),
        ("", None),
        (None, None),
    ],
)
def test_bearer_header(header: str | None, token: str | None) -> None:
    assert auth.bearer_token(header) == token


def test_token_names() -> None:
    assert auth.check_token_name("ci-runner.1") == "ci-runner.1"
    for bad in ("", "-x", "a b", "a/b", "x" * 64, "é"):
        with pytest.raises(ValueError, match="token name"):
            auth.check_token_name(bad)


def test_a_signed_callback_is_valid_for_its_mac_and_generation_only() -> None:
    credential = auth.callback_credential(SECRET, MAC, 3)
    generation, signature = credential.split(".")
    assert generation == "3" and len(signature) == auth.SIGNATURE_HEX
    assert set(credential) <= set("0123456789abcdef.")  # safe on an iPXE kernel line
    assert auth.verify_callback(SECRET, MAC, 3, credential) is None
    assert auth.verify_callback(SECRET, MAC.upper(), 3, credential) is None
    assert "replay" in str(auth.verify_callback(SECRET, MAC, 4, credential))
    other = auth.callback_credential(SECRET, "52:54:00:00:00:02", 3)
    assert "bad signature" in str(auth.verify_callback(SECRET, MAC, 3, other))
    assert "bad signature" in str(auth.verify_callback(b"x" * 32, MAC, 3, credential))
    flipped = credential[:-1] + ("0" if credential[-1] != "0" else "1")
    assert "bad signature" in str(auth.verify_callback(SECRET, MAC, 3, flipped))
    forged = "4." + signature  # the same signature claimed for a newer generation
    assert "bad signature" in str(auth.verify_callback(SECRET, MAC, 4, forged))
    assert auth.verify_callback(SECRET, MAC, 3, "3.") == "missing signature"
    for bad in ("", "x", "3", "3.ZZ", "-1.ab", "3.ab.cd", "3.AB"):
        assert auth.verify_callback(SECRET, MAC, 3, bad) == "malformed signature"


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        (None, True),
        ("http://10.0.0.1:8080", True),
        ("https://10.0.0.1:8080", True),
        ("http://evil.example", False),
        ("http://10.0.0.1:8081", False),
        ("http://10.0.0.1", False),
        ("null", False),
        ("file://10.0.0.1:8080", False),
    ],
)
def test_same_origin(origin: str | None, allowed: bool) -> None:
    assert auth.same_origin(origin, "10.0.0.1:8080") is allowed


@pytest.mark.parametrize(
    ("path", "writes", "all_"),
    [
        ("/", False, True),
        ("/metrics", False, True),
        ("/api/hosts", False, True),
        ("/status/events", False, True),
        ("/status/signin", False, False),
        ("/status/status.css", False, False),
        ("/status/favicon.svg", False, False),
        ("/boot", False, False),
        ("/boot.ipxe", False, False),
        ("/ipxe", False, False),
        ("/images/demo/amd64/vmlinuz", False, False),
        ("/tftp/ipxe.efi", False, False),
        ("/cloud-init/h/user-data", False, False),
        ("/kickstart/h", False, False),
        ("/preseed/h", False, False),
        ("/bootx", False, True),
    ],
)
def test_which_reads_need_a_token(path: str, writes: bool, all_: bool) -> None:
    assert auth.read_needs_auth(path, ApiAuth.WRITES) is writes
    assert auth.read_needs_auth(path, ApiAuth.ALL) is all_


def _cookie(sid: str | None) -> web.Request:
    return make_mocked_request("GET", "/", headers={"Cookie": f"{COOKIE}={sid}"} if sid else {})


async def test_sessions_expire_end_at_sign_out_and_check_their_csrf_token() -> None:
    store = MemoryAuthStore()
    ops = _record("ops", "t")
    await store.add_token(ops)
    guard = Guard(store)
    started = await guard.start_session(ops)
    assert started is not None
    sid, session = started
    assert await guard.session(_cookie(sid)) == session and session.token_name == "ops"
    assert session.digest == auth.token_digest(sid) != sid  # the store keeps only the hash
    assert auth.csrf_ok(session, session.csrf) and not auth.csrf_ok(session, session.csrf + "x")
    assert not auth.csrf_ok(session, None) and not auth.csrf_ok(session, "")
    assert (
        await guard.session(_cookie("nope")) is None and await guard.session(_cookie(None)) is None
    )
    stored = await store.session(session.digest, time.time())
    assert stored is not None and stored.token_name == "ops" and stored.expires == session.expires
    assert await store.session(session.digest, session.expires) is None  # expired
    await guard.end_session(sid)
    assert await guard.session(_cookie(sid)) is None  # signed out, at once (not from the cache)
    assert (await store.add_session(stored, auth.token_digest("other"))) is False  # not its token


async def test_revoking_a_token_ends_its_sessions_at_once() -> None:
    store = MemoryAuthStore()
    ops, ci = _record("ops", "t"), _record("ci", "u")
    await store.add_token(ops)
    await store.add_token(ci)
    guard = Guard(store)
    mine, theirs = await guard.start_session(ops), await guard.start_session(ci)
    assert mine is not None and theirs is not None
    assert await guard.session(_cookie(mine[0])) == mine[1]  # now cached
    assert await store.revoke_token("ops")
    assert await guard.session(_cookie(mine[0])) is None
    assert await guard.session(_cookie(theirs[0])) == theirs[1]
    assert await guard.start_session(ops) is None  # a revoked token starts none


def test_the_csrf_token_is_the_session_ids_hmac_under_the_secret() -> None:
    one = auth.session_csrf(SECRET, "sid-1")
    assert len(one) == auth.CSRF_HEX and set(one) <= set("0123456789abcdef")
    assert one == auth.session_csrf(SECRET, "sid-1")  # every instance derives the same
    assert one != auth.session_csrf(SECRET, "sid-2")
    assert one != auth.session_csrf(b"x" * 32, "sid-1")
    assert one not in auth.token_digest("sid-1")  # not the stored digest, nor a part of it


def test_the_session_cache_trusts_a_read_for_a_second_and_drops_what_the_store_tells() -> None:
    cache = auth.SessionCache(size=2)  # the default: "within a second", as the README says
    a = SessionRecord("a" * 64, "ops", 0.0, 100.0)
    b = SessionRecord("b" * 64, "ci", 0.0, 100.0)
    cache.put(a, tick=10.0, epoch=cache.epoch)
    assert cache.get(a.digest, now=50.0, tick=10.9) == a
    assert cache.get(a.digest, now=50.0, tick=11.0) is None  # stale: read the store again
    cache.put(a, tick=20.0, epoch=cache.epoch)
    assert cache.get(a.digest, now=100.0, tick=20.1) is None  # expired
    cache.put(a, tick=30.0, epoch=cache.epoch)
    cache.put(b, tick=30.0, epoch=cache.epoch)
    cache.on_change(Change("session", a.digest, remote=True))  # signed out elsewhere
    assert cache.get(a.digest, 50.0, 30.1) is None and cache.get(b.digest, 50.0, 30.1) == b
    cache.on_change(Change("token", "ci"))  # revoked
    assert cache.get(b.digest, 50.0, 30.1) is None
    epoch = cache.epoch  # a lookup begins; a sign-out is told before its answer comes
    cache.on_change(Change("session", a.digest))
    cache.put(a, tick=40.0, epoch=epoch)
    assert cache.get(a.digest, 50.0, 40.1) is None  # what it read may be the ended session
    c = SessionRecord("c" * 64, "ops", 0.0, 100.0)
    for record in (a, b, c):  # bounded: the oldest goes first
        cache.put(record, tick=41.0, epoch=cache.epoch)
    assert cache.get(a.digest, 50.0, 41.1) is None and cache.get(c.digest, 50.0, 41.1) == c


@pytest.mark.parametrize(
    ("distro", "name", "where"),
    [
        ("demo", "boot", "pxelab.installed_url={url}\n"),  # the generic kernel line
        ("ubuntu-24.04", "user-data", 'curl -fsS -X POST {url}"'),  # late-commands
        ("fedora-41", "kickstart", "curl -fsS -X POST {url}\n"),  # %post
        ("debian-12", "preseed", "--post-data= {url}"),  # late_command
    ],
)
def test_install_data_carries_the_signed_callback(distro: str, name: str, where: str) -> None:
    host = parse_host({"name": "n1", "mac": MAC, "distro": distro}, "n1.json")
    renderer = Renderer()
    renderer.signer = lambda mac: auth.callback_credential(SECRET, mac, 3)
    base = "http://10.0.0.1:8080"
    url = f"{base}/api/hosts/{MAC}/installed/{auth.callback_credential(SECRET, MAC, 3)}"
    text = (
        renderer.boot_script(host, base)
        if name == "boot"
        else renderer.install_data(host, base, name)
    )
    assert where.format(url=url) in text, text
