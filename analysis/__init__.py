"""MLflow runs of a sweep -> the table it declares, the paper's findings tested, plots, one HTML page.

Reads what MLflow holds and nothing else (no detector/, Ray or Hydra), so a
table can be rebuilt from a tracking server long after the cluster is gone.
Which table is built is the sweep's declaration (`sweep.table`, read back
from the parent run), never the sweep's name.

Floors: a module imports only modules named before it in this table
(imports inside functions and under TYPE_CHECKING included), so no import
runs back up and none closes a circle; tests/test_analysis_floors.py reads
the table and checks it.

| floor | modules | concept |
|---|---|---|
| low | `errors`, `layout`, `redact`, `stats`, `paper`, `derive` | one-line errors; the MLflow run layout (every tag, metric and artifact name); password masking; estimates over seeds; the paper's numbers; row derivations |
| | `strict`, `rules`, `design` | the one strict loader of declared YAML; the verdict rules; the declared test (level, family-wise rule) |
| middle | `declaration`, `records` | a parsed table declaration; one plain `TrialRecord` per child run |
| | `aggregate`, `rows` | seeds -> groups (mean ± std); groups keyed like the paper's rows |
| | `sweep` | `SweepRecord`: the one view of a sweep, its keyed rows built once |
| top | `findings`, `plots` | the paper's findings evaluated on the view (`COMPARISONS`); the plot kinds (`PLOT_KINDS`) |
| | `parse` | the strict loader of `sweep.table` (checks plot kinds and finding ids) |
| | `runs` | read a sweep from MLflow, once -> `SweepRecord` |
| | `tables`, `render`, `render_findings`, `provenance`, `html`, `report` | table structure and builders; Markdown / CSV / LaTeX / terminal; the findings table in every format; how to reproduce; the page; the CLI |

Entry point: `analysis.report.create_report` (and `build_report`, its folder) /
`python -m analysis.report`.
"""

from analysis.errors import AnalysisError, DeclarationError

__all__ = ["AnalysisError", "DeclarationError"]
