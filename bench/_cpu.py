"""How busy the machine is with work other than the bench's own processes (Linux /proc).

A load test on a 2-core machine measures the CPU that is left over: a test suite or another
bench running at the same time lowers every figure. ``settle()`` waits until a just-started
server's processes have finished booting (all of its workers, not only the one that answered
first), then tells what share of the machine's CPU other work used meanwhile;
``snapshot()`` and ``others_between()`` tell the same over a measured window, counting the
database and cache processes that serve the server under test as its own.
"""

from __future__ import annotations

import os
import time


def _stat(pid: str) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            text = handle.read()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()  # fields after the command name: state, ppid, ...


def tree(root: int) -> set[int]:
    """``root`` and all of its descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat(entry)) is not None:
            children.setdefault(int(fields[1]), []).append(int(entry))
    found: set[int] = set()
    todo = [root]
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(children.get(pid, []))
    return found


def _ticks(pid: int) -> int | None:
    fields = _stat(str(pid))
    if fields is None:
        return None
    if pid == os.getpid():  # with its waited-for children, so a finished wrk counts as ours
        return sum(int(v) for v in fields[11:15])  # utime, stime, cutime, cstime
    return int(fields[11]) + int(fields[12])  # utime, stime


def by_name(*names: str) -> set[int]:
    """Processes whose command name is one of ``names`` (e.g. ``redis-server``)."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as handle:
                    if handle.read().strip() in names:
                        found.add(int(entry))
            except OSError:
                continue
    return found


def _machine() -> tuple[int, int]:
    with open("/proc/stat") as handle:
        fields = [int(v) for v in handle.readline().split()[1:]]
    return sum(fields), sum(fields) - fields[3] - fields[4]  # total, busy (not idle/iowait)


Snapshot = tuple[int, int, dict[int, int]]


def snapshot(root: int, helpers: set[int] = frozenset()) -> Snapshot:
    """(machine total, machine busy, {pid: ticks}) in clock ticks, for our processes: the tree
    under ``root``, ``helpers`` (e.g. the database backends serving it) and this process."""
    total, busy = _machine()
    ours = {}
    for pid in tree(root) | set(helpers) | {os.getpid()}:
        if (ticks := _ticks(pid)) is not None:
            ours[pid] = ticks
    return total, busy, ours


def others_between(before: Snapshot, after: Snapshot) -> tuple[float, float]:
    """(others, ours): the shares of the machine's CPU used between two snapshots."""
    span = max(1, after[0] - before[0])
    ours = sum(max(0, ticks - before[2].get(pid, 0)) for pid, ticks in after[2].items())
    return max(0.0, (after[1] - before[1] - ours) / span), ours / span


def sample(root: int, seconds: float = 0.5) -> tuple[float, float]:
    """(others, ours) over ``seconds``."""
    before = snapshot(root)
    time.sleep(seconds)
    return others_between(before, snapshot(root))


def settle(root: int, limit: float = 20, quiet: float = 0.05) -> float:
    """Wait (at most ``limit`` s) until the processes under ``root`` are idle; returns the
    share of the CPU that other work used in the last sample."""
    deadline = time.monotonic() + limit
    others, ours = sample(root)
    while ours > quiet and time.monotonic() < deadline:
        others, ours = sample(root)
    return others
