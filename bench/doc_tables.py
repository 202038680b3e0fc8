"""Tables of docs/performance.md, docs/results.md, docs/boundary.md, docs/3d.md,
docs/lod-ann.md and docs/when-lod-pays-off.md written from the result JSON of bench/results/ (the
classical basis, the online step, the parabolic updates, the paper's network, the boundary data,
the 3D benchmarks, LOD-ANN on Example 1 and on balls in 3D and the patch solver's options)."""

from __future__ import annotations

from collections.abc import Callable

from bench.markdown import load, markdown


def _size(r: dict) -> str:
    """ "(1/32, 1/256, 3)": (H, h, l) of a benchmark row."""
    return f"({r['H']}, {r['h']}, {r['l']})"


def basis_table() -> str:
    """bench_basis.py on 1 and 2 ranks: patches per second, the fastest total of basis and
    coarse matrices (range over the repeats), seconds per coarse cell, 2 ranks over 1."""
    one, two = load("basis-1.json")["results"], load("basis-2.json")["results"]
    header = ["(H, h, l)", "ranks", "patches/s", "basis + coarse matrices [s], best (range)"]
    header += ["s per coarse cell", "2 ranks vs 1"]
    rows = []
    for a, b in zip(one, two, strict=True):
        for r in (a, b):
            totals = r["all_totals_s"]
            speedup = a["total_basis_and_coarse_s"] / r["total_basis_and_coarse_s"]
            rows.append(
                [_size(r), str(r["ranks"]), f"{r['corrector_problems_per_s']:.0f}"]
                + [f"{min(totals):.3g} ({min(totals):.3g}-{max(totals):.3g})"]
                + [f"{r['seconds_per_coarse_cell']:.3g}", "" if r is a else f"{speedup:.2f}x"]
            )
    return markdown(header, rows)


#: bench_online.py cases: JSON case -> row label (the size is appended).
ONLINE = {
    "example1": "Example 1",
    "example2": "Example 2",
    "16-128-2": "`cont` family",
    "battery-16-128-2": "battery family",
}
UPDATES = ("classical_full", "classical_selective_0.1", "lod_ann")


def online_table() -> str:
    """bench_online.py: per case and rank count the basis update per step (classical full,
    selective at tol 0.1, LOD-ANN), the full over the LOD-ANN update, the coarse assembly +
    solve and the fine FEM step (both in the full-update loop), the selective update's
    patches per step and the relative L2 errors at T against the fine FEM."""
    header = ["case (H, h, l)", "ranks", "basis update per step: full / selective / LOD-ANN [s]"]
    header += ["LOD-ANN vs full", "coarse assembly + solve [s]", "fine FEM step [s]"]
    header += ["selective: patches per step", "L2 error at T: full / selective / LOD-ANN"]
    results = []
    for ranks in (1, 2):
        results += load(f"online-{ranks}.json")["results"]
        results += load(f"online-{ranks}-battery.json")["results"]
    results.sort(key=lambda r: (list(ONLINE).index(r["case"]), r["ranks"]))
    rows = []
    for r in results:
        full, selective = r["classical_full"], r["classical_selective_0.1"]
        size = f"(1/{r['NH']}, 1/{r['n']}, {r['l']})"
        rows.append(
            [f"{ONLINE[r['case']]} {size}", str(r["ranks"])]
            + [" / ".join(f"{r[u]['basis_seconds_per_step']:.3g}" for u in UPDATES)]
            + [f"{r['speedup_ann_vs_full_basis']:.1f}x", f"{full['coarse_seconds_per_step']:.2g}"]
            + [f"{full['fem_seconds_per_step']:.2g}"]
            + [f"{selective['recomputed_patches_per_step']:.0f} of {r['NH'] ** 2}"]
            + [" / ".join(f"{r[u]['rel_l2_error_final_vs_fem']:.3g}" for u in UPDATES)]
        )
    return markdown(header, rows)


def parabolic_table() -> str:
    """bench_parabolic.py on 1 and 2 ranks: per update strategy the patches recomputed per
    step, the LOD and the fine FEM seconds per step (measured in the same loop), the relative
    errors at T against the fine FEM (the 1-rank run's; the 2-rank run agrees)."""
    one, two = load("parabolic-1.json")["results"], load("parabolic-2.json")["results"]
    header = ["update", "patches recomputed / step", "LOD s/step, 1 / 2 ranks"]
    header += ["fine FEM s/step, 1 / 2 ranks", "L2 error at T", "energy error at T"]
    rows = []
    for a, b in zip(one, two, strict=True):
        name = "full" if a["update"] == "full" else f"selective, tol {a['tol']:g}"
        rows.append(
            [name, f"{a['recomputed_patches_per_step']:.3g}"]
            + [f"{a['lod_seconds_per_step']:.3g} / {b['lod_seconds_per_step']:.3g}"]
            + [f"{a['fem_seconds_per_step']:.2g} / {b['fem_seconds_per_step']:.2g}"]
            + [f"{a['rel_l2_error_final']:.4g}", f"{a['rel_energy_error_final']:.4g}"]
        )
    return markdown(header, rows)


def epoch_table() -> str:
    """bench_epoch.py: seconds per epoch of the paper's network, eager and compiled (median of
    the timed epochs), the speed-up and 30 000 epochs at the compiled rate."""
    header = ["example", "networks x samples x patch vertices", "eager [s / epoch]"]
    header += ["compiled [s / epoch]", "speed-up", "30 000 epochs (compiled)"]
    rows = []
    for example in ("example1", "example2"):
        r = load(f"epoch-{example}.json")
        rows.append(
            [f"Example {example[-1]}", f"{r['networks']} x {r['samples']} x {r['patch_vertices']}"]
            + [f"{r['seconds_per_epoch'][k]:.3g}" for k in ("eager", "compiled")]
            + [f"{r['speedup']:.3g}", f"{r['extrapolated_hours_30000_epochs']['compiled']:.0f} h"]
        )
    return markdown(header, rows)


def paper_network_table(result: str) -> str:
    """bench_paper_network.py's ``result``: basis errors (mean over the held-out p) of the
    budgeted networks and of the baselines, and the LOD vs LOD-ANN error at T."""
    r = load(result)
    base = r["baseline_basis_errors"]
    kinds = [k for k in ("none", "mean", "nearest") if k in base]
    names = {"none": "no corrector", "mean": "mean training corrector"}
    header = [f"after {r['epochs']} epochs ({r['train_seconds']:.0f} s)", "learned"]
    header += [names.get(k, "nearest training p") for k in kinds]
    basis = [f"{r['basis_error']:.3f} / {r['basis_error_nodal']:.3f}"]
    basis += [f"{base[k]['energy']:.3f} / {base[k]['nodal']:.3f}" for k in kinds]
    rows = [
        ["basis error, energy / nodal (mean over 25 held-out p)", *basis],
        ["LOD vs LOD-ANN at T, mean over 25 schedules", f"{r['rel_error_final']:.4f}"]
        + [""] * len(kinds),
    ]
    return markdown(header, rows)


def boundary_table() -> str:
    """bench_boundary.py (Galerkin rows): energy errors against the fine FEM of the problem
    with boundary data g, q and of the homogeneous one, their absolute ratio, and the errors
    without the boundary correctors and of the naive lifting."""
    header = ["d", "(H, h)", "l", "homogeneous rel / abs", "with g, q rel / abs", "abs ratio"]
    header += ["without Q R (rel)", "naive lifting (rel)"]
    rows = []
    for r in load("boundary-1.json")["rows"]:
        if r["method"] != "galerkin":
            continue
        hom, bnd = r["homogeneous"], r["boundary"]
        rows.append(
            [str(r["dim"]), f"(1/{r['coarse']}, 1/{r['fine']})", str(r["layers"])]
            + [f"{hom['energy']:.3g} / {hom['energy_abs']:.3g}"]
            + [f"{bnd['energy']:.3g} / {bnd['energy_abs']:.3g}", f"{r['ratio_abs']:.2f}"]
            + [f"{r['no_boundary_correctors']['energy']:.3g}", f"{r['naive']['energy']:.3g}"]
        )
    return markdown(header, rows)


def three_d_table() -> str:
    """bench_3d.py on 1 and 2 ranks: classical basis, mean patch solve, one Galerkin LOD step
    with a new basis, the fine FEM step, the LOD's relative L2 error and peak memory."""
    header = ["(H, h, l)", "ranks", "classical basis [s]", "mean patch solve [s]"]
    header += ["LOD step [s]", "fine FEM step (CG + GAMG) [s]", "L2 error vs FEM"]
    header += ["peak memory per rank [GiB]"]
    rows = []
    one, two = load("3d-1.json")["results"], load("3d-2.json")["results"]
    for a, b in zip(one, two, strict=True):
        for r in (a, b):
            rows.append(
                [_size(r), str(r["ranks"]), f"{r['basis_update_s']:.3g}"]
                + [f"{r[k]:.2g}" for k in ("patch_solve_mean_s", "lod_step_s", "fem_step_s")]
                + [f"{r['rel_l2_lod_vs_fem']:.3g}", f"{r['peak_rss_gib_max_rank']:.2f}"]
            )
    return markdown(header, rows)


def _lod_ann_runs() -> list[dict]:
    """bench_lod_ann.py's runs, best held-out basis error first."""
    return sorted(load("lod-ann-example1.json")["runs"], key=lambda r: r["basis_error_test"])


def lod_ann_runs_table() -> str:
    """bench_lod_ann.py: per run the ``dolfinx-lod train`` options, held-out (train) energy
    basis error, whether it read classical correctors, training seconds; then the baselines."""
    header = ["run (`--runs`)", "train options", "held-out (train)", "training data", "time"]
    rows = []
    for r in _lod_ann_runs():
        options = r["command"].split("--test-samples 25 ")[1].removesuffix(" --out OUT")
        data = "classical correctors" if r["uses_corrector_data"] else "coefficients only"
        rows.append(
            [f"`{r['name']}`", f"`{options}`"]
            + [f"{r['basis_error_test']:.3f} ({r['basis_error_train']:.3f})", data]
            + [f"{r['train_seconds']:.0f} s"]
        )
    cont = next(r for r in _lod_ann_runs() if "generalization" in r)["generalization"]["cont"]
    names = {"none": "no corrector", "mean": "mean training corrector"}
    names |= {"nearest": "nearest training parameter"}
    names |= {"nearest_coefficient": "nearest training coefficient on each patch"}
    rows += [[f"baseline: {label}", "", f"{cont[k]:.3f}", "", ""] for k, label in names.items()]
    return markdown(header, rows)


#: bench_lod_ann.py's field kinds in table order: JSON key -> row label.
FIELDS = {
    "cont": "cont, held-out p",
    "random_cells": "random cells",
    "lognormal": "log-normal",
    "checkerboard": "checkerboard",
}


def lod_ann_fields_table() -> str:
    """bench_lod_ann.py: energy basis error of every CNN trained on cont and of the baselines
    on held-out fields of each kind."""
    runs = [r for r in _lod_ann_runs() if "generalization" in r]
    header = ["test fields", *(r["name"] for r in runs), "none", "mean", "nearest coefficient"]
    rows = []
    for key, label in FIELDS.items():
        base = runs[0]["generalization"][key]
        nearest = f"{base['nearest_coefficient']:.3f}"
        if "nearest" in base:
            nearest += f" (nearest p {base['nearest']:.3f})"
        rows.append(
            [label, *(f"{r['generalization'][key]['learned']:.3f}" for r in runs)]
            + [f"{base['none']:.3f}", f"{base['mean']:.3f}", nearest]
        )
    return markdown(header, rows)


def _update(timing: dict, patches: int) -> str:
    """ "0.139 s (correctors 0.129 s, 3.6 ms/patch)": one basis update."""
    per_patch = 1e3 * timing["correctors"] / patches
    correctors = f"correctors {timing['correctors']:.3g} s, {per_patch:.1f} ms/patch"
    return f"{timing['total']:.3g} s ({correctors})"


def lod_ann_online_table() -> str:
    """bench_lod_ann.py --online: one full basis update (median), classical and learned."""
    header = ["(H, h, l), patches", "classical recompute", "`cnn:24x6` (coefficient)"]
    header += ["`reduced:16:32x3` (p only)"]
    rows = []
    for r in load("lod-ann-example1.json")["online"].values():
        learned = r["learned"]
        rows.append(
            [f"(1/{r['NH']}, 1/{r['n']}, {r['l']}), {r['patches']}"]
            + [_update(r["classical"], r["patches"]), _update(learned["cnn:24x6"], r["patches"])]
            + [f"{learned['reduced:16:32x3']['total']:.2g} s"]
        )
    return markdown(header, rows)


def _off(seconds: float | None) -> str:
    """The learned update's seconds S with the Ritz steps off as " (S)"; "" if not measured."""
    return "" if seconds is None else f" ({seconds:.2g})"


def inclusion_runs_table(result: str) -> str:
    """bench_inclusions.py's ``result`` (e.g. 3D balls, or the families at (1/8, 1/64, 2)): per
    run the LOD-ANN, classical LOD and no-corrector energy errors against the fine FEM (mean
    over the held-out fields), the ratio (mean, and median of the per-field ratios), and one
    basis update, learned (with the Ritz steps off too where measured) and classical."""
    header = ["run", "fields (train/test)", "epochs", "train [s]", "LOD-ANN vs FEM"]
    header += ["classical LOD vs FEM", "no corrector vs FEM", "ratio (mean / median)"]
    header += ["learned update (Ritz steps off) [s]"]
    header += ["classical update [s]", "classical / learned"]
    rows = []
    for name, r in load(result)["runs"].items():
        online = r["online_basis_seconds"]
        rows.append(
            [name, f"{r['problem']['train']}/{r['problem']['test']}", str(r["epochs"])]
            + [f"{r['train_seconds']:.0f}", f"{r['vs_fine']['learned']:.3f}"]
            + [f"{r['vs_fine']['classical']:.3f}", f"{r['vs_fine']['none']:.3f}"]
            + [f"{r['ratio_to_classical']:.2f}x / {r['ratio_to_classical_median']:.2f}x"]
            + [f"{online['learned']:.3g}" + _off(online.get("network_only"))]
            + [f"{online['classical']:.3g}"]
            + [f"{r['online_speedup']:.2g}x"]
        )
    return markdown(header, rows)


def patch_solver_table(result: str) -> str:
    """bench_patch_solver.py: MUMPS ordering and scaling of the patch solver, numeric
    factorization and solve per patch (the fastest round), nnz(L), difference of the
    correctors from the first variant's."""
    data = load(result)
    header = ["ordering, scaling", "ICNTL(7), ICNTL(8)", "factorization [ms]", "solve [ms]"]
    header += ["total [ms]", "nnz(L)", "max. rel. difference of C"]
    rows = [
        [name, f"{v['icntl_7']}, {v['icntl_8']}", f"{v['factor_ms']:.2f}", f"{v['solve_ms']:.2f}"]
        + [f"{v['total_ms']:.2f}", str(v["nnz_L"]), f"{v['max_rel_difference']:.1e}"]
        for name, v in data["variants"].items()
    ]
    return markdown(header, rows)


def operator_samples_table(result: str) -> str:
    """Learned operators for families given as samples (bench_operator_samples.py's
    ``result``): per family the held-out operator errors, the element part's interpolation
    (points per coarse cell, held-out error, cells that fell back, kept or dropped) and the
    element part's seconds for one p, exact and as used online."""
    header = ["family", "operator error K / M", "points per coarse cell"]
    header += ["element part error (held out)", "cells fell back", "interpolation"]
    header += ["element part per p: exact / online [ms]", "offline [s]"]
    rows = []
    for name, r in load(result)["families"].items():
        info, seconds = r["element_interpolation"], r["element_seconds"]
        used = info["used"]
        online = f"{1e3 * seconds['interpolated']:.2g}" if used else "(exact)"
        rows.append(
            [
                name,
                f"{r['operator_error_test']['K']:.2g} / {r['operator_error_test']['M']:.2g}",
                str(info["points_per_cell"]),
                f"{info['error_test']['P']:.2g}",
                f"{info['fallback_cells_test']} of {info['cells_test']}",
                "kept" if used else "dropped (warning)",
                f"{1e3 * seconds['exact']:.2g} / {online}",
                f"{r['offline_seconds']:.3g}",
            ]
        )
    return markdown(header, rows)


#: Table name -> function writing its Markdown (merged into bench.report.TABLES).
TABLES: dict[str, Callable[[], str]] = {
    "basis": basis_table,
    "online": online_table,
    "parabolic": parabolic_table,
    "epoch": epoch_table,
    "paper-network-example1": lambda: paper_network_table("paper-network-example1.json"),
    "paper-network-example1-2h": lambda: paper_network_table("paper-network-example1-2h.json"),
    "paper-network-example2": lambda: paper_network_table("paper-network-example2.json"),
    "boundary": boundary_table,
    "3d": three_d_table,
    "lod-ann-runs": lod_ann_runs_table,
    "lod-ann-fields": lod_ann_fields_table,
    "lod-ann-online": lod_ann_online_table,
    "lod-ann-balls-3d": lambda: inclusion_runs_table("lod-ann-balls-3d-2.json"),
    "lod-ann-families-8-64-2": lambda: inclusion_runs_table("lod-ann-families-8-64-2.json"),
    "patch-solver-32-512-2": lambda: patch_solver_table("patch-solver-32-512-2.json"),
    "patch-solver-8-64-1-3d": lambda: patch_solver_table("patch-solver-8-64-1-3d.json"),
    "operator-samples-16-128-2": lambda: operator_samples_table("operator-samples-16-128-2.json"),
}
