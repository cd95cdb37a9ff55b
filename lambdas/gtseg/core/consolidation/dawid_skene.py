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
    max_iterations: int | None = None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Regularised Dawid-Skene EM over the included workers. Returns (posterior (T,C), log-confusions, iterations)."""
    workers = np.flatnonzero(included)
    t, n_workers = len(tuples), len(workers)
    post = np.zeros((t, num_classes))
    post[np.arange(t), init] = 1.0
    iterations = 0
    labels = tuples[:, workers].T.astype(np.intp)  # (J, T)
    onehot = np.zeros((n_workers, t, num_classes))
    onehot[np.arange(n_workers)[:, None], np.arange(t)[None, :], labels] = 1.0
    eye = np.eye(num_classes, dtype=bool)
    log_pi = np.zeros((n_workers, num_classes, num_classes))
    for iterations in range(1, (max_iterations or EM_MAX_ITERATIONS) + 1):  # noqa: B007
        weighted = post * counts[:, None]  # (T, C) pixel mass per tuple and class
        mass = weighted.sum(axis=0)  # (C,)
        prior = (mass + 1.0) / (mass.sum() + num_classes)
        # conf[j, c, l]: pixel mass of true class c that worker j labelled l
        conf = np.matmul(weighted.T[None, :, :], onehot)
        conf[:, mass <= 0, :] = 0.0
        acc = np.clip(
            np.trace(conf, axis1=1, axis2=2) / np.maximum(conf.sum(axis=(1, 2)), 1e-12), 1e-3, 1 - 1e-3
        )
        off = (1 - acc) / max(num_classes - 1, 1)
        one_coin = np.where(eye[None, :, :], acc[:, None, None], off[:, None, None])
        pi = conf + shrinkage * one_coin
        pi /= pi.sum(axis=2, keepdims=True)
        log_pi = np.log(np.clip(pi, 1e-12, None))
        # log P(labels | true class c) per tuple, summed over workers: (T, C)
        log_post = np.log(prior)[None, :] + log_pi[np.arange(n_workers)[:, None], :, labels].sum(axis=0)
        log_post -= log_post.max(axis=1, keepdims=True)
        new_post = np.exp(log_post)
        new_post /= new_post.sum(axis=1, keepdims=True)
        delta = float(np.abs(new_post - post).max())
        post = new_post
        if delta < EM_TOLERANCE:
            break
    return post, log_pi, iterations
