"""docs/lod-ann.md's measured prose on high-contrast fields (lod-ann-inclusions.json and the
screens of ann-contrast-screen.json), in the :data:`bench.quotes.QUOTES` format."""

from __future__ import annotations

from collections.abc import Callable

from bench.markdown import load

DOC = "docs/lod-ann.md"
#: The rows of the default runs per family, and the suffix of the former default's rows.
FAMILIES = (
    "contrast 10",
    "contrast 100",
    "contrast 1000",
    "lognormal contrast 100",
    "channels contrast 100",
    "checkerboard contrast 100",
)
BEFORE = " (before: energy scale patch)"


def _row(name: str, *keys: str) -> Callable[[], float]:
    def get() -> float:
        data = load("lod-ann-inclusions.json")["runs"][name]
        for key in keys:
            data = data[key]
        return data

    return get


def _screen(name: str, which: str = "test") -> Callable[[], float]:
    return lambda: load("ann-contrast-screen.json")["runs"][name]["stages"][-1][which]


def inclusion_quotes() -> list:
    """Per family: the ratio to the classical LOD with the former and the new default, and
    the LOD-ANN and classical energy errors against the fine FEM; the screens' errors."""
    quotes = []
    for family in FAMILIES:
        quotes.append(
            (
                DOC,
                f"{family}: {{}}x -> {{}}x ({{}} -> {{}} against the classical {{}})",
                (
                    _row(family + BEFORE, "ratio_to_classical"),
                    _row(family, "ratio_to_classical"),
                    _row(family + BEFORE, "vs_fine", "learned"),
                    _row(family, "vs_fine", "learned"),
                    _row(family, "vs_fine", "classical"),
                ),
                (".2f", ".2f", ".3f", ".3f", ".3f"),
            )
        )
    return quotes
