"""Lean start-up: commands that do not score must not pay for importing TensorFlow."""

from __future__ import annotations

import pytest
from support.processes import RUN_CLI, heavy_modules_after


def command_names() -> list[str]:
    from xscan.cli import app

    return [command.name or command.callback.__name__ for command in app.registered_commands]


@pytest.mark.parametrize("args", [["--help"], ["info"]] + [[name, "--help"] for name in command_names()], ids=" ".join)
def test_command_does_not_import_tensorflow(args: list[str]) -> None:
    assert heavy_modules_after(RUN_CLI, *args) == []


def test_loading_the_model_does_import_tensorflow() -> None:
    """The probe can see TensorFlow when it is there, so the tests above can fail."""
    assert "tensorflow" in heavy_modules_after("from xscan.model.scorer import load_scorer\nload_scorer()")
