"""MLflow runs of a sweep -> the table it declares, the paper's findings tested, plots.

Reads what MLflow holds and nothing else (no detector/, Ray or Hydra), so a
table can be rebuilt from a tracking server long after the cluster is gone.
Which table is built is the sweep's declaration (`sweep.table`, read back
from the parent run; analysis/declaration.py), never the sweep's name.

| module | concept |
|---|---|
| `layout.py` | the MLflow run layout (tags, metrics, cell key, queries) shared with sweeps/ and tests |
| `runs.py` | read a sweep: parent, declaration, one `TrialRecord` per cell |
| `declaration.py` | `parse_table(sweep.table) -> TableDeclaration`, one-line `DeclarationError`s |
| `derive.py` | the row-value derivations a declaration names (path, count, method) |
| `aggregate.py`, `rows.py` | seeds -> groups (mean ± std); groups keyed like the paper's rows |
| `paper.py`, `reference/` | the paper's numbers (focal_loss_paper.yaml) and findings (findings.yaml) |
| `stats.py`, `findings.py` | contrasts over seeds (Welch or pooled, exact t, MDE, Bartlett); the verdict rules |
| `design.py` | the declared test (`sweep.table.verdicts`): level, family-wise rule (Holm), power, pooled variance |
| `paper_findings.py` | the paper's findings evaluated on a sweep's rows (the registry of comparison kinds) |
| `table.py`, `tables.py` | the table structure; the declared table(s) built |
| `render.py`, `render_findings.py` | Markdown / CSV / LaTeX / terminal; the Findings block |
| `plots.py` | the plot kinds a declaration names (curve, bars, figure2) |
| `report.py` | all of it, CLI: `build_report`, `create_report -> Report` |

Entry point: `analysis.report.build_report` / `python -m analysis.report`.
"""

from analysis.errors import AnalysisError, DeclarationError

__all__ = ["AnalysisError", "DeclarationError"]
