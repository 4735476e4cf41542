"""Lean start-up: no command but train and explain imports TensorFlow; scoring runs the LiteRT file with LiteRT alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

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
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", "import sys\n" + code + report, *args], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def command_names() -> list[str]:
    from xscan.cli import app

    return [command.name or command.callback.__name__ for command in app.registered_commands]


@pytest.mark.parametrize("args", [["--help"], ["info"]] + [[name, "--help"] for name in command_names()], ids=" ".join)
def test_command_does_not_import_tensorflow(args: list[str]) -> None:
    assert heavy_modules_after(RUN_CLI, *args) == []


def test_loading_and_running_the_model_does_not_import_tensorflow() -> None:
    """Scoring runs the LiteRT file with LiteRT alone (issue 25)."""
    code = "import numpy as np\nfrom xscan.model.scorer import load_scorer\nload_scorer().assess(np.zeros((2, 160, 160, 1), np.float32))"
    assert heavy_modules_after(code) == []


def test_the_keras_network_for_grad_cam_does_import_tensorflow() -> None:
    """The probe can see TensorFlow when it is there, so the tests above can fail."""
    assert "tensorflow" in heavy_modules_after("from xscan.model.scorer import load_scorer\nload_scorer().network")
