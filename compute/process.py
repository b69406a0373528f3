"""This process's memory, as the build reports it per task and the benchmarks measure it."""

from __future__ import annotations

import resource
import sys

__all__ = ["peak_rss"]


def peak_rss() -> int:
    """This process's peak resident memory (bytes). On Linux the high-water mark of its own
    address space (VmHWM): ru_maxrss survives exec, so a spawned worker would report its
    parent's peak."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)
