"""Which process is working on a run.

A run being worked on has status 'running' and records the process's id and host in its
stats. A 'running' run whose process is gone was interrupted (killed, crashed machine):
re-running the same command resumes it, and `textclust doctor` reports it as stuck.
"""

from __future__ import annotations

import os
import socket


def claim(run) -> None:
    """Mark ``run`` (a ``runs`` row) as being worked on by this process."""
    run.status, run.error, run.finished_at = "running", None, None
    run.stats = {"pid": os.getpid(), "host": socket.gethostname()}


def process_alive(stats: dict | None) -> bool:
    """Is the process recorded in a run's stats still working on it?"""
    stats = stats or {}
    pid = stats.get("pid")
    if not pid:
        return False  # never claimed by a process: an interrupted run
    if stats.get("host") != socket.gethostname():
        return True  # another machine's process: cannot check, so leave its run alone
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True
