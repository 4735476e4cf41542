"""Processes the tests start.

The environment that finds this checkout's xscan (and this package), fresh interpreters, process trees.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from support.data import REPO

# A child finds this worktree's xscan, not an installed one, and `support` for the stand-in scorer.
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])}

# Runs the CLI in-process through Typer's runner with the script's arguments; fails unless it exits 0.
RUN_CLI = """
from typer.testing import CliRunner
from xscan.cli import app
result = CliRunner().invoke(app, sys.argv[1:])
assert result.exit_code == 0, result.output
"""


def heavy_modules_after(code: str, *args: str) -> list[str]:
    """Which of TensorFlow and Keras are imported after running CODE in a fresh interpreter.

    Fresh, because in the test process another test may already have imported TensorFlow.
    """
    report = "\nimport json\nprint(json.dumps(sorted(name for name in ('tensorflow', 'keras') if name in sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", "import sys\n" + code + report, *args],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def descendants(pid: int) -> list[int]:
    """PID and every process started by it, directly or not."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parents[int(entry)] = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = [pid], {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier}
        found += frontier
    return found
