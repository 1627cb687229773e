"""How to reproduce a sweep's report: the command, the code it ran, the MLflow parent run.

Everything comes from the parent run's tags (analysis/layout.py): the
command line of the invocation that last ran the sweep (`sweep.command`),
the checkout's commit and whether it had uncommitted changes (`git.commit`,
`git.dirty`, set on every invocation),
and the run's id. A parent logged before the command was recorded gets the
command its name and profile imply, said to be a reconstruction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from analysis import layout

if TYPE_CHECKING:
    from analysis.sweep import SweepRecord

UNKNOWN = "unknown"
REBUILT = (" (rebuilt from the sweep's name and profile: the run predates the record of its command line, "
           "so overrides may be missing)")
DIRTY_TEXT = {"true": "uncommitted changes: the commit alone is not the code that ran",
              "false": "a clean tree"}


@dataclass(frozen=True)
class Reproduction:
    """What reproduces a sweep: its command, the code at that commit, and where its runs are."""

    command: str  # the command line as run; "" when the parent predates the tag
    commit: str  # the checkout's commit, or "unknown"
    dirty: str  # "true" | "false" | "unknown"
    parent_run_id: str
    sweep: str
    profile: str

    @classmethod
    def of(cls, sweep: "SweepRecord") -> "Reproduction":
        """From the parent run's tags."""
        tags = sweep.tags
        commit = tags.get(layout.ENV_GIT_COMMIT) or UNKNOWN
        return cls(command=tags.get(layout.COMMAND, ""), commit=commit,
                   dirty=tags.get(layout.ENV_GIT_DIRTY, UNKNOWN), parent_run_id=sweep.run_id,
                   sweep=sweep.name, profile=sweep.profile)

    @property
    def shell_command(self) -> str:
        """The command to type: as recorded, else the one the sweep's name and profile imply."""
        if self.command:
            return self.command
        profile = f" profile={self.profile}" if self.profile else ""
        return f"python -m sweeps.run +sweep={self.sweep or '<name>'}{profile}"

    def command_note(self) -> str:
        """"" for a recorded command; else why the command shown may lack overrides."""
        return "" if self.command else REBUILT

    @property
    def checkout(self) -> str:
        """`git checkout <commit>`, or "" when the commit is not known."""
        return "" if self.commit == UNKNOWN else f"git checkout {self.commit}"

    def tree_text(self) -> str:
        """Whether the commit is all of the code that ran."""
        if not self.checkout:
            return "commit unknown (not run from a git checkout)"
        return DIRTY_TEXT.get(self.dirty, "not known whether the tree was clean")

    def code_text(self, mark: Callable[[str], str] = str) -> str:
        """The checkout command (`mark`ed up: Markdown or HTML code) and whether it is all the code that ran;
        the tree text is this module's own plain words, safe in any of them."""
        return f"{mark(self.checkout)} ({self.tree_text()})" if self.checkout else self.tree_text()

    def lines(self) -> list[str]:
        """Plain lines for the terminal: the command, the code, the MLflow run."""
        return [f"Reproduce: {self.shell_command}{self.command_note()}",
                f"  code: {self.code_text()}",
                f"  MLflow parent run: {self.parent_run_id}",
                f"  this report again: python -m analysis.report {self.parent_run_id}"]  # each line fits 80 columns

    def markdown(self) -> str:
        """A `### Reproduce` block for the Markdown files and the parent run's description."""
        return "\n".join([
            "### Reproduce", "",
            f"- command: `{self.shell_command}`{self.command_note()}",
            f"- code: {self.code_text(lambda text: f'`{text}`')}",
            f"- MLflow parent run: `{self.parent_run_id}` (`python -m analysis.report {self.parent_run_id}` "
            "rebuilds this report)", ""])
