"""``dolfinx-lod operators``: learned Petrov-Galerkin local operators p -> (K_T, M_T)."""

from __future__ import annotations

import argparse

from mpi4py import MPI

import dolfinx_lod
from dolfinx_lod.cli.inputs import check_problem
from dolfinx_lod.cli.options import COARSE_HELP, FAMILIES, add_out_option
from dolfinx_lod.cli.output import output_set
from dolfinx_lod.grids import create_nested_grids
from dolfinx_lod.io import write_json
from dolfinx_lod.parallel import InputError, OutputError, collective, validate


def add_parser(sub) -> None:
    """The ``operators`` sub-command's options."""
    o = sub.add_parser(
        "operators",
        help="fit learned Petrov-Galerkin local operators p -> (K_T, M_T) of a family, for "
        "parabolic --operators",
    )
    o.add_argument("--family", choices=FAMILIES, required=True)
    o.add_argument("--coarse", type=int, required=True, help=COARSE_HELP)
    o.add_argument("--fine", type=int, required=True, help="n, fine cells per direction")
    o.add_argument("--layers", type=int, required=True, help="l >= 1, patch layers")
    o.add_argument("--samples", type=int, default=40, help="training parameters K (40)")
    o.add_argument(
        "--test-samples", type=int, default=5, help="held-out parameters for the report (5)"
    )
    o.add_argument("--network", default="mlp:32x3", help="'mlp:WxD', one MLP per patch (mlp:32x3)")
    o.add_argument("--epochs", type=int, default=2000, help="Adam epochs of the fit (2000)")
    o.add_argument("--threads", type=int, default=1, help="torch threads per MPI rank (1)")
    o.add_argument("--seed", type=int, default=0)
    add_out_option(o)


def _network(args: argparse.Namespace) -> dict:
    """The 'mlp:WxD' network of --network."""
    from dolfinx_lod.neural.networks import parse_network

    network = parse_network(args.network)
    if network["architecture"] != "mlp":
        raise InputError(f"--network must be 'mlp:WIDTHxDEPTH', got {args.network!r}")
    return network


def run(args: argparse.Namespace, comm: MPI.Comm) -> dict:
    """Fit the learned Petrov-Galerkin local operators of every patch; write operators.pt and
    summary.json as one set into --out."""
    import torch

    from dolfinx_lod.coefficients import family as make_family
    from dolfinx_lod.neural.operators import train_operators

    spec: list[dict] = []
    validate(comm, lambda: spec.append(_network(args)))
    check_problem(args, comm, args.fine)
    torch.set_num_threads(args.threads)
    family = make_family(args.family, args.fine)
    grids = create_nested_grids(comm, args.coarse, args.fine)
    with output_set(args, comm) as output:
        nets, report = train_operators(
            grids,
            args.layers,
            family,
            args.samples,
            args.test_samples,
            spec[0]["width"],
            spec[0]["depth"],
            args.epochs,
            args.seed,
        )
        summary = {
            "command": "operators",
            "family": family.name,
            "n": grids.fine,
            "NH": grids.coarse,
            "l": args.layers,
            "ranks": comm.size,
            "samples": args.samples,
            "test_samples": args.test_samples,
            "network": args.network,
            "epochs": args.epochs,
            **{k: v for k, v in report.items() if k != "metadata"},
            "files": {"operators": "operators.pt"},
            "version": dolfinx_lod.__version__,
        }
        with collective(comm, OutputError):
            nets.save(comm, output.path("operators.pt"), report["metadata"])
            if comm.rank == 0:
                write_json(output.path("summary.json"), summary)
        output.commit()
    return summary


def report(args: argparse.Namespace, summary: dict, comm: MPI.Comm) -> str:
    """The closing console line."""
    err = summary["operator_error_test"]
    return (
        f"operators: {summary['family']} n={summary['n']} NH={summary['NH']} "
        f"l={summary['l']} K={summary['samples']}: held-out relative error K "
        f"{err['K']:.3e}, M {err['M']:.3e}; offline {summary['offline_seconds']:.1f} s; "
        f"results in {args.out}/"
    )
