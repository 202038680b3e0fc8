"""Benchmark: alternatives for the learned Petrov–Galerkin local operators, judged by the
solution at T against the fine FEM beside the classical Petrov–Galerkin LOD.

    python -m bench run operator-alternatives

Every patch's classical (K_T, M_T) at ``--train`` training parameters (the pool: the family's
low-discrepancy points, for N_p = 1 a uniform grid) and ``--test`` held-out ones; then each fit
on K of them (:func:`subset`, ``--samples``):

- ``mlp``: one MLP per patch on all entries (:class:`LearnedOperators`, 32 x 3, 2000 epochs);
- ``mlp-element``: the same MLPs on the corrector part only: P_T(a) computed exactly
  (:class:`ElementPart`), the rest scaled by the mean of a on T;
- ``poly``: per-entry least-squares Legendre polynomials in p (degree by leave-one-out), all
  entries (:class:`ReducedOperators` with ``exact_element`` False, no POD truncation);
- ``poly-element``: the same on the corrector part, P_T exact;
- ``pod-element``: as poly-element in the span of ``--modes`` POD modes per block;
- ``mlp-pod-element``: one MLP per patch on the ``--modes`` POD coordinates per block of the
  corrector part, P_T exact (:class:`ReducedOperators`, regressor "mlp");
- ``greedy-element``: poly-element on K parameters chosen greedily from the training pool:
  each next one of the largest prediction variance of the least-squares fit one degree above
  the current one (no classical operator of an unchosen parameter is used).

- ``lod-ann``: no fit in p: the coefficient-aware corrector network of ``dolfinx-lod train``
  (its defaults, :func:`dolfinx_lod.neural.train`) trained on the fields at K of the
  family's training parameters (K <= ``--ann-samples``); every step's local operators come
  from its correctors of the step's coefficient (a forward pass per patch, no patch solve);
  only where ``--kinds`` names it.

(mlp and mlp-element: K <= ``--mlp-samples`` only, their fit is the slowest; greedy: K below
the pool.) Reported per fit: offline seconds (classical samples at K parameters + fit), the held-out
relative Frobenius errors of K_T and M_T, and the relative L2 error at T = 1 of the
Petrov–Galerkin LOD with the fitted operators against the fine FEM, beside the classical
Petrov–Galerkin LOD's, in the backward Euler loop of ``bench_step.py`` (p(t) from a held-out
p_0, ``--steps`` steps), and each method's mean step seconds (steps 2..M; the fine FEM's:
CG + GAMG at rtol 1e-8). One rank.
"""

import time
from pathlib import Path

import dolfinx_solver  # noqa: F401
import numpy as np
import torch
from bench_step import schedules
from harness import grid_parser, machine
from mpi4py import MPI

import dolfinx_lod as dl
from dolfinx_lod.basis import MultiscaleBasis
from dolfinx_lod.correctors import ClassicalCorrectors
from dolfinx_lod.interpolation import local_projection
from dolfinx_lod.io import write_json
from dolfinx_lod.lod import relative_errors
from dolfinx_lod.neural.element_part import ElementPart, kept_entries
from dolfinx_lod.neural.operator_provider import FamilyCorrectors, OperatorProvider
from dolfinx_lod.neural.operators import LearnedOperators, max_patch_vertices, operator_samples
from dolfinx_lod.neural.reduced_operators import (
    ReducedOperators,
    legendre_features,
    legendre_terms,
    scaled,
)
from dolfinx_lod.timestepping import FEMStepper, LODStepper, advance

KINDS = (
    "mlp",
    "mlp-element",
    "mlp-pod-element",
    "poly",
    "poly-element",
    "pod-element",
    "greedy-element",
    "lod-ann",
)


class AnnOperators:
    """The local operators of the LOD-ANN correctors (the ``lod-ann`` kind): ``evaluate``
    gives them at p as the fits do (operator error), ``provider`` serves the time loop."""

    def __init__(self, model, grids, layers: int, family):
        from dolfinx_lod.neural.provider import LearnedCorrectors

        self.provider = LearnedCorrectors(model, None, grids.r)
        self.basis = MultiscaleBasis(grids, layers, self.provider, capacity=1.0)
        self.family = family

    def evaluate(self, p) -> np.ndarray:
        return operator_samples(self.basis, self.family, np.atleast_2d(p))[:, 0]

    def destroy(self) -> None:
        """Free the basis of ``evaluate`` (the provider needs none)."""
        self.basis.destroy()


class ElementMLP:
    """MLPs on the corrector part, P_T exact (the ``mlp-element`` fit)."""

    def __init__(self, nets: LearnedOperators, reduced: ReducedOperators):
        self.nets, self.reduced = nets, reduced
        self.cells, self.sizes = nets.cells, nets.sizes
        self.size, self.corners = nets.size, nets.corners

    def evaluate(self, p) -> np.ndarray:
        return self.reduced.operators(p, self.nets.evaluate(p))


def greedy(reduced: ReducedOperators, pool: np.ndarray, samples: np.ndarray, K: int) -> list:
    """Indices of K pool parameters: 2^N_p + 1 of :func:`subset`, then each next the candidate
    of the largest prediction variance phi(p)^T (Phi^T Phi)^+ phi(p) of the least-squares fit one
    degree above the one the chosen parameters' fit takes (the classical operators of a
    candidate are read only once it is chosen)."""
    chosen = subset(len(pool), min(K, 2 ** pool.shape[1] + 1), pool.shape[1]).tolist()
    t = scaled(reduced.family, pool)
    while len(chosen) < K:
        degree = max(reduced.fit(pool[chosen], samples[:, chosen])["degree"], default=0) + 1
        terms = legendre_terms(pool.shape[1], degree)
        if len(terms) > len(chosen):
            terms = reduced.terms
        Phi = legendre_features(t, terms)
        inverse = np.linalg.pinv(Phi[chosen].T @ Phi[chosen])
        variance = np.einsum("kt,ts,ks->k", Phi, inverse, Phi)
        variance[chosen] = -1.0
        chosen.append(int(np.argmax(variance)))
    return chosen


def subset(pool: int, K: int, num_params: int) -> np.ndarray:
    """The K training parameters taken from the pool: its first K (a low-discrepancy sequence
    for N_p > 1, space-filling from the start), every (pool / K)-th for N_p = 1 (the pool is a
    uniform grid there, whose first K would cover the start of the range only)."""
    if num_params > 1:
        return np.arange(K)
    return np.unique(np.round(np.linspace(0, pool - 1, K)).astype(np.int64))


def fit(kind, K, basis, family, size, train_p, y_train, modes) -> tuple:
    """The model of ``kind`` fitted to the first K parameters; (model, record)."""
    g = basis.grids
    cells = [p.cell for p in basis.patches]
    sizes = [len(p.coarse_vertex_keys(g.coarse_sizes)) for p in basis.patches]
    element = ElementPart(g, basis.patches, size)
    exact = kind not in ("poly", "mlp")
    q = modes if "pod" in kind else 10**6
    regressor = "mlp" if kind == "mlp-pod-element" else "poly"
    reduced = ReducedOperators(  # P_T from a on every fine cell: the interpolation of a
        cells,  # (the default's online element part) is measured by bench_step.py
        sizes,
        family,
        size,
        element,
        q,
        exact_element=exact,
        regressor=regressor,
        interpolation=None,
    )
    first = subset(len(train_p), K, family.num_params)
    params, y = train_p[first], y_train[:, first]
    t0 = time.perf_counter()
    record: dict = {}
    if kind == "lod-ann":
        from dolfinx_lod.neural import train

        model = train(g, basis.layers, family, K)
        record["fit_seconds"] = time.perf_counter() - t0
        return AnnOperators(model, g, basis.layers, family), record
    if kind in ("mlp", "mlp-element"):
        nets = LearnedOperators(cells, sizes, family, size, 32, 3, g.dim)
        target = y if kind == "mlp" else reduced.targets(params, y)
        nets.fit(params, target, epochs=2000)
        model = nets if kind == "mlp" else ElementMLP(nets, reduced)
    else:
        if kind == "greedy-element":
            chosen = greedy(reduced, train_p, y_train, K)
            params, y = train_p[chosen], y_train[:, chosen]
            record["chosen"] = chosen
        info = reduced.fit(params, y)
        if "degree" in info:  # per patch: the mean
            info = {k: float(np.mean(v)) if isinstance(v, list) else v for k, v in info.items()}
        record.update(info)
        model = reduced
    record["fit_seconds"] = time.perf_counter() - t0
    return model, record


def operator_error(model, test_p, y_test, half, kept) -> dict[str, float]:
    """Held-out relative Frobenius errors of the K and M blocks on the ``kept`` entries (those
    the coarse system uses)."""
    pred = np.stack([model.evaluate(p) for p in test_p], axis=1) * kept[:, None]
    y_test = y_test * kept[:, None]
    out = {}
    for name, part in (("K", slice(0, half)), ("M", slice(half, None))):
        d, r = pred[..., part] - y_test[..., part], y_test[..., part]
        out[name] = float(np.sqrt((d**2).sum() / (r**2).sum()))
    return out


def solution_errors(g, layers, schedule, steps, family, models: dict) -> dict[str, dict]:
    """Per method ("fem", "classical": the classical Petrov–Galerkin LOD, and one
    learned-operator LOD per model): the relative L2 error at T = 1 against the fine FEM
    (``error``, not for "fem") and the mean seconds of steps 2..M (``step_seconds``, every
    phase of the step: one rank)."""
    tau = 1.0 / steps
    fem = FEMStepper(g, tau)
    classical = ClassicalCorrectors(g, local_projection(g))
    lods = {"classical": LODStepper(g, layers, tau, "petrov-galerkin")}
    for name, model in models.items():
        provider = getattr(model, "provider", None) or OperatorProvider(
            FamilyCorrectors(classical, family), model
        )
        lods[name] = LODStepper(g, layers, tau, "petrov-galerkin", provider=provider)
    seconds: dict[str, list[float]] = {name: [] for name in ("fem", *lods)}

    def observe(m, t, state):
        if m >= 2:
            for name, stepper in (("fem", fem), *lods.items()):
                seconds[name].append(sum(stepper.timings.values()))

    advance(g, schedule, 1.0, steps, [fem, *lods.values()], observe)
    out = {name: {"step_seconds": float(np.mean(s))} for name, s in seconds.items()}
    for name, lod in lods.items():
        errors = relative_errors(
            lod.solution().x.petsc_vec, fem.u.x.petsc_vec, fem.fine.M, fem.fine.S
        )
        out[name]["error"] = errors["l2"]
        lod.destroy()
    fem.destroy()
    classical.destroy()
    return out


def neighbour_correlation(family, n: int, test_p: np.ndarray, K: int) -> float:
    """The mean over ``test_p`` of the correlation over the fine cells of a(., p) and
    a(., p + dp), dp the spacing of K uniform training parameters (N_p = 1; NaN otherwise):
    how much a field at a held-out p has in common with its nearest training field."""
    if family.num_params != 1:
        return float("nan")
    dp = (family.high[0] - family.low[0]) / (K - 1)
    c = (np.arange(n) + 0.5) / n
    X, Y = np.meshgrid(c, c)
    x = np.stack([X.ravel(), Y.ravel(), np.zeros(n * n)])
    pairs = [(p[0], min(p[0] + dp, family.high[0])) for p in test_p]
    return float(np.mean([np.corrcoef(family.a(x, [p]), family.a(x, [q]))[0, 1] for p, q in pairs]))


def classical_samples(args, name: str, basis, train_p, test_p) -> tuple:
    """(training samples, held-out samples, seconds per training parameter) of the classical
    operators, from ``--cache`` if it holds them."""
    key = f"{name}-{args.coarse}-{args.fine}-{args.layers}-{args.train}-{args.test}.npz"
    cache = args.cache / key if args.cache else None
    if cache and cache.exists():
        data = np.load(cache)
        return data["train"], data["test"], float(data["seconds"])
    family = dl.coefficients.family(name, args.fine)
    t0 = time.perf_counter()
    y_train = operator_samples(basis, family, train_p)
    per_sample = (time.perf_counter() - t0) / len(train_p)
    y_test = operator_samples(basis, family, test_p)
    if cache:
        np.savez(cache, train=y_train, test=y_test, seconds=per_sample)
    return y_train, y_test, per_sample


def skipped(kind: str, K: int, args) -> bool:
    """Whether ``kind`` is not fitted at K (the slow fits' limits; greedy needs K < pool)."""
    return (
        (kind in ("mlp", "mlp-element") and K > args.mlp_samples)
        or (kind == "greedy-element" and K >= args.train)
        or (kind == "lod-ann" and K > args.ann_samples)
    )


def main() -> None:
    parser = grid_parser(__doc__, 16, 128, 2)
    parser.add_argument("--families", nargs="+", default=["battery", "cont"])
    parser.add_argument("--train", type=int, default=160, help="training pool (160)")
    parser.add_argument("--test", type=int, default=10, help="held-out parameters (10)")
    parser.add_argument("--samples", nargs="+", type=int, default=[40, 160])
    parser.add_argument(  # lod-ann trains a network per family: only where named
        "--kinds", nargs="+", choices=KINDS, default=[k for k in KINDS if k != "lod-ann"]
    )
    parser.add_argument("--mlp-samples", type=int, default=40, help="largest K of mlp(-element)")
    parser.add_argument("--ann-samples", type=int, default=48, help="largest K of lod-ann (48)")
    parser.add_argument("--modes", type=int, default=8, help="POD modes of pod-element (8)")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument(
        "--cache", type=Path, help="folder that keeps the classical samples between runs"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("bench/results/operator-alternatives.json")
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    g = dl.create_nested_grids(MPI.COMM_SELF, args.coarse, args.fine)
    size = max_patch_vertices(g.coarse_sizes, args.layers, g.dim)
    all_schedules = schedules(args.fine, args.steps, args.steps)
    result = {
        "benchmark": "operator_alternatives",
        "H": 1 / args.coarse,
        "h": 1 / args.fine,
        "layers": args.layers,
        "steps": args.steps,
        "machine": machine(),
        "families": {},
    }
    for name in args.families:
        family = dl.coefficients.family(name, args.fine)
        train_p = family.training_parameters(args.train)
        test_p = family.test_parameters(args.test, seed=10_000)
        with MultiscaleBasis(g, args.layers, capacity=1.0) as basis:
            y_train, y_test, per_sample = classical_samples(args, name, basis, train_p, test_p)
            fits, models = [], {}
            kept = kept_entries(g, basis.patches, size)
            for K in args.samples:
                for kind in args.kinds:
                    if skipped(kind, K, args):
                        continue
                    model, record = fit(kind, K, basis, family, size, train_p, y_train, args.modes)
                    record.update(
                        kind=kind,
                        samples=K,
                        offline_seconds=(kind != "lod-ann") * K * per_sample
                        + record["fit_seconds"],
                        operator_error_test=operator_error(
                            model, test_p, y_test, size * 2**g.dim, kept
                        ),
                    )
                    if isinstance(model, AnnOperators):  # its operators are measured
                        model.destroy()
                    models[f"{kind}-{K}"] = model
                    fits.append(record)
                    print(name, {k: v for k, v in record.items() if k != "chosen"}, flush=True)
        schedule, steps, _ = all_schedules[name]
        errors = solution_errors(g, args.layers, schedule, steps, family, models)
        for record in fits:
            mine = errors[f"{record['kind']}-{record['samples']}"]
            record["rel_l2_error_T_vs_fem"] = mine["error"]
            record["error_over_classical"] = mine["error"] / errors["classical"]["error"]
            record["step_seconds"] = mine["step_seconds"]
        result["families"][name] = {
            "neighbour_field_correlation": {
                str(K): neighbour_correlation(family, args.fine, test_p, K) for K in args.samples
            },
            "sample_seconds_per_parameter": per_sample,
            "classical_rel_l2_error_T_vs_fem": errors["classical"]["error"],
            "classical_step_seconds": errors["classical"]["step_seconds"],
            "fem_step_seconds": errors["fem"]["step_seconds"],
            "fits": fits,
        }
        print(name, "classical", errors["classical"], flush=True)
        write_json(args.out, result)


if __name__ == "__main__":
    main()
