"""The terminal summary of `run` / `show`: tables and colour on a terminal, plain text when piped.

The terminal case runs `textclust show` as a real process on a pseudo-terminal, so
rich's own terminal detection is what is tested.
"""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys

ANSI = "\x1b["


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE",
                                                             "TTY_INTERACTIVE", "COLUMNS", "TEXTCLUST_DB")}
    env["TERM"] = "xterm-256color"
    env["COLUMNS"] = "160"
    return env


def _show_command(db, run_id) -> list[str]:
    return [sys.executable, "-c", "from textclust.cli import main; main()", "show", str(run_id), "--db", str(db)]


def test_show_on_a_terminal_has_colour_and_tables(fake_run_db):
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(_show_command(fake_run_db.db, fake_run_db.run_id), stdin=slave, stdout=slave,
                                stderr=slave, env=_env(), close_fds=True)
        os.close(slave)
        chunks = []
        while True:
            ready, _, _ = select.select([master], [], [], 60)
            if not ready:
                break
            try:
                data = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        assert proc.wait(timeout=60) == 0
    finally:
        os.close(master)
    out = b"".join(chunks).decode("utf-8", "replace")
    assert ANSI in out, out  # colour / bold
    assert "┃" in out or "│" in out  # a drawn table
    assert "Explanations" in out


def test_show_piped_is_plain_text(fake_run_db):
    result = subprocess.run(_show_command(fake_run_db.db, fake_run_db.run_id), capture_output=True, text=True,
                            env=_env(), timeout=60)
    assert result.returncode == 0, result.stderr
    assert ANSI not in result.stdout
    assert "Explanations" in result.stdout and "│" in result.stdout  # still a table, just without escape codes
    assert f"Run {fake_run_db.run_id} · blobs · status complete" in result.stdout
