"""Benchmark: LOD-ANN networks on Example 1 (issue "LOD-ANN that generalizes").

Run by hand (one rank; under the shared benchmark lock), e.g.

    flock /tmp/dolfinx_lod_bench.lock python bench/bench_lod_ann.py \\
        --runs "cnn:24x6 150 epochs" --online --out bench/results/lod-ann-example1.json

``--runs``: trains each named configuration of :data:`RUNS` with ``dolfinx-lod train`` on
Example 1 (family cont, ``--coarse``, ``--fine``, l = 1, K = ``--samples``) and records from
its summary.json the mean relative energy basis error on the held-out parameters, the
baselines (no corrector, mean training corrector, nearest training parameter), whether
training read classical correctors, the epochs and the training time, with the exact command.
For a coefficient-aware model it also records the error on ``--test-samples`` held-out fields
of other kinds (:func:`test_sets`: checkerboard, log-normal, random cell values) beside the
baselines none, mean (of the cont training correctors) and nearest training coefficient on the
patch (and nearest training parameter on the cont family).

``--online``: the wall time of one basis update (median over ``--repeats`` new parameters,
with its parts) by classical patch solves and by the learned networks (``--online-networks``,
each trained for 1 epoch: the cost of a forward pass does not depend on the weights) at the
Example 1 sizes and at (H, h, l) = (1/16, 1/128, 2).

Results are merged into ``--out``: a run replaces the earlier one of the same name.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from harness import machine
from mpi4py import MPI

import dolfinx_lod as dl
from dolfinx_lod.coefficients import (
    Family,
    checkerboard_family,
    cont_family,
    lognormal_family,
    random_coefficient,
)
from dolfinx_lod.io import write_json
from dolfinx_lod.neural import (
    LearnedCorrectors,
    NearestCoefficientCorrectors,
    TrainedModel,
    compare_providers,
    export_patches,
)
from dolfinx_lod.neural.workflow import baselines
from dolfinx_lod.samples import sample_family

#: Configuration name -> train options (besides the problem options of :func:`train_command`).
RUNS = {
    "cnn:24x6": ["--network", "cnn:24x6", "--epochs", "40"],
    "cnn:24x6 150 epochs": [
        "--network",
        "cnn:24x6",
        "--epochs",
        "150",
        "--lr-step",
        "100",
        "--lr-decay",
        "0.3",
    ],
    "cnn:24x6 250 epochs": [
        "--network",
        "cnn:24x6",
        "--epochs",
        "250",
        "--lr-step",
        "170",
        "--lr-decay",
        "0.3",
    ],
    "cnn:48x8 100 epochs": [
        "--network",
        "cnn:48x8",
        "--epochs",
        "100",
        "--lr-step",
        "50",
        "--lr-decay",
        "0.3",
    ],
    "reduced:16:32x3": ["--network", "reduced:16:32x3"],
    "mlp:32x4": ["--network", "mlp:32x4", "--epochs", "300"],
}
#: Online-cost cases: name -> (N_H, n, l).
ONLINE_SIZES = {"example1": (6, 36, 1), "16-128-2": (16, 128, 2)}


def train_command(family_options: list[str], options: list[str], out: Path) -> list[str]:
    """The ``dolfinx-lod train`` command line (without the executable's path)."""
    return ["dolfinx-lod", "train", *family_options, *options, "--out", str(out)]


def train(command: list[str]) -> dict:
    """Run ``command`` (a :func:`train_command`) on one rank; its summary.json."""
    subprocess.run([sys.executable, "-m", "dolfinx_lod.cli", *command[1:]], check=True)
    return json.loads((Path(command[-1]) / "summary.json").read_text())


def problem_options(args: argparse.Namespace) -> list[str]:
    """The Example 1 problem of the runs."""
    return [
        "--family", "cont", "--coarse", str(args.coarse), "--fine", str(args.fine),
        "--layers", "1", "--samples", str(args.samples), "--test-samples", str(args.test_samples),
    ]  # fmt: skip


def test_sets(n: int, block: int, count: int) -> dict[str, tuple[Family, np.ndarray]]:
    """Held-out coefficients: ``count`` parameters of the training family cont (the draws of
    train's report) and fields of other kinds on n x n cells: a two-phase checkerboard of
    ``block`` x ``block``-cell blocks (values 0.01 and 1, p the volume fraction), a log-normal
    field (8 Fourier modes, sigma 1, correlation length 0.1) and independent uniform values in
    [0.01, 1] per fine cell."""
    fields = np.stack([random_coefficient(n, 0.01, 1.0, seed=1000 + k) for k in range(count)])
    families = {
        "cont": cont_family(n),
        "checkerboard": checkerboard_family(n, block, 0.01, seed=1),
        "lognormal": lognormal_family(n, modes=8, sigma=1.0, correlation=0.1, seed=1),
        "random_cells": sample_family(fields, "random_cells"),
    }
    return {k: (f, f.test_parameters(count, seed=10_000)) for k, f in families.items()}


def generalization(model_path: Path, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """Energy basis error of the model and of the baselines on each of :func:`test_sets`."""
    grids = dl.create_nested_grids(MPI.COMM_SELF, args.coarse, args.fine)
    family = cont_family(args.fine)
    train_p = family.training_parameters(args.samples)
    basis = dl.MultiscaleBasis(grids, 1)
    batch = export_patches(basis, family.a, train_p)
    fixed = {
        **baselines(basis, batch, family, train_p),
        "nearest_coefficient": NearestCoefficientCorrectors(batch),
    }
    learned = LearnedCorrectors(TrainedModel.load(model_path, grids, 1), None, grids.r)
    out = {}
    for name, (test, params) in test_sets(args.fine, grids.r // 2, args.test_samples).items():
        providers = {"learned": learned, **fixed}
        if test.name != family.name:  # p of another family: no nearest training parameter
            del providers["nearest"]
        errors = compare_providers(grids, 1, test, params, providers)
        out[name] = {k: v["energy"] for k, v in errors.items()}
    basis.destroy()
    return out


def run(name: str, args: argparse.Namespace, folder: Path) -> dict:
    """Train configuration ``name`` of :data:`RUNS`; its numbers and the command."""
    command = train_command(problem_options(args), RUNS[name], folder / name.replace(":", "-"))
    summary = train(command)
    result = {
        "name": name,
        "command": " ".join(command[:-1] + ["OUT"]),
        "network": summary["settings"]["architecture"],
        "uses_corrector_data": summary["uses_corrector_data"],
        "basis_error_test": summary["basis_error_test"],
        "basis_error_train": summary["basis_error_train"],
        "baseline_errors_test": {
            k: v["energy"] for k, v in summary["baseline_errors_test"].items()
        },
        "epochs": summary["epochs"],
        "selected_epoch": summary["selected_epoch"],
        "train_seconds": summary["train_seconds"],
        "settings": summary["settings"],
    }
    if summary["architecture"] == "cnn":
        result["generalization"] = generalization(Path(command[-1]) / "model.pt", args)
    return result


def update_seconds(grids, layers: int, family: Family, provider, params) -> dict[str, float]:
    """Median over ``params[1:]`` of the wall time of a full basis update for a new parameter
    (``total``) and of its parts (``MultiscaleBasis.timings``); the first update (set-up) is
    not timed."""
    basis = dl.MultiscaleBasis(grids, layers, provider=provider)
    basis.update(family.a, params[0])
    parts = []
    for p in params[1:]:
        t0 = time.perf_counter()
        basis.update(family.a, p)
        parts.append({"total": time.perf_counter() - t0, **basis.timings})
    basis.destroy()
    return {k: float(np.median([q[k] for q in parts])) for k in parts[0]}


def online(args: argparse.Namespace, folder: Path) -> dict[str, dict]:
    """Classical and learned basis update times at each of :data:`ONLINE_SIZES`."""
    out = {}
    for case, (NH, n, layers) in ONLINE_SIZES.items():
        grids = dl.create_nested_grids(MPI.COMM_SELF, NH, n)
        family = cont_family(n)
        params = family.test_parameters(args.repeats + 1, seed=30_000)
        entry = {
            "NH": NH,
            "n": n,
            "l": layers,
            "patches": NH**2,
            "classical": update_seconds(grids, layers, family, None, params),
            "learned": {},
        }
        problem = [
            "--family", "cont", "--coarse", str(NH), "--fine", str(n), "--layers", str(layers),
            "--samples", "2", "--test-samples", "1", "--epochs", "1",
        ]  # fmt: skip
        for network in args.online_networks:
            command = train_command(
                problem, ["--network", network], folder / f"{case}-{network.replace(':', '-')}"
            )
            train(command)
            model = TrainedModel.load(Path(command[-1]) / "model.pt", grids, layers, family)
            learned = LearnedCorrectors(model, family, grids.r)
            times = update_seconds(grids, layers, family, learned, params)
            entry["learned"][network] = {"command": " ".join(command[:-1] + ["OUT"]), **times}
        out[case] = entry
    return out


def merge(path: Path, runs: list[dict], online_results: dict | None) -> dict:
    """The results of ``path`` (if any) with ``runs`` replacing those of the same name and
    the online section replaced if measured."""
    old = json.loads(path.read_text()) if path.exists() else {}
    fresh = {r["name"] for r in runs}
    data = {
        "machine": machine(),
        "ranks": 1,
        "runs": [r for r in old.get("runs", []) if r["name"] not in fresh] + runs,
        "online": online_results if online_results is not None else old.get("online"),
    }
    write_json(path, data)
    return data


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--coarse", type=int, default=6)
    parser.add_argument("--fine", type=int, default=36)
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--test-samples", type=int, default=25)
    parser.add_argument("--runs", nargs="*", default=[], choices=list(RUNS))
    parser.add_argument("--online", action="store_true", help="measure the online cost")
    parser.add_argument("--online-networks", nargs="+", default=["cnn:24x6", "reduced:16:32x3"])
    parser.add_argument("--repeats", type=int, default=5, help="timed updates (5)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/lod-ann-example1.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        runs = [run(name, args, Path(tmp)) for name in args.runs]
        online_results = online(args, Path(tmp)) if args.online else None
    data = merge(args.out, runs, online_results)
    for r in data["runs"]:
        base = ", ".join(f"{k} {v:.3f}" for k, v in r["baseline_errors_test"].items())
        print(
            f"{r['name']:>24}: held-out energy basis error {r['basis_error_test']:.3f} ({base}); "
            f"corrector data {r['uses_corrector_data']}; {r['epochs']} epochs, "
            f"{r['train_seconds']:.0f} s"
        )
        for test, errors in r.get("generalization", {}).items():
            print(f"{'':>26}{test}: " + ", ".join(f"{k} {v:.3f}" for k, v in errors.items()))
    for case, entry in (data["online"] or {}).items():
        times = {"classical": entry["classical"], **entry["learned"]}
        print(f"{case}: " + ", ".join(f"{k} {v['total']:.4f} s" for k, v in times.items()))


if __name__ == "__main__":
    main()
