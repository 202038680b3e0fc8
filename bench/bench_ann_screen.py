"""Benchmark: short screening runs of the coefficient-aware CNN's options on high-contrast
fields, by the held-out basis error.

Run by hand (one rank; under the shared lock), e.g.

    flock /tmp/heavy.lock python -m bench run ann-screen -- --contrast 1000 \\
        --name "field" --set '{"energy_scale": "field"}'

Draws ``--train`` + ``--test`` fields of ``--kind`` (bench_inclusions.KINDS) on 36 x 36
cells, trains the ``cnn`` preset's network with the settings ``--set`` (TrainingSettings
fields, JSON) on top at (1/6, 1/36, 1) for ``--epochs`` epochs (learning-rate decay after
0.7 of them) and records, every fifth of the epochs, the relative energy-norm error
sqrt(sum ||alpha - C||_S^2 / sum ||C||_S^2) of the network's correctors against the
classical ones on the held-out fields and on 4 training fields (all patches summed: every
patch by its absolute energy, as in the solution's error). A screen, not the solution-error
benchmark (bench_inclusions.py): fewer fields and epochs, seconds per run. A row replaces
the earlier one of the same name (kind, contrast, name).
"""

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from bench_inclusions import KINDS
from harness import provenance
from mpi4py import MPI

import dolfinx_lod as dl
from dolfinx_lod.io import write_json
from dolfinx_lod.neural.export import PatchBatch, export_patches
from dolfinx_lod.neural.presets import preset
from dolfinx_lod.neural.provider import scale_parameters
from dolfinx_lod.neural.trainer import DeepRitzTrainer
from dolfinx_lod.samples import sample_family


def basis_error(nets: torch.nn.Module, batch: PatchBatch) -> float:
    """sqrt(sum ||alpha - C||_S^2 / sum ||C||_S^2) over the patches and samples of ``batch``."""
    with torch.no_grad():
        d = nets(batch.configs, batch.a.float()).double() - batch.C
        ref = (batch.C * batch.apply_stiffness(batch.C)).sum()
        return float(((d * batch.apply_stiffness(d)).sum() / ref).sqrt())


def screen(args: argparse.Namespace) -> dict:
    """Train in five stages and return the errors after each."""
    torch.set_num_threads(1)
    fields = KINDS[args.kind](36, args.train + args.test, args.contrast, args.seed)
    grids = dl.create_nested_grids(MPI.COMM_SELF, 6, 36)
    basis = dl.MultiscaleBasis(grids, 1)
    family, held_out = sample_family(fields[: args.train]), sample_family(fields[args.train :])
    train_p = family.training_parameters(args.train)
    batch = export_patches(basis, family.a, train_p)
    test = export_patches(
        basis, held_out.a, held_out.training_parameters(args.test), dtype=torch.float64
    )
    seen = export_patches(basis, family.a, train_p[:4], dtype=torch.float64)
    basis.destroy()
    settings = preset("cnn").settings(
        args.network,
        epochs=args.epochs,
        lr_step=max(1, 7 * args.epochs // 10),
        **json.loads(args.set),
    )
    trainer = DeepRitzTrainer(batch, scale_parameters(family, train_p), settings, MPI.COMM_SELF)
    stages, t0 = [], time.perf_counter()
    for stage in range(1, 6):
        settings.epochs = stage * args.epochs // 5
        trainer.train()
        stages.append(
            {
                "epoch": trainer.epoch,
                "test": basis_error(trainer.nets, test),
                "train": basis_error(trainer.nets, seen),
            }
        )
    return {"stages": stages, "seconds": time.perf_counter() - t0}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--name", required=True, help="the row's name (its options)")
    p.add_argument("--set", default="{}", help="TrainingSettings fields (JSON) on the preset")
    p.add_argument("--network", default=None, help="network spec (default: the preset's)")
    p.add_argument("--contrast", type=float, default=1000.0)
    p.add_argument("--kind", choices=tuple(KINDS), default="inclusions")
    p.add_argument("--train", type=int, default=12)
    p.add_argument("--test", type=int, default=4)
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    result = screen(args)
    name = f"{args.kind} contrast {args.contrast:g} {args.name}"
    data = json.loads(args.out.read_text()) if args.out.exists() else {"runs": {}}
    data["runs"][name] = {
        **result,
        "settings": json.loads(args.set),
        "network": args.network,
        "problem": {k: getattr(args, k) for k in ("kind", "contrast", "train", "test", "epochs")},
        "provenance": provenance(["python", "bench/bench_ann_screen.py", *sys.argv[1:]], 1),
    }
    write_json(args.out, data)
    print(name, json.dumps(result["stages"][-1]))


if __name__ == "__main__":
    main()
