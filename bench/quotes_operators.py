"""Quoted numbers of the learned local operators with the interpolated element part (the step
run at (1/32, 1/512, 2) and the families given as samples; entries as in
:data:`bench.quotes.QUOTES`)."""

from __future__ import annotations

from collections.abc import Callable

from bench.markdown import load

STEP = "step-32-512-2-2-battery-interpolated-s40.json"
EXACT = "step-32-512-2-2-battery-reduced-s40.json"
SAMPLES = "operator-samples-16-128-2.json"
COARSER = "step-32-128-2-2-battery-interpolated-s40.json"
COARSER_EXACT = "step-32-128-2-2-battery-exact-s40.json"
COERCIVITY = "coercivity-battery-32.json"
CONT = "operator-alternatives-16-64-2-cont-ann.json"
NEG = "cases.battery.lod_learned_operators.fit.negative_eigenvalues"
PERF = "docs/performance.md"
WHEN = "docs/when-lod-pays-off.md"


def _battery(name: str = STEP) -> dict:
    return load(name)["cases"]["battery"]


def _learned(*keys: str, name: str = STEP) -> Callable[[], float]:
    """A figure of the learned operators' stepper of the battery run ``name``."""

    def get() -> float:
        data = _battery(name)["lod_learned_operators"]
        for key in keys:
            data = data[key]
        return data

    return get


def _error_ratio(name: str = STEP) -> float:
    """Error at T of the learned operators over the classical Petrov–Galerkin LOD's."""
    data = _battery(name)
    key = "rel_l2_error_T_vs_fem"
    return data["lod_learned_operators"][key] / data["lod_petrov_galerkin"][key]


def _break_even(name: str = STEP) -> float:
    """Offline seconds over the seconds a learned step saves against the FEM step."""
    data = _battery(name)
    learned = data["lod_learned_operators"]
    return learned["fit"]["seconds"] / (data["fem"]["step_seconds"] - learned["step_seconds"])


def _fem_step(name: str) -> Callable[[], float]:
    return lambda: _battery(name)["fem"]["step_seconds"]


def _against_exact_fem() -> float:
    """The exact run's FEM step over this run's learned step."""
    return _fem_step(EXACT)() / _learned("step_seconds")()


def _ms(*keys: str, name: str = STEP) -> Callable[[], float]:
    return lambda: 1e3 * _learned(*keys, name=name)()


def _family(name: str, *keys: str) -> Callable[[], float]:
    """A figure of family ``name`` of the given-samples run."""

    def get() -> float:
        data = load(SAMPLES)["families"][name]
        for key in keys:
            data = data[key]
        return data

    return get


def _coarser_quotes() -> list:
    """The quotes of the (1/32, 1/128, 2) run."""
    interp = ("fit", "element_interpolation")
    return [
        (
            PERF,
            "the learned step costs {} s (basis update {} ms), no",
            (
                _learned("step_seconds", name=COARSER),
                _ms("mean_step", "basis_update", name=COARSER),
            ),
            (".3g", ".2g"),
        ),
        (
            PERF,
            "the element part reads {} points per coarse cell of 16",
            (_learned(*interp, "points_per_cell", name=COARSER),),
            "d",
        ),
        (PERF, "the fine FEM step is only {} s", (_fem_step(COARSER),), ".3g"),
        (
            PERF,
            "is {} against the classical Petrov–Galerkin LOD's {}. The cause",
            (
                _learned("rel_l2_error_T_vs_fem", name=COARSER),
                lambda: _battery(COARSER)["lod_petrov_galerkin"]["rel_l2_error_T_vs_fem"],
            ),
            ".3g",
        ),
        (
            PERF,
            "there is {}, no cell fell back",
            (_learned(*interp, "error_test", "P", name=COARSER),),
            ".2g",
        ),
        (
            PERF,
            "the exact element part gives the same, {}",
            (_learned("rel_l2_error_T_vs_fem", name=COARSER_EXACT),),
            ".3g",
        ),
        (PERF, "warns naming the cause when there are any (here {},", (f"{COARSER}:{NEG}",), "d"),
        *_coercivity_quotes(),
    ]


def _coercivity_quotes() -> list:
    """The quotes of the coercivity run (runs: l = 2 at 1/128, l = 3 at 1/128, l = 2 at
    1/512; steps 1, 3, 4, 8, 12)."""

    def at(run: int, step: int, key: str) -> str:
        return f"{COERCIVITY}:runs.{run}.steps.{step}.{key}"

    low, high, sv = "min_eigenvalue", "max_eigenvalue", "min_singular_value"
    return [
        (PERF, "finds {} negative", (at(0, 0, "negative_eigenvalues"),), "d"),
        (
            PERF,
            "(the smallest {} at step 12, the largest {})",
            (at(0, 4, low), at(0, 4, high)),
            ".3g",
        ),
        (PERF, "falls from {} (step 1) to {} (step 8)", (at(0, 0, sv), at(0, 3, sv)), ".3g"),
        (
            PERF,
            "there are none (smallest eigenvalue {}, smallest singular value {} at every step)",
            (at(2, 4, low), at(2, 4, sv)),
            ".3g",
        ),
        (
            PERF,
            "l = 3 leaves {} negative eigenvalue ({} at step 12)",
            (at(1, 4, "negative_eigenvalues"), at(1, 4, low)),
            ("d", ".3g"),
        ),
    ]


def _cont(kind: str | None = None, samples: int = 40, key: str = "") -> Callable[[], float]:
    """A figure of the `cont` run: of the fit ``kind`` at K = ``samples`` (``key``, dotted),
    or of the family (``kind`` None)."""

    def get() -> float:
        data = load(CONT)["families"]["cont"]
        if kind is not None:
            data = next(f for f in data["fits"] if (f["kind"], f["samples"]) == (kind, samples))
        for k in key.split("."):
            data = data[k]
        return data

    return get


def _cont_quotes() -> list:
    """docs/performance.md on the `cont` run: the fits in p against LOD-ANN correctors."""
    corr = "neighbour_field_correlation"
    return [
        (
            PERF,
            "mean over the held-out p: {} at K = 40, {} at K = 160",
            (_cont(key=f"{corr}.40"), _cont(key=f"{corr}.160")),
            ".2f",
        ),
        (
            PERF,
            "(leave-one-out error of the polynomial fit {} at K = 40 and {} at K = 160",
            (_cont("pod-element", 40, "loo_error"), _cont("pod-element", 160, "loo_error")),
            ".2f",
        ),
        (
            PERF,
            "**LOD-ANN correctors from a: {}x the classical Petrov–Galerkin error at T with 40 "
            "training fields** (operator error {} against {} for the best fit in p; training {} s)",
            (
                _cont("lod-ann", 40, "error_over_classical"),
                _cont("lod-ann", 40, "operator_error_test.K"),
                _cont("mlp-pod-element", 160, "operator_error_test.K"),
                _cont("lod-ann", 40, "offline_seconds"),
            ),
            (".2f", ".2g", ".2g", ".0f"),
        ),
        (
            PERF,
            "**Its step is not cheap**: {} s against {} s for the classical Petrov–Galerkin step "
            "(patch solves) and {} s for the fit in p, on one rank",
            (
                _cont("lod-ann", 40, "step_seconds"),
                _cont(key="classical_step_seconds"),
                _cont("mlp-pod-element", 160, "step_seconds"),
            ),
            ".2g",
        ),
        (PERF, "At this size the fine FEM step is {} s", (_cont(key="fem_step_seconds"),), ".2g"),
        (
            WHEN,
            "give {}x the classical Petrov–Galerkin error at T with 40 training fields, but a "
            "step of {} s against {} s for the classical one",
            (
                _cont("lod-ann", 40, "error_over_classical"),
                _cont("lod-ann", 40, "step_seconds"),
                _cont(key="classical_step_seconds"),
            ),
            (".2f", ".2g", ".2g"),
        ),
    ]


def _when_quotes() -> list:
    """docs/when-lod-pays-off.md on the battery's learned operators."""
    return [
        (
            WHEN,
            "step {}x cheaper than the fair FEM step at {}x the classical Petrov–Galerkin error",
            (_learned("fem_step_over_lod_step"), _error_ratio),
            ".3g",
        ),
        (WHEN, "break-even after {} FEM steps", (_break_even,), ".0f"),
    ]


def operator_quotes() -> list:
    """The quotes of docs/performance.md and docs/when-lod-pays-off.md on these runs."""
    interp = ("fit", "element_interpolation")
    quotes = _coarser_quotes() + _cont_quotes() + _when_quotes()
    return quotes + [
        (
            PERF,
            "**Step: {}x cheaper than the fair FEM step",
            (_learned("fem_step_over_lod_step"),),
            ".3g",
        ),
        (
            PERF,
            "**Error at T {}x the classical Petrov–Galerkin LOD's, target <= 1.2x: met.**",
            (_error_ratio,),
            ".3g",
        ),
        (
            PERF,
            "This run's FEM step ({} s) is slower than the exact run's ({} s;",
            (_fem_step(STEP), _fem_step(EXACT)),
            ".3g",
        ),
        (PERF, "the learned step would be {}x cheaper", (_against_exact_fem,), ".3g"),
        (
            PERF,
            "basis update {} ms per step (was {} ms",
            (_ms("mean_step", "basis_update"), _ms("mean_step", "basis_update", name=EXACT)),
            ".2g",
        ),
        (
            PERF,
            "coarse assembly {} ms (was {} ms",
            (
                _ms("mean_step", "coarse_assembly"),
                _ms("mean_step", "coarse_assembly", name=EXACT),
            ),
            ".2g",
        ),
        (
            PERF,
            "at most {} points per coarse cell",
            (_learned(*interp, "points_per_cell"),),
            "d",
        ),
        (
            PERF,
            "relative error of P_T {} at 5 held-out p",
            (_learned(*interp, "error_test", "P"),),
            ".2g",
        ),
        (
            PERF,
            "fell back in {} of {} cell-steps",
            (
                _learned(*interp, "fallback_cells_steps"),
                _learned(*interp, "cells_steps"),
            ),
            "d",
        ),
        (
            PERF,
            "**Offline: {} s**, break-even after {} FEM steps",
            (_learned("fit", "seconds"), _break_even),
            ".0f",
        ),
        (
            PERF,
            "`discs`: error {} of the element part",
            (_family("discs", "element_interpolation", "error_test", "P"),),
            ".1g",
        ),
        (
            PERF,
            "`growing`: {} held out",
            (_family("growing", "element_interpolation", "error_test", "P"),),
            ".2g",
        ),
    ]
