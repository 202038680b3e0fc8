"""Tables of README.md and docs/ regenerated from the result JSON.

A table in a Markdown file sits between ``<!-- bench-table: NAME -->`` and
``<!-- /bench-table -->``; :data:`TABLES` maps NAME to the function that writes it from
bench/results/. ``python -m bench report`` rewrites every such block; ``--check`` only says
which differ (tests/test_docs.py runs it).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from bench import doc_tables
from bench.harness import ROOT
from bench.markdown import load, markdown

DOCUMENTS = ("README.md", "docs")
BLOCK = re.compile(
    r"(<!-- bench-table: (?P<name>[\w.-]+) -->\n)(?P<body>.*?)(<!-- /bench-table -->)", re.S
)

#: Steppers of bench_step.py in table order: JSON key -> row label.
STEPPERS = {
    "lod_galerkin": "LOD Galerkin, full update",
    "lod_petrov_galerkin": "LOD Petrov–Galerkin, full update",
    "lod_galerkin_selective": "LOD Galerkin, selective update",
    "lod_learned_operators": "learned local operators",
}


def _phases(mean_step: dict) -> str:
    """ "8.44 (basis_update 7.46, ...)": the phases of a mean step."""
    return ", ".join(f"{k.replace('_', ' ')} {v:.3g}" for k, v in mean_step.items())


def step_table(result: str) -> str:
    """One online step of every stepper and case of bench_step.py's ``result``: mean seconds
    (phases), the FEM step over the stepper's step, patches recomputed per step after the
    first (mean), relative L2 error at T against the fine FEM."""
    header = ["case", "stepper", "mean step (phases) [s]", "FEM step / step", "patches per step"]
    rows = []
    for case, data in load(result)["cases"].items():
        fem = data["fem"]
        rows.append(
            [
                case,
                "fine FEM",
                f"{fem['step_seconds']:.3g} ({_phases(fem['mean_step'])})",
                "1",
                "-",
                "-",
            ]
        )
        for key, label in STEPPERS.items():
            if key not in data:
                continue
            s = data[key]
            recomputed = s.get("patches_recomputed_per_step", [])
            mean = sum(recomputed[1:]) / max(len(recomputed) - 1, 1) if recomputed else 0.0
            ratio = fem["step_seconds"] / s["step_seconds"]
            rows.append(
                [
                    case,
                    label,
                    f"{s['step_seconds']:.3g} ({_phases(s['mean_step'])})",
                    f"{ratio:.3g}",
                    f"{mean:.0f}",
                    f"{s['rel_l2_error_T_vs_fem']:.2g}",
                ]
            )
    return markdown(header + ["rel. L2 error at T"], rows)


def inclusions_table(result: str) -> str:
    """LOD-ANN on inclusion fields (bench_inclusions.py's ``result``), judged by the solution:
    per run the mean energy errors over the held-out fields against the fine FEM (LOD-ANN, the
    classical LOD, their ratio) and against the classical LOD (LOD-ANN, the baselines)."""
    header = ["run", "fields (train/test)", "epochs", "train [s]", "LOD-ANN vs FEM"]
    header += ["classical LOD vs FEM", "ratio", "LOD-ANN vs LOD", "mean / none vs LOD"]
    header += ["corrector data"]
    rows = []
    for name, r in load(result)["runs"].items():
        base = r["baselines_vs_classical"]
        rows.append(
            [
                name,
                f"{r['problem']['train']}/{r['problem']['test']}",
                str(r["epochs"]),
                f"{r['train_seconds']:.0f}",
                f"{r['vs_fine']['learned']:.3f}",
                f"{r['vs_fine']['classical']:.3f}",
                f"{r['ratio_to_classical']:.2f}x",
                f"{r['lod_ann_vs_classical']['energy']['mean']:.3f}",
                f"{base['mean']:.3f} / {base['none']:.3f}",
                "yes" if r["uses_corrector_data"] else "no",
            ]
        )
    return markdown(header, rows)


def _data_note(summary: dict) -> str:
    """How the example's networks were trained: from coefficients alone, or reading classical
    correctors (POD bases, a supervised warm start)."""
    settings = summary["settings"]
    training = settings["training"]
    uses = settings.get("uses_corrector_data")
    if uses is None:  # summaries written before the key existed
        uses = training["architecture"] == "reduced" or training["warm_start"] > 0
    data = "uses classical corrector data" if uses else "no corrector data"
    epochs = summary["training"]["epochs"]
    seconds = summary["training"]["train_seconds"]
    return f"{settings['network']}, {epochs} epochs, {seconds:.0f} s, {data}"


def _example_rows(label: str, summary: dict) -> list[list[str]]:
    """README rows of one paper example: LOD vs LOD-ANN at T, baseline, basis errors."""
    paper = summary["paper"]
    one = f"{paper['rel_error_final_one']:.4g} (one trajectory)"
    if "rel_error_final_mean" in paper:
        mean = paper["rel_error_final_mean"]
        one = f"{paper['rel_error_final_one']:.4g} (one case), {mean:.4g} (mean over 25)"
    basis = paper.get("basis_error_mean")
    return [
        [
            f"{label}: LOD vs LOD-ANN, relative L2 at T",
            one,
            f"{summary['rel_error_final_mean']:.4f} (mean over 25 schedules; max "
            f"{summary['rel_error_final_max']:.4f}); {_data_note(summary)}",
        ],
        [
            f"{label}: mean-training-corrector baseline at T",
            "not given",
            f"{summary['baseline_rel_error_final_mean']:.4f} (mean over 25)",
        ],
        [
            f"{label}: basis error energy / nodal",
            "not given"
            if basis is None
            else f"{basis:.3g} (mean relative error, one test coefficient)",
            f"{summary['basis_error_mean']:.3f} / {summary['basis_error_mean_nodal']:.3f} "
            "(mean over 25 held-out p)",
        ],
    ]


def _paper_network_row(label: str, result: str, paper: str) -> list[str]:
    """README row of a budgeted run of the paper's network; ``paper``: its training there."""
    r = load(result)
    return [
        f"the paper's network `{r['network']}`, {label}: basis error nodal / LOD vs LOD-ANN at T",
        f"{paper}: see above",
        f"after {r['epochs']} epochs ({r['train_seconds'] / 60:.0f} min, {r['ranks']} ranks): "
        f"{r['basis_error_nodal']:.3f} / {r['rel_error_final']:.4f}; "
        f"{r['seconds_per_epoch_steady']:.1f} s per epoch, 30 000 epochs: "
        f"{r['extrapolated_hours_30000_epochs']:.0f} h",
    ]


def paper_vs_here() -> str:
    """README: the paper's numbers (as each demo's summary quotes them) against this
    implementation's shipped --quick networks at the paper's setting."""
    rows = _example_rows("Example 1, alpha = 0.1", load("example1-quick-2.json"))
    rows += _example_rows("Example 2", load("example2-quick-2.json"))
    rows.append(
        _paper_network_row("Example 1", "paper-network-example1-2h.json", "after 30,000 epochs")
    )
    rows.append(
        _paper_network_row(
            "Example 2", "paper-network-example2.json", "trained 'analogously to the first example'"
        )
    )
    return markdown(["example, quantity", "paper (kind)", "here (kind)"], rows)


#: Methods of bench_time_to_solution.py in table order: JSON key -> row label.
TIME_TO_SOLUTION = {
    "galerkin_full": "LOD Galerkin, full update",
    "galerkin_selective": "LOD Galerkin, selective update",
    "petrov_galerkin_full": "LOD Petrov–Galerkin, full update",
    "petrov_galerkin_selective": "LOD Petrov–Galerkin, selective update",
}


def _mean_after_first(values: list[float]) -> float:
    return sum(values[1:]) / max(len(values) - 1, 1)


def _methods(data: dict) -> list[tuple[str, str]]:
    """(JSON key, row label) of the methods of one case, in :data:`TIME_TO_SOLUTION` order;
    a key "NAME@TOL" (a selective update with its own tolerance) after NAME."""
    out = []
    for key, label in TIME_TO_SOLUTION.items():
        own = [k for k in data if k.startswith(key + "@")]
        own.sort(key=lambda k: float(k.split("@")[1]))
        out += [(key, label)] if key in data else []
        out += [(k, f"{label}, tol {k.split('@')[1]}") for k in own]
    return out


def time_to_solution_table(result: str) -> str:
    """Whole time loops of bench_time_to_solution.py's ``result``: step 1 and the mean later
    step, the FEM step over it, the break-even M, patches and indicator seconds per step (mean
    after step 1), the relative L2 error at T against the FEM and over the same method's full
    update's ("-" when the run has no such row)."""
    header = ["case", "method", "step 1 [s]", "mean step [s]", "FEM step / step"]
    header += ["break-even M", "patches per step", "indicators [s]", "L2 error at T (/ full)"]
    rows = []
    for case, data in load(result)["cases"].items():
        fem = data["fem"]
        rows.append(
            [case, "fine FEM (CG + GAMG, rtol 1e-8)", f"{fem['first_step']:.3g}"]
            + [f"{fem['mean_step']:.3g}", "1", "-", "-", "-", "-"]
        )
        for key, label in _methods(data):
            s = data[key]
            full = data.get(key.split("@")[0].replace("selective", "full"))
            error = s["rel_l2_error_T_vs_fem"]
            over = "-" if full is None else f"{error / full['rel_l2_error_T_vs_fem']:.3g}"
            even = s["break_even_steps"]
            rows.append(
                [case, label, f"{s['first_step']:.3g}", f"{s['mean_step']:.3g}"]
                + [f"{s['fem_step_over_lod_step']:.3g}", "never" if even is None else str(even)]
                + [f"{_mean_after_first(s['patches_recomputed_per_step']):.0f}"]
                + [f"{_mean_after_first(s['indicator_seconds_per_step']):.2g}"]
                + [f"{error:.3g} ({over})"]
            )
    return markdown(header, rows)


#: Phases of a selective step in bench_time_to_solution.py's ``phase_seconds_per_step``:
#: key -> column (the basis update's phases, then the stepper's coarse work).
STEP_PHASES = {
    "basis_fetch": "coefficient fetch",
    "basis_indicators": "indicators",
    "basis_correctors": "correctors",
    "coarse_assembly": "coarse assembly",
    "coarse_solve": "coarse solve",
}


def step_phases_table(result: str) -> str:
    """Where a later step goes: the mean over steps 2..M of each phase (maximum over the
    ranks) of every LOD method of bench_time_to_solution.py's ``result``, with the mean step
    and the patches recomputed per step."""
    header = ["case", "method", "mean step [s]", "patches per step"]
    header += [f"{label} [s]" for label in STEP_PHASES.values()]
    rows = []
    for case, data in load(result)["cases"].items():
        for key, label in _methods(data):
            if "phase_seconds_per_step" not in data[key]:
                continue
            s = data[key]
            later = s["phase_seconds_per_step"][1:]
            means = [sum(p[k] for p in later) / max(len(later), 1) for k in STEP_PHASES]
            rows.append(
                [case, label, f"{s['mean_step']:.3g}"]
                + [f"{_mean_after_first(s['patches_recomputed_per_step']):.0f}"]
                + [f"{m:.2g}" for m in means]
            )
    return markdown(header, rows)


def examples_table() -> str:
    """docs/results.md: both paper examples at the paper's setting, every figure of the
    summaries side by side."""
    cols = [load("example1-quick-2.json"), load("example2-quick-2.json")]

    def row(label: str, value) -> list[str]:
        return [label, *(value(c) for c in cols)]

    def basis(c: dict, kind: str) -> str:
        b = c["baseline_basis_errors"][kind]
        return f"{b['energy']:.3f} / {b['nodal']:.3f}"

    rows = [
        row("network, training", _data_note),
        row(
            "LOD vs LOD-ANN, relative L2 at T, mean (max) over 25",
            lambda c: f"{c['rel_error_final_mean']:.4f} ({c['rel_error_final_max']:.4f})",
        ),
        row(
            "same, Euclidean over all steps (paper code's metric)",
            lambda c: f"{c['rel_error_euclidean_all_steps_mean']:.4f}",
        ),
        row(
            "same with the mean training corrector / no corrector",
            lambda c: (
                f"{c['baseline_rel_error_final_mean']:.4f} / "
                f"{c['no_corrector_rel_error_final_mean']:.4f}"
            ),
        ),
        row(
            "basis error vs classical, energy / nodal (25 held-out p)",
            lambda c: f"{c['basis_error_mean']:.3f} / {c['basis_error_mean_nodal']:.3f}",
        ),
        row("basis error of the mean training corrector", lambda c: basis(c, "mean")),
        row("LOD vs fine FEM at T, mean", lambda c: f"{c['lod_vs_fem_final_mean']:.4f}"),
        row(
            "basis update per step, classical / LOD-ANN [s]",
            lambda c: (
                f"{c['timings']['classical_basis_seconds_per_step']:.3g} / "
                f"{c['timings']['ann_basis_seconds_per_step']:.3g}"
            ),
        ),
        row("paper (as the summary quotes it)", lambda c: str(c["paper"])),
    ]
    return markdown(["", "Example 1, alpha = 0.1", "Example 2 (battery)"], rows)


#: Fits of bench_operator_alternatives.py: kind -> row label.
OPERATOR_FITS = {
    "mlp": "MLP, all entries (former default)",
    "mlp-element": "MLP, corrector part (P_T exact)",
    "mlp-pod-element": "MLP, POD coordinates of the corrector part (P_T exact): `reduced`",
    "poly": "Legendre least squares, all entries",
    "poly-element": "Legendre least squares, corrector part (P_T exact)",
    "pod-element": "Legendre least squares, POD coordinates (P_T exact): `poly`",
    "greedy-element": "as above, parameters chosen greedily",
    "lod-ann": "no fit in p: LOD-ANN correctors from a (`train`'s defaults)",
}


def operator_alternatives_table(result: str) -> str:
    """Every fit of bench_operator_alternatives.py's ``result``: family, fit, training
    parameters K, offline seconds (classical samples + fit), held-out operator errors, error at
    T against the fine FEM and its ratio to the classical Petrov–Galerkin LOD's, and the mean
    step seconds where the result has them."""
    header = ["family", "fit", "K", "offline [s]", "operator error K / M", "error at T"]
    header.append("/ classical PG")
    data = load(result)["families"]
    timed = all("fem_step_seconds" in d for d in data.values())
    header += ["step [s]"] if timed else []
    rows = []
    for family, d in data.items():
        classical = d["classical_rel_l2_error_T_vs_fem"]
        rows.append(
            [family, "classical Petrov–Galerkin LOD", "-", "-", "-", f"{classical:.3g}", "1"]
        )
        if timed:
            rows[-1].append(f"{d['classical_step_seconds']:.2g}")
            rows.append([family, "fine FEM (CG + GAMG, rtol 1e-8)", *"-----"])
            rows[-1].append(f"{d['fem_step_seconds']:.2g}")
        for fit in d["fits"]:
            errors = fit["operator_error_test"]
            rows.append(
                [
                    family,
                    OPERATOR_FITS[fit["kind"]],
                    str(fit["samples"]),
                    f"{fit['offline_seconds']:.3g}",
                    f"{errors['K']:.2g} / {errors['M']:.2g}",
                    f"{fit['rel_l2_error_T_vs_fem']:.3g}",
                    f"{fit['error_over_classical']:.2f}",
                ]
                + ([f"{fit['step_seconds']:.2g}"] if timed else [])
            )
    return markdown(header, rows)


#: Table name -> function writing its Markdown from the results.
TABLES: dict[str, Callable[[], str]] = {
    "step-32-512-2-2": lambda: step_table("step-32-512-2-2.json"),
    "lod-ann-inclusions": lambda: inclusions_table("lod-ann-inclusions.json"),
    "paper-vs-here": paper_vs_here,
    "time-to-solution-16-256-2-2": lambda: time_to_solution_table(
        "time-to-solution-16-256-2-2.json"
    ),
    "time-to-solution-32-512-2-2": lambda: time_to_solution_table(
        "time-to-solution-32-512-2-2.json"
    ),
    "time-to-solution-32-512-2-2-indicators": lambda: time_to_solution_table(
        "time-to-solution-32-512-2-2-indicators.json"
    ),
    "time-to-solution-32-512-2-2-cont-growing": lambda: time_to_solution_table(
        "time-to-solution-32-512-2-2-cont-growing.json"
    ),
    "time-to-solution-32-512-2-2-local": lambda: time_to_solution_table(
        "time-to-solution-32-512-2-2-local.json"
    ),
    "time-to-solution-32-512-2-2-local-phases": lambda: step_phases_table(
        "time-to-solution-32-512-2-2-local.json"
    ),
    "time-to-solution-32-512-2-2-local-sweep": lambda: time_to_solution_table(
        "time-to-solution-32-512-2-2-local-sweep.json"
    ),
    "time-to-solution-32-512-2-2-local-sweep-defects": lambda: time_to_solution_table(
        "time-to-solution-32-512-2-2-local-sweep-defects.json"
    ),
    "time-to-solution-32-512-2-2-local-sweep-battery": lambda: time_to_solution_table(
        "time-to-solution-32-512-2-2-local-sweep-battery.json"
    ),
    "time-to-solution-32-512-2-2-local-sweep-phases": lambda: step_phases_table(
        "time-to-solution-32-512-2-2-local-sweep.json"
    ),
    "examples": examples_table,
    "step-32-512-2-2-battery-reduced-s40": lambda: step_table(
        "step-32-512-2-2-battery-reduced-s40.json"
    ),
    "step-32-512-2-2-battery-interpolated-s40": lambda: step_table(
        "step-32-512-2-2-battery-interpolated-s40.json"
    ),
    "operator-alternatives-16-64-2": lambda: operator_alternatives_table(
        "operator-alternatives-16-64-2.json"
    ),
    "operator-alternatives-16-64-2-cont-ann": lambda: operator_alternatives_table(
        "operator-alternatives-16-64-2-cont-ann.json"
    ),
    **doc_tables.TABLES,
}


def documents() -> list[Path]:
    """README.md and every Markdown file under docs/."""
    files = [ROOT / "README.md"]
    return files + sorted((ROOT / "docs").glob("*.md"))


def regenerate(text: str) -> str:
    """``text`` with every bench-table block rewritten from the results."""

    def replace(match: re.Match) -> str:
        name = match.group("name")
        if name not in TABLES:
            raise KeyError(f"bench-table {name!r} has no generator in bench/report.py TABLES")
        return match.group(1) + TABLES[name]() + match.group(4)

    return BLOCK.sub(replace, text)


def report(check: bool = False) -> list[Path]:
    """Rewrite (or with ``check`` only compare) every table; the files that differed."""
    changed = []
    for path in documents():
        text = path.read_text()
        new = regenerate(text)
        if new != text:
            changed.append(path)
            if not check:
                path.write_text(new)
    return changed
