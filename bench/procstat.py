"""Per-process CPU time and memory read from /proc (no psutil dependency)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_PROC = Path("/proc")
_STAT_UTIME_FIELD = 13  # 0-based index after splitting past the "(comm)" field
_STAT_STIME_FIELD = 14
_COMM_END = ")"
_RSS_KEY = "VmRSS:"
_KIB = 1024


@dataclass(frozen=True)
class ProcSample:
    """CPU seconds (user + system) and resident memory of one process."""

    cpu_s: float
    rss_bytes: int


def parse_stat_cpu_seconds(stat_line: str, ticks_per_s: int) -> float:
    """Return utime+stime in seconds from the text of /proc/<pid>/stat."""
    # The command name may contain spaces; fields restart after the last ')'.
    rest = stat_line[stat_line.rindex(_COMM_END) + 2 :].split()
    # rest[0] is field 3 (state); utime is field 14, stime field 15 (1-based).
    utime = int(rest[_STAT_UTIME_FIELD - 2])
    stime = int(rest[_STAT_STIME_FIELD - 2])
    return (utime + stime) / ticks_per_s


def parse_status_rss_bytes(status_text: str) -> int:
    """Return VmRSS in bytes from the text of /proc/<pid>/status (0 if absent)."""
    for line in status_text.splitlines():
        if line.startswith(_RSS_KEY):
            return int(line.split()[1]) * _KIB
    return 0


def sample(pid: int) -> ProcSample:
    """Read CPU seconds and RSS of ``pid`` now."""
    ticks = os.sysconf("SC_CLK_TCK")
    stat = (_PROC / str(pid) / "stat").read_text()
    status = (_PROC / str(pid) / "status").read_text()
    return ProcSample(parse_stat_cpu_seconds(stat, ticks), parse_status_rss_bytes(status))


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (an edge's worker processes), from /proc."""
    kids: dict[int, list[int]] = {}
    for entry in _PROC.iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat[stat.rindex(_COMM_END) + 2:].split()[1])
            kids.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out
