"""The Ray backend (needs the ``ray`` extra: ``pip install 'shipyard[ray]'``)."""

from shipyard.compute.ray._backend import RayBackend, RayModelServers

__all__ = ["RayBackend", "RayModelServers"]
