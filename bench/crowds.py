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
    variant: str = ""  # set for a crowd whose bad workers are not the default mix

    @property
    def key(self) -> str:
        return f"K={self.k} bad={self.bad}" + (f" {self.variant}" if self.variant else "")

    @property
    def label(self) -> str:
        return f"{self.key} ({' '.join(SHORT[p] for p in self.profiles)})"


def crowd(k: int, bad: int, kinds: tuple[str, ...] = BAD_KINDS) -> Config:
    """The clean crowd of K with its last (sloppiest) ``bad`` members replaced by bad workers of
    ``kinds`` in turn: by default a spammer first, then a blob painter, alternating (K=3 bad=2 is
    the careful + blobs + spammer crowd)."""
    if k not in CLEAN:
        raise ValueError(f"K must be one of {sorted(CLEAN)}")
    if not 0 <= bad < k:
        raise ValueError("bad must be in [0, K)")
    profiles = list(CLEAN[k])
    for i in range(bad):
        profiles[-1 - i] = kinds[i % len(kinds)]
    variant = "" if kinds == BAD_KINDS else "+".join(SHORT[kinds[i % len(kinds)]] for i in range(bad))
    return Config(k, bad, tuple(profiles), variant)


# Bad workers of one kind resemble each other (the same class make-up) without agreeing beyond
# chance, unlike a spammer and a blob painter: with two of them a crowd is tested apart.
SAME_KIND_BAD: tuple[str, ...] = ("blobs",)


def configurations(
    ks: tuple[int, ...] = (3, 5, 9), bads: tuple[int, ...] = (0, 1, 2), kind: str | None = None
) -> list[Config]:
    """Every K x number of bad workers, and with two bad workers also two of the same kind; with
    ``kind``, every bad worker of that kind instead."""
    out = []
    for k in ks:
        if kind is not None:
            out += [crowd(k, b, (kind,)) for b in bads if b < k]
            continue
        out += [crowd(k, b) for b in bads if b < k]
        out += [crowd(k, 2, (same,)) for same in SAME_KIND_BAD if 2 in bads and k > 2]
    return out
