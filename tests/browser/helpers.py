"""Constants and small steps shared by the browser tests."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

CHROMIUM = os.environ.get("TETHER_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
LAPTOP = {"width": 1366, "height": 900}
TABLET = {"width": 820, "height": 1180}


def log_in(page: Any, username: str, password: str) -> None:
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/")


class ASGIServer:
    """uvicorn serving ``controlplane.asgi.application`` on a free port, in a thread.

    Static files are answered by Django's ASGIStaticFilesHandler (the finders, as for the
    live server), everything else -- pages, the APIs, the decision endpoint, websockets -- by
    the real application. uvicorn installs no signal handlers outside the main thread.
    """

    def __init__(self) -> None:
        import uvicorn
        from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

        from controlplane.asgi import application

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        config = uvicorn.Config(
            ASGIStaticFilesHandler(application),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="off",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="asgi-server", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:  # setting up, not asserting: wait for the socket
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        from channels.layers import channel_layers

        # Tests leave no connection worth a graceful close (a long-poll may still be waiting).
        self.server.should_exit = self.server.force_exit = True
        self.thread.join(timeout=15)
        # The channel layer's receive state belongs to the server's event loop, which is gone
        # (a consumer's receive still pending at shutdown never finishes): later tests, on
        # their own loops, must get fresh layers.
        channel_layers.backends = {}
