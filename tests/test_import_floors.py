"""The import graph of our packages, read with `ast` (imports inside functions and under
TYPE_CHECKING included): no circles, and no arrow up the floors of docs/ARCHITECTURE.md."""
import ast
import graphlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("detector", "sweeps", "analysis")
# Which of our packages each package may import (docs/ARCHITECTURE.md, "The floors").
ALLOWED = {"detector": set(), "analysis": set(), "sweeps": {"detector", "analysis"}}


def module_name(path: Path) -> str:
    """'sweeps/plan.py' -> 'sweeps.plan'; 'detector/data/__init__.py' -> 'detector.data'."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(source: str, name: str, is_package: bool) -> set[str]:
    """Every module name an import statement of `source` can bind (`from a import b`
    yields both a and a.b, since b may be a module); relative imports resolved."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found |= {base} | {f"{base}.{alias.name}" for alias in node.names}
    return found


def import_graph() -> dict[str, set[str]]:
    """Our module -> the set of our modules it imports."""
    paths = {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    return {name: {m for m in imports_of(path.read_text(encoding="utf-8"), name,
                                         path.name == "__init__.py")
                   if m in paths and m != name}
            for name, path in paths.items()}


def test_imports_of_reads_function_level_and_relative_imports() -> None:
    source = "import os\nfrom . import b\ndef f():\n    from ..c import d\n    import x.y\n"
    assert imports_of(source, "p.q.a", is_package=False) == {"os", "p.q", "p.q.b", "p.c", "p.c.d", "x.y"}


def test_a_circle_is_found() -> None:
    with pytest.raises(graphlib.CycleError):
        graphlib.TopologicalSorter({"a": {"b"}, "b": {"c"}, "c": {"a"}}).prepare()


def test_no_import_circles() -> None:
    try:
        graphlib.TopologicalSorter(import_graph()).prepare()
    except graphlib.CycleError as error:
        pytest.fail("import circle: " + " -> ".join(error.args[1]))


def test_no_arrow_up_the_floors() -> None:
    upward = sorted(f"{src} -> {dst}" for src, dsts in import_graph().items() for dst in dsts
                    if dst.split(".")[0] != src.split(".")[0]
                    and dst.split(".")[0] not in ALLOWED[src.split(".")[0]])
    assert upward == []
