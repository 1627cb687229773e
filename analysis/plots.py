"""The plot a sweep declares (`sweep.table.plot`), with the paper's numbers as reference (PNG + SVG).

`PLOT_KINDS` is the registry a declaration's `plot.kind` names:

| kind | options | draws |
|---|---|---|
| `curve` | x; name, title, xlabel, label, baseline | the rank metric vs row column x, ours beside the paper's curve (one line per value of the other row columns; with best_of, each point at its best value) |
| `bars` | x, group; name, title, xlabel, noun, baseline | grouped bars: per x, one bar per (source, group value) |
| `figure2` | line, point, others; name, title, label, paper_label, time, paper_time | Figure 2: AP vs ms/image, one line per `line` value across `point`s; the paper's lines and the other detectors of table `others` in their own panel |
| `parallel` | name, title, metric | parallel coordinates of the trials: one line per finished trial across the overrides that vary, ending on the metric (default: the rank metric), coloured by it (open searches) |

Where ours stands beside the paper's on one axis (`curve`, `bars`), each is
drawn relative to its own value in one baseline cell (Δ AP in points): the
cpu profile's AP (3-15) and the paper's (30-38) are far apart, and on one
absolute axis one curve is squashed flat; relative, both shapes show on
one scale and read directly as the paper's comparisons ("γ = 2 is +2.9
over CE"). The baseline is the declared `baseline` cell ({column: value}),
else the cell the paper found best among those we finished (never a
collapsed cell like α = .1's 0 AP); the title says which, with both
absolute values there. The absolute numbers stay in the tables. Without a
cell both have, or without a paper, the axis is absolute. `figure2` keeps
two panels, each on its own scale (the times are not comparable either).

Figures are drawn on matplotlib's Agg canvas directly (no pyplot), so the
caller's backend is never changed; matplotlib is imported only when drawing
(declarations are checked where it is not needed). Every plot returns a
`Plot` holding the series it drew, so tests (and notebooks) can check the
data. Points come from finished runs only (mean over seeds, std as error bar).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

from analysis.layout import COCO_METRICS, FINISHED, SPEED_METRIC, shown
from analysis.records import split_overrides
from analysis.rows import KeyedRow, lines, select, sortable
from analysis.sweep import SweepRecord

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

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
    reference: bool = False  # the paper's numbers (drawn dashed / light)
    offset: float = 0.0  # subtracted from every y: the series' value in the baseline cell (0: absolute)


@dataclass
class Plot:
    """A written figure: its files and the series on it."""

    name: str
    paths: list[Path]
    series: list[Series]

    def labels(self) -> list[str]:
        return [s.label for s in self.series]


@dataclass(frozen=True)
class Baseline:
    """The cell ours and the paper's are each drawn relative to (Δ = value - its value here)."""

    label: str  # the cell as the table names it, e.g. "γ=2" or "#sc=2, #ar=3"
    ours: float  # our mean there (percent for AP)
    paper: float  # the paper's number there

    def ylabel(self, metric: str) -> str:
        return f"Δ {metric} against {self.label} (points)"

    def caption(self, metric: str) -> str:
        """The line under the title: where 0 is, in absolute numbers for both."""
        return f"0 = each one's {metric} at {self.label} (ours {self.ours:.1f}, paper {self.paper:.1f})"


@dataclass(frozen=True)
class PlotKind:
    """A registered plot: its drawing function and the options a declaration may give."""

    draw: Callable[[SweepRecord, Path], Plot]  # (the sweep, the folder) -> the written plot
    required: tuple[str, ...]
    optional: tuple[str, ...]
    columns: tuple[str, ...] = ()  # options that name a row column
    cells: tuple[str, ...] = ()  # options that name a cell: {row column: value}
    tables: tuple[str, ...] = ()  # options that name a reference table
    needs_paper: bool = False


def make_plots(sweep: SweepRecord, out_dir: Path) -> list[Plot]:
    """The plot the sweep declares (none without `plot:`)."""
    plot = sweep.table.plot
    return [] if plot is None else [PLOT_KINDS[plot.kind].draw(sweep, out_dir)]


# -- the kinds ------------------------------------------------------------------------
def plot_curve(sweep: SweepRecord, out_dir: Path) -> Plot:
    """The rank metric vs row column x, ours (error bars: std over seeds) and the paper's,
    each relative to its own value in the baseline cell when there is one."""
    declaration, x = sweep.table, _option(sweep, "x")
    metric, best_of = declaration.rank_metric, declaration.best_of
    others = [c for c in declaration.key_columns if c != x]
    default = "ours" + (f" (best {sweep.table.header(best_of)} per {sweep.table.header(x)})" if best_of else "")
    point_label = (lambda value: f"{sweep.table.header(best_of)}={value:g}") if best_of else None
    baseline = find_baseline(sweep)
    series = []
    for level, members in lines(_finished(sweep.rows, metric), declaration.key_columns, others).items():
        series.append(_series(_option(sweep, "label", default) + _level(others, level), members, metric,
                              x=lambda r: r.values(declaration.key_columns)[x],
                              point_label=(lambda r: point_label(r.choice(declaration))) if point_label else None))
    paper = sweep.paper
    if paper is not None:
        column = declaration.paper_metrics[0]
        for level, members in lines(paper.rows, declaration.key_columns, others).items():
            members = sorted((r for r in members if r.get(column) is not None), key=lambda r: sortable((r[x],)))
            series.append(Series(f"paper ({declaration.short_title})" + _level(others, level),
                                 [r[x] for r in members], [r[column] for r in members], reference=True,
                                 point_labels=[point_label(r[best_of]) for r in members] if point_label else []))
    series = [_relative(s, baseline) for s in series]
    fig, ax = _figure()
    if baseline is not None:
        ax.axhline(0.0, color="gray", linewidth=0.8, zorder=0)
    _draw(ax, series)
    for s in series:  # a label where it changes along the line: repeats overlapped at close x (γ 0, .1, .2)
        _annotate(ax, s, color="gray" if s.reference else "black", labels=changes_only(s.point_labels))
    ax.set(xlabel=_option(sweep, "xlabel", sweep.table.header(x)), ylabel=_axis_label(metric, baseline))
    title = f"{metric} vs {sweep.table.header(x)} ({declaration.short_title})"
    _title(ax, _option(sweep, "title", title), metric, baseline)
    _finish_axes(ax)
    return _write(fig, out_dir / _option(sweep, "name", f"{metric.lower()}_vs_{x}"), series)


def plot_bars(sweep: SweepRecord, out_dir: Path) -> Plot:
    """Grouped bars: the rank metric per x, one bar per (ours | paper, group value),
    each relative to its own value in the baseline cell when there is one."""
    declaration = sweep.table
    x, group, metric = _option(sweep, "x"), _option(sweep, "group"), declaration.rank_metric
    noun = _option(sweep, "noun", sweep.table.header(group))
    columns = declaration.key_columns
    ours = _finished(sweep.rows, metric)
    paper = sweep.paper
    baseline = find_baseline(sweep)
    values = {r.values(columns)[group] for r in sweep.rows if r.group is not None} - {None}
    values |= {r[group] for r in paper.rows} if paper else set()
    series, colors = [], []
    for i, value in enumerate(sorted(values, key=lambda v: sortable((v,)))):  # one colour per group value
        members = [r for r in ours if r.values(columns)[group] == value]
        series.append(_series(f"ours, {_plural(value, noun)}", members, metric, x=lambda r: r.values(columns)[x]))
        colors.append(f"C{i}")
        if paper is not None:
            column = declaration.paper_metrics[0]
            rows = sorted((r for r in paper.rows if r[group] == value), key=lambda r: sortable((r[x],)))
            series.append(Series(f"paper, {_plural(value, noun)}", [r[x] for r in rows],
                                 [r[column] for r in rows], reference=True))
            colors.append(f"C{i}")
    series = [_relative(s, baseline) for s in series]
    fig, ax = _figure()
    _bars(ax, series, colors, signed=baseline is not None)
    ax.set(xlabel=_option(sweep, "xlabel", sweep.table.header(x)), ylabel=_axis_label(metric, baseline))
    _title(ax, _option(sweep, "title", f"{metric} by {sweep.table.header(x)} and {noun} ({declaration.short_title})"),
           metric, baseline)
    ax.set_ylim(*_bar_limits(series))
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", ncol=2)
    return _write(fig, out_dir / _option(sweep, "name", f"{metric.lower()}_bars"), series)


def plot_figure2(sweep: SweepRecord, out_dir: Path) -> Plot:
    """Figure 2: AP vs ms/image, one line per `line` value across `point`s; paper in its own panel.

    Two panels because the times are not comparable: ours were measured on
    whatever ran the sweep, the paper's on an Nvidia M40 GPU.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 5), layout="constrained")
    FigureCanvasAgg(fig)
    ours_ax, paper_ax = fig.subplots(1, 2)
    ours = _speed_series(sweep)
    theirs = _paper_speed_series(sweep)
    _draw(ours_ax, ours)
    _draw(paper_ax, theirs[:-1])
    _draw_markers(paper_ax, theirs[-1])
    for ax, series in [(ours_ax, s) for s in ours] + [(paper_ax, s) for s in theirs[:-1]]:
        _annotate(ax, series)
    where = f"profile {sweep.profile}, " if sweep.profile else ""
    ours_ax.set(xlabel=f"inference time (ms/image, {where}the machine that ran the sweep)",
                ylabel="COCO AP (%)", title=f"ours (labels: {sweep.table.header(_option(sweep, 'point'))})")
    paper_ax.set(xlabel="inference time (ms/image, Nvidia M40 GPU)", ylabel="COCO AP (%)",
                 title=f"paper: {sweep.table.short_title} RetinaNet and Figure 2 detectors")
    fig.suptitle(_option(sweep, "title", "Figure 2: speed vs accuracy (times of the two panels are not comparable)"))
    for ax in (ours_ax, paper_ax):
        _finish_axes(ax)
    return _write(fig, out_dir / _option(sweep, "name", "figure2"), ours + theirs)


def plot_parallel(sweep: SweepRecord, out_dir: Path) -> Plot:
    """Parallel coordinates: one line per finished trial across the overrides that vary
    (each axis scaled to its range; lists and strings as categories), ending on the
    metric; the line's colour is the metric too, so the good regions stand out."""
    metric = _option(sweep, "metric", sweep.table.rank_metric)
    trials = [t for t in sweep.trials if t.status == FINISHED and shown(metric, t.metrics.get(metric)) is not None]
    keys = split_overrides(trials)[1]
    axes = [_parallel_axis(sweep.table.header(k), [t.value(k) for t in trials]) for k in keys]
    axes.append(_parallel_axis(_ylabel(metric), [shown(metric, t.metrics[metric]) for t in trials]))
    fig, ax = _figure()
    fig.set_size_inches(max(7.0, 1.8 * len(axes)), 4.5)
    series = _draw_parallel(ax, axes, [shown(metric, t.metrics[metric]) for t in trials],
                            [t.run_id[:8] for t in trials], metric, fig)
    ax.set_title(_option(sweep, "title", f"{len(trials)} trials: the values that vary, and {metric}"))
    return _write(fig, out_dir / _option(sweep, "name", "parallel_coordinates"), series)


PLOT_KINDS: dict[str, PlotKind] = {
    "curve": PlotKind(plot_curve, ("x",), ("name", "title", "xlabel", "label", "baseline"), columns=("x",),
                      cells=("baseline",)),
    "bars": PlotKind(plot_bars, ("x", "group"), ("name", "title", "xlabel", "noun", "baseline"),
                     columns=("x", "group"), cells=("baseline",)),
    "figure2": PlotKind(plot_figure2, ("line", "point", "others"),
                        ("name", "title", "label", "paper_label", "time", "paper_time"),
                        columns=("line", "point"), tables=("others",), needs_paper=True),
    "parallel": PlotKind(plot_parallel, (), ("name", "title", "metric")),
}


def _option(sweep: SweepRecord, name: str, default: Any = None) -> Any:
    """An option the sweep's `plot:` declares (analysis/parse.py checked its name)."""
    return sweep.table.plot.get(name, default)


# -- the baseline cell -----------------------------------------------------------------
def find_baseline(sweep: SweepRecord) -> Optional[Baseline]:
    """The cell both curves are drawn relative to: the declared `baseline` if both have it
    finished, else the one the paper found best among those both have (the first such in
    the table's order on a tie); None without the paper's numbers or a cell both have."""
    declaration, paper = sweep.table, sweep.paper
    if paper is None or not declaration.paper_metrics:
        return None
    metric, column = declaration.rank_metric, declaration.paper_metrics[0]
    both = [r for r in _finished(sweep.rows, metric) if r.paper is not None and r.paper.get(column) is not None]
    if _option(sweep, "baseline") is not None:
        both = select(both, declaration.key_columns, _option(sweep, "baseline"))
    if not both:
        return None
    row = max(both, key=lambda r: r.paper[column])  # max keeps the first of equals
    return Baseline(row_label(sweep, row), row.group.mean(metric), row.paper[column])


def row_label(sweep: SweepRecord, row: KeyedRow) -> str:
    """A row's key as its headers show it: "γ=2", "#sc=2, #ar=3" (numbers in their shortest form)."""
    values = row.values(sweep.table.key_columns)
    return ", ".join(f"{sweep.table.header(c)}={v:g}" if isinstance(v, (int, float)) and not isinstance(v, bool)
                     else f"{sweep.table.header(c)}={v}" for c, v in values.items())


def _relative(series: Series, baseline: Optional[Baseline]) -> Series:
    """The series less its own value at the baseline (unchanged without one)."""
    if baseline is None:
        return series
    offset = baseline.paper if series.reference else baseline.ours
    return replace(series, y=[y - offset for y in series.y], offset=offset)


def _axis_label(metric: str, baseline: Optional[Baseline]) -> str:
    return _ylabel(metric) if baseline is None else baseline.ylabel(_ylabel(metric).removesuffix(" (%)"))


def _title(ax: "Axes", title: str, metric: str, baseline: Optional[Baseline]) -> None:
    """The title, and under it (relative plots) where zero is, in absolute numbers."""
    ax.set_title(title if baseline is None else f"{title}\n{baseline.caption(metric)}",
                 fontsize=None if baseline is None else 10)


# -- series ---------------------------------------------------------------------------
def _speed_series(sweep: SweepRecord) -> list[Series]:
    """One series per `line` value: (ms/image, AP) across `point`s, ordered by point."""
    columns = sweep.table.key_columns
    line, point, time = _option(sweep, "line"), _option(sweep, "point"), _option(sweep, "time", SPEED_METRIC)
    done = [r for r in _finished(sweep.rows, "AP") if r.group.mean(time) is not None]
    series = []
    for value in sorted({r.values(columns)[line] for r in done}, key=lambda v: sortable((v,))):
        members = sorted((r for r in done if r.values(columns)[line] == value),
                         key=lambda r: sortable((r.values(columns)[point],)))
        s = _series(_option(sweep, "label", "ours ResNet-{}").format(value), members, "AP",
                    x=lambda r: r.group.mean(time), point_label=lambda r: f"{r.values(columns)[point]:g}", sort=False)
        s.panel = "ours"
        series.append(s)
    return series


def _paper_speed_series(sweep: SweepRecord) -> list[Series]:
    """The paper's lines of the declared table, then the other detectors of `others` (last)."""
    line, point, time = _option(sweep, "line"), _option(sweep, "point"), _option(sweep, "paper_time", "time_ms")
    table = sweep.paper
    label = _option(sweep, "paper_label", "RetinaNet-{} (paper " + sweep.table.short_title + ")")
    series = []
    for value in sorted({r[line] for r in table.rows}, key=lambda v: sortable((v,))):
        rows = [r for r in table.rows if r[line] == value]
        series.append(Series(label.format(value), [r[time] for r in rows], [r["AP"] for r in rows],
                             panel="paper", point_labels=[f"{r[point]}" for r in rows], reference=True))
    others = [r for r in sweep.papers[_option(sweep, "others")].rows if not str(r["label"]).startswith("RetinaNet")]
    series.append(Series("other detectors (paper Figure 2)", [r["time_ms"] for r in others],
                         [r["AP"] for r in others], panel="paper", point_labels=[r["label"] for r in others],
                         reference=True))
    return series


def _finished(rows: Sequence[KeyedRow], metric: str) -> list[KeyedRow]:
    """Our rows with a mean of `metric` over finished seeds."""
    return [r for r in rows if r.group is not None and r.group.mean(metric) is not None]


def _level(others: Sequence[str], level: tuple) -> str:
    return "".join(f", {c}={v}" for c, v in zip(others, level))


def _series(label: str, rows: Sequence[KeyedRow], metric: str, x: Callable[[KeyedRow], float],
            point_label: Optional[Callable[[KeyedRow], str]] = None, sort: bool = True) -> Series:
    """Mean (y) and std (error bar) of `metric` of finished rows, sorted by x(row)."""
    ordered = sorted(rows, key=x) if sort else list(rows)
    stats = [r.group.stat(metric) for r in ordered]
    return Series(label, [x(r) for r in ordered], [s.mean for s in stats], yerr=[s.std or 0.0 for s in stats],
                  point_labels=[point_label(r) for r in ordered] if point_label else [])


def _ylabel(metric: str) -> str:
    return f"COCO {metric} (%)" if metric in COCO_METRICS else metric


def _plural(count: Any, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


@dataclass(frozen=True)
class _Axis:
    """One vertical axis of a parallel-coordinates plot: its values placed in [0, 1] and its tick labels."""

    label: str
    positions: list[float]
    ticks: list[tuple[float, str]]


def _parallel_axis(label: str, values: Sequence[Any]) -> _Axis:
    """Numbers scaled by their range; anything else (lists, strings) as evenly spaced categories."""
    if values and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        low, high = min(values), max(values)
        span = (high - low) or 1.0
        return _Axis(label, [(v - low) / span for v in values], [(0.0, f"{low:.3g}"), (1.0, f"{high:.3g}")])
    names = sorted({str(v) for v in values})
    place = {name: i / max(len(names) - 1, 1) for i, name in enumerate(names)}
    return _Axis(label, [place[str(v)] for v in values], [(p, n) for n, p in place.items()])


def _draw_parallel(ax: "Axes", axes: Sequence[_Axis], scores: Sequence[float], names: Sequence[str],
                   metric: str, fig: "Figure") -> list[Series]:
    """The polylines (coloured by score, best on top), the axes with their ticks, a colour bar."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    norm = Normalize(min(scores, default=0.0), max(scores, default=1.0))
    cmap = colormaps["viridis"]
    xs = list(range(len(axes)))
    series = []
    for i in sorted(range(len(scores)), key=lambda j: scores[j]):
        ys = [axis.positions[i] for axis in axes]
        ax.plot(xs, ys, color=cmap(norm(scores[i])), linewidth=1.8, alpha=0.85)
        series.append(Series(names[i], [float(x) for x in xs], ys))
    for x, axis in zip(xs, axes):
        ax.axvline(x, color="black", linewidth=0.8)
        for position, text in axis.ticks:
            ax.annotate(text, (x, position), xytext=(4, 0), textcoords="offset points", fontsize=7, va="center")
    ax.set_xticks(xs, [axis.label for axis in axes])
    ax.set_yticks([])
    ax.set_xlim(-0.2, len(axes) - 0.6)
    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, label=_ylabel(metric))
    return series


# -- drawing --------------------------------------------------------------------------
def _figure() -> tuple["Figure", "Axes"]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _draw(ax: "Axes", series: Sequence[Series]) -> None:
    """Lines with markers: ours solid (error bars when seeds vary), the paper's dashed."""
    for s in series:
        style = PAPER_STYLE if s.reference else OURS_STYLE
        if any(s.yerr):
            ax.errorbar(s.x, s.y, yerr=s.yerr, label=s.label, capsize=3, **style)
        else:
            ax.plot(s.x, s.y, label=s.label, **style)


def _draw_markers(ax: "Axes", series: Series) -> None:
    """The other detectors: gray markers, each named beside it."""
    ax.scatter(series.x, series.y, marker="^", color="gray", label=series.label, zorder=3)
    _annotate(ax, series, color="dimgray")


def _bars(ax: "Axes", series: Sequence[Series], colors: Sequence[str], signed: bool = False) -> None:
    """Bars grouped by x; the paper's bars light and hatched; `signed`: Δ values, labelled +/-."""
    xs = sorted({x for s in series for x in s.x})
    width = 0.8 / max(len(series), 1)
    for i, (s, color) in enumerate(zip(series, colors)):
        offset = (i - (len(series) - 1) / 2) * width
        positions = [xs.index(x) + offset for x in s.x]
        bars = ax.bar(positions, s.y, width, label=s.label, color=color, hatch="//" if s.reference else None,
                      alpha=0.45 if s.reference else 1.0,
                      yerr=None if s.reference or not any(s.yerr) else s.yerr)
        ax.bar_label(bars, fmt="%+.1f" if signed else "%.1f", fontsize=7, padding=2)
    if signed:
        ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(xs)), [f"{x:g}" for x in xs])


def _bar_limits(series: Sequence[Series]) -> tuple[float, float]:
    """From 0 (or the lowest Δ bar) to the highest, with room for the labels and, on top, the legend."""
    ys = [y + sign * e for s in series for y, e in zip(s.y, s.yerr or [0.0] * len(s.y)) for sign in (-1, 1)]
    low, high = min([0.0, *ys]), max([0.0, *ys])
    span = (high - low) or 1.0
    return (low - 0.08 * span if low < 0 else 0.0), high + 0.3 * span


def _annotate(ax: "Axes", series: Series, color: str = "black", labels: Optional[Sequence[str]] = None) -> None:
    """Write each point's label (or `labels`, one per point; "" for none) beside it."""
    for x, y, text in zip(series.x, series.y, series.point_labels if labels is None else labels):
        if text:
            ax.annotate(text, (x, y), xytext=(5, 5), textcoords="offset points", fontsize=8, color=color)


def changes_only(labels: Sequence[str]) -> list[str]:
    """Each label where it differs from the one before, else "": ["a", "a", "b", "a"] -> ["a", "", "b", "a"]."""
    return [text if i == 0 or text != labels[i - 1] else "" for i, text in enumerate(labels)]


def _finish_axes(ax: "Axes") -> None:
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:  # a panel may be empty (no finished trial yet)
        ax.legend(fontsize=8, loc="best")


def _write(fig: "Figure", stem: Path, series: list[Series]) -> Plot:
    """Save as PNG (150 dpi) and SVG next to each other."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(fmt) for fmt in FORMATS]
    for path in paths:
        fig.savefig(path, dpi=150)
    return Plot(stem.name, paths, series)
