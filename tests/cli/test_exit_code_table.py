"""One exit-code table (README.md, docs/reliability.md) covers every code xscan has; every command has --debug."""

from __future__ import annotations

import re

import pytest
from support.data import REPO
from typer.testing import CliRunner

import xscan.errors
from xscan.cli import app


def table(text: str, heading: str) -> list[list[str]]:
    """The rows (cells stripped) of the first Markdown table after HEADING in TEXT."""
    after = text.split(heading, 1)[1]
    block = after[after.index("| code |") :].split("\n\n", 1)[0].splitlines()
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in block[2:]]


def commands() -> list[str]:
    return sorted(command.name or command.callback.__name__ for command in app.registered_commands)


def test_readme_and_reliability_hold_the_same_table_of_every_code_xscan_has():
    readme = table((REPO / "README.md").read_text(), "## Exit codes\n")
    reliability = table((REPO / "docs" / "reliability.md").read_text(), "### Exit codes\n")
    assert readme == reliability
    documented = {int(code) for row in readme for code in re.findall(r"\d+", row[0])}
    defined = {value for name, value in vars(xscan.errors).items() if name.startswith("EXIT_")}
    assert documented == defined and 1 not in documented  # 1 is Python's: a broken install
    names = set(commands())
    for row in readme:
        said = row[2]
        assert said == "all" or set(said.split(", ")) <= names, row  # only real commands are named
    by_code = {row[0]: row[2] for row in readme}
    assert by_code["4"] == "score, explain" and by_code["5"] == "drift, audit" and by_code["70"] == "all"


@pytest.mark.parametrize("command", commands())
def test_every_command_has_debug_and_a_help_that_ends_with_an_example(command):
    shown = CliRunner().invoke(app, [command, "--help"], terminal_width=200)
    assert shown.exit_code == 0, shown.output
    assert "--debug" in shown.output and "Example:" in shown.output
