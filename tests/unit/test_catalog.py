from decimal import Decimal
from pathlib import Path

import pytest

from shipyard.core.catalog import InstanceCatalog, JobKind
from shipyard.errors import ConfigurationError, ValidationError


@pytest.fixture(scope="module")
def catalog() -> InstanceCatalog:
    return InstanceCatalog.load()


def test_packaged_catalog_covers_the_families(catalog: InstanceCatalog) -> None:
    families = {t.family for t in catalog}
    assert {"t3", "m5", "c5", "r5", "g4dn", "g5", "p3", "p4d"} <= families
    for t in catalog:
        assert t.vcpu > 0 and t.memory_gib > 0
        assert all(p > 0 for p in t.prices.values())
        assert (t.gpu_count > 0) == (t.gpu_model is not None)
    assert catalog.get("ml.p4d.24xlarge").gpu_count == 8
    names = [t.name for t in catalog if t.family == "m5"]
    assert names == [
        "ml.m5.large",
        "ml.m5.xlarge",
        "ml.m5.2xlarge",
        "ml.m5.4xlarge",
        "ml.m5.12xlarge",
        "ml.m5.24xlarge",
    ]


def test_cost_is_exact(catalog: InstanceCatalog) -> None:
    m5 = catalog.get("ml.m5.xlarge")
    assert m5.price_per_hour(JobKind.TRAINING) == Decimal("0.23")
    assert m5.cost(JobKind.TRAINING, 1800, count=2) == Decimal("0.23")


def test_unknown_type_suggests_close_names(catalog: InstanceCatalog) -> None:
    with pytest.raises(ValidationError, match=r"Did you mean .*ml\.m5\.xlarge") as exc:
        catalog.get("ml.m5.xlarg")
    assert exc.value.field == "InstanceType" and exc.value.value == "ml.m5.xlarg"


def test_type_not_offered_for_a_kind(catalog: InstanceCatalog) -> None:
    p5 = catalog.get("ml.p5.48xlarge")
    assert p5.supports(JobKind.TRAINING) and not p5.supports(JobKind.TRANSFORM)
    with pytest.raises(ValidationError, match="not offered for transform"):
        p5.price_per_hour(JobKind.TRANSFORM)
    assert p5 not in catalog.for_kind(JobKind.TRANSFORM)
    assert catalog.get("ml.t3.medium").supports(JobKind.TRAINING)  # botocore's TrainingInstanceType has it


def test_site_override_replaces_prices_and_adds_types(tmp_path: Path) -> None:
    path = tmp_path / "instance_types.csv"
    path.write_text(
        "instance_type,vcpu,memory_gib,training_usd_per_hour,hosting_usd_per_hour\n"
        "ml.m5.large,,,0,\n"
        "ml.lab.gpu,16,64,0.5,0.5\n"
    )
    # an empty cell in a required column is an error, even for a type the packaged file has
    with pytest.raises(ConfigurationError, match="line 2: vcpu is required"):
        InstanceCatalog.load(path)
    path.write_text("instance_type,training_usd_per_hour\nml.m5.large,0\n")
    catalog = InstanceCatalog.load(path)
    assert catalog.get("ml.m5.large").price_per_hour(JobKind.TRAINING) == 0
    assert catalog.get("ml.m5.large").vcpu == 2  # columns absent from the file keep packaged values
    path.write_text(
        "instance_type,vcpu,memory_gib,gpu_count,gpu_model,training_usd_per_hour\n"
        "ml.lab.gpu,16,64,2,RTX 4090,0.5\n"
    )
    lab = InstanceCatalog.load(path).get("ml.lab.gpu")
    assert (lab.vcpu, lab.gpu_count, lab.gpu_model, lab.supports(JobKind.HOSTING)) == (
        16,
        2,
        "RTX 4090",
        False,
    )


def test_bad_override_names_line_column_and_value(tmp_path: Path) -> None:
    path = tmp_path / "instance_types.csv"
    path.write_text("instance_type,vcpu,memory_gib\nml.x.large,two,8\n")
    with pytest.raises(ConfigurationError, match=r"line 2: vcpu must be a number, got 'two'"):
        InstanceCatalog.load(path)
    path.write_text("instance_type,cores\nml.x.large,2\n")
    with pytest.raises(ConfigurationError, match="unknown"):
        InstanceCatalog.load(path)


def test_older_types_sagemaker_still_accepts(catalog: InstanceCatalog) -> None:
    import botocore.session

    model = botocore.session.get_session().get_service_model("sagemaker")
    accepted = {
        JobKind.TRAINING: "TrainingInstanceType",
        JobKind.PROCESSING: "ProcessingInstanceType",
        JobKind.HOSTING: "ProductionVariantInstanceType",
        JobKind.TRANSFORM: "TransformInstanceType",
    }
    older = [t for t in catalog if t.family in ("m4", "c4", "t2", "p2")]
    assert len(older) == 17
    for kind, shape in accepted.items():
        enum = set(model.shape_for(shape).enum)
        # offered for exactly the kinds of work SageMaker's API accepts each type for
        assert {t.name for t in older if t.supports(kind)} == {t.name for t in older if t.name in enum}
    m4 = catalog.get("ml.m4.xlarge")
    assert (m4.vcpu, m4.memory_gib, m4.gpu_count) == (4, 16, 0)
    assert m4.cost(JobKind.TRAINING, 3600) == Decimal("0.24")
    p2 = catalog.get("ml.p2.8xlarge")
    assert (p2.gpu_count, p2.gpu_model) == (8, "NVIDIA K80")
    assert catalog.get("ml.t2.medium").supports(JobKind.HOSTING)
    assert not catalog.get("ml.t2.medium").supports(JobKind.TRAINING)
