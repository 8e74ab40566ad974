"""The status page in headless Chromium while a QEMU VM boots: sign-in, live stages, reinstall,
sign-out, screenshot.

QEMU user-mode network (no root); Debian's chromium and chromium-driver, driven by Selenium.
The screenshot goes to a temporary directory: a test never writes a tracked file. `make docs`
runs this test with PXELAB_STATUS_SCREENSHOT=docs/status.png to renew the README's picture.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from pxelab.assets.store import FileEntry, Manifest
from pxelab.testing.initrd import MARKER
from pxelab.testing.pytest_plugin import PxelabServer
from pxelab.testing.qemu import QemuVm

MAC = "52:54:00:00:5a:01"
KEY = MAC.replace(":", "-")
SCREENSHOT_ENV = "PXELAB_STATUS_SCREENSHOT"
"""Where `make docs` wants the screenshot (docs/status.png); unset, it goes to tmp_path."""
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
"""The issue's flags: without them Chromium keeps trying to reach outside hosts."""

# Records every stage the host's row shows, as the page shows it (rows are replaced live).
WATCH = """
window.pxelabSeen = [];
const key = arguments[0];
const look = () => {
  const chip = document.querySelector('#host-' + key + ' .last .stage');
  const stage = chip ? chip.textContent : '';
  const seen = window.pxelabSeen;
  if (stage && seen[seen.length - 1] !== stage) seen.push(stage);
};
new MutationObserver(look).observe(document.body, {childList: true, subtree: true});
look();
"""


@contextlib.contextmanager
def chromium(profile: Path) -> Iterator[webdriver.Chrome]:
    """Headless Debian Chromium with a fresh profile; it and chromedriver are stopped afterwards."""
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # console, CSP reports
    extra = ("--disable-dev-shm-usage", "--window-size=1280,900", f"--user-data-dir={profile}")
    for flag in (*CHROMIUM_FLAGS, *extra):
        options.add_argument(flag)
    service = Service("/usr/bin/chromedriver", log_output=str(profile.parent / "chromedriver.log"))
    driver = None
    try:
        driver = webdriver.Chrome(options=options, service=service)
        yield driver
    finally:
        if driver is not None:
            driver.quit()
        service.stop()


def console_errors(driver: webdriver.Chrome) -> list[str]:
    """What the page logged as errors: script errors, CSP refusals, failed loads."""
    entries: list[dict[str, Any]] = driver.get_log("browser")  # type: ignore[no-untyped-call]
    return [e["message"] for e in entries if e["level"] == "SEVERE"]


def _api(server: PxelabServer, path: str, method: str = "GET") -> Any:
    url = f"http://127.0.0.1:{server.daemon.http_port}{path}"
    headers = {"Authorization": f"Bearer {server.token}"} if method != "GET" else {}
    request = urllib.request.Request(url, method=method, headers=headers)
    with urllib.request.urlopen(request, timeout=10) as resp:  # loopback only
        return json.loads(resp.read())


def _demo_manifest(server: PxelabServer) -> None:
    """A manifest for the test kernel and initrd, so the page lists them (not verified: no
    published checksum exists for files built by the tests)."""
    directory = server.dirs.images / "demo" / "amd64"
    files = {}
    for path in sorted(p for p in directory.iterdir() if p.is_file()):
        data = path.read_bytes()
        files[path.name] = FileEntry(len(data), hashlib.sha256(data).hexdigest(), str(path))
    manifest = Manifest("demo", "amd64", "pxelab.testing (built by the tests)", False,
                        time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), files)  # fmt: skip
    (directory / "manifest.json").write_text(manifest.to_json())


def _text(driver: webdriver.Chrome, selector: str) -> str:
    """The text of an element, looked up now (live updates replace elements)."""
    return str(driver.find_element(By.CSS_SELECTOR, selector).text)


def _full_page_png(driver: webdriver.Chrome) -> bytes:
    """The whole page, not only the window (Chrome DevTools' own screenshot)."""
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}
    )
    return base64.b64decode(shot["data"])


@pytest.mark.e2e
@pytest.mark.pxelab(network="user")
def test_status_page_follows_a_boot_live_and_reinstalls(
    pxelab_server: PxelabServer, qemu_vm: Callable[..., QemuVm], tmp_path: Path
) -> None:
    pxelab_server.add_host("vm1", MAC, kernel_args="quiet pxelab.install=1")
    pxelab_server.add_host("web-2", "52:54:00:00:5a:02")
    (pxelab_server.dirs.hosts / "typo.json").write_text('{"name": "typo", "mac": "52:54"}')
    _demo_manifest(pxelab_server)
    url = f"http://127.0.0.1:{pxelab_server.daemon.http_port}/"

    with chromium(tmp_path / "profile") as driver:
        driver.get(url)
        wait = WebDriverWait(driver, 20, 0.1, ignored_exceptions=[StaleElementReferenceException])
        wait.until(lambda d: _text(d, "#live") == "live")
        assert "not seen" in _text(driver, f"#host-{KEY}")
        # signed out: read-only, no action anywhere; a wrong token does not sign in
        assert driver.find_elements(By.CSS_SELECTOR, "form.reinstall, details.confirm") == []
        assert _text(driver, f"#host-{KEY} .action") == "sign in to act"
        driver.find_element(By.ID, "signin").click()
        wait.until(lambda d: d.current_url == f"{url}status/signin")
        driver.find_element(By.ID, "token").send_keys("pxl_not-a-token\n")
        wait.until(lambda d: "unknown or revoked" in _text(d, "#signin"))
        driver.find_element(By.ID, "token").send_keys(pxelab_server.token + "\n")
        wait.until(lambda d: d.current_url == url)  # the token once; then the session cookie
        cookie = driver.get_cookie("pxelab_session")
        assert cookie is not None and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert pxelab_server.token not in str(driver.get_cookies())
        wait.until(lambda d: _text(d, "#live") == "live")
        assert _text(driver, "#who") == "signed in as pytest"
        assert "audit: allowed signin - by pytest from 127.0.0.1" in pxelab_server.log
        failed_loads = console_errors(driver)  # the wrong token's 401, nothing else
        assert len(failed_loads) <= 1 and all("401" in e for e in failed_loads), failed_loads
        driver.execute_script(WATCH, KEY)
        driver.execute_script("window.pxelabSamePage = 42")

        vm = qemu_vm(MAC)
        slow = WebDriverWait(driver, 240, 0.2, ignored_exceptions=[StaleElementReferenceException])
        slow.until(lambda d: _text(d, f"#host-{KEY} .last .stage") == "installed")
        vm.wait_for(MARKER, timeout=240)
        seen = driver.execute_script("return window.pxelabSeen")
        assert seen == ["script", "kernel", "initrd", "installed"], seen
        assert driver.execute_script("return window.pxelabSamePage") == 42  # never reloaded
        assert _text(driver, f"#host-{KEY} .state") == "installed"
        items = driver.find_elements(By.CSS_SELECTOR, f"#tl-{KEY} li .stage")
        assert [i.text for i in items][:4] == ["installed", "initrd", "kernel", "script"]
        done = driver.find_elements(By.CSS_SELECTOR, f"#tl-{KEY} .steps .done")
        assert [d.text for d in done] == ["script", "kernel", "initrd", "installed"]
        errors = _text(driver, "#problems")
        assert "typo.json" in errors and "not a MAC address" in errors
        assets = _text(driver, "#assets")
        assert "vmlinuz" in assets and "unverified" in assets

        time.sleep(1.6)  # let the row's highlight fade
        screenshot = Path(os.environ.get(SCREENSHOT_ENV) or tmp_path / "status.png")
        screenshot.write_bytes(_full_page_png(driver))
        assert screenshot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")

        def click(selector: str) -> bool:
            driver.find_element(By.CSS_SELECTOR, selector).click()
            return True

        wait.until(lambda d: click(f"#host-{KEY} details.confirm summary"))
        assert _text(driver, f"#host-{KEY} button") == "Reinstall vm1 at its next boot"
        wait.until(lambda d: click(f"#host-{KEY} button"))
        wait.until(lambda d: _text(d, f"#host-{KEY} .last .stage") == "reinstall")
        assert _text(driver, f"#host-{KEY} .state") == "install"
        assert driver.execute_script("return window.pxelabSamePage") == 42
        host = _api(pxelab_server, f"/api/hosts/{MAC}")
        assert host["state"] == "install" and host["stage"] == "reinstall"
        assert f"POST /status/hosts/{MAC}/reinstall 200" in pxelab_server.log  # by the page's JS
        assert f"audit: allowed reinstall {MAC} by pytest from 127.0.0.1" in pxelab_server.log
        assert console_errors(driver) == []

        # JavaScript off: a snapshot, and the reinstall form posts and comes back to the page
        driver.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": True})
        assert (
            _api(pxelab_server, f"/api/hosts/{MAC}/installed", method="POST")["state"]
            == "installed"
        )
        driver.get(url)
        assert _text(driver, "#live") == "snapshot"
        assert _text(driver, f"#host-{KEY} .state") == "installed"
        click(f"#host-{KEY} details.confirm summary")
        click(f"#host-{KEY} button")
        wait.until(lambda d: d.current_url == f"{url}#host-{KEY}")  # the form's redirect
        assert _text(driver, f"#host-{KEY} .state") == "install"
        assert _api(pxelab_server, f"/api/hosts/{MAC}")["state"] == "install"
        assert f"POST /status/hosts/{MAC}/reinstall 303" in pxelab_server.log  # not the API

        # signing out removes the action; the old cookie acts no more
        old = driver.get_cookie("pxelab_session")
        click("#signout")
        wait.until(lambda d: d.find_elements(By.ID, "signin"))
        assert driver.find_elements(By.CSS_SELECTOR, "form.reinstall, details.confirm") == []
        assert driver.get_cookie("pxelab_session") is None
        assert old is not None
        replay = urllib.request.Request(
            f"{url}status/hosts/{MAC}/reinstall",
            data=b"csrf=x",
            method="POST",
            headers={"Cookie": f"pxelab_session={old['value']}"},
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(replay, timeout=10)  # loopback only
        assert refused.value.code == 403

        driver.set_window_size(390, 844)  # a phone: cards, no sideways scrolling
        wide = driver.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert wide <= 0
        assert driver.find_element(By.CSS_SELECTOR, "#hosts thead").is_displayed() is False
