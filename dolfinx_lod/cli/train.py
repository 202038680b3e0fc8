"""``dolfinx-lod train``: LOD-ANN corrector networks (Deep Ritz) for a family or given fields."""

from __future__ import annotations

import argparse
from pathlib import Path

from mpi4py import MPI

from dolfinx_lod.cli.inputs import load_array, nested_grids, warn
from dolfinx_lod.cli.options import FAMILIES, add_box_options, add_out_option, counts
from dolfinx_lod.cli.output import output_set
from dolfinx_lod.parallel import InputError, validate
from dolfinx_lod.progress import interactive

#: The preset of ``train`` (dolfinx_lod.neural.presets): the defaults of every option below.
PRESET = "cnn"
#: Options that override the preset's training settings only where given.
OVERRIDES = (
    "constraint",
    "batch_size",
    "epochs",
    "lr",
    "lr_step",
    "lr_decay",
    "augment",
    "loads",
    "contrast",
    "pool",
    "output",
    "energy_scale",
    "ritz",
    "ritz_steps",
    "ritz_tol",
)


def add_parser(sub) -> None:
    """The ``train`` sub-command's options."""
    t = sub.add_parser(
        "train", help="train LOD-ANN corrector networks (Deep Ritz) for a family or given fields"
    )
    source = t.add_mutually_exclusive_group(required=True)
    source.add_argument("--family", choices=FAMILIES)
    source.add_argument(
        "--coefficients",
        type=Path,
        help="(K, n_y, n_x) or, in 3D, (K, n_z, n_y, n_x) .npy stack of training coefficients "
        "(instead of --family; cnn networks only); needs --test-coefficients",
    )
    t.add_argument(
        "--test-coefficients",
        type=Path,
        help="(K', n_y, n_x) or (K', n_z, n_y, n_x) .npy stack of held-out coefficients for "
        "the report (default with --family: --test-samples parameters of the family)",
    )
    t.add_argument(
        "--fine",
        type=counts,
        required=True,
        help="n, fine cells per direction: one number, NX,NY or NX,NY,NZ (the stacks' n_x, "
        "n_y[, n_z])",
    )
    add_box_options(t)
    t.add_argument(
        "--samples",
        type=int,
        help="training parameters K (with --coefficients: the first K fields, default all)",
    )
    t.add_argument(
        "--test-samples",
        type=int,
        help="held-out parameters (25; with --test-coefficients: the first ones, default all)",
    )
    _add_network_options(t)
    add_out_option(t)


def _add_network_options(t: argparse.ArgumentParser) -> None:
    """The network and optimiser options of ``train`` (defaults: the ``cnn`` preset)."""
    from dolfinx_lod.neural.presets import PRESETS, PROJECTION_BATCH

    preset = PRESETS[PRESET]
    cnn, p_nets = preset.fields, {**preset.fields, **preset.p_networks}

    def default(name: str) -> str:
        return f"{cnn[name]:g} for cnn, {p_nets[name]:g} otherwise"

    t.add_argument(
        "--network",
        default=preset.network,
        help=f"'cnn:WxD' (default {preset.network}: one CNN from the coefficient on the patch, "
        "any coefficient), 'mlp:WxD' (paper Def. 3.1, e.g. mlp:128x8) or 'reduced:Q:WxD' (Q "
        "patch modes, an MLP p -> coordinates; needs the classical training correctors)",
    )
    t.add_argument(
        "--constraint",
        choices=("projection", "penalty"),
        help="B alpha = 0 by the exact projection onto ker B (cnn only; the default for cnn) "
        "or the self-adaptive penalty (16) (the default otherwise)",
    )
    t.add_argument(
        "--batch-size",
        type=int,
        help=f"training samples per optimizer step (projection only; default {PROJECTION_BATCH} "
        "with the projection, else all)",
    )
    t.add_argument("--epochs", type=int, help=f"Deep Ritz epochs ({default('epochs')})")
    t.add_argument("--warm-start", type=int, default=0, help="supervised epochs first (0)")
    _add_cnn_options(t, cnn)
    t.add_argument("--lr", type=float, help=f"Adam learning rate ({default('lr')})")
    t.add_argument(
        "--lr-step",
        type=int,
        help=f"epochs between learning-rate decays by --lr-decay ({default('lr_step')})",
    )
    t.add_argument(
        "--lr-decay",
        type=float,
        help=f"learning-rate factor every --lr-step ({default('lr_decay')})",
    )
    t.add_argument("--patience", type=int, default=1000, help="early stopping patience (1000)")
    t.add_argument("--checkpoint-every", type=int, default=500)
    t.add_argument(
        "--resume",
        action="store_true",
        help="continue from the checkpoints in --out (same settings but --epochs, --patience, "
        "--checkpoint-every, --device; same number of ranks)",
    )
    t.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    t.add_argument("--threads", type=int, default=1, help="torch threads per MPI rank (1)")
    t.add_argument("--seed", type=int, default=0)


def _add_cnn_options(t: argparse.ArgumentParser, cnn: dict) -> None:
    """The options of the coefficient-aware network (defaults: the preset's ``cnn``)."""
    from dolfinx_lod.neural.cnn import RITZ_MAX_STEPS
    from dolfinx_lod.neural.presets import ENERGY_SCALES, OUTPUTS

    t.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        help="also train on the 8 symmetries of the square of every interior patch (cnn only; "
        f"default {'on' if cnn.get('augment') else 'off'})",
    )
    t.add_argument(
        "--loads",
        choices=("max", "mean"),
        help="scale the cnn's element-load inputs by their patch maximum (default) or by exp "
        "of the patch mean of log a",
    )
    t.add_argument(
        "--contrast",
        action=argparse.BooleanOptionalAction,
        help="cnn input channels a / max a and min a / a on the patch "
        f"(default {'on' if cnn.get('contrast') else 'off'})",
    )
    t.add_argument(
        "--pool",
        action=argparse.BooleanOptionalAction,
        help="cnn hidden layers add a map of the window's channel means "
        f"(default {'on' if cnn.get('pool') else 'off'})",
    )
    t.add_argument(
        "--energy-scale",
        choices=ENERGY_SCALES,
        help="cnn loss weight of a patch: 1 / the energy of the Lambda_j on T (patch) or 1 / its "
        f"mean over the field's patches (field) ({cnn.get('energy_scale', 'patch')})",
    )
    t.add_argument(
        "--ritz",
        type=int,
        metavar="M",
        help="cnn gives M vectors per patch and the correctors are the patch energy's "
        f"minimisers in their span (0: off; default {cnn.get('ritz', 0)})",
    )
    t.add_argument(
        "--ritz-steps",
        type=int,
        metavar="K",
        help="with --ritz: K steps that add the preconditioned residuals to the span "
        f"(default {cnn.get('ritz_steps', 0)})",
    )
    t.add_argument(
        "--ritz-tol",
        type=float,
        metavar="TOL",
        help=f"with --ritz: out of training, further steps (at most {RITZ_MAX_STEPS} in all) while "
        f"one lowers a corrector's energy by more than TOL times it (0: exactly K; default "
        f"{cnn.get('ritz_tol', 0)})",
    )
    t.add_argument(
        "--output",
        choices=OUTPUTS,
        help="cnn output map before the projection: S_1^-1/2 y (laplacian) or scaled by a's "
        f"vertex means over its mean on T ({cnn.get('output', 'laplacian')})",
    )


def _given(value, default):
    """An option's value, or ``default`` where it was not given (0 is a value: checked)."""
    return default if value is None else value


def _settings(args: argparse.Namespace):
    """The TrainingSettings of the options: the preset's, with the options given on top,
    validated."""
    from dolfinx_lod.neural.presets import PRESETS

    if args.coefficients is not None and args.test_coefficients is None:
        raise InputError("--coefficients needs --test-coefficients (held-out fields)")
    if args.family is not None and args.samples is None:
        raise InputError("--family needs --samples (training parameters K >= 1)")
    given = {k: getattr(args, k) for k in OVERRIDES if getattr(args, k) is not None}
    s = PRESETS[PRESET].settings(
        args.network,
        patience=args.patience,
        warm_start=args.warm_start,
        checkpoint_every=args.checkpoint_every,
        seed=args.seed,
        device=args.device,
        **given,
    )
    s.validate()
    return s


def run(args: argparse.Namespace, comm: MPI.Comm) -> dict:
    """Train the networks of all patches; write model.pt, summary.json, loss.png as one set
    into --out (the checkpoints go there while training runs)."""
    import torch

    from dolfinx_lod.neural.checkpoints import checkpoint_pattern
    from dolfinx_lod.neural.workflow import train_and_evaluate

    settings = []
    validate(comm, lambda: settings.append(_settings(args)))
    torch.set_num_threads(args.threads)
    # --out is prepared collectively before any input is read (checkpoints go there while
    # training runs; the results are written as a set); train_and_evaluate checks the network
    # size and --resume.
    out = output_set(args, comm, keep=(checkpoint_pattern(comm),), live=True)
    with out:  # a failed --resume check leaves no staging folder
        family, test_family, grids = _problem(args, comm)
        default_test = 25 if args.test_coefficients is None else int(test_family.high[0]) + 1
        summary = train_and_evaluate(
            grids,
            args.layers,
            family,
            _given(args.samples, int(family.high[0]) + 1),
            _given(args.test_samples, default_test),
            settings[0],
            out,
            resume=args.resume,
            progress=interactive(),  # the training's tqdm bar: on a terminal only
            test_family=test_family,
        )
    if summary["warning"]:
        warn(comm, "train", summary["warning"])
    return summary


def _problem(args: argparse.Namespace, comm: MPI.Comm):
    """The training family, the test family and the nested grids of --family or the stacks of
    --coefficients / --test-coefficients on --domain with --coarse cells and --neumann sides,
    all checked on every rank before any work. Collective."""
    from dolfinx_lod.coefficients import family as make_family
    from dolfinx_lod.samples import sample_family

    stacks = {}
    for option in ("coefficients", "test_coefficients"):
        path = getattr(args, option)
        if path is not None:
            stacks[option] = load_array(path, "--" + option.replace("_", "-"), comm, True)
    # The dimension of the stacks (as `elliptic`'s coefficient), else of --fine, else 2.
    dim = next((s.ndim - 1 for s in stacks.values()), None)
    dim = dim or (len(args.fine) if isinstance(args.fine, tuple) else 2)
    fine = args.fine if isinstance(args.fine, tuple) else (args.fine,) * dim

    def check_shapes() -> None:  # the same files on every rank: all raise together
        for option, stack in stacks.items():
            name = "--" + option.replace("_", "-")
            if len(fine) != stack.ndim - 1:
                raise InputError(
                    f"--fine {','.join(map(str, fine))} has {len(fine)} counts; the {name} "
                    f"fields are {stack.ndim - 1}D"
                )
            if stack.shape[1:] != fine[::-1]:
                cells = " x ".join(map(str, stack.shape[1:][::-1]))
                axes = "n_x x n_y" + " x n_z" * (stack.ndim == 4)
                raise InputError(
                    f"{name} fields are {cells} ({axes}) cells; --fine is "
                    f"{','.join(map(str, fine))}"
                )
        if args.family is not None and len(set(fine)) > 1:
            raise InputError(
                f"--family {args.family} is defined on n x n cells; --fine {args.fine} has "
                "different counts (give the fields with --coefficients)"
            )

    validate(comm, check_shapes)
    grids = nested_grids(args, comm, fine[::-1])
    named = {k: sample_family(v, getattr(args, k).stem, grids.domain) for k, v in stacks.items()}
    family = named.get("coefficients") or make_family(args.family, fine[0], grids.domain)
    return family, named.get("test_coefficients", family), grids


def report(args: argparse.Namespace, summary: dict, comm: MPI.Comm) -> str:
    """The closing console line: judged by the solution (LOD-ANN against the classical LOD,
    energy norm, mean over the test fields), the basis errors beside it."""
    base = ", ".join(
        f"{k} {v['energy']['mean']:.3e}"
        for k, v in summary["baseline_solution_errors_test"].items()
    )
    fine = summary["solution_error_fine_test"]
    return (
        f"train: {summary['family']} n={summary['n']} NH={summary['NH']} l={summary['l']} "
        f"K={summary['samples']}: solution error vs classical LOD (energy, test mean) "
        f"{summary['solution_error_test']['energy']['mean']:.3e} (baselines: {base}); vs fine "
        f"FEM {fine['learned']['energy']['mean']:.3e} (classical LOD "
        f"{fine['classical']['energy']['mean']:.3e}); basis error test "
        f"{summary['basis_error_test']:.3e}; {summary['epochs']} epochs in "
        f"{summary['train_seconds']:.1f} s; {summary['note']}; results in {args.out}/"
    )
