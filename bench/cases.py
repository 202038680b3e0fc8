"""The registry of benchmark cases: name -> script, default arguments and result file."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Case:
    """A benchmark case: ``script`` (under bench/, or a path from the repository root such as
    demos/example1.py) run with ``args`` writes ``result`` (``{ranks}`` is replaced by the rank
    count) under bench/results/. A ``demo`` writes a result folder (``--out DIR``) whose
    summary.json becomes the result."""

    script: str
    result: str
    args: tuple[str, ...] = ()
    about: str = ""
    ranks: int = 1
    demo: bool = False


CASES: dict[str, Case] = {
    "step": Case(
        "bench_step.py",
        "step-32-512-2-{ranks}.json",
        about="one online step: LOD steppers against the fine FEM step, (1/32, 1/512, 2)",
        ranks=2,
    ),
    "time-to-solution": Case(
        "bench_time_to_solution.py",
        "time-to-solution-32-512-2-{ranks}.json",
        about="whole time loops with a changing coefficient: LOD vs the fair fine FEM",
        ranks=2,
    ),
    "patch-solver": Case(
        "bench_patch_solver.py",
        "patch-solver-32-512-2.json",
        about="the patch solver's MUMPS ordering and scaling: factorization + solve per patch",
    ),
    "patch-solver-3d": Case(
        "bench_patch_solver.py",
        "patch-solver-8-64-1-3d.json",
        ("--dim", "3", "--coarse", "8", "--fine", "64", "--layers", "1")
        + ("--patches", "3", "--rounds", "3"),
        about="the same for 3D patches (3 x 3 x 3 coarse cells, 24^3 fine cells)",
    ),
    "basis": Case("bench_basis.py", "basis-{ranks}.json", about="classical basis build time"),
    "online": Case("bench_online.py", "online-{ranks}.json", about="online coarse step"),
    "parabolic": Case("bench_parabolic.py", "parabolic-{ranks}.json", about="time loop"),
    "methods": Case(
        "bench_methods.py", "methods-battery-16-128.json", about="Galerkin vs Petrov-Galerkin"
    ),
    "boundary": Case(
        "bench_boundary.py",
        "boundary-{ranks}.json",
        about="boundary data g, q: LOD energy error vs the homogeneous problem",
    ),
    "3d": Case("bench_3d.py", "3d-{ranks}.json", about="3D basis and solve"),
    "battery3d": Case(
        "demos/battery3d.py",
        "battery3d-demo-{ranks}.json",
        about="the 3D battery demo: LOD vs LOD-ANN, basis update cost",
        ranks=2,
        demo=True,
    ),
    "battery3d-tiny": Case(
        "demos/battery3d.py",
        "battery3d-tiny-{ranks}.json",
        ("--tiny",),
        about="the 3D battery demo's seconds-sized smoke run",
        demo=True,
    ),
    "training": Case("bench_training.py", "training-{ranks}.json", about="LOD-ANN training"),
    "lod-ann": Case("bench_lod_ann.py", "lod-ann-example1.json", about="LOD-ANN accuracy"),
    "inclusions": Case(
        "bench_inclusions.py",
        "lod-ann-inclusions.json",
        about="LOD-ANN on high-contrast fields (--kind inclusions|channels|...), by the solution",
    ),
    "operator-samples": Case(
        "bench_operator_samples.py",
        "operator-samples-16-128-2.json",
        about="learned operators for a user's family given as samples: element interpolation",
    ),
    "families": Case(
        "bench_inclusions.py",
        "lod-ann-families-8-64-2.json",
        ("--coarse", "8", "--fine", "64", "--layers", "2", "--train", "48", "--test", "8"),
        about="LOD-ANN per family (--kind, --contrast) at (1/8, 1/64, 2), 48 fields, by solution",
        ranks=2,
    ),
    "inclusions-3d": Case(
        "bench_inclusions.py",
        "lod-ann-balls-3d-{ranks}.json",
        ("--dim", "3", "--coarse", "4", "--fine", "32"),
        about="LOD-ANN in 3D: balls of contrast 100 at (1/4, 1/32, 1), by the solution",
        ranks=2,
    ),
    "ann-screen": Case(
        "bench_ann_screen.py",
        "ann-contrast-screen.json",
        about="short screens of the CNN's high-contrast options by the held-out basis error",
    ),
    "operator-fit": Case(
        "bench_operator_fit.py", "operator-fit-32-512-2.json", about="learned operators' fit"
    ),
    "operator-alternatives": Case(
        "bench_operator_alternatives.py",
        "operator-alternatives-16-64-2.json",
        (
            "--coarse",
            "16",
            "--fine",
            "64",
            "--train",
            "160",
            "--samples",
            "40",
            "160",
            "--test",
            "6",
        )
        + ("--steps", "6"),
        about="learned operators: exact element part, POD, polynomials, greedy vs the MLP",
    ),
    "operator-alternatives-cont": Case(
        "bench_operator_alternatives.py",
        "operator-alternatives-16-64-2-cont-ann.json",
        ("--coarse", "16", "--fine", "64", "--train", "160", "--samples", "40", "160")
        + ("--test", "6", "--steps", "6", "--families", "cont", "--ann-samples", "40")
        + ("--kinds", "mlp-pod-element", "pod-element", "lod-ann"),
        about="cont: the fits in p against LOD-ANN correctors from the coefficient",
    ),
    "coercivity": Case(
        "bench_coercivity.py",
        "coercivity-battery-32.json",
        about="is the classical Petrov-Galerkin coarse system coercive? (battery, H = 1/32)",
    ),
    "epoch": Case("bench_epoch.py", "epoch-example1.json", about="cost of one training epoch"),
    "example1": Case(
        "demos/example1.py",
        "example1-quick-{ranks}.json",
        ("--quick",),
        about="the main job: paper Example 1 at the paper's setting, shipped --quick network",
        ranks=2,
        demo=True,
    ),
    "example2": Case(
        "demos/example2.py",
        "example2-quick-{ranks}.json",
        ("--quick",),
        about="paper Example 2 (battery) at the paper's setting, shipped --quick network",
        ranks=2,
        demo=True,
    ),
    "paper-network": Case(
        "bench_paper_network.py",
        "paper-network-example1.json",
        about="the paper's network at its setting, budgeted",
        ranks=2,
    ),
}
