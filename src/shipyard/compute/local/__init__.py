from shipyard.compute.local._backend import LocalBackend, machine_resources

__all__ = ["LocalBackend", "machine_resources"]
