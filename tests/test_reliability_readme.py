"""The README's "Interruptions, retries, concurrent runs" section tells a user
what each exit status of `python -m sweeps.run` means, from the constants the
command uses, and what is guaranteed on one host and what is not across
hosts (issue 24: "What it must show")."""

from __future__ import annotations

import re
from pathlib import Path

from sweeps import run

README = Path(__file__).resolve().parents[1] / "README.md"


def section() -> str:
    """The section's text, lines joined (a phrase may wrap)."""
    text = README.read_text(encoding="utf-8")
    start = text.index("## Interruptions, retries, concurrent runs\n")
    end = text.index("\n## ", start + 1)
    return " ".join(text[start:end].split())


def test_every_exit_status_of_the_command_is_explained():
    codes = {name: value for name, value in vars(run).items() if name.startswith("EXIT_")}
    stated = section()
    assert codes, "sweeps.run names its exit statuses"
    for name, value in codes.items():
        assert re.search(rf"[;:(] {value} [a-z]", stated), f"{name}={value} is not explained"


def test_one_host_and_across_hosts_are_both_stated():
    stated = section()
    assert "What holds **on one host and across hosts**" in stated
    assert "What does **not** hold:" in stated  # the ledger's limits, said plainly
    assert "sweeps/ledger.py" in stated and "tests/test_ledger_server.py" in stated
