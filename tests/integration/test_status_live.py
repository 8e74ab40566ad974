"""The status page's live updates in headless Chromium, fast: scripted requests, no VM.

Covers what the QEMU browser test does not: errors arriving live, and a machine the page does not
list yet (the page re-reads its snapshot, without a reload).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from pxelab.boot.render import Renderer
from pxelab.events import Event, TftpOutcome, Timeline
from pxelab.hosts.inventory import Inventory
from pxelab.http.app import make_app
from tests.e2e.test_status_browser import chromium, console_errors

MAC = "52:54:00:5b:00:01"
KEY = MAC.replace(":", "-")
STRANGER = "52:54:00:5b:00:99"
Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[Client, Timeline]]:
    (tmp_path / "hosts").mkdir()
    host = {"name": "web-1", "mac": MAC, "distro": "demo"}
    (tmp_path / "hosts" / "web-1.json").write_text(json.dumps(host))
    (tmp_path / "images" / "demo" / "amd64").mkdir(parents=True)
    (tmp_path / "images" / "demo" / "amd64" / "vmlinuz").write_bytes(b"k" * 4096)
    timeline = Timeline()
    app = make_app(Inventory(tmp_path / "hosts"), Renderer(), tmp_path / "images", timeline)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield client, timeline


def _text(driver: webdriver.Chrome, selector: str) -> str:
    return str(driver.find_element(By.CSS_SELECTOR, selector).text)


async def test_page_follows_requests_errors_and_new_machines_live(
    served: tuple[Client, Timeline], tmp_path: Path
) -> None:
    client, timeline = served
    url = str(client.make_url("/"))
    with chromium(tmp_path / "profile") as driver:
        wait = WebDriverWait(driver, 15, 0.05, ignored_exceptions=[StaleElementReferenceException])

        async def until(condition: Callable[[webdriver.Chrome], bool]) -> None:
            await asyncio.to_thread(wait.until, condition)

        await asyncio.to_thread(driver.get, url)
        await until(lambda d: _text(d, "#live") == "live")
        await asyncio.to_thread(driver.execute_script, "window.pxelabSamePage = 7")
        assert "No boots yet." in await asyncio.to_thread(_text, driver, "#timelines")

        assert (await client.get("/boot", params={"mac": MAC})).status == 200
        await until(lambda d: _text(d, f"#host-{KEY} .last .stage") == "script")
        await until(lambda d: "boot script /boot" in _text(d, f"#tl-{KEY}"))
        assert (await client.get("/images/demo/amd64/vmlinuz")).status == 200
        await until(lambda d: _text(d, f"#host-{KEY} .last .stage") == "kernel")
        stages = await asyncio.to_thread(
            driver.execute_script,
            f"return [...document.querySelectorAll('#tl-{KEY} li .stage')].map(e => e.textContent)",
        )
        assert stages == ["kernel", "script"]
        done = await asyncio.to_thread(
            driver.execute_script,
            f"return [...document.querySelectorAll('#tl-{KEY} .steps .done')].map(e => e.textContent)",
        )
        assert done == ["script", "kernel"]

        # as the TFTP server records a refused file for a client it cannot name yet
        outcome, error = TftpOutcome.ERROR, "file not found"
        timeline.record(
            Event(
                time.time(),
                "tftp",
                ip="10.9.9.9",
                file="grubx64.efi",
                outcome=outcome,
                error_code=1,
                error=error,
            )
        )
        await until(lambda d: "10.9.9.9 tftp grubx64.efi: error 1" in _text(d, "#problems"))

        # as the DHCP server records an offer to a machine that has no host file
        offer = Event(
            time.time(),
            "dhcp",
            mac=STRANGER,
            message_type="OFFER",
            address="10.9.9.50",
            file="ipxe.efi",
        )
        timeline.record(offer)
        stranger = STRANGER.replace(":", "-")
        await until(lambda d: "OFFER 10.9.9.50" in _text(d, f"#host-{stranger}"))
        assert "not in the inventory" in await asyncio.to_thread(_text, driver, f"#tl-{stranger}")
        same = await asyncio.to_thread(driver.execute_script, "return window.pxelabSamePage")
        assert same == 7  # updated in place, never reloaded
        # it gets a host file: its next event moves it to the hosts table
        host = {"name": "newcomer", "mac": STRANGER}
        (tmp_path / "hosts" / "newcomer.json").write_text(json.dumps(host))
        await asyncio.sleep(0.6)  # the inventory looks at its directory at most every 0.5 s
        timeline.record(dataclasses.replace(offer, time=time.time(), message_type="ACK"))
        await until(lambda d: _text(d, f"#hosts > table #host-{stranger}").startswith("newcomer"))
        assert len(driver.find_elements(By.ID, "unknown")) == 0

        await asyncio.to_thread(driver.execute_script, "console.error('pxelab-probe')")
        errors = await asyncio.to_thread(console_errors, driver)
        assert len(errors) == 1 and "pxelab-probe" in errors[0]  # only the probe: none of ours
