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


def _screens(*names: str, which: str = "test") -> tuple[Callable[[], float], ...]:
    return tuple(_screen(f"inclusions contrast {n}", which) for n in names)


#: The screens' prose: (text, screen rows "CONTRAST NAME").
SCREENS = (
    (
        "from {} to {} at contrast 1000 and from {} to {} at contrast 100",
        ("1000 --energy-scale patch", "1000 field (default)")
        + ("100 --energy-scale patch", "100 field (default)"),
    ),
    (
        "give {}, the window-mean features (`--pool`) {}, the a-scaled output map (`--output "
        "scaled`) {}, against {}",
        ("1000 --contrast", "1000 --pool", "1000 --output scaled", "1000 field (default)"),
    ),
    (
        "{}, {} and {} against {} (contrast 100, scaled output: {} against {})",
        (
            "1000 --energy-scale patch --contrast",
            "1000 --energy-scale patch --pool",
            "1000 --energy-scale patch --output scaled",
            "1000 --energy-scale patch",
            "100 --energy-scale patch --output scaled",
            "100 --energy-scale patch",
        ),
    ),
    (
        "{} at 3e-3 and {} at 3e-2 against {} at 1e-2",
        ("1000 --lr=3e-3", "1000 --lr=3e-2", "1000 field (default)"),
    ),
    ("the 8 symmetries (`--augment`, 40 epochs, about the same time) {}", ("1000 --augment",)),
)


def screen_quotes() -> list:
    """The screens' errors (held-out; training fields where named)."""
    quotes = [(DOC, text, _screens(*names), ".3f") for text, names in SCREENS]
    fit = _screens("1000 field (default)") + _screens("1000 field (default)", which="train")
    fit += _screens("100 field (default)") + _screens("100 field (default)", which="train")
    text = "(per-field weights: contrast 1000 {} held-out, {} on training fields; 100: {}, {})"
    return [*quotes, (DOC, text, fit, ".3f")]


def _train_seconds(pick: Callable) -> Callable[[], float]:
    return lambda: pick(_row(f, "train_seconds")() for f in FAMILIES)


def default_quotes() -> list:
    """The default rows' training times and the limits' ratios."""
    return [
        (
            DOC,
            "training took {} to {} s per run",
            (_train_seconds(min), _train_seconds(max)),
            ".0f",
        ),
        (
            DOC,
            "{}x (channels) to {}x (inclusions at contrast 1000) worse than the classical LOD "
            "(section above; log-normal fields of the same span: {}x)",
            tuple(
                _row(f, "ratio_to_classical")
                for f in ("channels contrast 100", "contrast 1000", "lognormal contrast 100")
            ),
            ".1f",
        ),
    ]


def ritz_quotes() -> list:
    """The Ritz output's development runs (2 ranks) against the rows without it."""
    run = lambda name: _row(f"contrast {name} (2 ranks)", "ratio_to_classical")  # noqa: E731
    small = "1000 --network cnn:16x4 --ritz 8 --ritz-steps 4 --epochs 150 --lr-step 100"
    seconds = lambda name: _row(f"contrast {name} (2 ranks)", "train_seconds")  # noqa: E731
    return [
        (
            DOC,
            "contrast 1000 (no Ritz\n  output: {}x): M = 8 vectors: {}x; with 2 residual steps "
            "{}x; with 4 {}x; the smaller\n  `cnn:16x4` with 4 steps and 150 epochs {}x",
            (_row("contrast 1000", "ratio_to_classical"), run("1000 --ritz 8"))
            + (run("1000 --ritz 8 --ritz-steps 2"), run("1000 --ritz 8 --ritz-steps 4"))
            + (run(small),),
            ".2f",
        ),
        (
            DOC,
            "in {} s of training (`cnn:24x6`, 250 epochs:\n  {} s)",
            (seconds(small), seconds("1000 --ritz 8 --ritz-steps 4")),
            ".0f",
        ),
        (
            DOC,
            "Contrast 100 (no Ritz output: {}x): M = 8: {}x; with 2 steps {}x",
            (_row("contrast 100", "ratio_to_classical"), run("100 --ritz 8"))
            + (run("100 --ritz 8 --ritz-steps 2"),),
            ".2f",
        ),
    ]


#: The families at (1/8, 1/64, 2) with `train`'s defaults: (prose name, row name).
FAMILIES_64 = (
    ("cont", "cont"),
    ("log-normal", "lognormal contrast 100"),
    ("battery", "battery"),
    ("inclusions at contrast 10", "contrast 10"),
    ("channels", "channels contrast 100"),
    ("checkerboards", "checkerboard contrast 100"),
    ("inclusions at contrast 100", "contrast 100"),
    ("inclusions at\n  contrast 1000", "contrast 1000"),
)
#: Development rows of the families' contrast 1000 (options on top of the defaults).
DEVELOPMENT_64 = "contrast 1000 --network cnn:16x4 --ritz 8 --ritz-steps {} --epochs 12 --lr-step 8"


def _family(name: str, *keys: str) -> Callable[[], float]:
    def get() -> float:
        data = load("lod-ann-families-8-64-2.json")["runs"][f"{name} (2 ranks)"]
        for key in keys:
            data = data[key]
        return data

    return get


def families_quotes() -> list:
    """The per-family medians, the training times, contrast 1000's runs and the online cost."""
    quotes = [
        (DOC, f"{prose} {{}}x", (_family(row, "ratio_to_classical_median"),), ".2f")
        for prose, row in FAMILIES_64
    ]
    seconds = [_family(row, "train_seconds") for _, row in FAMILIES_64]
    quotes.append(
        (
            DOC,
            "training took {} to {} s per family",
            (lambda: min(f() for f in seconds), lambda: max(f() for f in seconds)),
            ".0f",
        )
    )
    ratios = ("ratio_to_classical_median", "ratio_to_classical")
    runs = ("contrast 1000 --ritz-tol 0",) + tuple(DEVELOPMENT_64.format(k) for k in (4, 6))
    runs += ("contrast 1000, scaled-Laplacian steps",)
    text = "`--ritz-tol 0` (exactly the 4 trained steps): {}x (mean {}x). Development rows before "
    text += "both changes: an earlier run of the defaults then {}x (mean {}x); 6 trained steps "
    text += "{}x (mean {}x) in {} s; the scaled Laplacian as second direction {}x"
    getters = tuple(_family(run, key) for run in runs[:3] for key in ratios)
    getters += (_family(runs[2], "train_seconds"), _family(runs[3], ratios[0]))
    quotes.append((DOC, text, getters, (".2f",) * 6 + (".0f", ".2f")))
    rows = [row for _, row in FAMILIES_64]
    kinds = ("learned", "classical")
    online = [_family(row, "online_basis_seconds", k) for row in rows for k in kinds]
    quotes.append(
        (
            DOC,
            "{} to {} s against {} to {} s",
            (
                lambda: min(f() for f in online[::2]),
                lambda: max(f() for f in online[::2]),
                lambda: min(f() for f in online[1::2]),
                lambda: max(f() for f in online[1::2]),
            ),
            ".2g",
        )
    )
    return quotes


#: bench_inclusions.py --dim 3 runs quoted in docs/lod-ann.md: label -> row name.
BALLS_3D = {
    "first": "balls contrast 100 --network cnn:16x6 --epochs 30 --lr-step 20 (2 ranks)",
    "zero": "balls contrast 100 --network cnn:16x6 --epochs 20 --lr-step 14 (2 ranks)",
    "ritz": "balls contrast 100 (2 ranks)",
    "tol0": "balls contrast 100 --ritz-tol 0 (2 ranks)",
}


def _balls(run: str, *keys: str) -> Callable[[], float]:
    """A number of a 3D balls run (``keys`` into its row)."""

    def get() -> float:
        data = load("lod-ann-balls-3d-2.json")["runs"][BALLS_3D[run]]
        for key in keys:
            data = data[key]
        return data

    return get


def _balls_3d_cost_quotes() -> list:
    """docs/lod-ann.md and docs/3d.md on the learned update's cost in 3D."""
    doc = "docs/lod-ann.md"
    return [
        (
            doc,
            "took {} s against {} s for the classical recompute ({}x",
            (
                _balls("ritz", "online_basis_seconds", "learned"),
                _balls("ritz", "online_basis_seconds", "classical"),
                _balls("ritz", "online_speedup"),
            ),
            (".2g", ".2g", ".2f"),
        ),
        (
            doc,
            "`online_basis_seconds.network_only`) one update took {} s: {}x cheaper than the "
            "classical recompute",
            (
                _balls("ritz", "online_basis_seconds", "network_only"),
                lambda: (
                    _balls("ritz", "online_basis_seconds", "classical")()
                    / _balls("ritz", "online_basis_seconds", "network_only")()
                ),
            ),
            (".2g", ".2g"),
        ),
        (
            doc,
            "The stopping rule's Ritz steps (each a product with S on the window and a span "
            "growing by 16 vectors) are the other {} s",
            (
                lambda: (
                    _balls("ritz", "online_basis_seconds", "learned")()
                    - _balls("ritz", "online_basis_seconds", "network_only")()
                ),
            ),
            ".2g",
        ),
        (
            "docs/3d.md",
            "with its Ritz steps off, in parentheses, {}x cheaper",
            (
                lambda: (
                    _balls("ritz", "online_basis_seconds", "classical")()
                    / _balls("ritz", "online_basis_seconds", "network_only")()
                ),
            ),
            ".2g",
        ),
    ]


def _balls_3d_tol_quotes() -> list:
    """docs/lod-ann.md on the 3D run with ``--ritz-tol 0``."""
    return [
        (
            "docs/lod-ann.md",
            "(row `--ritz-tol 0`): {}x the classical LOD's error (median)",
            (_balls("tol0", "ratio_to_classical_median"),),
            ".2f",
        ),
        (
            "docs/lod-ann.md",
            "a learned update of {} s against {} s for the classical recompute in that run ({}x "
            "cheaper; the same run's update with the Ritz steps off {} s",
            (
                _balls("tol0", "online_basis_seconds", "learned"),
                _balls("tol0", "online_basis_seconds", "classical"),
                _balls("tol0", "online_speedup"),
                _balls("tol0", "online_basis_seconds", "network_only"),
            ),
            ".2g",
        ),
    ]


def balls_3d_quotes() -> list:
    """docs/lod-ann.md's measured prose on the 3D CNN."""
    doc = "docs/lod-ann.md"
    measured = _balls_3d_cost_quotes() + _balls_3d_tol_quotes()
    return measured + [
        (
            doc,
            "the first run ended {}x worse than the classical LOD",
            (_balls("first", "ratio_to_classical"),),
            ".2f",
        ),
        (
            doc,
            "the learned update was {}x cheaper than the classical recompute ({} s against {} s)",
            (
                _balls("first", "online_speedup"),
                _balls("first", "online_basis_seconds", "learned"),
                _balls("first", "online_basis_seconds", "classical"),
            ),
            (".1f", ".2f", ".2f"),
        ),
        (
            doc,
            "no better, {}x (median {}x), again worse than no corrector; its learned update was "
            "{}x cheaper",
            (
                _balls("zero", "ratio_to_classical"),
                _balls("zero", "ratio_to_classical_median"),
                _balls("zero", "online_speedup"),
            ),
            (".2f", ".2f", ".1f"),
        ),
        (
            doc,
            "Each epoch costs about {} s on 2 ranks (12 fields, 32 patches per rank) with "
            "`cnn:16x6` and no Ritz output, about {} s with the defaults",
            tuple(
                (lambda r=r: _balls(r, "train_seconds")() / _balls(r, "epochs")())
                for r in ("first", "ritz")
            ),
            ".0f",
        ),
        (
            doc,
            "give {}x the classical LOD's error against the fine FEM (median {}x; the learned "
            "solution {} from the classical LOD solution, mean over the 4 unseen fields, where no "
            "corrector is {} away), trained on 8 fields in {} s",
            (
                _balls("ritz", "ratio_to_classical"),
                _balls("ritz", "ratio_to_classical_median"),
                _balls("ritz", "lod_ann_vs_classical", "energy", "mean"),
                _balls("ritz", "baselines_vs_classical", "none"),
                _balls("ritz", "train_seconds"),
            ),
            (".2f", ".2f", ".2g", ".2f", ".0f"),
        ),
        (
            doc,
            "matches the classical LOD at (1/4, 1/32, 1) ({}x)",
            (_balls("ritz", "ratio_to_classical_median"),),
            ".2f",
        ),
        (
            "docs/3d.md",
            "row) the accuracy target is met ({}x)",
            (_balls("ritz", "ratio_to_classical_median"),),
            ".2f",
        ),
    ]


def quotes() -> list:
    """Every quote of this module."""
    return (
        inclusion_quotes()
        + screen_quotes()
        + default_quotes()
        + ritz_quotes()
        + families_quotes()
        + balls_3d_quotes()
    )
