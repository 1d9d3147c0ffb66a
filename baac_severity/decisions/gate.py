"""The promotion gate: may a challenger replace the champion?

It may when

1. it beats the champion on the selection metric (``promotion.metric``, a *validation*
   metric, ``validation.roc_auc`` by default) by more than 0 and at least
   ``promotion.min_delta``, compared like with like (``decisions/comparable.py``), and
2. the paired bootstrap on the test rows both models scored does not show it significantly
   worse on that metric's test counterpart (``decisions/compare.py``).

The first promotion (no champion) has nothing to pass.
"""

from __future__ import annotations

from dataclasses import dataclass

from baac_severity.decisions import comparable, compare
from baac_severity.decisions.candidate import Candidate, Champion


class GateRefused(RuntimeError):
    """The challenger did not pass the gate; the message is the comparison."""


@dataclass
class Decision:
    passed: bool
    reasons: list[str]
    report: str  # Markdown: the selection metric, test metrics beside, the bootstrap


def _metric(metrics: dict, dotted: str) -> float | None:
    split, name = dotted.split(".", 1)
    value = (metrics.get(split) or {}).get(name)
    return None if value is None else float(value)


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}"


def gate(candidate: Candidate, champion: Champion | None) -> Decision:
    """Whether ``candidate`` may replace ``champion``, and the comparison as Markdown."""
    name = candidate.name
    if champion is None:
        return Decision(True, ["first promotion: no champion to beat"], "No champion yet.")
    settings = compare.promotion_settings(".")  # the policy: conf/promotion.yaml
    old = champion.metadata
    version = (old.get("registry") or {}).get("version")
    old_name = f"champion {old.get('experiment')} (v{version or '?'})"
    metric = settings.metric
    # Like with like (decisions/comparable.py): recorded validation values when both models
    # were validated on the same snapshot, else the validation rows both scored.
    scores = comparable.selection_scores(
        settings,
        (old, champion.predictions),
        (candidate.info, candidate.predictions),
    )
    new_value, old_value = scores.challenger, scores.champion
    reasons: list[str] = []
    if scores.problem:
        reasons.append(f"{name} cannot be compared with the champion: {scores.problem}")
    elif new_value is None or old_value is None:
        reasons.append(f"{metric} is missing for {name if new_value is None else old_name}")
    elif not settings.beats(new_value, old_value):
        reasons.append(
            f"{name} does not beat the champion on {metric}: {new_value:.4f} vs "
            f"{old_value:.4f} (gain {settings.gain(new_value, old_value):+.4f}, needs > 0 "
            f"and >= promotion.min_delta = {settings.min_delta}; {scores.basis})"
        )
    lines = [
        f"Selection metric **{metric}** (validation); test metrics are reported, not chosen on.",
        f"Selection rows: {scores.basis}.",
        "",
        f"| metric | {old_name} | {name} |",
        "|---|---|---|",
        f"| {metric} (selection rows) | {_fmt(old_value)} | {_fmt(new_value)} |",
    ]
    for dotted in [metric, *(f"test.{m}" for m in compare.HEADLINE)]:
        lines.append(
            f"| {dotted} | {_fmt(_metric(old['metrics'], dotted))} | "
            f"{_fmt(_metric(candidate.info['metrics'], dotted))} |"
        )
    if champion.predictions is None or candidate.predictions is None:
        lines += ["", "No paired bootstrap: one of the models has no per-row predictions."]
    else:
        try:
            comparison = compare.compare_predictions(
                champion.predictions, candidate.predictions, settings.bootstrap
            )
        except compare.CompareError as error:
            reasons.append(f"the models cannot be compared on the same test rows: {error}")
            lines += ["", f"No paired bootstrap: {error}."]
        else:
            lines += ["", compare.markdown_table(comparison, "champion", name)]
            check = comparison.intervals[settings.test_metric]
            if check.verdict == "worse":
                reasons.append(
                    f"{name} is significantly worse on test {settings.test_metric}: "
                    f"{check.describe()}"
                )
    return Decision(not reasons, reasons, "\n".join(lines))
