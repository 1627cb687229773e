"""The paper's plots from a sweep, with the paper's numbers as reference (PNG + SVG).

Figures are drawn on matplotlib's Agg canvas directly (no pyplot), so the
caller's backend is never changed. Every plot function returns a `Plot`
holding the series it drew, so tests (and notebooks) can check the data.
Points come from finished runs only (mean AP over seeds, std as error bar).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from analysis import keys
from analysis.aggregate import Group, best_per_first_key, group_trials
from analysis.paper import PaperTable, load_paper
from analysis.runs import SweepRecord, TrialRecord

OURS_STYLE = {"marker": "o", "linewidth": 2}
PAPER_STYLE = {"marker": "s", "linestyle": "--", "linewidth": 1.5, "alpha": 0.8}
FORMATS = (".png", ".svg")


@dataclass
class Series:
    """One drawn series: label (as in the legend), points, and the panel it is on."""

    label: str
    x: list[float]
    y: list[float]
    panel: str = ""
    yerr: list[float] = field(default_factory=list)  # sample std over seeds (ours only)
    point_labels: list[str] = field(default_factory=list)  # text beside each point


@dataclass
class Plot:
    """A written figure: its files and the series on it."""

    name: str
    paths: list[Path]
    series: list[Series]

    def labels(self) -> list[str]:
        return [s.label for s in self.series]


def make_plots(sweep: SweepRecord, out_dir: Path, paper: dict[str, PaperTable] | None = None) -> list[Plot]:
    """The plots of a sweep, by its name (none for sweeps without a paper plot)."""
    paper = load_paper() if paper is None else paper
    if sweep.name == "gamma_alpha":
        return [plot_ap_vs_gamma(sweep.trials, paper["table1b_gamma_alpha"], out_dir)]
    if sweep.name == "alpha_ce":
        return [plot_ap_vs_alpha(sweep.trials, paper["table1a_alpha_ce"], out_dir)]
    if sweep.name == "anchors":
        return [plot_anchor_grid(sweep.trials, paper["table1c_anchors"], out_dir)]
    if sweep.name == "speed_accuracy":
        return [plot_figure2(sweep.trials, paper["table1e_speed_accuracy"],
                             paper["figure2_speed_accuracy"], out_dir, sweep.profile)]
    return []


def plot_ap_vs_gamma(trials: Sequence[TrialRecord], paper: PaperTable, out_dir: Path) -> Plot:
    """AP vs gamma, each gamma at its best alpha (Table 1b), ours beside the paper's curve."""
    per_gamma = best_per_first_key(group_trials(trials, keys.gamma_alpha_key).values())
    ours = _series("ours (best α per γ)", [g for g in per_gamma.values() if g.mean() is not None],
                   x=lambda g: g.key[0], point_label=lambda g: f"α={g.key[1]:g}")
    theirs = Series("paper (Table 1b)", [r["gamma"] for r in paper.rows], [r["AP"] for r in paper.rows],
                    point_labels=[f"α={r['alpha']:g}" for r in paper.rows])
    fig, ax = _figure()
    _draw(ax, [ours, theirs])
    _annotate(ax, ours)
    _annotate(ax, theirs, color="gray")
    ax.set(xlabel="γ (focusing parameter)", ylabel="COCO AP (%)",
           title="AP vs γ, each γ at its best α (Table 1b)")
    return _save(fig, ax, out_dir / "ap_vs_gamma", [ours, theirs])


def plot_ap_vs_alpha(trials: Sequence[TrialRecord], paper: PaperTable, out_dir: Path) -> Plot:
    """AP vs alpha for alpha-balanced CE (gamma = 0, Table 1a), ours and the paper's."""
    groups = [g for g in group_trials(trials, keys.alpha_key).values() if g.mean() is not None]
    ours = _series("ours (CE, γ = 0)", groups, x=lambda g: g.key[0])
    theirs = Series("paper (Table 1a)", [r["alpha"] for r in paper.rows], [r["AP"] for r in paper.rows])
    fig, ax = _figure()
    _draw(ax, [ours, theirs])
    ax.set(xlabel="α (weight of the positive class)", ylabel="COCO AP (%)",
           title="AP vs α for α-balanced cross entropy (Table 1a)")
    return _save(fig, ax, out_dir / "ap_vs_alpha", [ours, theirs])


def plot_anchor_grid(trials: Sequence[TrialRecord], paper: PaperTable, out_dir: Path) -> Plot:
    """Grouped bars: AP per #scales per octave, one bar per (source, #aspect ratios)."""
    groups = group_trials(trials, keys.anchors_key)
    ratios = sorted({k[1] for k in groups if k[1] is not None} | {r["num_aspects"] for r in paper.rows})
    series, colors = [], []
    for i, count in enumerate(ratios):  # ours beside the paper's, one colour per #ratios
        done = [g for k, g in groups.items() if k[1] == count and g.mean() is not None]
        series.append(_series(f"ours, {_plural(count, 'aspect ratio')}", done, x=lambda g: g.key[0]))
        rows = sorted((r for r in paper.rows if r["num_aspects"] == count), key=lambda r: r["num_scales"])
        series.append(Series(f"paper, {_plural(count, 'aspect ratio')}",
                             [r["num_scales"] for r in rows], [r["AP"] for r in rows]))
        colors += [f"C{i}", f"C{i}"]
    fig, ax = _figure()
    _bars(ax, series, colors)
    ax.set(xlabel="anchor scales per octave", ylabel="COCO AP (%)",
           title="AP for the anchor grid: scales x aspect ratios (Table 1c)")
    ax.set_ylim(0, 1.25 * max((y for s in series for y in s.y), default=1.0))  # room for the legend
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", ncol=2)
    return _write(fig, out_dir / "anchors_ap", series)


def plot_figure2(trials: Sequence[TrialRecord], table1e: PaperTable, figure2: PaperTable,
                 out_dir: Path, profile: str = "") -> Plot:
    """Figure 2: AP vs ms/image, one line per depth across scales; paper in its own panel.

    Two panels because the times are not comparable: ours were measured on
    whatever ran the sweep, the paper's on an Nvidia M40 GPU.
    """
    fig = Figure(figsize=(12, 5), layout="constrained")
    FigureCanvasAgg(fig)
    ours_ax, paper_ax = fig.subplots(1, 2)
    ours = _speed_series(trials, "ours")
    theirs = _paper_speed_series(table1e, figure2)
    _draw(ours_ax, ours)
    _draw(paper_ax, theirs[:-1])
    _draw_markers(paper_ax, theirs[-1])
    for ax, series in [(ours_ax, s) for s in ours] + [(paper_ax, s) for s in theirs[:-1]]:
        _annotate(ax, series)
    where = f"profile {profile}, " if profile else ""
    ours_ax.set(xlabel=f"inference time (ms/image, {where}the machine that ran the sweep)",
                ylabel="COCO AP (%)", title="ours (labels: input scale)")
    paper_ax.set(xlabel="inference time (ms/image, Nvidia M40 GPU)", ylabel="COCO AP (%)",
                 title="paper: Table 1e RetinaNet and Figure 2 detectors")
    fig.suptitle("Figure 2: speed vs accuracy (times of the two panels are not comparable)")
    for ax in (ours_ax, paper_ax):
        _finish_axes(ax)
    return _write(fig, out_dir / "figure2", ours + theirs)


def _speed_series(trials: Sequence[TrialRecord], panel: str) -> list[Series]:
    """One series per depth: (ms/image, AP) across input scales, ordered by scale."""
    groups = [g for g in group_trials(trials, keys.speed_key).values()
              if g.mean() is not None and g.mean("ms_per_image") is not None]
    series = []
    for depth in sorted({g.key[0] for g in groups}):
        members = sorted((g for g in groups if g.key[0] == depth), key=lambda g: g.key[1])
        s = _series(f"ours ResNet-{depth}", members, x=lambda g: g.mean("ms_per_image"),
                    point_label=lambda g: f"{g.key[1]:g}")
        s.panel = panel
        series.append(s)
    return series


def _paper_speed_series(table1e: PaperTable, figure2: PaperTable) -> list[Series]:
    """RetinaNet-50/-101 lines of Table 1e, then the other detectors of Figure 2 (last)."""
    series = []
    for depth in sorted({r["depth"] for r in table1e.rows}):
        rows = [r for r in table1e.rows if r["depth"] == depth]
        series.append(Series(f"RetinaNet-{depth} (paper Table 1e)",
                             [r["time_ms"] for r in rows], [r["AP"] for r in rows], panel="paper",
                             point_labels=[f"{r['scale']}" for r in rows]))
    others = [r for r in figure2.rows if not r["label"].startswith("RetinaNet")]
    series.append(Series("other detectors (paper Figure 2)", [r["time_ms"] for r in others],
                         [r["AP"] for r in others], panel="paper",
                         point_labels=[r["label"] for r in others]))
    return series


def _series(label: str, groups: Sequence[Group], x: Callable[[Group], float],
            point_label: Callable[[Group], str] | None = None) -> Series:
    """Mean AP (y) and std (error bar) of finished groups, sorted by x(group)."""
    ordered = sorted(groups, key=x)
    stats = [g.stat("AP") for g in ordered]
    return Series(label, [x(g) for g in ordered], [s.mean for s in stats],
                  yerr=[s.std or 0.0 for s in stats],
                  point_labels=[point_label(g) for g in ordered] if point_label else [])


def _figure() -> tuple[Figure, Axes]:
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _draw(ax: Axes, series: Sequence[Series]) -> None:
    """Lines with markers: ours solid (error bars when seeds vary), the paper's dashed."""
    for s in series:
        style = PAPER_STYLE if s.label.startswith(("paper", "RetinaNet")) else OURS_STYLE
        if any(s.yerr):
            ax.errorbar(s.x, s.y, yerr=s.yerr, label=s.label, capsize=3, **style)
        else:
            ax.plot(s.x, s.y, label=s.label, **style)


def _draw_markers(ax: Axes, series: Series) -> None:
    """The other detectors: gray markers, each named beside it."""
    ax.scatter(series.x, series.y, marker="^", color="gray", label=series.label, zorder=3)
    _annotate(ax, series, color="dimgray")


def _bars(ax: Axes, series: Sequence[Series], colors: Sequence[str]) -> None:
    """Bars grouped by x (scales per octave); the paper's bars light and hatched."""
    xs = sorted({x for s in series for x in s.x})
    width = 0.8 / max(len(series), 1)
    for i, (s, color) in enumerate(zip(series, colors)):
        offset = (i - (len(series) - 1) / 2) * width
        positions = [xs.index(x) + offset for x in s.x]
        paper = s.label.startswith("paper")
        bars = ax.bar(positions, s.y, width, label=s.label, color=color, hatch="//" if paper else None,
                      alpha=0.45 if paper else 1.0, yerr=None if paper or not any(s.yerr) else s.yerr)
        ax.bar_label(bars, fmt="%.1f", fontsize=7, padding=2)
    ax.set_xticks(range(len(xs)), [f"{x:g}" for x in xs])


def _annotate(ax: Axes, series: Series, color: str = "black") -> None:
    """Write each point's label beside it."""
    for x, y, text in zip(series.x, series.y, series.point_labels):
        ax.annotate(text, (x, y), xytext=(5, 5), textcoords="offset points", fontsize=8, color=color)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _finish_axes(ax: Axes) -> None:
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:  # a panel may be empty (no finished trial yet)
        ax.legend(fontsize=8, loc="best")


def _save(fig: Figure, ax: Axes, stem: Path, series: list[Series]) -> Plot:
    _finish_axes(ax)
    return _write(fig, stem, series)


def _write(fig: Figure, stem: Path, series: list[Series]) -> Plot:
    """Save as PNG (150 dpi) and SVG next to each other."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(fmt) for fmt in FORMATS]
    for path in paths:
        fig.savefig(path, dpi=150)
    return Plot(stem.name, paths, series)
