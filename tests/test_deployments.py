"""Every deployment definition loads and its default parameters validate."""

from __future__ import annotations

from prefect.utilities.callables import parameter_schema

from deployments.definitions import all_deployments
from flows.etl import etl
from stliif.config import STAGES, ETLSpec


def test_every_deployment_loads_with_valid_defaults() -> None:
    deps = all_deployments()
    names = {d.name for d in deps}
    assert {"etl-manual", *(f"etl-{s}-manual" for s in STAGES)} <= names
    for d in deps:
        assert d.entrypoint and d.entrypoint.endswith("flows/etl.py:etl")
        spec = d.parameters.get("spec")
        validated = etl.validate_parameters(d.parameters)
        if spec is not None:
            assert isinstance(validated["spec"], ETLSpec) and validated["spec"].stages == spec["stages"]
        assert d.concurrency_limit == 1
    # The UI form: the flow's parameter schema exposes every spec field with its description.
    schema = parameter_schema(etl).model_dump()
    assert set(schema["properties"]) == {"spec", "store"}
    spec_fields = schema["definitions"]["ETLSpec"]["properties"]
    assert {"data", "aois", "stages", "modes", "k", "skip_bad"} <= set(spec_fields)
    assert all(f.get("description") for f in spec_fields.values())
