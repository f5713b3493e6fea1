"""Hot counters for budgets, rate limits and the circuit breaker, reserved atomically.

One call checks every counter a decision touches and increments all of them or none. With
Redis (production, tests) that is one Lua script: Redis runs scripts one at a time, so two web
processes can never both take the last unit of a budget, and it costs one round trip. Without
Redis (the embedded demo, one web process) a process-local lock does the same job.

Each counter: key, amount, limit (None: no limit), enforce (False: count but never refuse),
ttl seconds, and a rule for its amount: ``fixed``; ``distinct`` (1 only if ``member`` is new to
the set ``key:set`` — the scope budget); ``repeat`` (1 only if the first counter, the circuit
breaker's, was already above zero — the retries budget).

**Rebuilt from the ledger.** A budget counter names its ledger period (``ledger`` = budget id,
period key). Redis keeps nothing on disk, so after a restart every key is gone; a budget that
silently restarted at zero would let an agent overspend. So a budget counter is never charged
while it is missing: the script reads each key anyway (``GET``), and if a ledger-backed key is
absent it changes nothing and answers which ones. The store then sums the ledger for all of
them in one query (apps/runtime/ledger.py) and calls the script again with those sums; the
script seeds each missing key with ``SET NX`` (a concurrent seeder's value wins, both came from
the same ledger), rebuilds a scope budget's member set with it, and reserves. When every key is
there — the normal path — nothing is added: still one script call, no query.

The circuit breaker and rate limit counters are windowed (60 s, one minute) and have no ledger:
they restart empty after a Redis loss, which can let one window's worth of calls through.
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
from django.db import DatabaseError

from .ledger import LedgerState, ledger_state

REBUILD_ATTEMPTS = 3  # a key can only go missing again between two calls if it expired


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
    ledger: tuple[int, str] | None = None  # (budget id, period key): rebuilt from the ledger


@dataclass(frozen=True)
class Reservation:
    granted: bool
    refused: list[int]  # indexes of counters that would exceed their limit
    values: list[float]  # each counter's value after (or, when refused, before) the call


def _ledger_seeds(counters: list[Counter], missing: list[int]) -> dict[int, LedgerState]:
    """The ledger's state for each missing counter (by index), read in one query."""
    wanted = {i: counters[i].ledger for i in missing}
    periods = [p for p in wanted.values() if p is not None]
    distinct = [p for i, p in wanted.items() if p is not None and counters[i].rule == "distinct"]
    try:
        states = ledger_state(periods, distinct=distinct)
    except DatabaseError as exc:
        raise CounterStoreUnavailable(f"the budget ledger is unreachable ({exc})") from exc
    return {i: states[p] for i, p in wanted.items() if p is not None}


# ARGV: 7 values per counter (amount, limit, enforce, ttl, rule, member, from-ledger), then one
# JSON list of seeds [[index (1-based), value, [members]], ...] or ''.
# Answers {1, '[]', values...} granted, {0, refused, values...} refused, {2, missing} when a
# ledger-backed key is absent and no seed was given for it (nothing was changed).
_LUA = """
local n = #KEYS
local seeds = ARGV[n * 7 + 1]
if seeds ~= '' then
  for _, seed in ipairs(cjson.decode(seeds)) do
    local key, ttl = KEYS[seed[1]], tonumber(ARGV[(seed[1] - 1) * 7 + 4])
    local created
    if ttl > 0 then
      created = redis.call('SET', key, seed[2], 'NX', 'EX', ttl)
    else
      created = redis.call('SET', key, seed[2], 'NX')
    end
    if created and ARGV[(seed[1] - 1) * 7 + 5] == 'distinct' then
      redis.call('DEL', key .. ':set')
      for _, member in ipairs(seed[3]) do redis.call('SADD', key .. ':set', member) end
      if ttl > 0 and #seed[3] > 0 then redis.call('EXPIRE', key .. ':set', ttl) end
    end
  end
end
local amounts, values, refused, missing = {}, {}, {}, {}
for i = 1, n do
  local raw = redis.call('GET', KEYS[i])
  if not raw and ARGV[(i - 1) * 7 + 7] == '1' then table.insert(missing, i - 1) end
  values[i] = tonumber(raw or '0')
end
if #missing > 0 then return {2, cjson.encode(missing)} end
local breaker_before = values[1]
for i = 1, n do
  local base = (i - 1) * 7
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
  if enforce and limit ~= '' and amount > 0 and values[i] + amount > tonumber(limit) then
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
  local base = (i - 1) * 7
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

# A correction to a counter that is missing is dropped: the next reservation rebuilds the
# counter from the ledger, which holds the correcting entry. Adding it to an absent key would
# create the key at the delta alone, and a present key is never rebuilt.
_ADJUST_LUA = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return tostring(redis.call('INCRBYFLOAT', KEYS[1], ARGV[1]))
end
return false
"""


class RedisCounterStore:
    def __init__(self, url: str) -> None:
        self._redis = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self._script = self._redis.register_script(_LUA)
        self._adjust = self._redis.register_script(_ADJUST_LUA)

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
                "1" if c.ledger else "0",
            ]
        keys = [c.key for c in counters]
        seeds: dict[int, LedgerState] = {}
        for _ in range(REBUILD_ATTEMPTS):
            encoded = (
                json.dumps(
                    [[i + 1, repr(float(s.total)), list(s.members)] for i, s in seeds.items()]
                )
                if seeds
                else ""
            )
            try:
                out = self._script(keys=keys, args=[*args, encoded])
            except redis.RedisError as exc:
                raise CounterStoreUnavailable(str(exc)) from exc
            if int(out[0]) != 2:
                return Reservation(
                    granted=int(out[0]) == 1,
                    refused=json.loads(out[1]),
                    values=[float(v) for v in out[2:]],
                )
            seeds.update(_ledger_seeds(counters, json.loads(out[1])))
        raise CounterStoreUnavailable("budget counters kept disappearing while being rebuilt")

    def adjust(self, key: str, amount: float) -> None:
        """Reconcile a reservation with reported usage (may be negative)."""
        try:
            self._adjust(keys=[key], args=[repr(float(amount))])
        except redis.RedisError as exc:
            raise CounterStoreUnavailable(str(exc)) from exc

    def read(self, keys: list[str]) -> list[float | None]:
        """Current values; None for a missing key (it is rebuilt when it is next charged)."""
        try:
            values = self._redis.mget(keys) if keys else []
        except redis.RedisError as exc:
            raise CounterStoreUnavailable(str(exc)) from exc
        return [None if v is None else float(v) for v in values]


class LocalCounterStore:
    """One process's counters, for the embedded default only (no Redis).

    A new process starts empty, so its budget counters are rebuilt from the ledger on first
    use, like Redis's after a restart.
    """

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

    def _missing(self, key: str) -> bool:
        self._get(key)
        return key not in self._values

    def reserve(self, counters: list[Counter]) -> Reservation:
        seeds: dict[int, LedgerState] = {}
        for _ in range(REBUILD_ATTEMPTS):
            with self._lock:
                for i, seed in seeds.items():
                    c = counters[i]
                    if self._missing(c.key):
                        self._values[c.key] = float(seed.total)
                        if c.rule == "distinct":
                            self._sets[c.key] = set(seed.members)
                        if c.ttl:
                            self._expiry[c.key] = time.monotonic() + c.ttl
                missing = [i for i, c in enumerate(counters) if c.ledger and self._missing(c.key)]
                if not missing:
                    return self._reserve(counters)
            # The ledger is read outside the lock: it is a database query.
            seeds.update(_ledger_seeds(counters, missing))
        raise CounterStoreUnavailable("budget counters kept disappearing while being rebuilt")

    def _reserve(self, counters: list[Counter]) -> Reservation:
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
            if not self._missing(key):  # as in Redis: a missing counter is rebuilt instead
                self._values[key] += amount

    def read(self, keys: list[str]) -> list[float | None]:
        with self._lock:
            return [None if self._missing(k) else self._get(k) for k in keys]


@lru_cache(maxsize=1)
def counter_store() -> RedisCounterStore | LocalCounterStore:
    url = settings.REDIS_URL
    return RedisCounterStore(url) if url else LocalCounterStore()
