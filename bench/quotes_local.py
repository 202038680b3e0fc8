"""Quoted numbers of docs/when-lod-pays-off.md from the local-changes time-to-solution run
(entries as in :data:`bench.quotes.QUOTES`)."""

from __future__ import annotations

from collections.abc import Callable

from bench.markdown import load

LOCAL = "time-to-solution-32-512-2-2-local.json"
WHEN = "docs/when-lod-pays-off.md"


SWEEP = "time-to-solution-32-512-2-2-local-sweep.json"
SWEEP_DEFECTS = "time-to-solution-32-512-2-2-local-sweep-defects.json"
SWEEP_BATTERY = "time-to-solution-32-512-2-2-local-sweep-battery.json"
PATCH_SOLVER = "patch-solver-32-512-2.json"


def _local(case: str, method: str, key: str, name: str = LOCAL) -> Callable[[], float]:
    """A figure of a local-changes run (method names such as "NAME@0.3" hold a dot)."""
    return lambda: load(name)["cases"][case][method][key]


def _over_full(case: str, method: str, name: str = LOCAL) -> Callable[[], float]:
    """Error at T of ``method`` over the full update's (a local-changes run)."""
    key = "rel_l2_error_T_vs_fem"
    num, den = _local(case, method, key, name), _local(case, "petrov_galerkin_full", key, name)
    return lambda: num() / den()


def _later_ms(case: str, method: str, phase: str, name: str = LOCAL) -> Callable[[], float]:
    """Mean over steps 2..M of a phase of a local-changes run, in ms."""

    def mean() -> float:
        later = _local(case, method, "phase_seconds_per_step", name)()[1:]
        return 1e3 * sum(p[phase] for p in later) / len(later)

    return mean


def _ms(getter: Callable[[], float]) -> Callable[[], float]:
    """A figure in seconds, in ms."""
    return lambda: 1e3 * getter()


def _patch_solver(variant: str, key: str, name: str = PATCH_SOLVER) -> Callable[[], float]:
    """A figure of a bench_patch_solver.py run."""
    return lambda: load(name)["variants"][variant][key]


FAIR = "time-to-solution-32-512-2-2.json"
INDICATORS = "time-to-solution-32-512-2-2-indicators.json"


def _fair(case: str, method: str, key: str, name: str = FAIR) -> Callable[[], float]:
    """A figure of a fair-yardstick time-to-solution run."""
    return lambda: load(name)["cases"][case][method][key]


def _indicator_share(case: str) -> Callable[[], float]:
    """Mean over steps 2..M of the indicators' seconds, in % of the mean FEM step."""

    def share() -> float:
        later = _fair(case, "galerkin_selective", "indicator_seconds_per_step", INDICATORS)()[1:]
        return 100 * sum(later) / len(later) / _fair(case, "fem", "mean_step", INDICATORS)()

    return share


def fair_quotes() -> list:
    """docs/when-lod-pays-off.md: the prose of the first fair run and the indicators' run."""
    sel, ratio, even = "petrov_galerkin_selective", "fem_step_over_lod_step", "break_even_steps"
    return [
        (
            WHEN,
            "Petrov–Galerkin selective step is {}x and {}x cheaper than the fair FEM step and "
            "breaks even after {} and {} steps",
            (
                _fair("defects", sel, ratio),
                _fair("battery", sel, ratio),
                _fair("defects", sel, even),
                _fair("battery", sel, even),
            ),
            (".2g", ".2g", "d", "d"),
        ),
        (
            WHEN,
            "the indicators' mean over steps 2..6 is {} % (`cont`) and {} % (`battery`)",
            (_indicator_share("cont"), _indicator_share("battery")),
            ".2g",
        ),
    ]


def local_quotes() -> list:
    """docs/when-lod-pays-off.md: the selective step after the patch work."""
    sel, ratio, full = "petrov_galerkin_selective", "fem_step_over_lod_step", "petrov_galerkin_full"
    return [
        (
            WHEN,
            "step is {}x cheaper than the fair FEM step on `defects` (16 patches per step",
            (_local("defects", sel, ratio),),
            ".2g",
        ),
        (WHEN, "at {}x the full update's error at T", (_over_full("defects", sel),), ".3g"),
        (
            WHEN,
            "and {}x on `battery` at {}x",
            (_local("battery", sel, ratio), _over_full("battery", sel)),
            (".2g", ".2f"),
        ),
        (
            WHEN,
            '("correctors": {} of {} ms on `defects`)',
            (
                _later_ms("defects", sel, "basis_correctors"),
                lambda: 1e3 * _local("defects", sel, "mean_step")(),
            ),
            ".0f",
        ),
        (
            WHEN,
            "`tol` = 0.3: {}x cheaper than the FEM step at {}x the full update's error",
            (_local("battery", sel + "@0.3", ratio), _over_full("battery", sel + "@0.3")),
            (".2g", ".3g"),
        ),
        (
            WHEN,
            "the step is {}x cheaper than the FEM step but its error is {}x",
            (_local("defects", sel + "@1.0", ratio), _over_full("defects", sel + "@1.0")),
            (".2g", ".3g"),
        ),
        (
            WHEN,
            "at `tol` = 0.3 it is {}x at {}x",
            (_local("defects", sel + "@0.3", ratio), _over_full("defects", sel + "@0.3")),
            (".2g", ".3g"),
        ),
        (
            WHEN,
            "costs {} s on `battery` against {} s for the first (step 1), and {} s on `defects` "
            "(where the first basis took as long, {} s)",
            tuple(
                _local(c, full, k)
                for c in ("battery", "defects")
                for k in ("mean_step", "first_step")
            ),
            ".2g",
        ),
    ]


def patch_solver_quotes() -> list:
    """docs/when-lod-pays-off.md: the patch solver's options."""
    new, old = "METIS, no scaling", "AMD, automatic scaling"
    return [
        (
            WHEN,
            "{} ms per patch against {} ms with the former AMD",
            (_patch_solver(new, "total_ms"), _patch_solver(old, "total_ms")),
            ".3g",
        ),
        (
            WHEN,
            "there METIS without scaling takes {} ms per patch against {} ms with the former",
            tuple(_patch_solver(v, "total_ms", "patch-solver-8-64-1-3d.json") for v in (new, old)),
            ".3g",
        ),
        (WHEN, "within {} of the former's", (_patch_solver(new, "max_rel_difference"),), ".1e"),
    ]


def sweep_quotes() -> list:
    """docs/when-lod-pays-off.md: the tolerance sweep."""
    sel, ratio = "petrov_galerkin_selective", "fem_step_over_lod_step"

    def pair(case: str, tol: str, name: str = SWEEP) -> tuple:
        method = sel + tol
        return _local(case, method, ratio, name), _over_full(case, method, name)

    return [
        (
            WHEN,
            "from `tol` = 0.3 on: {}x cheaper than the fair FEM step at {}x the full",
            pair("battery", "@0.3"),
            (".2g", ".3g"),
        ),
        (
            WHEN,
            "({}-{}x at {}x for 0.4-1.0",
            (*pair("battery", "@0.4")[:1], *pair("battery", "@1.0")),
            (".2g", ".2g", ".3g"),
        ),
        (
            WHEN,
            "at 0.9, in the third run, {}x at {}x",
            pair("battery", "@0.9", SWEEP_BATTERY),
            (".2g", ".3g"),
        ),
        (
            WHEN,
            "`tol` = 0.9 is {}x cheaper than the fair FEM step at {}x the full update's",
            pair("defects", "@0.9", SWEEP_DEFECTS),
            (".3g", ".4g"),
        ),
        (
            WHEN,
            "`tol` = 0.8: {}x at {}x; `tol` = 1.0: {}x at {}x, as in the first run's {}x at {}x",
            (
                *pair("defects", "@0.8", SWEEP_DEFECTS),
                *pair("defects", "@1.0", SWEEP_DEFECTS),
                *pair("defects", "@1.0"),
            ),
            (".3g", ".3g", ".3g", ".3g", ".3g", ".4g"),
        ),
        (
            WHEN,
            "`tol` = 0.7 {}x at {}x and `tol` = 0.5 {}x at {}x",
            (*pair("defects", "@0.7"), *pair("defects", "@0.5")),
            (".2g", ".2f", ".2g", ".2f"),
        ),
        (
            WHEN,
            "the correctors take {} of the {} ms step",
            (
                _later_ms("defects", sel + "@0.7", "basis_correctors", SWEEP),
                _ms(_local("defects", sel + "@0.7", "mean_step", SWEEP)),
            ),
            ".0f",
        ),
        (
            WHEN,
            "({}x at {}x on `defects`, {}x at {}x on `battery`)",
            (*pair("defects", ""), *pair("battery", "")),
            (".3g", ".2f", ".3g", ".2f"),
        ),
    ]


def sweep_fem_quotes() -> list:
    """docs/when-lod-pays-off.md: the FEM step of the sweep against the first run's."""
    return [
        (
            WHEN,
            "took {} ms here against {} ms in the run of the previous section, the defects' {} "
            "ms against {} ms",
            tuple(
                _ms(_local(case, "fem", "mean_step", name))
                for case in ("battery", "defects")
                for name in (SWEEP, LOCAL)
            ),
            ".0f",
        ),
        (
            WHEN,
            "the first run's FEM step ({} ms)",
            (_ms(_local("defects", "fem", "mean_step", SWEEP)),),
            ".0f",
        ),
    ]
