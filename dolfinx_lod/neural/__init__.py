"""LOD-ANN: Deep Ritz corrector networks trained on the patch matrices DOLFINx assembles.

Modules, one job each: :mod:`~dolfinx_lod.neural.presets` (every default network and training
setting), :mod:`~dolfinx_lod.neural.export` (patch data as torch tensors),
:mod:`~dolfinx_lod.neural.networks` (batched MLPs and the registry of architectures),
:mod:`~dolfinx_lod.neural.cnn` (the coefficient-aware network), :mod:`~dolfinx_lod.neural.reduced`
(POD patch bases), :mod:`~dolfinx_lod.neural.losses` (Deep Ritz energy and penalty),
:mod:`~dolfinx_lod.neural.trainer` (min-max training), :mod:`~dolfinx_lod.neural.checkpoints`,
:mod:`~dolfinx_lod.neural.provider` (persistence, the learned corrector provider, baselines,
basis errors), :mod:`~dolfinx_lod.neural.workflow` (the offline phase end to end:
:func:`train`), :mod:`~dolfinx_lod.neural.figures`, :mod:`~dolfinx_lod.neural.operators` and
:mod:`~dolfinx_lod.neural.operator_provider` (learned local operators).
"""

from dolfinx_lod.neural.export import PatchBatch, export_patches
from dolfinx_lod.neural.networks import NETWORKS, PatchNetworks
from dolfinx_lod.neural.presets import PRESETS, TrainingSettings
from dolfinx_lod.neural.provider import (
    FixedCorrectors,
    LearnedCorrectors,
    NearestCoefficientCorrectors,
    NearestCorrectors,
    TrainedModel,
    compare_providers,
)
from dolfinx_lod.neural.trainer import DeepRitzTrainer, TrainingDiverged
from dolfinx_lod.neural.workflow import train

__all__ = [
    "NETWORKS",
    "PRESETS",
    "DeepRitzTrainer",
    "FixedCorrectors",
    "LearnedCorrectors",
    "NearestCoefficientCorrectors",
    "NearestCorrectors",
    "PatchBatch",
    "PatchNetworks",
    "TrainedModel",
    "TrainingDiverged",
    "TrainingSettings",
    "compare_providers",
    "export_patches",
    "train",
]
