"""Benchmark: seconds per Deep Ritz epoch of a network at a paper example's training sizes
(issue 13, item 3: the paper's mlp:128x8), eager or through torch.compile.

    python bench/bench_epoch.py --example example1 --network mlp:128x8 [--compile] \\
        [--threads 1] [--epochs 3] --out bench/results/epoch-example1.json

Exports the example's K training parameters (``--paper`` sizes: 40 for Example 1, 15 for
Example 2), runs one warm-up epoch (compilation) and times ``--epochs`` more (one rank).
"""

import argparse
import time
from dataclasses import replace
from pathlib import Path

import dolfinx_solver  # noqa: F401
import torch
from common import machine

from dolfinx_lod.io import write_json
from dolfinx_lod.neural.workflow import prepare_training
from dolfinx_lod.paper.examples import EXAMPLES


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--example", choices=sorted(EXAMPLES), default="example1")
    parser.add_argument("--network", default="mlp:128x8")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.threads < 1 or args.epochs < 1:
        parser.error(f"--threads and --epochs must be >= 1, got {args.threads}, {args.epochs}")
    torch.set_num_threads(args.threads)
    example = EXAMPLES[args.example]("paper", args.network)
    settings = replace(example.settings, epochs=1, compile=args.compile)
    g = example.grids
    run = prepare_training(g, example.layers, example.family, example.samples, settings)
    trainer = run.trainer
    t0 = time.perf_counter()
    trainer.train()  # warm-up (compilation)
    warm = time.perf_counter() - t0
    trainer.settings.epochs = 1 + args.epochs
    t0 = time.perf_counter()
    trainer.train()
    seconds = (time.perf_counter() - t0) / args.epochs
    G, K, N = trainer.batch.shape
    result = {
        "command": f"python bench/bench_epoch.py --example {args.example} --network "
        f"{args.network}{' --compile' if args.compile else ''} --threads {args.threads} "
        f"--epochs {args.epochs}",
        "machine": machine(),
        "note": "2-core VM shared with other benchmarks: timings are upper bounds",
        "networks": G,
        "samples": K,
        "patch_vertices": N,
        "first_epoch_seconds": warm,
        "seconds_per_epoch": seconds,
        "extrapolated_hours_30000_epochs": seconds * 30000 / 3600,
    }
    write_json(args.out, result)
    print(result, flush=True)
    run.basis.destroy()


if __name__ == "__main__":
    main()
