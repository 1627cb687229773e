"""The live progress table (sweeps/progress.py): what a researcher reads while a sweep runs."""

from __future__ import annotations

import io
import re

from rich.console import Console

from sweeps.progress import ProgressBoard, percent


def _board(terminal: bool) -> tuple[ProgressBoard, io.StringIO]:
    screen = io.StringIO()
    console = Console(file=screen, width=120, force_terminal=terminal, color_system=None)
    return ProgressBoard("gamma_alpha (cpu)", total=2, done_before=0, console=console), screen


def test_the_progress_table_shows_ap_in_percent_like_every_other_table():
    board, _ = _board(terminal=True)
    board.add("t1", "gamma=0", total=500)
    board.add("t2", "gamma=2", total=500)
    board.update("t1", iteration=500, loss=0.4321, ap=0.0334, status="DONE")
    board.update("t2", iteration=250, loss=0.5, ap=0.11449)
    shown = Console(file=io.StringIO(), width=120, color_system=None)
    shown.print(board.render())
    text = shown.file.getvalue()
    rows = {line.split()[0]: line.split() for line in text.splitlines() if line.startswith("gamma=")}
    assert rows["gamma=0"][-1] == "3.3" and rows["gamma=2"][-1] == "11.4"  # percent, one decimal, as the tables
    assert not re.search(r"\b0\.(033|114)", text), "no AP as a fraction"


def test_the_plain_line_of_an_ended_trial_shows_ap_in_percent():
    """Without a terminal (a log file) each ended trial gets one line; its AP is in percent too."""
    board, screen = _board(terminal=False)
    board.add("t1", "gamma=2", total=500)
    board.update("t1", iteration=500, ap=0.119, status="DONE")
    assert "done gamma=2 AP 11.9 (" in screen.getvalue()


def test_percent_of_a_missing_value():
    assert percent(None) == "-" and percent(0.0) == "0.0" and percent(1.0) == "100.0"
