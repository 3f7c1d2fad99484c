from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from shipyard.compute import Backend, Backends, InstanceLaunch
from shipyard.core.catalog import InstanceCatalog
from shipyard.core.placement import Resources, plan
from shipyard.errors import ConfigurationError


class _Named(Backend):
    def __init__(self, name: str) -> None:
        self.name = name

    @property
    def capacity(self) -> Resources:
        return Resources(4, 16)

    def launch(self, launches: Sequence[InstanceLaunch]) -> list[dict[str, Any]]:
        raise NotImplementedError

    def signal(self, handle: Mapping[str, Any], signum: int) -> None:
        raise NotImplementedError

    def is_alive(self, handle: Mapping[str, Any]) -> bool:
        raise NotImplementedError


def test_instance_types_go_to_the_first_backend_whose_pattern_matches() -> None:
    local, ray = _Named("local"), _Named("ray")
    backends = Backends(local, [("ml.g*", ray), ("ml.p3.*", ray)])
    assert backends.for_type("ml.g5.xlarge") is ray
    assert backends.for_type("ml.p3.2xlarge") is ray
    assert backends.for_type("ml.m5.large") is local
    assert list(backends) == [local, ray]
    assert backends.named("ray") is ray
    with pytest.raises(
        ConfigurationError, match="runs on the 'k8s' backend, which this server is not configured"
    ):
        backends.named("k8s")


def test_an_instance_is_never_given_more_than_the_largest_machine_has() -> None:
    catalog = InstanceCatalog.load()
    large = catalog.get("ml.m5.xlarge")  # 4 vCPUs, 16 GiB
    cluster, node = Resources(8, 32), Resources(2, 8)  # four machines of 2 vCPUs
    placement = plan(large, 1, cluster, node=node, fit_to_machine=True)
    assert placement.per_instance == Resources(2, 8)
    assert placement.scaled_down is not None and "2 of 4 vCPUs" in placement.scaled_down
    assert plan(large, 1, cluster, fit_to_machine=True).per_instance == Resources(4, 16)


def test_a_cluster_with_no_machine_yet_grants_the_type_as_asked() -> None:
    large = InstanceCatalog.load().get("ml.m5.xlarge")
    nothing = Resources(0, 0)
    placement = plan(large, 2, nothing, node=nothing, fit_to_machine=True)
    assert placement == plan(large, 2, Resources(64, 256), fit_to_machine=True)  # as asked, not scaled
    assert not placement.total.fits_in(nothing)  # so the scheduler keeps it Pending, and asks for it


def _ray_node(node_id: str, cpus: float, memory_gib: float = 8) -> dict[str, Any]:
    return {"NodeID": node_id, "Alive": True, "Resources": {"CPU": cpus, "memory": memory_gib * 2**30}}


def test_an_endpoints_model_servers_go_to_the_nodes_running_fewest_of_them() -> None:
    from shipyard.compute.ray._engine import spread_node

    nodes = [_ray_node("a", 4), _ray_node("b", 2), _ray_node("c", 2)]
    bundle = {"CPU": 2, "memory": 4 * 2**30}
    assert spread_node(nodes, bundle, []) == "a"  # the largest first
    assert spread_node(nodes, bundle, ["a"]) == "b"
    assert spread_node(nodes, bundle, ["a", "b"]) == "c"
    assert spread_node(nodes, bundle, ["a", "b", "c"]) == "a"


def test_a_model_server_is_never_steered_to_a_node_too_small_for_it() -> None:
    from shipyard.compute.ray._engine import spread_node

    nodes = [_ray_node("big", 8, 32), _ray_node("small", 1, 2)]
    assert spread_node(nodes, {"CPU": 2, "memory": 4 * 2**30}, ["big"]) == "big"
    assert spread_node(nodes, {"CPU": 16, "memory": 4 * 2**30}, []) is None  # Ray decides (and waits)
