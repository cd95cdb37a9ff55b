"""Merging several workers' class-index masks into one mask with confidence (pure numpy).

How it works (design.md, "Consolidation"):

1. **Tuples, not pixels.** Each pixel's K worker labels form a tuple. Real masks have only a few
   thousand distinct tuples even at 12 MP, so every pixel is encoded once into a tuple id
   (progressively, one worker at a time, with ``bincount`` -- no sorting), the models iterate on
   the tuple table weighted by tuple counts, and the decision is mapped back with one lookup.
2. **Majority vote** is the floor and the starting point.
3. **Robust worker filtering** in the spirit of SIMPLE (Langerak et al. 2010): a mask of one
   class everywhere carries no information; the first consensus comes from workers who agree
   with at least one other worker beyond chance (pairwise Cohen's kappa), because when bad
   workers are the majority the raw vote already favours them; then each worker is scored by
   kappa against the consensus, workers far below the best are dropped and the consensus is
   recomputed. Kappa is chance-corrected, so a spammer scores 0 whatever the consensus is and a
   random-blob worker near 0. No pair above chance: one worker's whole mask (the informative one
   that agrees most with the others), with confidence 0.
4. **Dawid-Skene EM** over the remaining workers (per-worker confusion matrices, class prior),
   initialised from the filtered vote. To keep it from inventing classes from a few object-level
   mistakes, each confusion row is shrunk toward that worker's one-coin model (overall accuracy,
   errors spread evenly) by a Dirichlet pseudo-count proportional to the image size: common
   classes are learnt from data, rare ones lean on the worker's overall accuracy.
5. **Neighbourhood for contested pixels**, as the built-in task uses neighbouring pixels: with
   three or fewer trusted workers, EM may not overrule their strict majority, and pixels with no
   strict majority (two workers tracing one boundary a few pixels apart) take the class with the
   larger trusted vote share in a box as wide as their band (at most ``smoothing``, default 3), so the
   two outlines meet in the middle. Remaining ties go to the lowest class index.
6. **Batch prior** (``trusted_prior``): an object with no consensus of its own may trust the
   workers who agreed with their crowds on the other objects of the same batch.

Confidence per class is the mean IoU between each trusted worker's extent of the class and the
consolidated extent (a class workers painted but the result lost scores 0); the image confidence
is the mean over those classes, like a mean IoU; 0.0 when fewer than two trusted workers remain
(as Ground Truth reports 0.00 for a single worker).
"""

from __future__ import annotations

from gtseg.core.consolidation.answers import (
    DecodedAnswers,
    DecodeStats,
    ObjectConsolidation,
    WorkerAnswer,
    consolidate_decoded,
    consolidate_worker_answers,
    decode_answers,
    gold_outcome,
    without_pixels,
)
from gtseg.core.consolidation.methods import METHODS, AppliedMethod, Method
from gtseg.core.consolidation.neighbourhood import DEFAULT_NEIGHBOURHOOD_RADIUS
from gtseg.core.consolidation.strategies import (
    PRIOR_TRUST_MIN,
    ConsolidationResult,
    WorkerQuality,
    consolidate_masks,
    majority_vote,
)
from gtseg.core.consolidation.tuples import TupleTable, encode_tuples

__all__ = [
    "DEFAULT_NEIGHBOURHOOD_RADIUS",
    "METHODS",
    "PRIOR_TRUST_MIN",
    "AppliedMethod",
    "ConsolidationResult",
    "DecodeStats",
    "DecodedAnswers",
    "Method",
    "ObjectConsolidation",
    "TupleTable",
    "WorkerAnswer",
    "WorkerQuality",
    "consolidate_decoded",
    "consolidate_masks",
    "consolidate_worker_answers",
    "decode_answers",
    "encode_tuples",
    "gold_outcome",
    "majority_vote",
    "without_pixels",
]
