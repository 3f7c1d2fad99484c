"""The Slurm backend: job instances as Slurm jobs, through Slurm's own commands."""

from shipyard.compute.slurm._backend import SlurmBackend

__all__ = ["SlurmBackend"]
