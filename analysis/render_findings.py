"""The Findings block: the paper's findings with our estimate, the paper's number and a verdict.

Printed in the terminal after the tables, and appended (after a blank line)
to the main table's Markdown (a `### Findings` table), LaTeX (a second
booktabs tabular) and CSV (a second header row, `finding,...`, then one
line per finding) files. `summary_lines` gives one short line per finding
for a caller's own summary (sweeps/ at the end of a run).
"""

from __future__ import annotations

import csv
import io
from typing import Optional, Sequence

from rich.console import Console
from rich.table import Table as RichTable
from rich.text import Text

from analysis.findings import NOT_REPRODUCED, REPRODUCED
from analysis.paper_findings import FindingResult
from analysis.render import default_console, latex_escape, md_line

TITLE = "Findings of the paper, tested on our seeds (95% intervals)"
CSV_COLUMNS = ("finding", "statement", "verdict", "ours", "estimate", "low", "high", "n", "paper",
               "paper_value", "unit", "compared")
STYLES = {REPRODUCED: "green", NOT_REPRODUCED: "red"}  # inconclusive: yellow


def findings_blocks(results: Sequence[FindingResult]) -> dict[str, str]:
    """File suffix -> the block to append (empty when there are no findings)."""
    if not results:
        return {}
    return {".md": findings_markdown(results), ".csv": findings_csv(results), ".tex": findings_latex(results)}


def findings_markdown(results: Sequence[FindingResult]) -> str:
    lines = [f"### {TITLE}", "", md_line(("finding", "ours", "n", "paper", "verdict", "compared")),
             md_line((":---", "---:", "---:", "---:", ":---", ":---"))]
    for r in results:
        verdict = f"**{r.verdict}**" if r.verdict == REPRODUCED else r.verdict
        lines.append(md_line((r.statement, _with_unit(r.ours, r), r.n, _with_unit(r.paper, r), verdict, r.compared)))
    return "\n".join(lines) + "\n"


def findings_csv(results: Sequence[FindingResult]) -> str:
    """Numbers to 3 decimals (the text columns show them as the tables do)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in results:
        writer.writerow([r.id, r.statement, r.verdict, r.ours, _number(r.estimate), _number(r.low),
                         _number(r.high), r.n, r.paper, _number(r.paper_value), r.unit, r.compared])
    return buffer.getvalue()


def findings_latex(results: Sequence[FindingResult]) -> str:
    lines = [f"% {latex_escape(TITLE)}", r"\begin{tabular}{lrrrl}", r"\toprule",
             r"finding & ours & n & paper & verdict \\", r"\midrule"]
    for r in results:
        cells = [r.statement, _with_unit(r.ours, r), str(r.n), _with_unit(r.paper, r), r.verdict]
        lines.append(" & ".join(latex_escape(c) for c in cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    lines += [f"% {latex_escape(r.id)}: {latex_escape(r.compared)}" for r in results]
    return "\n".join(lines) + "\n"


def print_findings(results: Sequence[FindingResult], console: Optional[Console] = None) -> None:
    """The Findings block in the terminal, verdicts coloured."""
    if not results:
        return
    console = console or default_console()
    table = RichTable()
    for name, justify in (("finding", "left"), ("ours", "right"), ("n", "right"), ("paper", "right"),
                          ("verdict", "left"), ("compared", "left")):
        table.add_column(name, justify=justify, style="cyan" if name == "paper" else "dim" if name == "compared" else None)
    for r in results:
        table.add_row(r.statement, _with_unit(r.ours, r), str(r.n), _with_unit(r.paper, r),
                      Text(r.verdict, style=STYLES.get(r.verdict, "yellow")), r.compared)
    console.print(f"[bold]{TITLE}[/bold]", highlight=False)
    console.print(table)


def summary_lines(results: Sequence[FindingResult]) -> list[str]:
    """One line per finding, e.g. `reproduced: FL beats the best OHEM (ours +2.1 [+0.4, +3.8] AP, paper +3.2)`."""
    return [f"{r.verdict}: {r.statement} (ours {_with_unit(r.ours, r)}, paper {_with_unit(r.paper, r)})"
            for r in results]


def _with_unit(text: str, result: FindingResult) -> str:
    """AP differences and means are in AP points; times in ms; choices (α → ...) bare."""
    if text == "—" or "→" in text:
        return text
    return f"{text} {result.unit}"


def _number(value: Optional[float]) -> str:
    return "" if value is None else f"{round(value, 3):g}"
