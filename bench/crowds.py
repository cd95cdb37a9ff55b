"""Crowd configurations: K workers of mixed quality, the sloppiest replaced by bad workers."""

from __future__ import annotations

from dataclasses import dataclass

CLEAN: dict[int, tuple[str, ...]] = {
    3: ("careful", "average", "sloppy"),
    5: ("careful", "average", "average", "sloppy", "sloppy"),
    9: ("careful", "careful", "average", "average", "average", "average", "sloppy", "sloppy", "sloppy"),
}
BAD_KINDS: tuple[str, ...] = ("spammer", "blobs")
SHORT = {"careful": "C", "average": "A", "sloppy": "S", "spammer": "sp", "blobs": "bl"}


@dataclass(frozen=True)
class Config:
    k: int
    bad: int
    profiles: tuple[str, ...]

    @property
    def key(self) -> str:
        return f"K={self.k} bad={self.bad}"

    @property
    def label(self) -> str:
        return f"{self.key} ({' '.join(SHORT[p] for p in self.profiles)})"


def crowd(k: int, bad: int) -> Config:
    """The clean crowd of K with its last (sloppiest) ``bad`` members replaced, spammer first, then
    a blob painter, alternating. K=3 bad=2 is the careful + spammer + blobs crowd."""
    if k not in CLEAN:
        raise ValueError(f"K must be one of {sorted(CLEAN)}")
    if not 0 <= bad < k:
        raise ValueError("bad must be in [0, K)")
    profiles = list(CLEAN[k])
    for i in range(bad):
        profiles[-1 - i] = BAD_KINDS[i % len(BAD_KINDS)]
    return Config(k, bad, tuple(profiles))


def configurations(ks: tuple[int, ...] = (3, 5, 9), bads: tuple[int, ...] = (0, 1, 2)) -> list[Config]:
    return [crowd(k, b) for k in ks for b in bads if b < k]
