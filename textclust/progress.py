"""Feedback on a long step: a line saying what it does, and on a terminal a ticking elapsed time.

The stages (clustering, explaining, building a report) have no progress hooks of their own;
a step that runs for minutes must still never look like a hang. Log lines that arrive during a
step (a round's result, a retried model call) clear the ticker for their line and redraw it.
"""

from __future__ import annotations

import sys
import threading
from contextlib import contextmanager
from typing import Callable

TICK_SECONDS = 1.0  # how often a step's elapsed time is redrawn on a terminal


@contextmanager
def working(name: str, message: str, log: Callable[[str], None], progress: bool | None = None,
            status: Callable[[], str] | None = None):
    """A step that may take a while. Says what it does first (``message``, a plain line through
    ``log``: all a log file or pipe gets); on a terminal (``progress`` None) or with ``progress``
    True, also ticks its elapsed time (and ``status()``) on stderr until it ends, so that minutes
    of clustering never look like a hang (the stages have no progress hooks of their own)."""
    from tqdm import tqdm  # the plain bar: external_write_mode below clears it

    log(message)
    bar = tqdm(desc=name, bar_format="{desc}: {elapsed}{postfix}", file=sys.stderr, leave=False,
               disable=None if progress is None else not progress)
    if bar.disable:
        yield
        return
    done = threading.Event()

    def tick():
        while not done.wait(TICK_SECONDS):
            try:
                if status is not None:
                    bar.set_postfix_str(status(), refresh=False)
                bar.refresh()
            except Exception:  # a display problem must never break the step
                return

    thread = threading.Thread(target=tick, name="textclust-ticker", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
        bar.close()


def bar_safe(log: Callable[[str], None]) -> Callable[[str], None]:
    """``log`` that clears any progress bar on the terminal for its line and redraws it after
    (log lines arrive during a step: a round's result, a retried model call)."""
    from tqdm import tqdm

    def write(message: str) -> None:
        with tqdm.external_write_mode(file=sys.stderr):
            log(message)

    return write
