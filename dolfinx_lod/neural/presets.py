"""The one place of every default network and training setting.

:class:`TrainingSettings` (its defaults: the paper's network and optimizer) and the named
:data:`PRESETS`: ``"cnn"`` (``dolfinx-lod train`` and :func:`dolfinx_lod.neural.train`: the
coefficient-aware CNN trained from coefficients alone), ``"paper"`` (the paper's MLP, demo
``--paper``), ``"quick"`` (the demos' default) and ``"tiny"`` (the test suite). A preset given
a network conditioned on p (mlp, reduced) takes the fields ``Preset.p_networks`` on top of its
own; a network with the exact projection
onto ker B trains on :data:`PROJECTION_BATCH` samples per step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from dolfinx_lod.neural.cnn import LOADS, OUTPUTS
from dolfinx_lod.neural.networks import NETWORKS, architecture, parse_network

#: The default network of ``dolfinx-lod train`` and :func:`dolfinx_lod.neural.train`
#: (measured in docs/lod-ann.md): the coefficient-aware CNN, 16 channels, 4 convolutions, with
#: the Ritz output of :data:`RITZ` (:mod:`dolfinx_lod.neural.ritz`).
DEFAULT_NETWORK = "cnn:16x4"
#: The default Ritz output: vectors per patch, preconditioned residual steps in training, and
#: out of training further steps until the energy stalls (docs/lod-ann.md).
RITZ: dict[str, Any] = {"ritz": 8, "ritz_steps": 4, "ritz_tol": 1e-3}
#: The demos' network (the measured Example 1 and 2 runs of docs/results.md): 24 channels, 6
#: convolutions, no Ritz output.
QUICK_NETWORK = "cnn:24x6"
#: The learned Petrov–Galerkin local operators' fit (``dolfinx-lod operators``,
#: :func:`~dolfinx_lod.neural.operators.fit_operators`; measured in docs/performance.md):
#: "reduced" = the exact element part P_T(a) plus one MLP per patch (width x depth, Adam
#: epochs) on ``modes`` POD coordinates per block of the rest
#: (:class:`~dolfinx_lod.neural.reduced_operators.ReducedOperators`); "poly": Legendre
#: least squares instead of the MLP; "mlp": the former MLP on all entries.
OPERATOR_FIT: dict[str, Any] = {"fit": "reduced", "modes": 8, "width": 32, "depth": 3}
#: The element part's interpolation of a on each coarse cell (reduced and poly fits,
#: :meth:`~dolfinx_lod.neural.element_part.ElementPart.interpolate`): POD modes above ``tol``
#: of the largest singular value, DEIM points; a cell whose check point misses by more than
#: ``check_tol`` (relative) falls back to a on all its fine cells for that step, and a fit whose
#: element part misses the held-out fields by more than ``check_tol`` drops the interpolation.
OPERATOR_INTERPOLATION: dict[str, float] = {"tol": 1e-6, "check_tol": 1e-3}
#: Adam epochs of the operator MLPs.
OPERATOR_EPOCHS = 2000
#: Energy weights of the coefficient-aware networks' loss (TrainingSettings.energy_scale).
ENERGY_SCALES = ("patch", "field")
#: Training samples per optimizer step with the exact projection onto ker B.
PROJECTION_BATCH = 2


@dataclass
class TrainingSettings:
    """Network shape and optimisation settings. The defaults are the paper's network and
    optimizer (Def. 3.1: mlp 128 x 8; Adam 1e-3 decaying by 0.9 every 1000 epochs, 30 000
    epochs); :data:`PRESETS` names the settings used elsewhere."""

    #: A name of :data:`~dolfinx_lod.neural.networks.NETWORKS`: "mlp" (paper, Def. 3.1),
    #: "reduced" (alpha = V_T c(p)) or "cnn" (coefficient-aware)
    architecture: str = "mlp"
    width: int = 128
    depth: int = 8
    modes: int = 16  # q, patch basis size of the reduced architecture
    epochs: int = 30000  # Deep Ritz epochs (after the warm start)
    lr: float = 1e-3
    lr_decay: float = 0.9
    lr_step: int = 1000
    patience: int = 2000  # stop when the loss has not improved for this many epochs ...
    min_delta: float = 1e-6  # ... by more than this relative amount
    warm_start: int = 0  # supervised epochs (energy-norm fit of the classical correctors)
    checkpoint_every: int = 500
    validate_every: int = 50  # epochs between validation energies (model selection)
    seed: int = 0
    device: str = "cpu"
    #: B alpha = 0 by the self-adaptive "penalty" (16) or by the exact "projection" (cnn only)
    constraint: str = "penalty"
    batch_size: int = 0  # training samples per optimizer step (projection only; 0: all)
    #: Train the mlp networks through torch.compile (fused kernels: bias, tanh and their
    #: derivatives in one pass; docs/results.md has the time per epoch); needs a C compiler.
    compile: bool = False
    #: Append the 7 symmetric copies of every interior patch to the training patches (cnn
    #: only; :func:`~dolfinx_lod.neural.augment.augment_symmetries`)
    augment: bool = False
    #: Scaling of the cnn's element-load inputs: "max" (their patch maximum) or "mean"
    #: (exp of the patch mean of log a) (:class:`~dolfinx_lod.neural.cnn.CoefficientNetworks`)
    loads: str = "max"
    #: cnn only: input channels a / max a and min a / a on the patch
    contrast: bool = False
    #: cnn only: every hidden layer adds a linear map of the window's channel means
    pool: bool = False
    #: cnn only: the output map, a name of :data:`~dolfinx_lod.neural.cnn.OUTPUTS`
    output: str = "laplacian"
    #: cnn only: the energy weight of a patch and field, 1 / sum_j ||Lambda_j||^2_{a,T} of the
    #: "patch" or 1 / its mean over the "field"'s patches (:mod:`dolfinx_lod.neural.losses`)
    energy_scale: str = "patch"
    #: cnn only: m > 0 vectors per patch whose Deep Ritz minimiser is the corrector (0: the
    #: 2^d outputs are the correctors) (:mod:`dolfinx_lod.neural.ritz`)
    ritz: int = 0
    #: cnn only: preconditioned residual steps that grow the Ritz span (needs ritz > 0)
    ritz_steps: int = 0
    #: cnn only: out of training, further steps while one lowers the energy of a corrector by
    #: more than this fraction (0: exactly ``ritz_steps``; needs ritz > 0)
    ritz_tol: float = 0.0

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first setting out of range."""
        arch = architecture(self.architecture)
        if self.constraint not in ("penalty", "projection"):
            raise ValueError(
                f"constraint must be 'penalty' or 'projection', got {self.constraint!r}"
            )
        if self.constraint == "projection" and not arch.projection:
            names = " or ".join(repr(n) for n, a in NETWORKS.items() if a.projection)
            raise ValueError(
                f"constraint 'projection' needs architecture {names}, got {self.architecture!r}"
            )
        if self.batch_size < 0 or (self.batch_size and self.constraint != "projection"):
            raise ValueError(
                f"batch size must be >= 0 (0: all samples) and needs constraint 'projection', "
                f"got {self.batch_size} with {self.constraint!r}"
            )
        for name in (
            "width",
            "depth",
            "modes",
            "epochs",
            "lr_step",
            "patience",
            "checkpoint_every",
            "validate_every",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"training setting {name} must be >= 1, got {getattr(self, name)}")
        if self.loads not in LOADS:
            raise ValueError(f"loads must be one of {LOADS}, got {self.loads!r}")
        if self.energy_scale not in ENERGY_SCALES:
            raise ValueError(
                f"energy scale must be one of {ENERGY_SCALES}, got {self.energy_scale!r}"
            )
        if self.ritz < 0 or (self.ritz and self.constraint != "projection"):
            raise ValueError(
                f"ritz must be >= 0 (0: off) and needs constraint 'projection', got {self.ritz} "
                f"with {self.constraint!r}"
            )
        if self.ritz_steps < 0 or (self.ritz_steps and not self.ritz):
            raise ValueError(f"ritz steps must be >= 0 and need ritz > 0, got {self.ritz_steps}")
        if not 0 <= self.ritz_tol < 1 or (self.ritz_tol and not self.ritz):
            raise ValueError(f"ritz tol must be in [0, 1) and needs ritz > 0, got {self.ritz_tol}")
        if self.output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {self.output!r}")
        if self.augment and not arch.cls.needs_coefficient:
            raise ValueError(
                f"augment needs a coefficient-aware network (cnn), got {self.architecture!r}"
            )
        if self.warm_start < 0:
            raise ValueError(f"warm start epochs must be >= 0, got {self.warm_start}")
        if not (self.lr > 0 and 0 < self.lr_decay <= 1):
            raise ValueError(f"need lr > 0 and 0 < lr_decay <= 1, got {self.lr}, {self.lr_decay}")
        if self.device not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {self.device!r}")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ValueError("device 'cuda' requested but torch finds no CUDA device")

    @property
    def uses_corrector_data(self) -> bool:
        """Whether training reads classical correctors (POD bases, supervised warm start)."""
        return NETWORKS[self.architecture].needs_corrector_data or self.warm_start > 0


@dataclass(frozen=True)
class Preset:
    """A named training setting: a network spec and :class:`TrainingSettings` fields.

    Attributes:
        network: The network (:func:`~dolfinx_lod.neural.networks.parse_network` spec).
        fields: Training settings (the others: the :class:`TrainingSettings` defaults).
        p_networks: Fields that replace those of ``fields`` for a network conditioned on p
            (mlp, reduced).
    """

    network: str
    fields: dict[str, Any] = field(default_factory=dict)
    p_networks: dict[str, Any] = field(default_factory=dict)

    def settings(self, network: str | None = None, **overrides: Any) -> TrainingSettings:
        """The settings of this preset for ``network`` (default: the preset's), with
        ``overrides`` (TrainingSettings fields) on top. Constraint: "projection" for a network
        that can be projected onto ker B, else "penalty"; batch size :data:`PROJECTION_BATCH`
        with the projection, else all samples; ``compile`` only for networks that compile; the
        preset's Ritz output only with the projection and unless ``ritz=0`` is given."""
        spec = parse_network(network or self.network)
        arch = NETWORKS[spec["architecture"]]
        fields = dict(self.fields)
        if not arch.cls.needs_coefficient:
            fields.update(self.p_networks)
        if not arch.compiles:
            fields.pop("compile", None)
        constraint = overrides.get("constraint") or ("projection" if arch.projection else "penalty")
        if constraint != "projection" or overrides.get("ritz") == 0:
            fields.update(ritz=0, ritz_steps=0, ritz_tol=0.0)
        base = {
            "constraint": constraint,
            "batch_size": PROJECTION_BATCH if constraint == "projection" else 0,
        }
        return TrainingSettings(**{**base, **spec, **fields, **overrides})


#: The named presets (module docstring).
PRESETS: dict[str, Preset] = {
    # dolfinx-lod train's defaults (the cnn with the Ritz output, its energy weighted per
    # field, 12 epochs: 48 fields at (1/8, 1/64, 2) train in <= 15 min on 2 ranks;
    # docs/lod-ann.md); for mlp / reduced networks 5000 epochs at 1e-2, decaying by 0.9 every
    # 1000.
    "cnn": Preset(
        DEFAULT_NETWORK,
        {"epochs": 12, "lr": 1e-2, "lr_decay": 0.3, "lr_step": 8, "energy_scale": "field", **RITZ},
        {"epochs": 5000, "lr": 1e-2, "lr_decay": 0.9, "lr_step": 1000},
    ),
    # The paper's network and optimizer (the TrainingSettings defaults; docs/results.md has the
    # time per epoch), no early stop, through torch.compile.
    "paper": Preset("mlp:128x8", {"patience": 30000, "compile": True}),
    # The CNN at a constant rate for 150 epochs, loads scaled by exp(m_T): the setting of the
    # measured demo runs (docs/results.md); for mlp / reduced networks 3000 epochs.
    "quick": Preset(
        QUICK_NETWORK,
        {"epochs": 150, "lr": 1e-2, "patience": 1000, "loads": "mean"},
        {"epochs": 3000, "lr": 1e-2},
    ),
    "tiny": Preset("reduced:8:16x2", {"epochs": 200, "lr": 1e-2, "patience": 1000}),
}


def preset(name: str) -> Preset:
    """The preset ``name``; ``ValueError`` naming the presets."""
    if name not in PRESETS:
        raise ValueError(f"preset must be one of {tuple(PRESETS)}, got {name!r}")
    return PRESETS[name]
