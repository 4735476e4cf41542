"""Lean start-up: only train and explain import TensorFlow; scoring runs the LiteRT file with LiteRT alone."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from support.processes import ENV, heavy_modules_after

# Each command in turn in one fresh interpreter, and which heavy modules are loaded after each: a module once
# imported stays, so the first command to import one is listed with it (and every command after it).
EACH_COMMAND = """
import json, sys
from typer.testing import CliRunner
from xscan.cli import app
heavy = {}
for args in json.loads(sys.argv[1]):
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    heavy[" ".join(args)] = sorted(name for name in ("tensorflow", "keras") if name in sys.modules)
print(json.dumps(heavy))
"""


def command_names() -> list[str]:
    from xscan.cli import app

    return [command.name or command.callback.__name__ for command in app.registered_commands]


COMMANDS = [["--help"], ["info"]] + [[name, "--help"] for name in command_names()]


@pytest.fixture(scope="module")
def heavy_after_each() -> dict[str, list[str]]:
    """One interpreter for all commands rather than one each: the same verdicts, a second each instead of several."""
    done = subprocess.run(
        [sys.executable, "-c", EACH_COMMAND, json.dumps(COMMANDS)], capture_output=True, text=True, env=ENV, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("args", COMMANDS, ids=" ".join)
def test_command_does_not_import_tensorflow(args: list[str], heavy_after_each: dict[str, list[str]]) -> None:
    assert heavy_after_each[" ".join(args)] == []


def test_loading_and_running_the_model_does_not_import_tensorflow() -> None:
    """Scoring runs the LiteRT file with LiteRT alone (issue 25)."""
    code = (
        "import numpy as np\nfrom xscan.model.scorer import load_scorer\n"
        "load_scorer().assess(np.zeros((2, 160, 160, 1), np.float32))"
    )
    assert heavy_modules_after(code) == []


@pytest.mark.slow
def test_the_keras_network_for_grad_cam_does_import_tensorflow() -> None:
    """The probe can see TensorFlow when it is there, so the tests above can fail."""
    assert "tensorflow" in heavy_modules_after("from xscan.model.scorer import load_scorer\nload_scorer().network")
