"""Collapse detection: a run whose predictions carry no information about the class.

SigProp's shared-weight target path can collapse (DESIGN.md §2): every target, and so every
prediction, becomes the same. The usual causes on real data are the input scaling (a constant
background turned into a large signal), a step too large for the layer's input norm, or a logit
scale that saturates the softmax. :func:`collapse_check` looks at a run's test split after its last
epoch; the float, golden and RTL runs all call it, and the CLI prints its one-line warning.
"""

from __future__ import annotations

import numpy as np

__all__ = ["collapse_check", "COLLAPSE_MARGIN", "COLLAPSE_SHARE"]

#: Collapsed when the test accuracy is within this of chance (the most frequent test class's share).
COLLAPSE_MARGIN = 0.02
#: Collapsed when one class takes at least this share of the test predictions.
COLLAPSE_SHARE = 0.90


def collapse_check(predictions, labels, n_classes: int, network: str = "NET.yaml") -> dict:
    """``{"collapsed": bool, "chance": float, "top_class": int, "top_share": float, "warning":
    str | None}`` for test ``predictions`` against their ``labels``.

    The warning is one line: what was seen, the likely causes and the command that tunes them.
    """
    pred = np.asarray(predictions, dtype=np.int64)
    lab = np.asarray(labels, dtype=np.int64)
    if len(pred) == 0 or len(pred) != len(lab):
        raise ValueError(f"expected as many predictions as labels, got {len(pred)} and {len(lab)}")
    acc = float(np.mean(pred == lab))
    chance = float(np.bincount(lab, minlength=n_classes).max() / len(lab))
    counts = np.bincount(pred, minlength=n_classes)
    top = int(np.argmax(counts))
    share = float(counts[top] / len(pred))
    reasons = []
    if acc <= chance + COLLAPSE_MARGIN:
        reasons.append(f"test accuracy {acc:.3f} is within {COLLAPSE_MARGIN:.2f} of chance ({chance:.3f})")
    if share >= COLLAPSE_SHARE and share > chance + COLLAPSE_MARGIN:
        reasons.append(f"class {top} takes {share:.0%} of the predictions")
    warning = None
    if reasons:
        warning = ("learning collapsed: " + " and ".join(reasons) + "; likely causes: the input scaling "
                   "(dataset.scaling: minmax01 keeps a constant background at 0), a step too large for the "
                   "input's norm (learning.lr_shift: auto, or larger), or the logit scale "
                   f"(learning.logit_shift); try: sigprop-fpga tune {network}")
    return {"collapsed": bool(reasons), "chance": chance, "top_class": top, "top_share": share, "warning": warning}
