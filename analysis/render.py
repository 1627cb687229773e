"""Tables -> Markdown, CSV, LaTeX (booktabs) files and the terminal (rich).

CSV holds the numbers exactly as the tables show them (one decimal for
ours), a `<metric>_std` column beside each of ours that has seeds, and per
row `n`, `status`, `error`, `best`. LaTeX shows the same numbers, so both
parse back to the same values.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Iterable, Mapping

from rich.console import Console
from rich.table import Table as RichTable
from rich.text import Text

from analysis.tables import MISSING, Column, Entry, Row, Table

LATEX_SYMBOLS = {"±": r"$\pm$", "—": "--", "α": r"$\alpha$", "β": r"$\beta$",
                 "γ": r"$\gamma$", "≥": r"$\geq$", "≤": r"$\leq$", "≈": r"$\approx$",
                 "×": r"$\times$", "→": r"$\rightarrow$"}
LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                 "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                 "^": r"\textasciicircum{}"}
N_COLUMN = Column("n", "n", "n")


def write_table(table: Table, out_dir: Path, after: Mapping[str, str] | None = None) -> list[Path]:
    """Write `<name>.md`, `.csv`, `.tex` into out_dir; returns the paths.

    `after`: suffix -> a block appended to that file after a blank line (the
    findings, analysis/render_findings.py)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for suffix, text in ((".md", to_markdown(table)), (".csv", to_csv(table)),
                         (".tex", to_latex(table))):
        path = out_dir / f"{table.name}{suffix}"
        extra = (after or {}).get(suffix)
        path.write_text(text + (f"\n{extra}" if extra else ""), encoding="utf-8")
        paths.append(path)
    return paths


def to_markdown(table: Table) -> str:
    """A GitHub-flavoured Markdown table under a `###` title; the best row in bold."""
    columns, rows = displayed(table)
    lines = [f"### {table.title}", "", md_line(c.header for c in columns)]
    lines.append(md_line(":---" if c.source == "key" else "---:" for c in columns))
    for cells in rows:
        lines.append(md_line(f"**{c.text}**" if c.bold else c.text for c in cells))
    lines += [""] + [f"- {note}" for note in table.notes]
    return "\n".join(lines).rstrip() + "\n"


def to_csv(table: Table) -> str:
    """One line per row: the shown numbers (text for non-numbers), std, n, status, error, best."""
    with_std = [c for c in table.columns if any(x.std is not None for x in table.column_cells(c.key))]
    header = []
    for column in table.columns:
        header += [column.key] + ([f"{column.key}_std"] if column in with_std else [])
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header + ["n", "status", "error", "best"])
    for row in table.rows:
        values = []
        for column, cell in zip(table.columns, row.cells):
            values += [_csv_value(cell)] + ([cell.std_text()] if column in with_std else [])
        writer.writerow(values + [row.n, row.status, row.error, int(row.best)])
    return buffer.getvalue()


def to_latex(table: Table) -> str:
    """A booktabs `tabular` (needs \\usepackage{booktabs}); ours/paper column groups."""
    columns, rows = displayed(table)
    spec = "".join("l" if c.source == "key" else "r" for c in columns)
    lines = [f"% {latex_escape(table.title)}", f"\\begin{{tabular}}{{{spec}}}", r"\toprule"]
    lines += _latex_groups(columns)
    lines.append(" & ".join(latex_escape(c.header) for c in columns) + r" \\")
    lines.append(r"\midrule")
    for cells in rows:
        texts = [latex_escape(c.text) for c in cells]
        lines.append(" & ".join(f"\\textbf{{{t}}}" if c.bold else t
                                for c, t in zip(cells, texts)) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    lines += [f"% {latex_escape(note)}" for note in table.notes]
    return "\n".join(lines) + "\n"


def print_table(table: Table, console: Console | None = None) -> None:
    """Show the table in the terminal (rich), best row in bold, notes below."""
    console = console or default_console()
    columns, rows = displayed(table)
    rich_table = RichTable()
    for column in columns:
        rich_table.add_column(column.header, justify="left" if column.source == "key" else "right",
                              style="cyan" if column.source == "paper" else None)
    for cells in rows:
        rich_table.add_row(*(Text(c.text, style="bold" if c.bold else "") for c in cells))
    console.print(f"[bold]{table.title}[/bold]", highlight=False)
    console.print(rich_table)
    for note in table.notes:
        console.print(f"  [yellow]note[/yellow] {note}", markup=True, highlight=False)


def default_console(quiet: bool = False) -> Console:
    """The terminal; 200 columns wide when output goes to a file or pipe (rich's 80 wraps tables)."""
    console = Console(quiet=quiet)
    return console if console.is_terminal else Console(width=200, quiet=quiet)


def latex_escape(text: str) -> str:
    """Escape LaTeX's special characters, then map ±, —, Greek letters to math."""
    escaped = "".join(LATEX_SPECIAL.get(ch, ch) for ch in text)
    return "".join(LATEX_SYMBOLS.get(ch, ch) for ch in escaped)


def displayed(table: Table) -> tuple[list[Column], list[list[Entry]]]:
    """Columns and cells as shown: an `n` column after the keys when seeds vary."""
    if not table.show_n:
        return list(table.columns), [row.cells for row in table.rows]
    at = sum(1 for c in table.columns if c.source == "key")
    columns = table.columns[:at] + [N_COLUMN] + table.columns[at:]
    return columns, [row.cells[:at] + [_n_cell(row)] + row.cells[at:] for row in table.rows]


def _n_cell(row: Row) -> Entry:
    return Entry(str(row.n) if row.status != "missing" else MISSING)


def _latex_groups(columns: list[Column]) -> list[str]:
    """`& \\multicolumn{k}{c}{ours} & ...` over runs of ours/paper columns, with cmidrules."""
    if not any(c.source == "paper" for c in columns):
        return []
    spans: list[tuple[str, int, int]] = []  # (label, first, last), 1-based
    for i, column in enumerate(columns, start=1):
        label = column.source if column.source in ("ours", "paper") else ""
        if spans and spans[-1][0] == label:
            spans[-1] = (label, spans[-1][1], i)
        else:
            spans.append((label, i, i))
    heads = [f"\\multicolumn{{{b - a + 1}}}{{c}}{{{label}}}" if label else " & ".join([""] * (b - a + 1))
             for label, a, b in spans]
    rules = "".join(f"\\cmidrule(lr){{{a}-{b}}}" for label, a, b in spans if label)
    return [" & ".join(heads) + r" \\", rules]


def md_line(cells: Iterable[object]) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"


def _csv_value(cell: Entry) -> str:
    if cell.value is not None:
        return cell.number()
    return "" if cell.text == MISSING else cell.text
