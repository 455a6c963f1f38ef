"""Propensity scores, effective sample size and the proximal coefficient (paper §2.2, §3.2).

Eq. 11-12: a logistic classifier separates meta-training samples (label z = +1, the proposal
q) from new-task samples (z = -1, the target p); with f(x) = wᵀx + b its log-odds of "meta",
the propensity score is β(x) = P(new | x) / P(meta | x) = exp(-f(x)). The classes are
balanced by construction (as many meta samples as new-task samples are drawn), so no prior
correction is needed; if they are not, `fit_propensity` adds log(n_meta / n_new) to f so that β
remains the density ratio p(x)/q(x).

Eq. 13: ESS = (Σβ)² / (m Σβ²) ∈ [0, 1], computed on the meta-training samples the classifier was
fitted on (draws from the proposal q). Remark 3: λ = 1 - ESS.

Clipping (Remark 4), both rules selectable:
- `clip_on="beta"`: β ← min(β, beta_clip)  (Table 1's "β clipping" constants);
- `clip_on="logit"`: f ← max(f, -beta_clip), i.e. β ≤ exp(beta_clip) (the released code).
The released code also set β < 0.1 to zero (`zero_below=0.1`).

Features are standardised (mean and standard deviation of the fitting data) before the fit, so
one inverse regularisation strength C (`lam_csc`) means the same across environments; the
standardisation is folded into (w, b) so that β is a plain exp(-(wᵀx + b)) of raw features.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from sklearn.linear_model import LogisticRegression

ClipOn = Literal["beta", "logit"]


@dataclass(frozen=True)
class Propensity:
    """A fitted propensity model: f(x) = x·w + b is the log-odds that x comes from meta-training."""

    w: np.ndarray  # (d,)
    b: float
    beta_clip: float
    clip_on: ClipOn = "beta"
    zero_below: float = 0.0

    def logits(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, np.float64) @ self.w + self.b

    def beta(self, x: np.ndarray) -> np.ndarray:
        """Clipped propensity scores β(x) (eq. 12 with the clipping of Remark 4)."""
        return beta_from_logits(self.logits(x), self.beta_clip, self.clip_on, self.zero_below)


def beta_from_logits(
    logits: np.ndarray, beta_clip: float, clip_on: ClipOn = "beta", zero_below: float = 0.0
) -> np.ndarray:
    """β = exp(-f), clipped (see module docstring); entries below `zero_below` become 0."""
    f = np.asarray(logits, np.float64)
    if clip_on == "logit":
        beta = np.exp(-np.maximum(f, -beta_clip))
    elif clip_on == "beta":
        beta = np.minimum(np.exp(-f), beta_clip)
    else:
        raise ValueError(f"clip_on must be 'beta' or 'logit', got {clip_on!r}")
    if zero_below > 0.0:
        beta = np.where(beta < zero_below, 0.0, beta)
    return beta


def effective_sample_size(beta: np.ndarray) -> float:
    """Normalised ESS of eq. 13: (Σβ)² / (m Σβ²); 0 when every weight is 0."""
    beta = np.asarray(beta, np.float64)
    if beta.ndim != 1 or beta.size == 0:
        raise ValueError("ESS needs a non-empty 1-d array of weights")
    sq = float(np.sum(beta * beta))
    return 0.0 if sq == 0.0 else float(np.sum(beta) ** 2 / (beta.size * sq))


def proximal_coefficient(ess: float, fixed_lambda: float | None) -> float:
    """λ = 1 - ESS (Remark 3), or the fixed value when one is given (released: 0.1)."""
    return float(fixed_lambda) if fixed_lambda is not None else 1.0 - float(ess)


def fit_propensity(
    new: np.ndarray,
    meta: np.ndarray,
    C: float,
    beta_clip: float,
    clip_on: ClipOn = "beta",
    zero_below: float = 0.0,
    max_iter: int = 2000,
) -> Propensity:
    """Fit eq. 11 (L2 logistic regression, lbfgs, inverse strength C) on new vs meta features."""
    new = np.asarray(new, np.float64)
    meta = np.asarray(meta, np.float64)
    if new.ndim != 2 or meta.ndim != 2 or new.shape[1] != meta.shape[1]:
        raise ValueError(f"feature arrays must be (n, d) with one d: {new.shape} vs {meta.shape}")
    if len(new) == 0 or len(meta) == 0:
        raise ValueError("propensity fit needs samples from both the new task and meta-training")
    x = np.concatenate([meta, new])
    y = np.concatenate([np.ones(len(meta)), np.zeros(len(new))])
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    std = np.where(std > 1e-8, std, 1.0)
    clf = LogisticRegression(C=C, solver="lbfgs", max_iter=max_iter)
    clf.fit((x - mean) / std, y)
    w = clf.coef_[0] / std
    b = float(clf.intercept_[0] - np.dot(mean, w)) - float(np.log(len(meta) / len(new)))
    return Propensity(w=w, b=b, beta_clip=beta_clip, clip_on=clip_on, zero_below=zero_below)


def beta_stats(beta: np.ndarray) -> dict[str, float]:
    """Summary of a set of β values for logs: mean, std, min and max."""
    beta = np.asarray(beta, np.float64)
    return {
        "beta_mean": float(beta.mean()),
        "beta_std": float(beta.std()),
        "beta_min": float(beta.min()),
        "beta_max": float(beta.max()),
    }
