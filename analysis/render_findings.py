"""The Findings block: the paper's findings with our estimate, the paper's number and a verdict.

Printed in the terminal after the tables, and appended (after a blank line)
to the main table's Markdown (a `### Findings` table), LaTeX (a second
booktabs tabular) and CSV (a second header row, `finding,...`, then one
line per finding) files. Every finding shows its size beside the paper's,
absolute and relative to the AP scale of each (the reference cell's
metric), the seeds behind it (and the failed ones), the level its verdict
used after the family-wise rule, and the smallest effect the seeds could
decide. The terminal block keeps to 80 columns: a verdict line per finding
and indented detail lines. `summary_lines` gives one short line per finding
for a caller's own summary (sweeps/ at the end of a run).
"""

from __future__ import annotations

import csv
import io
from typing import Optional, Sequence

from rich.console import Console, Group
from rich.padding import Padding
from rich.text import Text

from analysis.findings import FindingResult
from analysis.render import default_console, latex_escape, md_line
from analysis.rules import NOT_REPRODUCED, REPRODUCED

TITLE = "Findings of the paper, tested on our seeds"
COLUMNS = ("finding", "ours", "size", "paper", "paper size", "seeds", "level", "verdict", "decidable if", "compared")
CSV_COLUMNS = ("finding", "statement", "verdict", "ours", "estimate", "low", "high", "confidence",
               "relative", "n", "seeds", "failed", "paper", "paper_value", "paper_relative", "unit",
               "level", "p_value", "detectable", "seeds_needed", "decidable", "variance", "family", "compared")
STYLES = {REPRODUCED: "green", NOT_REPRODUCED: "red"}  # inconclusive: yellow
MISSING = "—"


def findings_blocks(results: Sequence[FindingResult]) -> dict[str, str]:
    """File suffix -> the block to append (empty when there are no findings)."""
    if not results:
        return {}
    return {".md": findings_markdown(results), ".csv": findings_csv(results), ".tex": findings_latex(results)}


def finding_row(result: FindingResult) -> tuple[str, ...]:
    """A finding as every format shows it, one text per `COLUMNS`: the numbers with their unit
    ("+2.5 [+0.4, +4.6] AP", never "— AP"), each size relative to its AP scale."""
    r = result
    return (r.statement, ours_text(r), relative_text(r.relative, r.signed), paper_text(r),
            relative_text(r.paper_relative, r.signed), r.seeds, level_text(r), r.verdict, decidable_text(r), r.compared)


def findings_markdown(results: Sequence[FindingResult]) -> str:
    lines = [f"### {TITLE}", "", md_line(COLUMNS),
             md_line((":---", "---:", "---:", "---:", "---:", "---:", "---:", ":---", ":---", ":---"))]
    for r in results:
        cells = list(finding_row(r))
        if r.verdict == REPRODUCED:
            cells[COLUMNS.index("verdict")] = f"**{r.verdict}**"
        lines.append(md_line(cells))
    lines += ["", f"*{design_line(results)}*"]
    return "\n".join(lines) + "\n"


def findings_csv(results: Sequence[FindingResult]) -> str:
    """Numbers to 3 decimals (4 significant for levels and p); the text columns as shown."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in results:
        writer.writerow([r.id, r.statement, r.verdict, r.ours, _number(r.estimate), _number(r.low),
                         _number(r.high), _number(r.confidence, 4), _number(r.relative), r.n, r.seeds, r.failed,
                         r.paper, _number(r.paper_value), _number(r.paper_relative), r.unit,
                         _number(r.level, 4), _number(r.p_value, 4), _number(r.detectable),
                         "" if r.seeds_needed is None else r.seeds_needed, r.decidable,
                         r.variance, r.family, r.compared])
    return buffer.getvalue()


def findings_latex(results: Sequence[FindingResult]) -> str:
    lines = [f"% {latex_escape(TITLE)}", r"\begin{tabular}{lrrrrrrl}", r"\toprule",
             r"finding & ours & size & paper & size & seeds & level & verdict \\", r"\midrule"]
    for r in results:
        cells = finding_row(r)[:COLUMNS.index("verdict") + 1]
        lines.append(" & ".join(latex_escape(c) for c in cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", f"% {latex_escape(design_line(results))}"]
    lines += [f"% {latex_escape(r.id)}: {latex_escape(r.compared)}; {latex_escape(decidable_text(r))}"
              for r in results]
    return "\n".join(lines) + "\n"


def print_findings(results: Sequence[FindingResult], console: Optional[Console] = None) -> None:
    """The Findings block in the terminal: per finding a verdict line, then indented details
    (they wrap under their indent, so the block reads in 80 columns)."""
    if not results:
        return
    console = console or default_console()
    console.print(Text(TITLE, style="bold"))
    for r in results:
        head = Text.assemble((f"{r.verdict:<15}", STYLES.get(r.verdict, "yellow")), " ", r.statement)
        details = [f"ours {ours_text(r)}{_size(r)}, paper {paper_text(r)}"
                   f"{_size(r, paper=True)}; seeds {r.seeds}",
                   f"at {level_text(r)}" + (f"; {decidable_text(r)}" if r.decidable else ""),
                   r.compared]
        console.print(Group(head, *(Padding(Text(d, style="dim"), (0, 0, 0, 4), expand=False) for d in details)))
    console.print(Text(design_line(results), style="dim"))


def summary_lines(results: Sequence[FindingResult]) -> list[str]:
    """One line per finding, e.g.
    `reproduced: FL beats the best OHEM (ours +2.1 [+0.4, +3.8] AP, +22%; paper +3.2 AP, +10%; seeds 3 of 3)`."""
    return [f"{r.verdict}: {r.statement} (ours {ours_text(r)}{_size(r, form=', {}')}; "
            f"paper {paper_text(r)}{_size(r, paper=True, form=', {}')}; seeds {r.seeds})" for r in results]


# -- the texts, shared by every format ---------------------------------
def design_line(results: Sequence[FindingResult]) -> str:
    """The family-wise rule and how the standard errors were made (once per way: per metric), e.g.
    "Holm over 3 findings, 5% family-wise; standard errors: Welch"."""
    family = results[0].family if results else ""
    variance = "standard errors: " + "; ".join(dict.fromkeys(r.variance for r in results))
    return f"{family}; {variance}" if family else variance


def ours_text(result: FindingResult) -> str:
    """e.g. "+2.5 [+0.4, +4.6] AP"; "—" without an estimate (never "— AP")."""
    return _with_unit(result.ours, result.unit)


def paper_text(result: FindingResult) -> str:
    """e.g. "+2.9 AP"; "—" where the paper's table has no such number."""
    return _with_unit(result.paper, result.unit)


def relative_text(value: Optional[float], signed: bool = True) -> str:
    """An effect relative to its reference cell's metric, e.g. "+22%", "-0.6%" (a decimal
    below 10%); "—" when unknown."""
    if value is None:
        return MISSING
    sign = "+" if signed else ""
    return f"{value:{sign}.1%}" if abs(value) < 0.1 else f"{value:{sign}.0%}"


def level_text(result: FindingResult) -> str:
    """The level the verdict used and the interval shown, e.g. "1.7% (98.3% interval)"."""
    level = _percent(result.level)
    return level if result.confidence is None else f"{level} ({_percent(result.confidence)} interval)"


def decidable_text(result: FindingResult) -> str:
    return result.decidable or "no estimate of the noise yet"


def _with_unit(text: str, unit: str) -> str:
    return text if text == MISSING else f"{text} {unit}"


def _percent(value: float) -> str:
    """5% -> "5%", 0.016667 -> "1.67%", 0.98333 -> "98.3%": enough digits to tell levels apart."""
    text = f"{value * 100:.3g}"
    return f"{text}%"


def _size(result: FindingResult, paper: bool = False, form: str = " ({})") -> str:
    """Ours (or the paper's) size relative to its AP scale, in `form`; "" when unknown."""
    value = result.paper_relative if paper else result.relative
    return "" if value is None else form.format(relative_text(value, result.signed))


def _number(value: Optional[float], digits: int = 3) -> str:
    return "" if value is None else f"{round(value, digits):g}"
