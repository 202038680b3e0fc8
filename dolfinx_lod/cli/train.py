"""``dolfinx-lod train``: LOD-ANN corrector networks (Deep Ritz) for a family or given fields."""

from __future__ import annotations

import argparse
from pathlib import Path

from mpi4py import MPI

from dolfinx_lod.cli.inputs import check_problem, load_array
from dolfinx_lod.cli.options import COARSE_HELP, FAMILIES, add_out_option
from dolfinx_lod.cli.output import output_set
from dolfinx_lod.grids import create_nested_grids
from dolfinx_lod.parallel import InputError, validate
from dolfinx_lod.progress import interactive

#: The preset of ``train`` (dolfinx_lod.neural.presets): the defaults of every option below.
PRESET = "cnn"
#: Options that override the preset's training settings only where given.
OVERRIDES = ("constraint", "batch_size", "epochs", "lr", "lr_step", "lr_decay")


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
        help="(K, n, n) .npy stack of training coefficients (instead of --family; cnn "
        "networks only); needs --test-coefficients",
    )
    t.add_argument(
        "--test-coefficients",
        type=Path,
        help="(K', n, n) .npy stack of held-out coefficients for the report (default with "
        "--family: --test-samples parameters of the family)",
    )
    t.add_argument("--coarse", type=int, required=True, help=COARSE_HELP)
    t.add_argument("--fine", type=int, required=True, help="n, fine cells per direction")
    t.add_argument("--layers", type=int, required=True, help="l >= 1, patch layers")
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

    from dolfinx_lod.coefficients import family as make_family
    from dolfinx_lod.coefficients import sample_family
    from dolfinx_lod.neural.checkpoints import checkpoint_pattern
    from dolfinx_lod.neural.workflow import train_and_evaluate

    settings = []
    validate(comm, lambda: settings.append(_settings(args)))
    torch.set_num_threads(args.threads)
    check_problem(args, comm, args.fine)
    stacks = {}
    for option in ("coefficients", "test_coefficients"):
        path = getattr(args, option)
        if path is not None:
            name = "--" + option.replace("_", "-")
            stack = load_array(path, name, comm, True, (2,))
            if stack.shape[1] != args.fine:  # the same file on every rank: all raise
                raise InputError(
                    f"{name} fields are {stack.shape[1]} x {stack.shape[2]}; --fine is {args.fine}"
                )
            stacks[option] = sample_family(stack, path.stem)
    family = stacks.get("coefficients") or make_family(args.family, args.fine)
    test_family = stacks.get("test_coefficients", family)
    default_test = 25 if "test_coefficients" not in stacks else int(test_family.high[0]) + 1
    samples = _given(args.samples, int(family.high[0]) + 1)
    grids = create_nested_grids(comm, args.coarse, args.fine)
    # --out is prepared collectively (checkpoints go there while training runs; the results
    # are written as a set); train_and_evaluate checks the network size and --resume.
    out = output_set(args, comm, keep=(checkpoint_pattern(comm),), live=True)
    with out:  # a failed --resume check leaves no staging folder
        return train_and_evaluate(
            grids,
            args.layers,
            family,
            samples,
            _given(args.test_samples, default_test),
            settings[0],
            out,
            resume=args.resume,
            progress=interactive(),  # the training's tqdm bar: on a terminal only
            test_family=test_family,
        )


def report(args: argparse.Namespace, summary: dict, comm: MPI.Comm) -> str:
    """The closing console line."""
    base = ", ".join(f"{k} {v['energy']:.3e}" for k, v in summary["baseline_errors_test"].items())
    return (
        f"train: {summary['family']} n={summary['n']} NH={summary['NH']} l={summary['l']} "
        f"K={summary['samples']}: basis error train {summary['basis_error_train']:.3e}, "
        f"test {summary['basis_error_test']:.3e} (baselines: {base}); "
        f"{summary['epochs']} epochs in "
        f"{summary['train_seconds']:.1f} s; {summary['note']}; results in {args.out}/"
    )
