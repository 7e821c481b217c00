"""Which process is working on a run.

A run being worked on has status 'running' and records the process's id and host in
``runs.claimed_by`` (schema version 4; before, in ``runs.stats``). A 'running' run whose
process is gone was interrupted (killed, crashed machine): re-running the same command
resumes it, and `textclust doctor` reports it as stuck.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime, timezone


def this_process() -> dict:
    """The claim of the current process: ``{"pid", "host"}``."""
    return {"pid": os.getpid(), "host": socket.gethostname()}


def claim(run) -> None:
    """Mark ``run`` (a ``runs`` row) as being worked on by this process. Its stats of an
    earlier attempt are cleared: the new attempt writes its own. A claimed run is the user's
    last run (``last_used_at``, what ``latest`` names)."""
    run.status, run.error, run.finished_at = "running", None, None
    run.stats = {}
    run.claimed_by = this_process()
    run.last_used_at = datetime.now(timezone.utc)


def process_alive(claimed_by: dict | None) -> bool:
    """Is the process recorded in a run's claim (``{"pid", "host"}``) still working on it?"""
    claimed_by = claimed_by if isinstance(claimed_by, dict) else {}
    pid = claimed_by.get("pid")
    if not pid:
        return False  # never claimed by a process: an interrupted run
    if claimed_by.get("host") != socket.gethostname():
        return True  # another machine's process: cannot check, so leave its run alone
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True
