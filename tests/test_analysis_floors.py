"""analysis/ imports only down its floors: each module only modules named before it in the table of
analysis/__init__.py, so no circle and no arrow back up. The import graph is tests/test_import_floors.py's
(every import counts, those inside functions and under TYPE_CHECKING included), which also checks that
analysis/ never imports detector/ or sweeps/.
"""

import re
from pathlib import Path

import analysis
from tests.test_import_floors import import_graph

ASIDE = {"__init__"}  # the package's door


def _order() -> list[str]:
    """The modules in the order of analysis/__init__.py's table (its second column)."""
    rows = [line.split("|")[2] for line in analysis.__doc__.splitlines() if line.startswith("| ") and "`" in line]
    return [name for row in rows for name in re.findall(r"`(\w+)`", row) if name not in ASIDE]


def test_every_module_imports_only_modules_before_it():
    modules = {p.stem for p in Path(analysis.__file__).parent.glob("*.py")}
    order = _order()
    assert sorted(order) == sorted(modules - ASIDE), "each module named once in analysis/__init__.py's table"
    graph = import_graph()
    upward = [f"{name} -> {other}" for i, name in enumerate(order)
              for other in (m.removeprefix("analysis.") for m in graph[f"analysis.{name}"])
              if other in order and order.index(other) > i]
    assert not upward, upward
