from shipyard.compute.local._backend import LocalBackend, machine_resources
from shipyard.compute.local._gpus import GpuLedger
from shipyard.compute.local._gpus import discover as discover_gpus

__all__ = ["GpuLedger", "LocalBackend", "discover_gpus", "machine_resources"]
