"""``python -m controlplane.serve``: each worker listens on its own SO_REUSEPORT socket."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_two_workers_each_listen_on_the_port_and_it_answers() -> None:
    port = free_port()
    env = {**os.environ, "DEBUG": "true", "DB_POOL": "false"}
    server = subprocess.Popen(
        [sys.executable, "-m", "controlplane.serve", "--port", str(port), "--workers", "2"],
        cwd=ROOT,
        env=env,
    )
    try:
        deadline = time.monotonic() + 30
        listening: set[str] = set()
        while time.monotonic() < deadline and len(listening) < 2:
            time.sleep(0.2)
            listening = _listening_pids(port)
        # Two sockets, one per worker (not one socket shared): the kernel spreads connections.
        assert len(listening) == 2 and str(server.pid) not in listening, listening
        for _ in range(10):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as answer:
                assert answer.status == 200
    finally:
        server.terminate()
        assert server.wait(timeout=15) == 0  # a clean stop of both workers


def _listening_pids(port: int) -> set[str]:
    """The processes holding a listening socket on ``port`` (from ``ss``)."""
    out = subprocess.run(
        ["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout
    return {part.split("=")[1] for part in out.replace(",", " ").split() if part.startswith("pid=")}
