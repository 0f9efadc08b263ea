"""The exceptions this plugin raises about extractors; each says what was wrong, where, and what to do."""

from __future__ import annotations

from collections.abc import Sequence

from omlcore.errors import OmlcoreError

__all__ = ["InputSizeError", "UnknownArchError", "WeightsError"]


class WeightsError(OmlcoreError, ValueError):
    """Weights cannot be used: not a zoo key nor a file, unsafe to load, or made for another architecture."""


class UnknownArchError(OmlcoreError, ValueError):
    """An extractor was asked for an architecture it does not have; the message lists those it has."""

    def __init__(self, extractor: str, arch: str, known: Sequence[str]) -> None:
        import difflib

        self.extractor = extractor
        self.arch = arch
        self.known = list(known)
        close = difflib.get_close_matches(arch, self.known, n=2)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        super().__init__(f"Unknown arch {arch!r} for the extractor {extractor!r}.{hint} Known: {', '.join(known)}.")


class InputSizeError(OmlcoreError, ValueError):
    """A model that only takes one input size got images of another size."""
