"""A drift report as one self-contained HTML page (``monitoring/templates/drift.html.j2``):
the share of drifted features over the arrival chunks against its threshold, the reference and
current distributions of every drifted feature, and the table of tests. No script and no wall
clock: the same report renders the same bytes, and opens offline or inside the dashboard.

The charts are inline SVG laid out here and drawn by the template: a chart is a few hundred
bytes, where matplotlib's SVG of the same bars is ~10 KB (a chunk with 20 drifted features
must stay under 300 KB).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from jinja2 import Environment, PackageLoader, StrictUndefined

from baac_severity.monitoring.drift import (
    DISTANCE_THRESHOLD,
    FEW_VALUES,
    LARGE_REFERENCE,
    P_VALUE_THRESHOLD,
    Distribution,
    DriftReport,
)

WIDTH, HEIGHT = 440, 170
LEFT, RIGHT, TOP, BOTTOM = 52, 8, 12, 52  # room for the axis labels


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    css: str
    title: str


@dataclass(frozen=True)
class Tick:
    x: float
    y: float
    label: str
    css: str = ""


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    bars: list[Bar]
    x_labels: list[Tick]
    y_labels: list[Tick]
    rule: float | None  # y of the threshold line
    rule_label: str
    left: int = LEFT
    right: int = WIDTH - RIGHT
    baseline: int = HEIGHT - BOTTOM


def percent(share: float | None) -> str:
    return "—" if share is None else f"{100 * share:.1f} %"


def _scale(top: float) -> float:
    """A round top for the y axis: the next 5 % above ``top`` (1 % below 10 %)."""
    step = 0.05 if top > 0.1 else 0.01
    return max(step, float(np.ceil(round(top / step, 6)) * step))


def _y(value: float, top: float) -> float:
    return TOP + (HEIGHT - TOP - BOTTOM) * (1 - value / top)


def _y_ticks(top: float) -> list[Tick]:
    return [Tick(LEFT - 4, _y(top * f, top), percent(top * f)) for f in (0.0, 0.5, 1.0)]


def distribution_chart(drawn: Distribution) -> Chart:
    """Reference and current bars side by side, one group per bin."""
    top = _scale(max(drawn.reference + drawn.current))
    group = (WIDTH - LEFT - RIGHT) / len(drawn.bins)
    bars, labels = [], []
    for index, name in enumerate(drawn.bins):
        x = LEFT + index * group
        for offset, (side, share) in enumerate(
            (("reference", drawn.reference[index]), ("current", drawn.current[index]))
        ):
            y = _y(share, top)
            bars.append(
                Bar(
                    round(x + group * (0.1 + 0.4 * offset), 1),
                    round(y, 1),
                    round(group * 0.4, 1),
                    round(HEIGHT - BOTTOM - y, 1),
                    side,
                    f"{name}: {side} {percent(share)}",
                )
            )
        labels.append(Tick(round(x + group / 2, 1), HEIGHT - BOTTOM + 10, name))
    return Chart(WIDTH, HEIGHT, bars, labels, _y_ticks(top), None, "")


def share_chart(
    shares: Sequence[tuple[str, float]], threshold: float, highlighted: str | None
) -> Chart:
    """The share of drifted features per chunk (or for the live log), red above the threshold
    (a dashed line); ``highlighted``: the chunk of this report, its label in bold."""
    top = _scale(max([threshold, *(share for _, share in shares)]))
    group = (WIDTH - LEFT - RIGHT) / max(len(shares), 1)
    bars, labels = [], []
    for index, (name, share) in enumerate(shares):
        x, y = LEFT + index * group, _y(share, top)
        bars.append(
            Bar(
                round(x + group * 0.15, 1),
                round(y, 1),
                round(group * 0.7, 1),
                round(HEIGHT - BOTTOM - y, 1),
                "above" if share > threshold else "below",
                f"{name}: {percent(share)} of the features drifted",
            )
        )
        css = "this" if name == highlighted else ""
        labels.append(Tick(round(x + group / 2, 1), HEIGHT - BOTTOM + 10, name, css))
    rule = round(_y(threshold, top), 1)
    return Chart(WIDTH, HEIGHT, bars, labels, _y_ticks(top), rule, f"limit {percent(threshold)}")


def _environment() -> Environment:
    environment = Environment(
        loader=PackageLoader("baac_severity.monitoring", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    environment.filters["percent"] = percent
    environment.filters["figure"] = lambda value: "—" if value is None else f"{value:.3f}"
    return environment


def render_html(
    report: DriftReport,
    shares: Sequence[tuple[str, float]],
    threshold: float,
    highlighted: str | None = None,
    links: dict[str, str] | None = None,
) -> str:
    """The page of ``report``; ``shares``: (label, share drifted) of every chunk (or of the
    live log) for the trend chart; ``links``: label -> the page of another chunk."""
    drifted = [f for f in report.features if f.drifted]
    rows = [report.target] if report.target is not None else []
    rows += sorted(report.features, key=lambda f: (not f.drifted, f.feature))
    worst = max(shares, key=lambda item: item[1])[0] if shares else None
    return (
        _environment()
        .get_template("drift.html.j2")
        .render(
            report=report,
            rows=rows,
            charts=[(f, distribution_chart(f.distribution)) for f in drifted if f.distribution],
            trend=share_chart(shares, threshold, highlighted),
            threshold=threshold,
            worst=worst,
            links=links or {},
            tests={
                "large": LARGE_REFERENCE,
                "few": FEW_VALUES,
                "distance": DISTANCE_THRESHOLD,
                "p_value": P_VALUE_THRESHOLD,
            },
        )
    )
