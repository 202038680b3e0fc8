"""LOD-ANN: Deep Ritz corrector networks trained on the patch matrices DOLFINx assembles.

Modules: :mod:`~dolfinx_lod.neural.export` (patch data as torch tensors),
:mod:`~dolfinx_lod.neural.networks` (batched MLPs), :mod:`~dolfinx_lod.neural.training`
(min-max Deep Ritz training), :mod:`~dolfinx_lod.neural.provider` (persistence, the learned
corrector provider, baselines, basis errors).
"""

from dolfinx_lod.neural.export import PatchBatch, export_patches
from dolfinx_lod.neural.networks import PatchNetworks
from dolfinx_lod.neural.provider import (
    FixedCorrectors,
    LearnedCorrectors,
    NearestCoefficientCorrectors,
    NearestCorrectors,
    TrainedModel,
    compare_providers,
)
from dolfinx_lod.neural.training import DeepRitzTrainer, TrainingDiverged, TrainingSettings

__all__ = [
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
]
