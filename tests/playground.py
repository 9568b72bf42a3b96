"""The playground as tests use it: a `chainmail playground` process, and page objects
for its chat and outbox pages in headless Chromium (Playwright driving Debian's
/usr/bin/chromium; nothing is downloaded)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
# Set to a directory (e.g. docs) to have the browser tests save screenshots there.
SCREENSHOTS = os.environ.get("CHAINMAIL_SCREENSHOTS", "")
WAIT_MS = 10_000
# A phone as the browser tests hold one: 390 × 844 CSS pixels, touch.
PHONE = {
    "viewport": {"width": 390, "height": 844},
    "device_scale_factor": 1,
    "is_mobile": True,
    "has_touch": True,
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Playground:
    """One `chainmail playground` process on a data directory; start and stop at will."""

    def __init__(self, data_dir: Path, *, demo_shop: bool = False) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.database_url = f"sqlite+aiosqlite:///{data_dir.resolve() / 'chainmail.db'}"
        self._demo_shop = demo_shop
        self._process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        """Launch it; returns once the chat page answers."""
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("SMTP_", "SMS_", "DATABASE_", "OUTBOX_", "TELEGRAM_"))
        }
        env |= {"PYTHONPATH": str(ROOT), "ENGINE_TICK_SECONDS": "0.3", "LOG_LEVEL": "WARNING"}
        command = [sys.executable, "-m", "bot", "playground", "--port", str(self.port)]
        command += ["--data-dir", str(self.data_dir)]
        if not self._demo_shop:
            command.append("--no-demo-shop")
        started = time.monotonic()
        self._process = subprocess.Popen(
            command, cwd=self.data_dir.parent, env=env, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        while True:
            try:
                httpx.get(self.url, timeout=1).raise_for_status()
                return
            except httpx.TransportError:
                if self._process.poll() is not None:
                    raise AssertionError(self._process.communicate()[1]) from None
                assert time.monotonic() - started < 30, "the playground did not start"
                time.sleep(0.05)

    def stop(self) -> str:
        """SIGTERM, as Ctrl+C or a service manager would; returns what it wrote on stderr."""
        process = self._process
        assert process is not None
        process.send_signal(signal.SIGTERM)
        try:
            _, stderr = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
            self._process = None
        assert process.returncode == 0, stderr
        # Every request finished before the server went away.
        assert "timeout graceful shutdown exceeded" not in stderr, stderr
        assert "Exception in ASGI application" not in stderr, stderr
        return stderr

    def __enter__(self) -> Playground:
        return self

    def __exit__(self, *exc_info: object) -> None:
        # A test that failed half-way leaves no playground running.
        if self._process is not None:
            self._process.kill()
            self._process.communicate()
            self._process = None

    def api(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        reason = f"no {CHROMIUM} (scripts/test installs Debian's chromium as root)"
        if IN_CI:
            pytest.fail(f"{reason}; required in CI")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield launched
        launched.close()


def _labels(label: str) -> tuple[re.Pattern[str], re.Pattern[str]]:
    """A button's label, ignoring an emoji before it ("Chains" finds "📋 Chains"); failing
    that, also a mark after it ("Who" finds "👥 Who …")."""
    exact = re.compile(rf"^(\S+ )?{re.escape(label)}$")
    return exact, re.compile(rf"^(\S+ )?{re.escape(label)} \S+$")


class ChatPage:
    """The chat page as a user of it sees it."""

    def __init__(self, page: object, url: str) -> None:
        from playwright.sync_api import Page

        assert isinstance(page, Page)
        self.page = page
        self.url = url
        page.goto(url)
        # On a phone the chat list is in the closed menu: there, not visible.
        page.locator("#chats button.active").wait_for(state="attached", timeout=WAIT_MS)

    def _newest_bot_id(self) -> int:
        return int(
            self.page.evaluate(
                "Math.max(0, ...[...document.querySelectorAll('#messages .from-bot')]"
                ".map((m) => Number(m.dataset.id)))"
            )
        )

    def _wait_for_bot_after(self, message_id: int) -> None:
        self.page.wait_for_function(
            "(top) => [...document.querySelectorAll('#messages .from-bot')]"
            ".some((m) => Number(m.dataset.id) > top)",
            arg=message_id,
            timeout=WAIT_MS,
        )

    def send(self, text: str) -> str:
        """Type and send; returns the text of the bot's answer."""
        top = self._newest_bot_id()
        self.page.fill("#text", text)
        self.page.press("#text", "Enter")
        self._wait_for_bot_after(top)
        return self.last_message()

    def send_file(self, path: Path) -> str:
        top = self._newest_bot_id()
        self.page.set_input_files("#file", str(path))
        self._wait_for_bot_after(top)
        return self.last_message()

    def press(self, label: str) -> str:
        """Tap the newest button with this label; returns the text shown after the tap
        (the message edited in place, or a new one)."""
        buttons = self.page.locator("#messages .keyboard button")
        exact, marked = (buttons.filter(has_text=pattern) for pattern in _labels(label))
        # A screen sent anew takes the buttons off the old one first: wait for them.
        exact.or_(marked).first.wait_for(timeout=WAIT_MS)
        button = exact.last if exact.count() else marked.last
        pressed_before = self.page.locator("#messages").get_attribute("data-pressed")
        button.click()
        # Done when the bot has answered this tap: it edits or sends before it answers.
        self.page.wait_for_function(
            "(before) => { const m = document.querySelector('#messages');"
            " return m.dataset.pressed && m.dataset.pressed !== before"
            " && m.dataset.answered === m.dataset.pressed; }",
            arg=pressed_before,
            timeout=WAIT_MS,
        )
        return self.last_message()

    def last_message(self) -> str:
        return self.page.locator("#messages .from-bot .bubble").last.inner_text()

    def wait_for_text(self, text: str) -> str:
        """The newest bot message that holds `text`, once there is one (an answer may be
        edited in later, or come in several messages)."""
        bubble = self.page.locator("#messages .from-bot .bubble").filter(has_text=text).last
        bubble.wait_for(timeout=WAIT_MS)
        return bubble.inner_text()

    def wait_for_photo(self) -> None:
        """Until the newest photo in the chat has loaded."""
        photo = self.page.locator("#messages .photo").last
        photo.wait_for(timeout=WAIT_MS)
        self.page.wait_for_function(
            "(img) => img.complete && img.naturalWidth > 0",
            arg=photo.element_handle(),
            timeout=WAIT_MS,
        )

    def buttons(self) -> list[str]:
        """The labels of the newest bot message's buttons."""
        return (
            self.page.locator("#messages .from-bot")
            .last.locator(".keyboard button")
            .all_inner_texts()
        )

    def toast(self) -> str:
        toast = self.page.locator("#toast")
        toast.wait_for(state="visible", timeout=WAIT_MS)
        return toast.inner_text()

    def message_count(self) -> int:
        return self.page.locator("#messages .message").count()

    def switch_user(self, name: str) -> None:
        """Open the chat with this person's name (or the group's title), from the menu
        on a phone."""
        menu = self.page.locator("#menu")
        in_menu = menu.is_visible()
        if in_menu:
            menu.click()
        self.page.locator(f'#chats button[data-name="{name}"]').click()
        self.page.locator(f'#chats button.active[data-name="{name}"]').wait_for(
            state="attached", timeout=WAIT_MS
        )
        if in_menu:
            self.page.locator("#sidebar").wait_for(state="hidden", timeout=WAIT_MS)

    def open_outbox(self) -> OutboxPage:
        return OutboxPage(self.page.context.new_page(), f"{self.url}/outbox")

    def screenshot(self, name: str) -> None:
        if SCREENSHOTS:
            self.page.screenshot(path=str(Path(SCREENSHOTS) / name))


def scrolls_sideways(page: object) -> bool:
    """Whether the page is wider than the window, so that it scrolls sideways."""
    from playwright.sync_api import Page

    assert isinstance(page, Page)
    return bool(page.evaluate("document.documentElement.scrollWidth > window.innerWidth"))


def on_screen(locator: object) -> bool:
    """Whether the element is shown, all of it inside the window."""
    from playwright.sync_api import Locator

    assert isinstance(locator, Locator)
    box = locator.bounding_box()
    size = locator.page.viewport_size
    assert size is not None
    return (
        box is not None
        and locator.is_visible()
        and box["x"] >= 0
        and box["y"] >= 0
        and box["x"] + box["width"] <= size["width"]
        and box["y"] + box["height"] <= size["height"]
    )


class OutboxPage:
    def __init__(self, page: object, url: str) -> None:
        from playwright.sync_api import Page

        assert isinstance(page, Page)
        self.page = page
        page.goto(url)

    def wait_for_items(self, count: int = 1) -> list[str]:
        """The listed items' texts once there are at least `count` (the page refreshes itself)."""
        self.page.wait_for_function(
            "(n) => document.querySelectorAll('#items .item').length >= n",
            arg=count,
            timeout=WAIT_MS,
        )
        return self.page.locator("#items .item").all_inner_texts()

    def emails(self, count: int = 1) -> list[str]:
        self.page.click("#tab-email")
        return self.wait_for_items(count)

    def sms(self, count: int = 1) -> list[str]:
        self.page.click("#tab-sms")
        return self.wait_for_items(count)

    def open_item(self, index: int = 0, *, has_text: str | None = None) -> str:
        """Open the listed item (of those that say `has_text`); returns its headers (an
        SMS: and its text)."""
        self.page.locator("#items .item").filter(has_text=has_text).nth(index).click()
        headers = self.page.locator("#headers")
        headers.wait_for(timeout=WAIT_MS)
        return headers.inner_text()

    def back(self) -> None:
        """The open message's Back button (on a phone); returns once the list shows."""
        self.page.locator("#back").click()
        self.page.locator("#preview").wait_for(state="hidden", timeout=WAIT_MS)

    def email_body(self) -> object:
        return self.page.frame_locator("#email")

    def follow_unsubscribe_link(self) -> object:
        """Click the open email's unsubscribe link; returns the page it opens (a new tab).
        The demo's customers have Russian phones: their footer is in Russian."""
        with self.page.expect_popup() as popup:
            self.page.frame_locator("#email").get_by_role(
                "link", name="Отписаться от рассылки"
            ).click()
        return popup.value

    def screenshot(self, name: str) -> None:
        if SCREENSHOTS:
            self.page.screenshot(path=str(Path(SCREENSHOTS) / name))


class ShopPage:
    """The demo shop's page, where an email's link leads and orders are placed."""

    def __init__(self, page: object, url: str) -> None:
        from playwright.sync_api import Page

        assert isinstance(page, Page)
        self.page = page
        page.goto(url)

    def place_order(self, customer: str, amount: str) -> str:
        """Fill in the form and send it; returns the shop's answer."""
        self.page.fill("#customer", customer)
        self.page.fill("#amount", amount)
        self.page.locator("#order button[type=submit]").tap()
        answer = self.page.locator("#answer.ok, #answer.refused").filter(has_not_text="…")
        answer.wait_for(timeout=WAIT_MS)
        return answer.inner_text()

    def screenshot(self, name: str) -> None:
        if SCREENSHOTS:
            self.page.screenshot(path=str(Path(SCREENSHOTS) / name))
