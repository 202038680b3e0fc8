"""Benchmark: LOD-ANN on high-contrast fields of a family, judged by the solution.

Run by hand (under the shared lock; on one rank, or under ``mpirun -n R``), e.g.

    flock /tmp/heavy.lock python -m bench run inclusions -- --contrast 100 \\
        [--kind channels] [--options "TRAIN OPTIONS"]

``--kind balls`` is the 3D family (n^3 cells, ``--dim 3`` picks it): balls of ``--contrast``
in a matrix of 1; the row then also records the online basis update times.
With the Ritz output (train's default) the row also times the learned update with the Ritz
steps off (``online_basis_seconds.network_only``: the network's forward pass and the energy
minimisers in the span of its vectors), the floor of what the learned update costs here.

Draws ``--train`` + ``--test`` fields of the ``--kind`` (:data:`KINDS`; default random elliptic
inclusions: 4 to 9 per field, semi-axes 0.03 to 0.12, value ``--contrast``, matrix 1; ``cont``
and ``battery``: the library's Example 1 and 2 families at random p, their own contrast) on
``--fine`` x ``--fine`` cells, trains with
``dolfinx-lod train --coefficients`` (the defaults, or the ``--options``) on
(1/``--coarse``, 1/``--fine``, ``--layers``) and records from its summary.json the LOD-ANN
solution (f = 1) against the classical LOD and against the fine FEM on the held-out fields,
the classical LOD's and the baselines' own errors, the basis errors, the epochs and the
training time, with the exact command. A row replaces the earlier one of the same name
(kind, contrast and options).
"""

import argparse
import fcntl
import json
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from harness import provenance
from mpi4py import MPI

from dolfinx_lod.coefficients import family
from dolfinx_lod.io import write_json


def inclusions(n: int, count: int, contrast: float, seed: int) -> np.ndarray:
    """``count`` n x n fields: ``contrast`` in 4 to 9 random ellipses, 1 elsewhere."""
    rng = np.random.default_rng(seed)
    c = (np.arange(n) + 0.5) / n
    X, Y = np.meshgrid(c, c)
    out = np.ones((count, n, n))
    for k in range(count):
        for _ in range(rng.integers(4, 10)):
            x0, y0 = rng.uniform(0, 1, 2)
            rx, ry = rng.uniform(0.03, 0.12, 2)
            th = rng.uniform(0, np.pi)
            u = (X - x0) * np.cos(th) + (Y - y0) * np.sin(th)
            v = -(X - x0) * np.sin(th) + (Y - y0) * np.cos(th)
            out[k][(u / rx) ** 2 + (v / ry) ** 2 <= 1] = contrast
    return out


def channels(n: int, count: int, contrast: float, seed: int) -> np.ndarray:
    """``count`` n x n fields: ``contrast`` in 2 to 4 straight channels across the square
    (random direction and offset, width 0.03 to 0.06), 1 elsewhere."""
    rng = np.random.default_rng(seed)
    c = (np.arange(n) + 0.5) / n
    X, Y = np.meshgrid(c, c)
    out = np.ones((count, n, n))
    for k in range(count):
        for _ in range(rng.integers(2, 5)):
            th = rng.uniform(0, np.pi)
            d = (X - 0.5) * np.sin(th) - (Y - 0.5) * np.cos(th) - rng.uniform(-0.4, 0.4)
            out[k][np.abs(d) <= rng.uniform(0.015, 0.03)] = contrast
    return out


def checkerboard(n: int, count: int, contrast: float, seed: int) -> np.ndarray:
    """``count`` n x n fields of 12 x 12 blocks of ceil(n / 12) cells (cut at n):
    ``contrast`` with probability 0.2 to 0.5 (drawn per field), else 1."""
    rng = np.random.default_rng(seed)
    blocks = rng.uniform(size=(count, 12, 12)) < rng.uniform(0.2, 0.5, (count, 1, 1))
    fields = np.where(blocks, contrast, 1.0)
    size = -(-n // 12)
    return np.repeat(np.repeat(fields, size, axis=1), size, axis=2)[:, :n, :n]


def lognormal(n: int, count: int, contrast: float, seed: int) -> np.ndarray:
    """``count`` n x n fields exp(s g): g a Gaussian field (white noise smoothed by a Gaussian
    of correlation length 0.1, periodic, unit variance), s = log(contrast) / 6 (the values
    span about ``contrast``)."""
    rng = np.random.default_rng(seed)
    k = np.fft.fftfreq(n) * n
    kernel = np.exp(-0.5 * (2 * np.pi * 0.1) ** 2 * (k[:, None] ** 2 + k[None, :] ** 2))
    noise = np.fft.fft2(rng.normal(size=(count, n, n)))
    g = np.fft.ifft2(noise * kernel).real
    g /= g.std(axis=(1, 2), keepdims=True)
    return np.exp(np.log(contrast) / 6 * g)


def balls(n: int, count: int, contrast: float, seed: int) -> np.ndarray:
    """``count`` n x n x n fields: ``contrast`` in 6 to 12 random balls of radius 0.06 to 0.15,
    1 elsewhere (the 3D inclusions)."""
    rng = np.random.default_rng(seed)
    c = (np.arange(n) + 0.5) / n
    Z, Y, X = np.meshgrid(c, c, c, indexing="ij")
    out = np.ones((count, n, n, n))
    for k in range(count):
        for _ in range(rng.integers(6, 13)):
            x0, y0, z0 = rng.uniform(0, 1, 3)
            radius = rng.uniform(0.06, 0.15)
            out[k][(X - x0) ** 2 + (Y - y0) ** 2 + (Z - z0) ** 2 <= radius**2] = contrast
    return out


def _parametrised(name: str, n: int, count: int, seed: int) -> np.ndarray:
    """``count`` n x n fields of the library's family ``name`` at parameters drawn uniformly
    from its box (the contrast is the family's own)."""
    fam = family(name, n)
    rng = np.random.default_rng(seed)
    c = (np.arange(n) + 0.5) / n
    X, Y = np.meshgrid(c, c)
    x = np.stack([X.ravel(), Y.ravel(), np.zeros(n * n)])
    params = rng.uniform(fam.low, fam.high, (count, fam.num_params))
    return np.stack([fam.a(x, p).reshape(n, n) for p in params])


def cont(n: int, count: int, contrast: float, seed: int) -> np.ndarray:
    """``count`` fields of Example 1's family (p uniform in [0.01, 1]; contrast 100)."""
    return _parametrised("cont", n, count, seed)


def battery(n: int, count: int, contrast: float, seed: int) -> np.ndarray:
    """``count`` fields of Example 2's battery family (p uniform in [-1, 1]^4)."""
    return _parametrised("battery", n, count, seed)


#: Field families: name -> (n, count, contrast, seed) -> (count, n, n[, n]) stack.
KINDS = {
    "cont": cont,
    "battery": battery,
    "balls": balls,
    "inclusions": inclusions,
    "channels": channels,
    "checkerboard": checkerboard,
    "lognormal": lognormal,
}


def row(summary: dict) -> dict:
    """The numbers of one run (mean over the held-out fields, energy norm unless named)."""
    fine = summary["solution_error_fine_test"]
    learned, classical = (fine[k]["energy"]["fields"] for k in ("learned", "classical"))
    ratios = np.asarray(learned) / np.maximum(classical, 1e-300)
    return {
        "ratio_to_classical_median": float(np.median(ratios)),
        "online_basis_seconds": summary["online_basis_seconds"],
        "online_speedup": summary["online_speedup"],
        "lod_ann_vs_classical": summary["solution_error_test"],
        "vs_fine": {k: v["energy"]["mean"] for k, v in fine.items()},
        "vs_fine_l2": {k: v["l2"]["mean"] for k, v in fine.items()},
        "ratio_to_classical": summary["worse_than_classical"],
        "baselines_vs_classical": {
            k: v["energy"]["mean"] for k, v in summary["baseline_solution_errors_test"].items()
        },
        "basis_error_test": summary["basis_error_test"],
        "basis_error_train": summary["basis_error_train"],
        "baseline_basis_errors": {
            k: v["energy"] for k, v in summary["baseline_errors_test"].items()
        },
        "epochs": summary["epochs"],
        "train_seconds": summary["train_seconds"],
        "uses_corrector_data": summary["uses_corrector_data"],
        "settings": summary["settings"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--contrast", type=float, default=100.0)
    p.add_argument("--kind", choices=tuple(KINDS), default="inclusions")
    p.add_argument("--dim", type=int, choices=(2, 3), default=2, help="3: --kind balls")
    p.add_argument("--fine", type=int, default=36)
    p.add_argument("--coarse", type=int, default=6)
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--train", type=int, default=24, help="training fields (24)")
    p.add_argument("--test", type=int, default=6, help="held-out fields (6)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--options", default="", help="train options beside the defaults")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    args.kind = "balls" if args.dim == 3 else args.kind
    extra = shlex.split(args.options)
    from dolfinx_lod.cli import main as cli

    comm = MPI.COMM_WORLD
    tmp = Path(comm.bcast(tempfile.mkdtemp() if comm.rank == 0 else None))
    if comm.rank == 0:
        fields = KINDS[args.kind](args.fine, args.train + args.test, args.contrast, args.seed)
        np.save(tmp / "train.npy", fields[: args.train])
        np.save(tmp / "test.npy", fields[args.train :])
    comm.Barrier()
    command = ["train", "--coefficients", f"{tmp}/train.npy", "--test-coefficients"]
    command += [f"{tmp}/test.npy", "--coarse", str(args.coarse), "--fine", str(args.fine)]
    command += ["--layers", str(args.layers), *extra, "--out", f"{tmp}/run"]
    t0 = time.perf_counter()
    if cli(command) != 0:
        raise SystemExit("train failed")
    wall = time.perf_counter() - t0
    network_only = network_seconds(args, tmp)
    if comm.rank != 0:
        return
    summary = json.loads((tmp / "run" / "summary.json").read_text())
    summary["online_basis_seconds"]["network_only"] = network_only
    shutil.rmtree(tmp)
    name = f"contrast {args.contrast:g}" + (f" {' '.join(extra)}" if extra else "")
    name = name if args.kind == "inclusions" else f"{args.kind} {name}"
    if args.kind in ("cont", "battery"):  # the family's own contrast
        name = " ".join([args.kind, *extra])
    name = f"{name} ({comm.size} ranks)" if comm.size > 1 else name
    lockfile = Path(tempfile.gettempdir()) / f"{args.out.name}.lock"
    with open(lockfile, "w") as lock:  # runs may end at once
        fcntl.flock(lock, fcntl.LOCK_EX)
        result = add_run(args, name, summary, wall)
    print(name, json.dumps({k: result["runs"][name][k] for k in ("vs_fine", "epochs")}))


def network_seconds(args: argparse.Namespace, folder: Path) -> float | None:
    """Seconds of one learned basis update (the first held-out field, after a warm-up) with
    the trained model's Ritz steps off; None without the Ritz output. Collective."""
    import dolfinx_lod as dl
    from dolfinx_lod.basis import MultiscaleBasis
    from dolfinx_lod.grids import unit_box
    from dolfinx_lod.neural import LearnedCorrectors, TrainedModel
    from dolfinx_lod.samples import sample_family

    model = TrainedModel.load(folder / "run" / "model.pt")
    if not model.metadata.get("ritz"):
        return None
    model.nets.ritz_steps, model.nets.ritz_tol = 0, 0.0
    comm = MPI.COMM_WORLD
    grids = dl.create_nested_grids(comm, args.coarse, args.fine, unit_box(args.dim))
    test = sample_family(np.load(folder / "test.npy"))
    with MultiscaleBasis(grids, args.layers, LearnedCorrectors(model, None, grids.r)) as basis:
        basis.update(test.a, [0])  # set-up not timed
        basis.invalidate()
        comm.Barrier()
        t0 = time.perf_counter()
        basis.update(test.a, [0])
        comm.Barrier()
        return time.perf_counter() - t0


def add_run(args: argparse.Namespace, name: str, summary: dict, wall: float) -> dict:
    """Add (or replace) the row ``name`` of ``args.out`` and write it; returns the result."""
    result = json.loads(args.out.read_text()) if args.out.exists() else {"runs": {}}
    result["runs"][name] = {
        **row(summary),
        "wall_seconds": wall,
        "problem": {
            k: getattr(args, k)
            for k in ("kind", "dim", "fine", "coarse", "layers", "train", "test")
        },
        "provenance": provenance(
            ["python", "bench/bench_inclusions.py", *sys.argv[1:]], MPI.COMM_WORLD.size
        ),
    }
    write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
