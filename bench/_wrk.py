"""HTTP load with ``wrk`` for the benches: a C load generator, so the client takes little of the
CPU that a 2-core machine needs for the server under test.

``measure()`` writes a Lua script for one endpoint (method, headers, body; optionally a fresh
``arguments.id`` per request), runs ``wrk --latency`` against it and reads the figures that the
script's ``done`` prints in one parseable line: requests/s, p50/p90/p99/max, socket errors, and
two counts that the script's ``response`` keeps per thread: responses outside 2xx, and 2xx
responses whose body does not match the expected Lua pattern (e.g. a decision that is not an
``allow``). Any of those makes ``measure()`` raise, so a run never reports figures for errors.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

_LUA = r"""
local method, headers, body, prefix, suffix, expect = %(method)s, %(headers)s, %(body)s, %(prefix)s, %(suffix)s, %(expect)s
local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

-- globals, so that done() can read them from each thread with thread:get
tag, counter, bad, unexpected, first_bad = "run", 0, 0, 0, nil

function init(args)
  tag = args[1] or "run"
  wrk.method = method
  for name, value in pairs(headers) do wrk.headers[name] = value end
  if body ~= nil then wrk.body = body end
end

if prefix ~= nil then
  function request()
    counter = counter + 1
    return wrk.format(nil, nil, nil, prefix .. tag .. "-" .. tid .. "-" .. counter .. suffix)
  end
end

-- Paced mode (rate > 0): requests go out on a fixed schedule of rate/s for this thread (the
-- next free slot, whichever connection is ready), like wrk2; latency is measured from sending.
local rate = %(rate)s
if rate > 0 then
  local ffi = require("ffi")
  ffi.cdef[[
    typedef struct { long tv_sec; long tv_nsec; } tether_timespec;
    int clock_gettime(int clock, tether_timespec *ts);
  ]]
  local ts = ffi.new("tether_timespec")
  local function now_ms()
    ffi.C.clock_gettime(1, ts)  -- CLOCK_MONOTONIC
    return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
  end
  local next_slot = nil
  function delay()
    local now = now_ms()
    if next_slot == nil or next_slot < now - 1000 then next_slot = now end
    local wait = next_slot - now
    next_slot = next_slot + 1000 / rate
    return wait > 0 and math.floor(wait) or 0
  end
end

function response(status, response_headers, response_body)
  if status < 200 or status > 299 then
    bad = bad + 1
    if first_bad == nil then first_bad = status .. " " .. string.sub(response_body, 1, 200) end
  elseif expect ~= nil and not string.find(response_body, expect) then
    unexpected = unexpected + 1
    if first_bad == nil then first_bad = status .. " " .. string.sub(response_body, 1, 200) end
  end
end

function done(summary, latency, requests)
  local total_bad, total_unexpected, sample = 0, 0, ""
  for _, thread in ipairs(threads) do
    total_bad = total_bad + (thread:get("bad") or 0)
    total_unexpected = total_unexpected + (thread:get("unexpected") or 0)
    local s = thread:get("first_bad")
    if s ~= nil and sample == "" then sample = s end
  end
  local e = summary.errors
  io.write(string.format(
    "WRK_RESULT %%d %%d %%d %%d %%d %%d %%d %%d %%d %%.1f %%.1f %%.1f %%.1f\n",
    summary.duration, summary.requests, e.connect, e.read, e.write, e.timeout, e.status,
    total_bad, total_unexpected,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
  io.write("WRK_SAMPLE " .. string.gsub(sample, "\n", " ") .. "\n")
end
"""


@dataclass
class Result:
    requests: int
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


class LoadError(RuntimeError):
    pass


def _lua(value: object) -> str:
    """A Lua literal for a string, a dict of strings, or None."""
    if value is None:
        return "nil"
    if isinstance(value, dict):
        return "{" + ", ".join(f"[{_lua(k)}] = {_lua(v)}" for k, v in value.items()) + "}"
    return json.dumps(str(value))  # a JSON string literal is a valid Lua string literal


def ensure_wrk() -> str:
    """The path of ``wrk``, installing Debian's package when it is missing (as root or sudo)."""
    found = shutil.which("wrk")
    if found:
        return found
    prefix: list[str] = [] if os.geteuid() == 0 else ["sudo"]
    if prefix and not shutil.which("sudo"):
        raise LoadError("wrk is missing; install Debian's package: apt-get install wrk")
    print("installing wrk (Debian package) ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run([*prefix, "apt-get", "update", "-q"], check=True, env=env, capture_output=True)
    subprocess.run(
        [*prefix, "apt-get", "install", "-y", "-q", "wrk"], check=True, env=env, capture_output=True
    )
    found = shutil.which("wrk")
    if not found:
        raise LoadError("apt-get install wrk did not put wrk on PATH")
    return found


def measure(
    url: str,
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: dict | None = None,
    vary_id: bool = False,
    expect: str | None = None,
    seconds: float = 10,
    connections: int = 16,
    threads: int = 1,
    tag: str = "run",
    rate: float = 0,
) -> Result:
    """Load ``url`` with wrk for ``seconds``. With ``vary_id``, ``body["arguments"]["id"]`` is
    replaced per request by ``{tag}-{thread}-{n}``. ``expect`` is a Lua pattern every 2xx body
    must contain. ``rate`` > 0 paces the requests at that many a second in all (an offered load,
    measuring latency at that rate rather than at saturation). Raises LoadError on any socket
    error, non-2xx or unexpected body."""
    prefix = suffix = text = None
    if body is not None:
        if vary_id:
            marker = "\x00ID\x00"
            encoded = json.dumps({**body, "arguments": {**body.get("arguments", {}), "id": marker}})
            prefix, suffix = encoded.split(json.dumps(marker))
            prefix, suffix = prefix + '"', '"' + suffix
        else:
            text = json.dumps(body)
    all_headers = {**(headers or {})}
    if body is not None:
        all_headers.setdefault("Content-Type", "application/json")
    script = _LUA % {
        "method": _lua(method),
        "headers": _lua(all_headers),
        "body": _lua(text),
        "prefix": _lua(prefix),
        "suffix": _lua(suffix),
        "expect": _lua(expect),
        "rate": repr(float(rate) / threads),
    }
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as tmp:
        path = Path(tmp) / "load.lua"
        path.write_text(script)
        command = [
            ensure_wrk(),
            "--threads",
            str(threads),
            "--connections",
            str(connections),
            "--duration",
            f"{max(1, round(seconds))}s",
            "--timeout",
            "10s",
            "--latency",
            "--script",
            str(path),
            url,
            "--",
            tag,
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    lines = done.stdout.splitlines()
    result = next((line.split()[1:] for line in lines if line.startswith("WRK_RESULT ")), None)
    if done.returncode != 0 or result is None:
        raise LoadError(f"wrk failed ({done.returncode}): {done.stderr.strip() or done.stdout}")
    sample = next((line[11:] for line in lines if line.startswith("WRK_SAMPLE ")), "")
    duration_us, requests, connect, read, write, timeout, status, bad, unexpected = map(
        int, result[:9]
    )
    p50, p90, p99, worst = (float(v) / 1000 for v in result[9:13])
    problems = {
        "connect errors": connect,
        "read errors": read,
        "write errors": write,
        "timeouts": timeout,
        "responses >= 400 (wrk)": status,
        "non-2xx responses": bad,
        "2xx responses not matching " + repr(expect): unexpected,
    }
    failed = {name: count for name, count in problems.items() if count}
    if failed or requests == 0:
        detail = ", ".join(f"{count} {name}" for name, count in failed.items()) or "no requests"
        raise LoadError(f"{url}: {detail} out of {requests}; first: {sample!r}")
    return Result(requests, duration_us / 1e6, p50, p90, p99, worst)
