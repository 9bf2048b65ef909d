"""docs/architecture.md's package tree names only files and folders that exist, and every
module of the tracker and probes packages appears in it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "architecture.md"


def _tree() -> list[Path]:
    """The paths the tree under "## Packages" names, resolved through its indentation."""
    text = DOC.read_text()
    block = text.split("## Packages", 1)[1].split("```", 2)[1]
    paths: list[Path] = []
    folders: dict[int, Path] = {}
    for line in block.splitlines():
        if not line.strip():
            continue
        indent = (len(line) - len(line.lstrip(" "))) // 2
        names = re.split(r"\s{2,}", line.strip(), maxsplit=1)[0].split(" ")
        if not all(re.fullmatch(r"[\w./-]+", n) and ("." in n or n.endswith("/")) for n in names):
            continue  # a continued description, not a name column
        parent = folders.get(indent - 1, ROOT) if indent else ROOT
        for name in names:
            path = parent / name.rstrip("/")
            paths.append(path)
            if name.endswith("/"):
                folders[indent] = path
    return paths


def test_every_path_the_tree_names_exists():
    paths = _tree()
    assert len(paths) > 100
    missing = [str(p.relative_to(ROOT)) for p in paths if not p.exists()]
    assert not missing, f"docs/architecture.md names what does not exist: {missing}"


def test_every_module_is_in_the_tree():
    named = set(_tree())
    for package in ("tracker", "probes"):
        for module in sorted((ROOT / package).rglob("*.py")):
            if module.name == "__init__.py" and module.parent != ROOT / "tracker" / "cli":
                continue
            if "_agent" in module.parts:
                continue  # listed as a folder: the GC agent's files load in the target
            assert module in named, f"{module.relative_to(ROOT)} is not in docs/architecture.md"
