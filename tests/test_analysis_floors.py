"""analysis/ imports only down its floors (analysis/__init__.py): no circle, no arrow back up.

Every import counts, those inside functions and under TYPE_CHECKING included.
"""

import ast
from pathlib import Path

import analysis

# analysis/__init__.py's table, top to bottom read upwards: a module may import only lower numbers
FLOORS = [("errors", "layout", "redact", "stats", "paper", "derive"), ("strict", "rules"), ("design",),
          ("declaration", "records"), ("aggregate",), ("rows",), ("sweep",), ("findings", "plots"), ("parse",),
          ("runs",), ("tables", "provenance"), ("render",), ("render_findings",), ("html",), ("report",)]
FLOOR = {name: level for level, names in enumerate(FLOORS) for name in names}
ASIDE = {"__init__", "loss_cdf"}  # the package's door, and Figure 4 (imports detector/)


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return {name.split(".")[1] for name in found if name.startswith("analysis.") and name.split(".")[1] in FLOOR}


def test_every_module_has_a_floor_and_imports_only_below_it():
    modules = {p.stem: p for p in Path(analysis.__file__).parent.glob("*.py")}
    assert set(modules) - ASIDE == set(FLOOR), "a module added or removed: give it its floor here and in __init__"
    upward = [f"{name} -> {other}" for name in FLOOR for other in _imports(modules[name])
              if FLOOR[other] >= FLOOR[name] and other != name]
    assert not upward, upward


def test_analysis_never_imports_detector_or_sweeps():
    for path in Path(analysis.__file__).parent.glob("*.py"):
        if path.stem not in ASIDE:
            tree = ast.parse(path.read_text(encoding="utf-8"))
            names = {alias.name for n in ast.walk(tree) if isinstance(n, ast.Import) for alias in n.names}
            names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
            assert not {m for m in names if m.split(".")[0] in ("detector", "sweeps")}, path.name
