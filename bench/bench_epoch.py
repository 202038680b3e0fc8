"""Benchmark: seconds per Deep Ritz epoch of a network at a paper example's training sizes
(issue 13, item 3: the paper's mlp:128x8), eager against torch.compile.

    python bench/bench_epoch.py --example example1 [--network mlp:128x8] [--threads 1] \\
        [--epochs 3] --out bench/results/epoch-example1.json

Exports the example's K training parameters (the ``--paper`` sizes: 40 for Example 1, 15 for
Example 2) once, builds the same networks eager and compiled, runs one warm-up epoch each (the
compiled one compiles) and then times ``--epochs`` epochs of each, interleaved (eager,
compiled, eager, ...) so that a machine shared with other work loads both alike. One rank.
"""

import argparse
import time
from dataclasses import replace
from pathlib import Path

import dolfinx_solver  # noqa: F401
import numpy as np
import torch
from harness import machine

from dolfinx_lod.io import write_json
from dolfinx_lod.neural import DeepRitzTrainer
from dolfinx_lod.neural.workflow import prepare_training
from dolfinx_lod.paper.examples import EXAMPLES


def epoch_seconds(trainer: DeepRitzTrainer) -> float:
    """Wall time of one more epoch of ``trainer``."""
    trainer.settings.epochs = trainer.epoch + 1
    t0 = time.perf_counter()
    trainer.train()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--example", choices=sorted(EXAMPLES), default="example1")
    parser.add_argument("--network", default="mlp:128x8")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.threads < 1 or args.epochs < 1:
        parser.error(f"--threads and --epochs must be >= 1, got {args.threads}, {args.epochs}")
    torch.set_num_threads(args.threads)
    example = EXAMPLES[args.example]("paper", args.network)
    g = example.grids
    settings = replace(example.settings, epochs=1, compile=False)
    run = prepare_training(g, example.layers, example.family, example.samples, settings)
    eager = run.trainer
    compiled = DeepRitzTrainer(
        eager.batch, eager.params, replace(settings, compile=True), g.comm, problem=eager.problem
    )
    first = {"eager": epoch_seconds(eager), "compiled": epoch_seconds(compiled)}
    times: dict[str, list[float]] = {"eager": [], "compiled": []}
    for _ in range(args.epochs):
        times["eager"].append(epoch_seconds(eager))
        times["compiled"].append(epoch_seconds(compiled))
    G, K, N = eager.batch.shape
    median = {k: float(np.median(v)) for k, v in times.items()}
    result = {
        "command": f"python bench/bench_epoch.py --example {args.example} --network "
        f"{args.network} --threads {args.threads} --epochs {args.epochs}",
        "machine": machine(),
        "note": "2-core VM shared with other benchmarks: timings are upper bounds; eager and "
        "compiled epochs interleaved",
        "networks": G,
        "samples": K,
        "patch_vertices": N,
        "first_epoch_seconds": first,
        "epoch_seconds": times,
        "seconds_per_epoch": median,
        "speedup": median["eager"] / median["compiled"],
        "extrapolated_hours_30000_epochs": {k: v * 30000 / 3600 for k, v in median.items()},
    }
    write_json(args.out, result)
    print(result, flush=True)
    run.basis.destroy()


if __name__ == "__main__":
    main()
