"""Hot counters for budgets, rate limits and the circuit breaker, reserved atomically.

One call checks every counter a decision touches and increments all of them or none. With
Redis (production, tests) that is one Lua script: Redis runs scripts one at a time, so two web
processes can never both take the last unit of a budget, and it costs one round trip. Without
Redis (the embedded demo, one web process) a process-local lock does the same job.

Each counter: key, amount, limit (None: no limit), enforce (False: count but never refuse),
ttl seconds, and a rule for its amount: ``fixed``; ``distinct`` (1 only if ``member`` is new to
the set ``key:set`` — the scope budget); ``repeat`` (1 only if the first counter, the circuit
breaker's, was already above zero — the retries budget).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import redis
from django.conf import settings


class CounterStoreUnavailable(Exception):
    """The counter store could not be reached; the decision must fail closed."""


@dataclass(frozen=True)
class Counter:
    key: str
    amount: float
    limit: float | None = None
    enforce: bool = True
    ttl: int = 0
    rule: str = "fixed"  # fixed | distinct | repeat
    member: str = ""


@dataclass(frozen=True)
class Reservation:
    granted: bool
    refused: list[int]  # indexes of counters that would exceed their limit
    values: list[float]  # each counter's value after (or, when refused, before) the call


_LUA = """
local n = #KEYS
local amounts, values, refused = {}, {}, {}
local breaker_before = tonumber(redis.call('GET', KEYS[1]) or '0')
for i = 1, n do
  local base = (i - 1) * 6
  local amount = tonumber(ARGV[base + 1])
  local limit = ARGV[base + 2]
  local enforce = ARGV[base + 3] == '1'
  local rule = ARGV[base + 5]
  local member = ARGV[base + 6]
  if rule == 'distinct' then
    if redis.call('SISMEMBER', KEYS[i] .. ':set', member) == 1 then amount = 0 end
  elseif rule == 'repeat' then
    if breaker_before == 0 then amount = 0 end
  end
  amounts[i] = amount
  local current = tonumber(redis.call('GET', KEYS[i]) or '0')
  values[i] = current
  if enforce and limit ~= '' and amount > 0 and current + amount > tonumber(limit) then
    table.insert(refused, i - 1)
  end
end
if #refused > 0 then
  local out = {0, cjson.encode(refused)}
  for i = 1, n do table.insert(out, tostring(values[i])) end
  return out
end
local out = {1, '[]'}
for i = 1, n do
  local base = (i - 1) * 6
  local ttl = tonumber(ARGV[base + 4])
  local value = values[i]
  if amounts[i] > 0 then value = tonumber(redis.call('INCRBYFLOAT', KEYS[i], amounts[i])) end
  if ARGV[base + 5] == 'distinct' then redis.call('SADD', KEYS[i] .. ':set', ARGV[base + 6]) end
  if ttl > 0 then
    redis.call('EXPIRE', KEYS[i], ttl, 'NX')
    if ARGV[base + 5] == 'distinct' then redis.call('EXPIRE', KEYS[i] .. ':set', ttl, 'NX') end
  end
  table.insert(out, tostring(value))
end
return out
"""


class RedisCounterStore:
    def __init__(self, url: str) -> None:
        self._redis = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self._script = self._redis.register_script(_LUA)

    def reserve(self, counters: list[Counter]) -> Reservation:
        args: list[Any] = []
        for c in counters:
            limit = "" if c.limit is None else repr(float(c.limit))
            args += [
                repr(float(c.amount)),
                limit,
                "1" if c.enforce else "0",
                c.ttl,
                c.rule,
                c.member,
            ]
        try:
            out = self._script(keys=[c.key for c in counters], args=args)
        except redis.RedisError as exc:
            raise CounterStoreUnavailable(str(exc)) from exc
        return Reservation(
            granted=int(out[0]) == 1,
            refused=json.loads(out[1]),
            values=[float(v) for v in out[2:]],
        )

    def adjust(self, key: str, amount: float) -> None:
        """Reconcile a reservation with reported usage (may be negative)."""
        try:
            self._redis.incrbyfloat(key, amount)
        except redis.RedisError as exc:
            raise CounterStoreUnavailable(str(exc)) from exc

    def read(self, keys: list[str]) -> list[float]:
        try:
            return [float(v or 0) for v in self._redis.mget(keys)] if keys else []
        except redis.RedisError as exc:
            raise CounterStoreUnavailable(str(exc)) from exc


class LocalCounterStore:
    """One process's counters, for the embedded default only (no Redis)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, float] = {}
        self._sets: dict[str, set[str]] = {}
        self._expiry: dict[str, float] = {}

    def _get(self, key: str) -> float:
        if self._expiry.get(key, float("inf")) < time.monotonic():
            self._values.pop(key, None)
            self._sets.pop(key, None)
            self._expiry.pop(key, None)
        return self._values.get(key, 0.0)

    def reserve(self, counters: list[Counter]) -> Reservation:
        with self._lock:
            breaker_before = self._get(counters[0].key)
            amounts, values, refused = [], [], []
            for i, c in enumerate(counters):
                amount = c.amount
                if (c.rule == "distinct" and c.member in self._sets.get(c.key, set())) or (
                    c.rule == "repeat" and breaker_before == 0
                ):
                    amount = 0
                current = self._get(c.key)
                amounts.append(amount)
                values.append(current)
                if c.enforce and c.limit is not None and amount > 0 and current + amount > c.limit:
                    refused.append(i)
            if refused:
                return Reservation(False, refused, values)
            for i, c in enumerate(counters):
                values[i] += amounts[i]
                self._values[c.key] = values[i]
                if c.rule == "distinct":
                    self._sets.setdefault(c.key, set()).add(c.member)
                if c.ttl and c.key not in self._expiry:
                    self._expiry[c.key] = time.monotonic() + c.ttl
            return Reservation(True, [], values)

    def adjust(self, key: str, amount: float) -> None:
        with self._lock:
            self._values[key] = self._get(key) + amount

    def read(self, keys: list[str]) -> list[float]:
        with self._lock:
            return [self._get(k) for k in keys]


@lru_cache(maxsize=1)
def counter_store() -> RedisCounterStore | LocalCounterStore:
    url = settings.REDIS_URL
    return RedisCounterStore(url) if url else LocalCounterStore()
