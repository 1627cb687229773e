"""analysis/ imports only down its floors: each module only modules named before it in the table of
analysis/__init__.py, so no circle and no arrow back up. Every import counts, those inside
functions and under TYPE_CHECKING included.
"""

import ast
import re
from pathlib import Path

import analysis

ASIDE = {"__init__", "loss_cdf"}  # the package's door, and Figure 4 (imports detector/)


def _order() -> list[str]:
    """The modules in the order of analysis/__init__.py's table (its second column)."""
    rows = [line.split("|")[2] for line in analysis.__doc__.splitlines() if line.startswith("| ") and "`" in line]
    return [name for row in rows for name in re.findall(r"`(\w+)`", row) if name not in ASIDE]


def _imports(path: Path, known: set[str]) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return {name.split(".")[1] for name in found if name.startswith("analysis.") and name.split(".")[1] in known}


def test_every_module_imports_only_modules_before_it():
    modules = {p.stem: p for p in Path(analysis.__file__).parent.glob("*.py")}
    order = _order()
    assert sorted(order) == sorted(set(modules) - ASIDE), "each module named once in analysis/__init__.py's table"
    upward = [f"{name} -> {other}" for i, name in enumerate(order)
              for other in _imports(modules[name], set(order)) if other != name and order.index(other) > i]
    assert not upward, upward


def test_analysis_never_imports_detector_or_sweeps():
    for path in Path(analysis.__file__).parent.glob("*.py"):
        if path.stem not in ASIDE:
            tree = ast.parse(path.read_text(encoding="utf-8"))
            names = {alias.name for n in ast.walk(tree) if isinstance(n, ast.Import) for alias in n.names}
            names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
            assert not {m for m in names if m.split(".")[0] in ("detector", "sweeps")}, path.name
