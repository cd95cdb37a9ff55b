"""The consolidation methods a user can choose, and what was actually applied to an object."""

from __future__ import annotations

from enum import StrEnum


class Method(StrEnum):
    """``CONSOLIDATION_METHOD`` / ``--method``."""

    GTSEG = "gtseg"  # filtering, regularised Dawid-Skene, neighbourhood for contested pixels
    MAJORITY = "majority"  # the plain per-pixel vote: the floor
    SIMPLE = "simple"  # SIMPLE-style filtered vote
    DAWID_SKENE = "dawid-skene"  # regularised Dawid-Skene over every worker


METHODS: tuple[str, ...] = tuple(method.value for method in Method)


class AppliedMethod(StrEnum):
    """What consolidated one object: the chosen method, or the fallback it took. The value is what
    the sidecar's ``method`` says."""

    GTSEG = "gtseg"
    MAJORITY = "majority"
    SIMPLE = "simple"
    DAWID_SKENE = "dawid-skene"
    # no two workers agreed beyond chance; the batch's other objects said whom to trust
    GTSEG_BATCH_PRIOR = "gtseg:batch-prior"
    SIMPLE_BATCH_PRIOR = "simple:batch-prior"
    # no two workers agreed beyond chance and nothing else to go on: gtseg keeps the one mask that
    # agrees most with the others (older sidecars say "gtseg:no-consensus-vote"); SIMPLE the vote
    GTSEG_NO_CONSENSUS_PICK = "gtseg:no-consensus-pick"
    GTSEG_NO_CONSENSUS_VOTE = "gtseg:no-consensus-vote"
    SIMPLE_NO_CONSENSUS_VOTE = "simple:no-consensus-vote"
    SINGLE_WORKER = "single-worker"
    # a gold object: the result is its known mask
    GOLD = "gold"

    @property
    def no_consensus(self) -> bool:
        """The object had no consensus of its own (its workers' scores say nothing about them)."""
        return self in (
            AppliedMethod.GTSEG_NO_CONSENSUS_PICK,
            AppliedMethod.GTSEG_NO_CONSENSUS_VOTE,
            AppliedMethod.SIMPLE_NO_CONSENSUS_VOTE,
        )

    @property
    def batch_prior(self) -> bool:
        return self in (AppliedMethod.GTSEG_BATCH_PRIOR, AppliedMethod.SIMPLE_BATCH_PRIOR)

    @classmethod
    def of(cls, method: Method) -> AppliedMethod:
        return cls(method.value)

    @classmethod
    def no_consensus_vote(cls, method: Method) -> AppliedMethod:
        return cls(f"{method.value}:no-consensus-vote")

    @classmethod
    def with_batch_prior(cls, method: Method) -> AppliedMethod:
        return cls(f"{method.value}:batch-prior")
