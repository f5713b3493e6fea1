"""Real Chromium through Playwright against pytest-django's live server.

Playwright's sync API runs an event loop in this thread, which makes Django's async-safety
check refuse ORM calls from fixtures and tests; the loop never runs our code concurrently, so
the check is switched off for these tests only.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .helpers import CHROMIUM, CHROMIUM_ARGS, LAPTOP, SCREENSHOTS, ASGIServer

os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    """One Chromium for the browser tests; stopped after them, because Playwright's sync API
    keeps an event loop running in this thread until it stops (asyncio.run would refuse)."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}; install Debian's chromium package.")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        yield chromium
        chromium.close()


@pytest.fixture
def site_url(live_server: Any) -> str:
    """Where the pages are served: pytest-django's live server (WSGI, no websockets). A module
    whose pages go live overrides it with ``asgi_server.url``."""
    return str(live_server.url)


@pytest.fixture
def asgi_server(transactional_db: None) -> Iterator[ASGIServer]:
    """The whole ASGI application (HTTP and websockets, controlplane.asgi) served by uvicorn
    in a thread of this process, so it uses the test database and the tests' settings."""
    from apps.common import hotpath
    from apps.traces import receiver

    server = ASGIServer()
    server.start()
    yield server
    server.stop()
    # The decision endpoint's and the OTLP receiver's threads hold connections to the test
    # database; they must let go before it is flushed and, at the end, dropped.
    hotpath.shut_down()
    receiver.shut_down()


@pytest.fixture
def new_page(browser: Any, site_url: str) -> Iterator[Callable[..., Any]]:
    """``new_page(viewport=LAPTOP)``: a page in a fresh context (its own cookies)."""
    contexts: list[Any] = []

    def make(viewport: dict[str, int] = LAPTOP) -> Any:
        context = browser.new_context(base_url=site_url, viewport=viewport)
        context.set_default_timeout(15_000)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


@pytest.fixture(scope="session")
def screenshot_dir() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


@pytest.fixture
def shoot(screenshot_dir: Path) -> Callable[..., None]:
    def take(page: Any, name: str, *, full_page: bool = True) -> None:
        page.screenshot(path=str(screenshot_dir / f"{name}.png"), full_page=full_page)

    return take
