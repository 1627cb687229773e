"""What would decide an undecided finding: the command that adds the seeds, and its time.

An inconclusive finding's row says how many seeds per cell would decide the
effect it observed (`seeds_needed`, analysis/findings.py: power 0.8 at its
level, the se scaled from the measured seeds). After the report, the sweep says
the command that gets there: the same command with `sweep.seeds=N`. It
continues the same parent run (the seeds do not enter the base config's hash),
so the finished seeds are kept and only the new ones run; its estimate line
prices those new trials on this machine.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

from analysis.rules import INCONCLUSIVE
from sweeps.plan import SweepPlan, sweep_command
from sweeps.redact import redact

PlanFrom = Callable[[list[str], Optional[str]], SweepPlan]  # sweeps.run.plan_from


def seeds_to_decide(findings: Sequence[Any], seeds_now: int) -> dict[int, list[str]]:
    """{seeds per cell: [finding ids]} for the inconclusive findings that more seeds would decide."""
    needed: dict[int, list[str]] = {}
    for finding in findings:
        if finding.verdict == INCONCLUSIVE and finding.seeds_needed and finding.seeds_needed > seeds_now:
            needed.setdefault(int(finding.seeds_needed), []).append(finding.id)
    return dict(sorted(needed.items()))


def with_seeds(overrides: Sequence[str], seeds: int) -> list[str]:
    """`overrides` with sweep.seeds set to `seeds` (any earlier value replaced)."""
    return [item for item in overrides if not item.lstrip("+").startswith("sweep.seeds=")] + [f"sweep.seeds={seeds}"]


def decide_lines(plan: SweepPlan, findings: Sequence[Any], overrides: Sequence[str], config_dir: Optional[str],
                 plan_from: PlanFrom, estimate: Callable[[SweepPlan, list], str]) -> list[str]:
    """One line per seed count: the findings it would decide, the command, and the estimate of its new trials.

    `estimate(plan, configs)` is sweeps.estimate.estimate_line with this machine's probe bound."""
    lines = []
    done = {cell.key for cell in plan.cells}
    for seeds, ids in seeds_to_decide(findings, plan.seeds).items():
        more = with_seeds(overrides, seeds)
        bigger = plan_from(more, config_dir)
        new = [cell.config for cell in bigger.cells if cell.key not in done]
        command = redact(sweep_command(more, config_dir))
        lines.append(f"to decide {', '.join(ids)} (~{seeds} seeds per cell): {command}  "
                     f"[{estimate(bigger, new)}; the finished seeds are kept]")
    return lines
