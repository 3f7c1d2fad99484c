"""The Slurm backend: job instances as Slurm jobs, through Slurm's own commands.

``SlurmBackend`` is imported when first used (PEP 562): a node's task (``_task.py``) needs none
of the server's side.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shipyard.compute.slurm._backend import SlurmBackend

__all__ = ["SlurmBackend"]


def __getattr__(name: str) -> Any:
    if name != "SlurmBackend":
        raise AttributeError(f"module 'shipyard.compute.slurm' has no attribute {name!r}")
    from shipyard.compute.slurm._backend import SlurmBackend

    globals()[name] = SlurmBackend
    return SlurmBackend
