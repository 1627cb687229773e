"""MLflow runs of a sweep -> the paper's ablation tables and plots.

Reads what MLflow holds and nothing else (no detector/, Ray or Hydra), so a
table can be rebuilt from a tracking server long after the cluster is gone.
Entry point: `analysis.report.build_report` / `python -m analysis.report`.
"""

from analysis.errors import AnalysisError

__all__ = ["AnalysisError"]
