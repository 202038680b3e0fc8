"""Option types and help texts shared by the commands."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from dolfinx_lod.grids import SIDES

COARSE_HELP = "N_H, coarse cells per direction (divides n, n / N_H >= 2)"
COUNTS_HELP = (
    "N_H, coarse cells per direction: one number, or one per direction as NX,NY[,NZ] (each "
    "divides the fine cells n of its direction, n / N_H >= 2)"
)
DOMAIN_HELP = (
    "the box: X0,Y0,X1,Y1 (2D) or X0,Y0,Z0,X1,Y1,Z1 (3D), lower-left then upper-right corner "
    "(default: the unit square / cube)"
)
NEUMANN_HELP = (
    f"sides with a homogeneous Neumann (insulated) condition, comma-separated out of "
    f"{','.join(SIDES)} (front/back: z, 3D only); the others have u = 0 (default: none)"
)
MODEL_HELP = (
    "model.pt of dolfinx-lod train: the learned basis (LOD-ANN) instead of patch solves; made "
    "for the same n, N_H, l and domain"
)
FAMILIES = ("cont", "battery")

#: Options that are counts (>= 1), counts that may be 0, and positive rates, wherever a
#: command has them: refused out of range before any work (never replaced by a default).
COUNTS = (
    "samples",
    "test_samples",
    "epochs",
    "threads",
    "lr_step",
    "patience",
    "checkpoint_every",
    "output_every",
    "steps",
)
COUNTS_OR_ZERO = ("seed", "warm_start", "batch_size")
RATES = ("lr", "T")


def numbers(kind: type, what: str):
    """argparse type: comma-separated numbers of ``kind``."""

    def parse(text: str) -> tuple:
        try:
            return tuple(kind(v) for v in text.split(","))
        except ValueError as e:
            raise argparse.ArgumentTypeError(
                f"{what} must be comma-separated {kind.__name__}s, got {text!r}"
            ) from e

    return parse


def counts(text: str) -> int | tuple[int, ...]:
    """argparse type of --coarse / --fine: "8" -> 8, "8,4" -> (8, 4)."""
    values = numbers(int, "cell counts")(text)
    return values[0] if len(values) == 1 else values


def sides(text: str) -> tuple[str, ...]:
    """argparse type of --neumann: "left,right" -> ("left", "right") (checked later)."""
    return tuple(v.strip() for v in text.split(",") if v.strip())


def number_or_file(text: str) -> float | Path:
    """argparse type of --source / --dirichlet: a number, else the path of a .npy file."""
    try:
        return float(text)
    except ValueError:
        return Path(text)


def side_value(text: str) -> tuple[str, float]:
    """argparse type of --flux: "top=1.5" -> ("top", 1.5) (the side is checked later)."""
    side, _, value = text.partition("=")
    try:
        return side.strip(), float(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"--flux must be SIDE=VALUE, got {text!r}") from e


def add_box_options(parser: argparse.ArgumentParser) -> None:
    """--coarse NX[,NY[,NZ]], --domain, --neumann and --layers of a command on a box."""
    parser.add_argument("--coarse", type=counts, required=True, help=COUNTS_HELP)
    parser.add_argument("--domain", type=numbers(float, "--domain"), help=DOMAIN_HELP)
    parser.add_argument("--neumann", type=sides, default=(), help=NEUMANN_HELP)
    parser.add_argument("--layers", type=int, required=True, help="l >= 1, patch layers")


def add_solve_options(parser: argparse.ArgumentParser, plot: str, reference: str) -> None:
    """--method, --source, --out, --no-plot (help ``plot``), --reference (help ``reference``)
    and --model of a command that solves with the LOD."""
    from dolfinx_lod.lod import METHODS

    parser.add_argument("--method", choices=METHODS, default="galerkin")
    parser.add_argument(
        "--source",
        type=number_or_file,
        default=1.0,
        help="source f: a number, or a .npy of fine-cell values laid out as --coefficient "
        "(parabolic: also an (M, n_y, n_x) stack, one field per step) (1)",
    )
    parser.add_argument(
        "--dirichlet",
        type=number_or_file,
        help="u = g on the Dirichlet sides: a number, or a .npy of fine-vertex values of shape "
        "(n_y + 1, n_x + 1) (3D: (n_z + 1, n_y + 1, n_x + 1)) (default 0)",
    )
    parser.add_argument(
        "--flux",
        type=side_value,
        action="append",
        default=[],
        metavar="SIDE=VALUE",
        help="a grad u . n = VALUE on a Neumann side (repeat for several sides)",
    )
    add_out_option(parser)
    parser.add_argument("--no-plot", action="store_true", help=plot)
    parser.add_argument("--reference", action="store_true", help=reference)
    parser.add_argument("--model", type=Path, help=MODEL_HELP)


def add_out_option(parser: argparse.ArgumentParser) -> None:
    """--out, the result folder (written as one set)."""
    parser.add_argument("--out", type=Path, required=True, help="output folder")


#: Library argument names whose option is named otherwise: (command or None, name) -> option.
ARGUMENT_OPTIONS = {
    (None, "stack"): "--coefficients",
    (None, "grids"): "--domain/--coarse/--fine",
    (None, "g"): "--dirichlet",
    ("elliptic", "p"): "--param",
    ("parabolic", "p"): "--params",
    ("train", "augment"): "--augment",
}


def as_options(message: str, parser: argparse.ArgumentParser, command: str) -> str:
    """``message`` with the library's argument names (written `name`) replaced by the
    options of ``command`` that give them (``ARGUMENT_OPTIONS`` or the option of that dest)."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    options = {
        action.dest: action.option_strings[-1]
        for action in sub.choices[command]._actions
        if action.option_strings
    }

    def option(match: re.Match) -> str:
        name = match.group(1)
        return ARGUMENT_OPTIONS.get(
            (command, name), ARGUMENT_OPTIONS.get((None, name), options.get(name, match[0]))
        )

    return re.sub(r"`([A-Za-z_]\w*)`", option, message)
