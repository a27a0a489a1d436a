"""Hydra plugin classes (thin): the work is in harness.launchers.ray and harness.launchers.slurm."""
from __future__ import annotations

from typing import Any, Sequence

from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher as _SubmititSlurm
from omegaconf import DictConfig


class RayLauncher(Launcher):
    """`hydra/launcher=ray`: one Ray task per grid point on an existing cluster (address: auto, host:port)."""

    def __init__(self, **params: Any) -> None:
        self.params = params
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.task_function, self.hydra_context = config, task_function, hydra_context

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from harness.launchers.ray import launch

        return launch(self, job_overrides, initial_job_idx)


class SlurmLauncher(_SubmititSlurm):
    """`hydra/launcher=slurm`: submitit's SLURM launcher, waiting with squeue (no accounting database needed)
    and reporting cancelled/killed jobs as lost grid points instead of waiting forever."""

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from harness.launchers.slurm import launch

        return launch(self, job_overrides, initial_job_idx)
