"""Benchmark: the paper's network (mlp:128x8, Adam 1e-3 decaying by 0.9 per 1000 epochs) trained
within a wall-clock budget at a paper example's setting (issue 13, item 3).

Run by hand (serialized with the other heavy runs):

    flock /tmp/dolfinx_lod_bench.lock python bench/bench_paper_network.py --example example1 \\
        --budget 900 --out bench/results/paper-network-example1.json

Trains the networks of ``demos/example1.py --paper`` (or example2) epoch by epoch until the
budget is spent (checkpoints in ``--checkpoint``; ``--resume`` continues a run), then measures
with the networks at the budget: the held-out basis errors (energy and nodal Euclidean norms,
with the baselines), the mean LOD vs LOD-ANN error at T over the example's 25 schedules, the
time per epoch and the extrapolated time to 30 000 epochs. Writes the JSON (with the loss curve
of the node (0.5, 0.5), paper Fig. 3) and the figure next to it.
"""

import argparse
import time
from pathlib import Path

import dolfinx_solver  # noqa: F401
import torch
from bench_training import evaluate
from harness import machine
from mpi4py import MPI

from dolfinx_lod.io import write_json
from dolfinx_lod.neural.figures import plot_node_loss
from dolfinx_lod.neural.provider import compare_providers
from dolfinx_lod.neural.trainer import History
from dolfinx_lod.neural.workflow import node_networks, prepare_training
from dolfinx_lod.paper.cache import CENTRE
from dolfinx_lod.paper.examples import EXAMPLES
from dolfinx_lod.paper.experiments import ALPHAS, baseline_correctors

#: The paper's epochs.
PAPER_EPOCHS = 30000


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--example", choices=sorted(EXAMPLES), default="example1")
    parser.add_argument("--alpha", type=float, choices=ALPHAS, default=ALPHAS[0])
    parser.add_argument("--budget", type=float, default=900.0, help="training seconds (> 0)")
    parser.add_argument("--chunk", type=int, default=5, help="epochs between budget checks")
    parser.add_argument("--checkpoint", type=Path, default=Path("results/paper-network-ckpt"))
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--mode", choices=("paper", "tiny"), default="paper", help="tiny: smoke")
    parser.add_argument("--out", type=Path, required=True)
    return parser


def _train_within(trainer, args: argparse.Namespace, comm: MPI.Comm) -> list[tuple]:
    """Train ``args.chunk`` epochs at a time until ``args.budget`` training seconds are spent;
    the clock: (epoch, training seconds, maximum over the ranks) after every chunk."""
    start = trainer.train_seconds
    clock = [(trainer.epoch, start)]
    while comm.bcast(trainer.train_seconds - start < args.budget):
        trainer.settings.epochs = trainer.epoch + args.chunk
        trainer.train(checkpoint=args.checkpoint)
        clock.append((trainer.epoch, comm.allreduce(trainer.train_seconds, op=MPI.MAX)))
        if comm.rank == 0:
            print(f"epoch {trainer.epoch}: {trainer.train_seconds:.0f} s", flush=True)
    return clock


def main() -> None:
    parser = _parser()
    args = parser.parse_args()
    if not args.budget > 0 or args.chunk < 1:
        parser.error(f"--budget must be > 0 and --chunk >= 1, got {args.budget}, {args.chunk}")
    torch.set_num_threads(1)
    comm = MPI.COMM_WORLD
    make = EXAMPLES[args.example]
    extra = {"alpha": args.alpha} if args.example == "example1" else {}
    example = make(args.mode, "mlp:128x8", comm=comm, **extra)
    g = example.grids
    node = node_networks(g, CENTRE)
    run = prepare_training(
        g, example.layers, example.family, example.samples, example.settings, node
    )
    trainer = run.trainer
    if args.resume:
        trainer.load_checkpoint(args.checkpoint)
    clock = _train_within(trainer, args, comm)
    seconds = clock[-1][1]
    # Steady state: after the first chunk (which includes torch.compile's compilation).
    (e0, s0), (e1, s1) = clock[min(1, len(clock) - 1)], clock[-1]
    steady = (s1 - s0) / (e1 - e0) if e1 > e0 else seconds / max(trainer.epoch, 1)
    t0 = time.perf_counter()
    measured = evaluate(example, run, trainer.nets, solution=True)
    baselines = baseline_correctors(example)
    test_p = example.family.test_parameters(example.test_samples, seed=10_000)
    base = compare_providers(g, example.layers, example.family, test_p, baselines)
    h: History = trainer.history
    result = {
        "command": "python bench/bench_paper_network.py "
        + f"--example {args.example} --budget {args.budget:g}"
        + (f" --alpha {args.alpha:g}" if extra else ""),
        "machine": machine(),
        "note": "2-core VM shared with other benchmarks: timings are upper bounds",
        "ranks": comm.size,
        "example": example.number,
        "alpha": example.alpha,
        "samples": example.samples,
        "test_schedules": len(example.schedules),
        "network": example.network,
        "settings": {k: getattr(example.settings, k) for k in ("lr", "lr_decay", "lr_step")},
        "epochs": trainer.epoch,
        "train_seconds": seconds,
        "seconds_per_epoch_mean": seconds / max(trainer.epoch, 1),
        "seconds_per_epoch_steady": steady,
        "first_chunk": {"epochs": clock[1][0] - clock[0][0], "seconds": clock[1][1] - clock[0][1]}
        if len(clock) > 1
        else None,
        "extrapolated_hours_30000_epochs": steady * PAPER_EPOCHS / 3600,
        "clock": clock,
        **measured,
        "baseline_basis_errors": base,
        "evaluation_seconds": time.perf_counter() - t0,
        "node": {"point": CENTRE, "networks": node},
        "loss": {
            "epoch": h.epoch,
            "energy": h.energy,
            "penalty": h.penalty,
            "node_energy": h.node_energy,
            "node_penalty": h.node_penalty,
        },
    }
    if comm.rank == 0:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_json(args.out, result)
        plot_node_loss(args.out.with_suffix(".png"), h, str(CENTRE))
        print({k: v for k, v in result.items() if k not in ("loss", "baseline_basis_errors")})
    run.basis.destroy()


if __name__ == "__main__":
    main()
