"""Measured numbers quoted in the prose of README.md and docs/, each tied to its result JSON.

A :data:`QUOTES` entry is ``(document, text, values, formats)``: ``text`` holds one ``{}`` per
value; a value is ``"file.json:dotted.key"`` (list indices as numbers) under bench/results/ or
a function of no arguments computing it from results; ``formats`` is one format spec for all
values or one per value. :func:`mismatches` lists the quotes whose formatted text the document
does not contain (whitespace runs count as one space); tests/test_docs.py requires none.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from bench.harness import ROOT
from bench.markdown import load
from bench.quotes_ann import quotes as ann_quotes
from bench.quotes_local import (
    fair_quotes,
    global_quotes,
    local_quotes,
    patch_solver_quotes,
    sweep_fem_quotes,
    sweep_quotes,
)
from bench.quotes_operators import operator_quotes

Value = str | Callable[[], float]


def value(source: Value) -> float:
    """The number ``source`` names: ``"file.json:a.0.b"`` or a function of the results."""
    if callable(source):
        return source()
    name, key = source.split(":")
    data = load(name)
    for part in key.split("."):
        data = data[int(part)] if isinstance(data, list) else data[part]
    return data


def _ratio(num: str, den: str) -> Callable[[], float]:
    return lambda: value(num) / value(den)


def _boundary_spread() -> float:
    """Largest relative difference, in %, of a Petrov–Galerkin boundary-data error from the
    Galerkin one of the same row."""
    rows = load("boundary-1.json")["rows"]
    return 100 * max(
        abs(p[kind]["energy"] / g[kind]["energy"] - 1)
        for g, p in zip(rows[::2], rows[1::2], strict=True)
        for kind in ("homogeneous", "boundary")
    )


def _selective_over_full() -> float:
    """Largest error at T of a selective update over the same method's full update, over the
    time-to-solution runs."""
    ratios = []
    for name in ("time-to-solution-32-512-2-2.json", "time-to-solution-16-256-2-2.json"):
        for case in load(name)["cases"].values():
            for method in ("galerkin", "petrov_galerkin"):
                if f"{method}_full" in case and f"{method}_selective" in case:
                    errors = [
                        case[f"{method}_{u}"]["rel_l2_error_T_vs_fem"]
                        for u in ("selective", "full")
                    ]
                    ratios.append(errors[0] / errors[1])
    return max(ratios)


def _lod_ann(key: str) -> str:
    return f"lod-ann-example1.json:runs.5.{key}"


B1, B2, IL = (
    "basis-1.json:results.2.",
    "basis-2.json:results.2.",
    "basis-32-256-3-interleaved.json:",
)
MLP, QUICK1 = "paper-mlp-online-2.json:", "example1-quick-2.json:"
PN1, PN2H, PN2 = (f"paper-network-{n}.json:" for n in ("example1", "example1-2h", "example2"))
B3, B3T = "battery3d-demo-2.json:", "battery3d-tiny-1.json:"
METHODS = "methods-battery-16-128.json:rows."
PERF, RES, DOC3D = "docs/performance.md", "docs/results.md", "docs/3d.md"

QUOTES: list[tuple[str, str, tuple[Value, ...], str | tuple[str, ...]]] = [
    (PERF, "**met** ({} s, `basis-1.json`", (B1 + "total_basis_and_coarse_s",), ".3g"),
    (PERF, "best against best {}x", (IL + "speedup_best_vs_best",), ".3g"),
    (PERF, "per round {}x, {}x, {}x", tuple(f"{IL}speedup_per_round.{i}" for i in range(3)), ".2f"),
    (
        PERF,
        "scale by {}x ({} s -> {} s",
        (
            _ratio(B1 + "correctors_s", B2 + "correctors_s"),
            B1 + "correctors_s",
            B2 + "correctors_s",
        ),
        ".3g",
    ),
    (
        PERF,
        "only by {}x ({} s -> {} s",
        (
            _ratio(B1 + "coarse_matrices_s", B2 + "coarse_matrices_s"),
            B1 + "coarse_matrices_s",
            B2 + "coarse_matrices_s",
        ),
        (".2g", ".3g", ".3g"),
    ),
    (
        PERF,
        "({}x to {}x, `speedup_ann_vs_full_basis`",
        (
            "online-2.json:results.1.speedup_ann_vs_full_basis",
            "online-1.json:results.2.speedup_ann_vs_full_basis",
        ),
        ".1f",
    ),
    (
        PERF,
        "takes {} s per basis update at the Example 1 size on 2 ranks against {} s",
        (MLP + "online_basis_seconds.learned", MLP + "online_basis_seconds.classical"),
        ".3g",
    ),
    (PERF, "{}x, `online_speedup`", (MLP + "online_speedup",), ".3g"),
    (PERF, "{} s for its 3 training epochs", (MLP + "train_seconds",), ".3g"),
    (
        PERF,
        "error at T of {} over the 25 schedules (max {};",
        (QUICK1 + "rel_error_final_mean", QUICK1 + "rel_error_final_max"),
        ".4f",
    ),
    (PERF, "after {} s of training", (QUICK1 + "training.train_seconds",), ".0f"),
    (
        PERF,
        "down to {} (tol 0.2)",
        ("parabolic-1.json:results.3.recomputed_patches_per_step",),
        ".2g",
    ),
    (
        RES,
        "compiling: {} s and {} s",
        tuple(f"epoch-{e}.json:first_epoch_seconds.compiled" for e in ("example1", "example2")),
        ".0f",
    ),
    (
        RES,
        "took {} s (`first_chunk`), then {} s per epoch",
        (PN1 + "first_chunk.seconds", PN1 + "seconds_per_epoch_steady"),
        (".0f", ".2g"),
    ),
    (RES, "at that rate: {} hours", (PN1 + "extrapolated_hours_30000_epochs",), ".0f"),
    (RES, "solution error is {} (`rel_error_final`)", (PN1 + "rel_error_final",), ".3g"),
    (RES, "piece of {} epochs ({} s, `clock[0]`", (PN2H + "clock.0.0", PN2H + "clock.0.1"), ".0f"),
    (
        RES,
        "{} epochs in {} s of training (`epochs`, `train_seconds`): {} s per epoch",
        (PN2H + "epochs", PN2H + "train_seconds", PN2H + "seconds_per_epoch_steady"),
        (".0f", ".0f", ".2g"),
    ),
    (
        RES,
        "**{} h extrapolated to 30 000 epochs** (`ext",
        (PN2H + "extrapolated_hours_30000_epochs",),
        ".3g",
    ),
    (
        RES,
        "at the budget was {} (`rel_error_final`; {} after the {} epochs of the 150 s run",
        (PN2H + "rel_error_final", PN1 + "rel_error_final", PN1 + "epochs"),
        ".3g",
    ),
    (
        RES,
        "shipped run ({}, `example1-quick-2.json`",
        (QUICK1 + "baseline_rel_error_final_mean",),
        ".4f",
    ),
    (
        RES,
        "{} epochs in {} s: {} s per epoch steady",
        (PN2 + "epochs", PN2 + "train_seconds", PN2 + "seconds_per_epoch_steady"),
        (".0f", ".0f", ".2g"),
    ),
    (RES, "compiling: {} s, `first_chunk`", (PN2 + "first_chunk.seconds",), ".0f"),
    (
        RES,
        "**{} h extrapolated to 30 000 epochs** (`ext",
        (PN2 + "extrapolated_hours_30000_epochs",),
        ".3g",
    ),
    (RES, "Evaluation {} s", (PN2 + "evaluation_seconds",), ".0f"),
    (
        RES,
        "error ({}) is below no corrector's ({}) but far above the mean training corrector's ({})",
        (
            PN2 + "basis_error",
            PN2 + "baseline_basis_errors.none.energy",
            PN2 + "baseline_basis_errors.mean.energy",
        ),
        (".3g", ".3g", ".2g"),
    ),
    (RES, "and the solution error ({}) is far", (PN2 + "rel_error_final",), ".3g"),
    (
        "docs/boundary.md",
        "relative energy error {} (`naive",
        ("boundary-1.json:rows.0.naive.energy",),
        ".2g",
    ),
    ("docs/boundary.md", "within {} % of them", (_boundary_spread,), ".2g"),
    (
        "docs/boundary.md",
        "within {}x of the homogeneous",
        ("boundary-1.json:rows.2.ratio_abs",),
        ".3g",
    ),
    (
        "docs/boundary.md",
        "({}x absolute, {}x relative",
        ("boundary-1.json:rows.0.ratio_abs", "boundary-1.json:rows.0.ratio_rel"),
        (".3g", ".2f"),
    ),
    (
        "docs/boundary.md",
        "stalls at {} (2D",
        ("boundary-1.json:rows.2.no_boundary_correctors.energy",),
        ".3g",
    ),
    (
        DOC3D,
        "fine FEM {} (LOD, `lod.rel_l2_error_final`) and {} (LOD-ANN), ratio {}",
        (
            B3 + "lod.rel_l2_error_final",
            B3 + "lod_ann.rel_l2_error_final",
            B3 + "error_ratio_ann_over_lod",
        ),
        (".4f", ".4f", ".3f"),
    ),
    (
        DOC3D,
        "mean basis update per step {} s (classical, 125 patches, `lod.basis_update_seconds_mean`) "
        "against {} s (learned), {}x cheaper",
        (
            B3 + "lod.basis_update_seconds_mean",
            B3 + "lod_ann.basis_update_seconds_mean",
            B3 + "basis_update_speedup",
        ),
        (".3g", ".3g", ".0f"),
    ),
    (
        DOC3D,
        "against the FEM {} (LOD, `lod.rel_l2_error_final`) and {} (LOD-ANN, "
        "`lod_ann.rel_l2_error_final`), ratio {}",
        (
            B3T + "lod.rel_l2_error_final",
            B3T + "lod_ann.rel_l2_error_final",
            B3T + "error_ratio_ann_over_lod",
        ),
        (".3f", ".3f", ".3g"),
    ),
    (
        DOC3D,
        "update per step {} s (classical, `lod.basis_update_seconds_mean`) against {} s "
        "(learned), ratio {}",
        (
            B3T + "lod.basis_update_seconds_mean",
            B3T + "lod_ann.basis_update_seconds_mean",
            B3T + "basis_update_speedup",
        ),
        (".2g", ".2g", ".0f"),
    ),
    (DOC3D, "export {} s, training {} s", (B3 + "export_seconds", B3 + "training_seconds"), ".3g"),
    (
        "docs/method.md",
        "relative L2 errors at T {} and {}",
        tuple(
            f"step-32-512-2-2.json:cases.constant.{k}.rel_l2_error_T_vs_fem"
            for k in ("lod_galerkin", "lod_petrov_galerkin")
        ),
        ".2g",
    ),
    (
        "docs/method.md",
        "error falls from {} (l = 1) to {} (l = 2) and {} (l = 3) against Galerkin's {} / {} / {}",
        tuple(f"{METHODS}{i}.l2" for i in (1, 3, 5, 0, 2, 4)),
        ".3g",
    ),
    ("docs/cli.md", "the error at T within {}x of the full", (_selective_over_full,), ".3g"),
    (
        "README.md",
        "held-out basis error {} x the mean-corrector baseline after {} epochs, {} min",
        (
            _ratio(_lod_ann("basis_error_test"), _lod_ann("baseline_errors_test.mean")),
            _lod_ann("epochs"),
            lambda: value(_lod_ann("train_seconds")) / 60,
        ),
        (".2f", ".0f", ".0f"),
    ),
]


def _run(name: str) -> str:
    """The JSON path of bench_lod_ann.py's run ``name``."""
    runs = load("lod-ann-example1.json")["runs"]
    index = next(i for i, r in enumerate(runs) if r["name"] == name)
    return f"lod-ann-example1.json:runs.{index}."


def _online(case: str, provider: str) -> Callable[[], float]:
    """The learned over the classical basis update (``online``, ``total``)."""
    r = load("lod-ann-example1.json")["online"][case]
    return lambda: r["learned"][provider]["total"] / r["classical"]["total"]


def _per_patch(case: str, provider: str | None) -> Callable[[], float]:
    """Milliseconds per patch of the correctors of one basis update."""
    r = load("lod-ann-example1.json")["online"][case]
    timing = r["classical"] if provider is None else r["learned"][provider]
    return lambda: 1e3 * timing["correctors"] / r["patches"]


def _growth(provider: str | None) -> Callable[[], float]:
    return lambda: _per_patch("16-128-2", provider)() / _per_patch("example1", provider)()


def _lod_ann_quotes() -> list:
    """docs/lod-ann.md's measured prose (computed when the quotes are checked)."""
    best, r150, r40 = _run("cnn:24x6 250 epochs"), _run("cnn:24x6 150 epochs"), _run("cnn:24x6")
    gen = best + "generalization."
    doc = "docs/lod-ann.md"
    return [
        (
            doc,
            "The default reaches {} = {} x the mean baseline",
            (best + "basis_error_test", _ratio(best + "basis_error_test", gen + "cont.mean")),
            (".3f", ".2f"),
        ),
        (
            doc,
            "and {} x the nearest-parameter",
            (_ratio(best + "basis_error_test", gen + "cont.nearest"),),
            ".2f",
        ),
        (doc, "trained in {} s (`train_seconds`)", (best + "train_seconds",), ".0f"),
        (doc, "150-epoch run took {} s", (r150 + "train_seconds",), ".0f"),
        (
            doc,
            "(40: {}, 150: {}, 250: {}, table)",
            (r40 + "basis_error_test", r150 + "basis_error_test", best + "basis_error_test"),
            ".3f",
        ),
        (
            doc,
            "(0.272, barely below the mean baseline, and {} minutes)",
            (lambda: value(_run("cnn:48x8 100 epochs") + "train_seconds") / 60,),
            ".0f",
        ),
        (
            doc,
            "values: {}, {} x the mean baseline",
            (
                gen + "random_cells.learned",
                _ratio(gen + "random_cells.learned", gen + "random_cells.mean"),
            ),
            (".3f", ".2f"),
        ),
        (
            doc,
            "({}: better than no corrector, {}, worse than the mean cont corrector, {})",
            tuple(gen + f"lognormal.{k}" for k in ("learned", "none", "mean")),
            ".3f",
        ),
        (
            doc,
            "(checkerboard: {} against {})",
            (gen + "checkerboard.learned", gen + "checkerboard.none"),
            ".2g",
        ),
    ]


def _lod_ann_online_quotes() -> list:
    """docs/lod-ann.md's measured prose on the online cost."""
    doc = "docs/lod-ann.md"
    return [
        (
            doc,
            "{} x at the Example 1 sizes, {} x at (1/16, 1/128, 2)",
            (_online("example1", "cnn:24x6"), _online("16-128-2", "cnn:24x6")),
            ".2g",
        ),
        (
            doc,
            "grew {} x ({} -> {} ms), the sparse patch solve only {} x ({} -> {} ms)",
            (
                _growth("cnn:24x6"),
                _per_patch("example1", "cnn:24x6"),
                _per_patch("16-128-2", "cnn:24x6"),
                _growth(None),
                _per_patch("example1", None),
                _per_patch("16-128-2", None),
            ),
            (".2g", ".1f", ".1f", ".2g", ".1f", ".1f"),
        ),
        (
            doc,
            "{} x (Example 1) and {} x ((1/16, 1/128, 2)) faster",
            (
                lambda: 1 / _online("example1", "reduced:16:32x3")(),
                lambda: 1 / _online("16-128-2", "reduced:16:32x3")(),
            ),
            ".0f",
        ),
        (doc, "reach {} only", (_run("reduced:16:32x3") + "basis_error_test",), ".3f"),
    ]


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def mismatches(quotes: list | None = None) -> list[str]:
    """The quotes (formatted from the results; all of :data:`QUOTES` by default) that their
    document does not contain."""
    missing = []
    every = QUOTES + _lod_ann_quotes() + _lod_ann_online_quotes()
    every += local_quotes() + fair_quotes() + ann_quotes() + operator_quotes()
    every += patch_solver_quotes() + sweep_quotes() + sweep_fem_quotes() + global_quotes()
    for document, text, values, formats in every if quotes is None else quotes:
        specs = (formats,) * len(values) if isinstance(formats, str) else formats
        quoted = text.format(*(format(value(v), f) for v, f in zip(values, specs, strict=True)))
        if _squash(quoted) not in _squash((ROOT / document).read_text()):
            missing.append(f"{document}: {quoted!r}")
    return missing
