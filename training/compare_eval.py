"""Does a retrained model beat the committed one? Two ``idinvert eval`` JSON files side by side.

Usage::

    python -m idinvert.training.compare_eval hub/bundled/faces64/eval.json NEW/eval.json

Prints each figure of the issue-12 table for both (lower or higher is better, as marked) and a
verdict. The new model **beats** the old one when, on the same eval settings (seed, n, steps):

* it meets at least as many of the eval's targets (``targets`` in the JSON), and
* it is not worse on the generator (KID) and the in-domain reconstruction (MSE and LPIPS),
* nor on in-domain editing: mean preservation not lower by more than 0.01 and the number of
  boundaries meeting the per-boundary target not smaller.

Exit status 0 when it beats the old model, 1 when it does not, 2 when the two evals are not
comparable (different settings) or a file is unreadable.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

#: ``(label, path into the eval JSON, True when higher is better)``
FIGURES: tuple[tuple[str, tuple[str, ...], bool], ...] = (
    ("generator KID", ("generator", "kid"), False),
    ("generator FID", ("generator", "fid"), False),
    ("samples' label gap", ("generator", "labels", "mean_gap"), False),
    ("encoder MSE", ("reconstruction", "encoder", "mse"), False),
    ("encoder LPIPS", ("reconstruction", "encoder", "lpips"), False),
    ("in-domain MSE", ("reconstruction", "in_domain", "mse"), False),
    ("in-domain LPIPS", ("reconstruction", "in_domain", "lpips"), False),
    ("in-domain MSE / encoder's", ("targets", "in_domain_mse_vs_encoder", "value"), False),
    ("MSE-only MSE", ("reconstruction", "mse_optimization", "mse"), False),
    (
        "attributes kept by in-domain recon.",
        ("reconstruction", "in_domain", "attribute_preservation"),
        True,
    ),  # noqa: E501
    ("in-domain edit success (mean)", ("editing_summary", "in_domain", "success"), True),
    ("in-domain edit preserved (mean)", ("editing_summary", "in_domain", "preserved"), True),
    ("boundaries meeting both edit targets", ("targets", "editing_per_boundary", "value"), True),
    ("in-domain success >= MSE-only", ("targets", "in_domain_beats_mse_only", "value"), True),
    ("weights (MiB)", ("config", "weights_mib"), False),
)
#: Settings that must agree for the figures to be comparable.
SETTINGS = ("n", "seed", "steps", "lr", "perceptual_weight", "domain_weight", "baseline_init")
#: Mean edit preservation may drop this much before the new model counts as worse.
PRESERVED_SLACK = 0.01


def figure(result: dict[str, Any], path: tuple[str, ...]) -> float | None:
    """The number at ``path`` in an eval result, ``None`` where it is missing."""
    node: Any = result
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return float(node) if isinstance(node, (int, float)) else None


def targets_met(result: dict[str, Any]) -> int:
    """How many of the eval's targets are met."""
    return sum(bool(t.get("met")) for t in result.get("targets", {}).values())


def differing_settings(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Eval settings that differ between the two results (``name: old -> new``)."""
    a, b = old.get("config", {}), new.get("config", {})
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in SETTINGS if a.get(k) != b.get(k)]


def verdict(old: dict[str, Any], new: dict[str, Any]) -> tuple[bool, list[str]]:
    """``(new beats old, reasons it does not)`` by the rule in the module docstring."""
    reasons = []
    if targets_met(new) < targets_met(old):
        reasons.append(f"meets fewer targets ({targets_met(new)} < {targets_met(old)})")
    for label, path in (
        ("generator KID", ("generator", "kid")),
        ("in-domain MSE", ("reconstruction", "in_domain", "mse")),
        ("in-domain LPIPS", ("reconstruction", "in_domain", "lpips")),
    ):
        a, b = figure(old, path), figure(new, path)
        if a is not None and (b is None or b > a):
            reasons.append(f"{label} worse ({a:.4g} -> {b})")
    path = ("editing_summary", "in_domain", "preserved")
    a, b = figure(old, path), figure(new, path)
    if a is not None and (b is None or b < a - PRESERVED_SLACK):
        reasons.append(f"in-domain edit preservation lower ({a:.3f} -> {b})")
    path = ("targets", "editing_per_boundary", "value")
    a, b = figure(old, path), figure(new, path)
    if a is not None and (b is None or b < a):
        reasons.append(f"fewer boundaries meet the edit targets ({a:g} -> {b})")
    return not reasons, reasons


def table(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The figures side by side with which side is better."""
    lines = [f"{'figure':40s} {'old':>10s} {'new':>10s}  better"]
    for label, path, higher in FIGURES:
        a, b = figure(old, path), figure(new, path)
        fa = "-" if a is None else f"{a:.4g}"
        fb = "-" if b is None else f"{b:.4g}"
        side = ""
        if a is not None and b is not None and fa != fb:
            side = "new" if (b > a) == higher else "old"
        lines.append(f"{label:40s} {fa:>10s} {fb:>10s}  {side}")
    lines.append(f"{'targets met':40s} {targets_met(old):>10d} {targets_met(new):>10d}")
    return lines


def main(argv: list[str] | None = None) -> int:
    """Compare; see the module docstring for the exit status."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("old", type=Path, help="eval.json of the committed model")
    ap.add_argument("new", type=Path, help="eval.json of the candidate")
    args = ap.parse_args(argv)
    try:
        old, new = (json.loads(p.read_text()) for p in (args.old, args.new))
    except (OSError, ValueError) as exc:
        print(f"cannot read the evals: {exc}", file=sys.stderr)
        return 2
    print("\n".join(table(old, new)))
    differ = differing_settings(old, new)
    if differ:
        print("not comparable, the eval settings differ: " + "; ".join(differ))
        return 2
    beats, reasons = verdict(old, new)
    print("verdict: the new model beats the old one" if beats else "verdict: keep the old model")
    for reason in reasons:
        print(f"  - {reason}")
    return 0 if beats else 1


if __name__ == "__main__":
    sys.exit(main())
