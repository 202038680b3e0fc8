"""Quoted numbers of docs/when-lod-pays-off.md from the local-changes time-to-solution run
(entries as in :data:`bench.quotes.QUOTES`)."""

from __future__ import annotations

from collections.abc import Callable

from bench.markdown import load

LOCAL = "time-to-solution-32-512-2-2-local.json"
WHEN = "docs/when-lod-pays-off.md"


def _local(case: str, method: str, key: str) -> Callable[[], float]:
    """A figure of the local-changes run (method names such as "NAME@0.3" hold a dot)."""
    return lambda: load(LOCAL)["cases"][case][method][key]


def _over_full(case: str, method: str) -> Callable[[], float]:
    """Error at T of ``method`` over the full update's (the local-changes run)."""
    key = "rel_l2_error_T_vs_fem"
    num, den = _local(case, method, key), _local(case, "petrov_galerkin_full", key)
    return lambda: num() / den()


def _later_ms(case: str, method: str, phase: str) -> Callable[[], float]:
    """Mean over steps 2..M of a phase of the local-changes run, in ms."""

    def mean() -> float:
        later = _local(case, method, "phase_seconds_per_step")()[1:]
        return 1e3 * sum(p[phase] for p in later) / len(later)

    return mean


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
