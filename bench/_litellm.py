"""The reference gateway for bench/decisions.py: LiteLLM's proxy, in a virtualenv of its own.

``ensure_installed()`` makes ``.bench/litellm-venv`` (ignored by git) and runs
``pip install 'litellm[proxy]'`` into it, only when ``litellm`` is not there yet. ``proxy()``
writes a config with one model answered by ``mock_response`` (no provider is called), a master
key and a global ``max_budget``, starts ``litellm --config ... --num_workers 2`` on 127.0.0.1,
waits until ``/health/readiness`` answers and one ``/chat/completions`` succeeds, and yields a
``Target`` (URL, headers, body) for the load generator. The proxy is stopped on exit.

What this reference does and does not include, on this machine:
- LiteLLM enforces its budgets (keys, teams, the proxy-wide ``max_budget``) against spend in a
  PostgreSQL database that it reaches through Prisma. Prisma needs its engine binaries, which
  ``prisma`` downloads from its own host at ``prisma generate`` time; that host is not
  reachable here (only the package registries are), so the proxy runs without a database.
  It then logs that the proxy-wide budget is NOT enforced. What is left of the budget on the
  request path is LiteLLM's in-process ``litellm.max_budget`` check and cost accounting per
  call, plus master-key auth, routing, the mock completion and the spend logging callbacks.
  A database-backed LiteLLM does more work per request, so this reference is if anything
  faster than the deployed one, and "3x LiteLLM" is a harder bar here than in production.
- ``LITELLM_LOCAL_MODEL_COST_MAP=True`` keeps LiteLLM on the cost map it ships instead of
  fetching one at start-up, so nothing is downloaded at run time.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOME = ROOT / ".bench"
VENV = HOME / "litellm-venv"
RUN = HOME / "litellm"
LITELLM = VENV / "bin" / "litellm"
MODEL = "bench-model"

CONFIG = """\
model_list:
  - model_name: {model}
    litellm_params:
      model: openai/gpt-4o-mini
      api_key: bench-unused
      mock_response: "ok"
litellm_settings:
  max_budget: 1000000
  budget_duration: 30d
general_settings:
  master_key: {master_key}
"""


@dataclass
class Target:
    url: str
    headers: dict[str, str]
    body: dict
    expect: str  # a Lua pattern every successful response body contains
    pid: int  # the proxy's main process


class Unavailable(RuntimeError):
    pass


def ensure_installed() -> None:
    if LITELLM.exists():
        return
    print(f"installing litellm[proxy] into {VENV.relative_to(ROOT)} (first run only) ...")
    HOME.mkdir(exist_ok=True)
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(VENV)], check=True)
    pip = [str(VENV / "bin" / "python"), "-m", "pip", "--quiet", "--disable-pip-version-check"]
    done = subprocess.run([*pip, "install", "litellm[proxy]"], capture_output=True, text=True)
    if done.returncode != 0 or not LITELLM.exists():
        errors = [line for line in done.stderr.splitlines() if not line.startswith("WARNING:")]
        raise Unavailable("pip install 'litellm[proxy]' failed: " + "\n".join(errors[-10:]))


def _post(url: str, headers: dict[str, str], body: dict) -> tuple[int, str]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={**headers, "Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def _ready(base: str, process: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise Unavailable(f"litellm exited with {process.returncode}:\n{tail}")
        try:
            with urllib.request.urlopen(base + "/health/readiness", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise Unavailable(f"litellm not ready after {timeout:.0f} s; see {log}")


@contextlib.contextmanager
def proxy(port: int, workers: int = 2) -> Iterator[Target]:
    ensure_installed()
    RUN.mkdir(parents=True, exist_ok=True)
    master_key = "sk-bench-" + secrets.token_hex(16)
    config = RUN / "config.yaml"
    config.write_text(CONFIG.format(model=MODEL, master_key=master_key))
    log = RUN / "proxy.log"
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE")
    }
    env.update({"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR"})
    with log.open("w") as out:
        process = subprocess.Popen(
            [
                str(LITELLM),
                "--config",
                str(config),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--num_workers",
                str(workers),
            ],
            cwd=RUN,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: workers are stopped with it
        )
    try:
        base = f"http://127.0.0.1:{port}"
        _ready(base, process, log)
        target = Target(
            url=base + "/chat/completions",
            headers={"Authorization": f"Bearer {master_key}"},
            body={"model": MODEL, "messages": [{"role": "user", "content": "hi"}]},
            expect='"choices"',
            pid=process.pid,
        )
        status, text = _post(target.url, target.headers, target.body)
        if status != 200 or '"choices"' not in text:
            raise Unavailable(f"litellm sample /chat/completions: {status} {text[:300]}")
        yield target
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)
