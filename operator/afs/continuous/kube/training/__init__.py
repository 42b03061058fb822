"""The kinds a run can train with: one interface (:mod:`.base`), one file per kind, one
factory. Callers use :func:`trainer_for` and never import a kind."""

from __future__ import annotations

from afs.continuous.kube.api.v1alpha1 import TrainingKind
from afs.continuous.kube.training.base import (
    ExportedDataset,
    ReportPod,
    RunContext,
    Trainer,
    TrainerState,
    exported_dataset,
    recorded_dataset,
    run_labels,
)
from afs.continuous.kube.training.job import JobTrainer
from afs.continuous.kube.training.pytorch_job import PyTorchJobTrainer
from afs.continuous.kube.training.ray_job import RayJobTrainer
from afs.continuous.kube.training.train_job import TrainJobTrainer

_TRAINERS: dict[str, Trainer] = {
    trainer.kind: trainer
    for trainer in (JobTrainer(), TrainJobTrainer(), PyTorchJobTrainer(), RayJobTrainer())
}


def trainer_for(kind: TrainingKind | str) -> Trainer:
    """The trainer of ``kind`` (every kind the API allows has one)."""
    try:
        return _TRAINERS[kind]
    except KeyError:
        raise ValueError(f"training.kind {kind!r}: not one of {', '.join(_TRAINERS)}") from None


__all__ = [
    "ExportedDataset",
    "ReportPod",
    "RunContext",
    "Trainer",
    "TrainerState",
    "exported_dataset",
    "recorded_dataset",
    "run_labels",
    "trainer_for",
]
