"""``dolfinx-lod operators``: learned Petrov-Galerkin local operators p -> (K_T, M_T)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from mpi4py import MPI

import dolfinx_lod
from dolfinx_lod.cli.inputs import load_array, nested_grids
from dolfinx_lod.cli.options import FAMILIES, add_box_options, add_out_option, counts
from dolfinx_lod.cli.output import grid_keys, output_set
from dolfinx_lod.io import write_json
from dolfinx_lod.parallel import InputError, OutputError, collective, validate


def add_parser(sub) -> None:
    """The ``operators`` sub-command's options."""
    o = sub.add_parser(
        "operators",
        help="fit learned Petrov-Galerkin local operators p -> (K_T, M_T) of a family, for "
        "parabolic --operators",
    )
    source = o.add_mutually_exclusive_group(required=True)
    source.add_argument("--family", choices=FAMILIES)
    source.add_argument(
        "--coefficients",
        type=Path,
        help="(K, n_y, n_x) or (K, n_z, n_y, n_x) .npy stack of a family's fields given as "
        "samples: field i at the parameter P[i] of --params (the first --samples for the fit, "
        "the last --test-samples held out)",
    )
    o.add_argument(
        "--params", type=Path, help="(K,) or (K, N_p) .npy parameters P of --coefficients"
    )
    o.add_argument(
        "--fine",
        type=counts,
        help="n, fine cells per direction: one number or NX,NY[,NZ] (--family; with "
        "--coefficients: the stack's, if given)",
    )
    add_box_options(o)
    o.add_argument("--samples", type=int, default=40, help="training parameters K (40)")
    o.add_argument(
        "--test-samples", type=int, default=5, help="held-out parameters for the report (5)"
    )
    _add_fit_options(o)
    o.add_argument("--threads", type=int, default=1, help="torch threads per MPI rank (1)")
    o.add_argument("--seed", type=int, default=0)
    add_out_option(o)


def _add_fit_options(o: argparse.ArgumentParser) -> None:
    """The fit's options (defaults: dolfinx_lod.neural.presets.OPERATOR_FIT)."""
    from dolfinx_lod.neural.presets import OPERATOR_EPOCHS, OPERATOR_FIT

    fit, modes = OPERATOR_FIT["fit"], OPERATOR_FIT["modes"]
    network = f"mlp:{OPERATOR_FIT['width']}x{OPERATOR_FIT['depth']}"
    o.add_argument(
        "--fit",
        choices=("reduced", "poly", "mlp"),
        default=fit,
        help=f"reduced: the exact element part P_T(a) plus MLPs on --modes POD coordinates of "
        f"the rest; poly: the same with Legendre least squares; mlp: one MLP on all entries "
        f"({fit})",
    )
    o.add_argument(
        "--modes", type=int, default=modes, help=f"POD modes per block (reduced, poly; {modes})"
    )
    o.add_argument(
        "--element",
        choices=("interpolated", "exact"),
        default="interpolated",
        help="the element part int_T a grad L_j . grad L_i each step (reduced, poly): from a at "
        "a few interpolation points per coarse cell, kept if it holds on the held-out fields, "
        "or from a on every fine cell (interpolated)",
    )
    o.add_argument("--network", default=network, help=f"'mlp:WxD', one MLP per patch ({network})")
    o.add_argument(
        "--epochs",
        type=int,
        default=OPERATOR_EPOCHS,
        help=f"Adam epochs of the MLPs ({OPERATOR_EPOCHS})",
    )


def _network(args: argparse.Namespace) -> dict:
    """The 'mlp:WxD' network of --network."""
    from dolfinx_lod.neural.networks import parse_network

    network = parse_network(args.network)
    if network["architecture"] != "mlp":
        raise InputError(f"--network must be 'mlp:WIDTHxDEPTH', got {args.network!r}")
    if args.modes < 1:
        raise InputError(f"--modes must be >= 1, got {args.modes}")
    return network


def run(args: argparse.Namespace, comm: MPI.Comm) -> dict:
    """Fit the learned Petrov-Galerkin local operators of every patch; write operators.pt and
    summary.json as one set into --out."""
    import torch

    from dolfinx_lod.neural.operators import train_operators
    from dolfinx_lod.neural.presets import OPERATOR_INTERPOLATION

    spec: list[dict] = []
    validate(comm, lambda: spec.append(_network(args)))
    torch.set_num_threads(args.threads)
    with output_set(args, comm) as output:  # --out checked first, before any work
        family, grids = _problem(args, comm)
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
            args.fit,
            args.modes,
            None if args.element == "exact" else OPERATOR_INTERPOLATION["tol"],
        )
        summary = {
            "command": "operators",
            "family": family.name,
            **grid_keys(grids),
            "l": args.layers,
            "ranks": comm.size,
            "samples": args.samples,
            "test_samples": args.test_samples,
            "fit": args.fit,
            "modes": args.modes,
            "element": args.element,
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


def _problem(args: argparse.Namespace, comm: MPI.Comm):
    """The family (built-in, or the samples of --coefficients at --params) and the nested
    grids on --domain with --coarse cells and --neumann sides, all checked on every rank
    before any work. Collective."""
    from dolfinx_lod.coefficients import family as make_family
    from dolfinx_lod.samples import params_family

    if args.coefficients is None:

        def check_family() -> None:
            if args.params is not None:
                raise InputError("--params applies to --coefficients only")
            if args.fine is None or isinstance(args.fine, tuple):
                raise InputError(
                    f"--family {args.family} needs --fine n (n x n cells; give other boxes' "
                    "fields with --coefficients --params)"
                )

        validate(comm, check_family)
        grids = nested_grids(args, comm, (args.fine, args.fine))
        return make_family(args.family, args.fine, grids.domain), grids
    stack = load_array(args.coefficients, "--coefficients", comm, True)
    fine = stack.shape[1:][::-1]
    out: list = []

    def check_samples() -> None:
        if args.params is None:
            raise InputError("--coefficients needs --params (the parameter of each field)")
        if args.fine is not None and tuple(np.atleast_1d(args.fine)) not in ((fine[0],), fine):
            raise InputError(f"--fine {args.fine}: the --coefficients fields have {fine} cells")
        if args.samples + args.test_samples > stack.shape[0]:
            raise InputError(
                f"--samples {args.samples} + --test-samples {args.test_samples} exceed the "
                f"{stack.shape[0]} fields of --coefficients"
            )
        try:
            P = np.load(args.params, allow_pickle=False)
        except Exception as e:
            raise InputError(f"--params {args.params}: cannot read a .npy array ({e})") from e
        out.append(P)

    grids = nested_grids(args, comm, stack.shape[1:])
    validate(comm, check_samples)
    name = f"samples:{args.coefficients.stem}"
    family = []
    validate(comm, lambda: family.append(params_family(stack, out[0], name, grids.domain)))
    return family[0], grids


def report(args: argparse.Namespace, summary: dict, comm: MPI.Comm) -> str:
    """The closing console line."""
    err = summary["operator_error_test"]
    return (
        f"operators: {summary['family']} n={summary['n']} NH={summary['NH']} "
        f"l={summary['l']} K={summary['samples']}: held-out relative error K "
        f"{err['K']:.3e}, M {err['M']:.3e}; offline {summary['offline_seconds']:.1f} s; "
        f"results in {args.out}/"
        + (f"\nwarning: {summary['warning']}" if "warning" in summary else "")
    )
