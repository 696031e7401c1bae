"""The CPU time a server's own processes spend, read from /proc/<pid>/stat (Linux).

Requests per second on a shared machine swing with whatever else runs on the servers' core; the
CPU time a proxy spends per request does not count the time it waits for that core, so it
compares proxies far more steadily (issue 14: 0.81x to 1.07x HAProxy by rate for one
configuration, 17.6 against 18.5 to 21 us of CPU per request in interleaved runs).

A server is its process and every process descended from it as they run when a measurement
starts: nginx's master with its workers, cache manager and loader; HAProxy is one process, whose
stat line sums all its threads (proc(5): utime and stime of the whole thread group).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")  # the unit of utime and stime (proc(5))
PROC = Path("/proc")


def _fields(pid: int) -> list[str]:
    """The stat fields after the command name, which may itself hold spaces and parentheses:
    [0] is field 3 of proc(5) (state), [1] the parent's pid, [11] utime, [12] stime."""
    return (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()


def tree(root: int) -> list[int]:
    """``root`` and every process descended from it, as they run now."""
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            try:
                children.setdefault(int(_fields(int(entry.name))[1]), []).append(int(entry.name))
            except (FileNotFoundError, ProcessLookupError):  # it exited while we looked
                continue
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return sorted(found)


def cpu_seconds(pids: Iterable[int]) -> dict[int, float]:
    """User + system CPU seconds each of ``pids`` still running has spent so far (all its threads;
    not its reaped children's, which are counted while they run)."""
    found = {}
    for pid in pids:
        try:
            fields = _fields(pid)
        except (FileNotFoundError, ProcessLookupError):
            continue
        found[pid] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return found


@dataclass(frozen=True)
class Spent:
    cpu_seconds: float  # user + system, of every process measured
    wall_seconds: float  # how long the measurement lasted: pinned to one core, no more CPU than this


def spent(roots: Iterable[int], run: Callable[[], T]) -> tuple[T, Spent]:
    """What ``run()`` returns, and the CPU seconds the processes of ``roots``' trees spent while it
    ran. A process that exits meanwhile (nginx's cache loader, a minute after the start) is left
    out of the sum; one started meanwhile is not seen: the servers measured start none."""
    pids = [pid for root in roots for pid in tree(root)]
    before, start = cpu_seconds(pids), time.monotonic()
    result = run()
    after, end = cpu_seconds(pids), time.monotonic()
    return result, Spent(sum(after[pid] - before[pid] for pid in after if pid in before), end - start)
