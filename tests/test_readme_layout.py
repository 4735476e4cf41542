"""README's code-layout table is the tree.

Every module of xscan is named in its folder's row, and nothing is named that is not there.
"""

from __future__ import annotations

import re

from support.data import REPO

PACKAGE = REPO / "xscan"


def layout_table() -> dict[str, set[str]]:
    """Folder ('' for the package's top) -> the module files README's layout table names in its row."""
    text = (REPO / "README.md").read_text()
    table = text[text.index("| folder | owns |") :].split("\n\n", 1)[0]
    rows: dict[str, set[str]] = {}
    for line in table.splitlines()[2:]:
        first, owns = line.split("|")[1:3]
        folders = re.findall(r"`([\w/]+/)`", first)
        files = set(re.findall(r"`(\w+\.py)`", first + owns))
        rows[folders[0].rstrip("/") if folders else ""] = files
    return rows


def modules() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        if path.name in ("__init__.py", "__main__.py"):
            continue
        found.setdefault(path.parent.relative_to(PACKAGE).as_posix().replace(".", ""), set()).add(path.name)
    return found


def test_the_layout_table_names_every_module_in_its_folder():
    assert layout_table() == modules()


def test_the_table_reader_sees_a_missing_module():
    rows = layout_table()
    rows["model"].discard("scorer.py")
    assert rows != modules()
