"""Regularised Dawid-Skene EM over the tuple table: per-worker confusion matrices and a class prior,
each confusion row shrunk toward that worker's one-coin model so a few object-level mistakes do not
invent classes."""

from __future__ import annotations

import numpy as np

# Dirichlet shrinkage of each confusion row toward the one-coin model, in pixels per class row,
# as a fraction of the image size.
SHRINKAGE_FRACTION = 0.01
EM_MAX_ITERATIONS = 25
EM_TOLERANCE = 1e-4


def dawid_skene(
    tuples: np.ndarray,
    counts: np.ndarray,
    init: np.ndarray,
    included: np.ndarray,
    num_classes: int,
    *,
    shrinkage: float,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Regularised Dawid-Skene EM over the included workers. Returns (posterior (T,C), log-confusions, iterations)."""
    workers = np.flatnonzero(included)
    t = len(tuples)
    post = np.zeros((t, num_classes))
    post[np.arange(t), init] = 1.0
    iterations = 0
    log_pi = np.zeros((len(workers), num_classes, num_classes))
    for iterations in range(1, EM_MAX_ITERATIONS + 1):  # noqa: B007
        weighted = post * counts[:, None]  # (T, C) pixel mass per tuple and class
        mass = weighted.sum(axis=0)  # (C,)
        prior = (mass + 1.0) / (mass.sum() + num_classes)
        for j, k in enumerate(workers):
            conf = np.zeros((num_classes, num_classes))
            for c in range(num_classes):
                if mass[c] > 0:
                    conf[c] = np.bincount(tuples[:, k], weights=weighted[:, c], minlength=num_classes)
            acc = np.trace(conf) / max(conf.sum(), 1e-12)
            acc = float(np.clip(acc, 1e-3, 1 - 1e-3))
            one_coin = np.full((num_classes, num_classes), (1 - acc) / max(num_classes - 1, 1))
            np.fill_diagonal(one_coin, acc)
            pi = conf + shrinkage * one_coin
            pi /= pi.sum(axis=1, keepdims=True)
            log_pi[j] = np.log(np.clip(pi, 1e-12, None))
        log_post = np.tile(np.log(prior), (t, 1))
        for j, k in enumerate(workers):
            log_post += log_pi[j][:, tuples[:, k]].T
        log_post -= log_post.max(axis=1, keepdims=True)
        new_post = np.exp(log_post)
        new_post /= new_post.sum(axis=1, keepdims=True)
        delta = float(np.abs(new_post - post).max())
        post = new_post
        if delta < EM_TOLERANCE:
            break
    return post, log_pi, iterations
