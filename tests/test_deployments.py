"""Every deployment definition loads and its default parameters validate."""

from __future__ import annotations

from prefect.utilities.callables import parameter_schema

from deployments.definitions import DOWNSTREAM, all_deployments
from flows.acquire import acquire
from flows.etl import etl
from flows.evaluate import evaluate
from flows.pipeline import pipeline
from flows.render import render
from flows.train import train
from stliif.config import STAGES, AcquireSpec


def test_every_deployment_loads_with_valid_defaults() -> None:
    deps = all_deployments()
    names = {d.name for d in deps}
    assert {"acquire-manual", "acquire-downstream", "acquire-refresh-weekly-kyiv-oblast-field", "etl-manual", *(f"etl-{s}-manual" for s in STAGES),
            "etl-refresh-daily", "etl-downstream", "train-manual", "evaluate-manual", "render-manual",
            "pipeline-manual"} == names  # fmt: skip
    flows = {"acquire": acquire, "etl": etl, "train": train, "evaluate": evaluate, "render": render, "pipeline": pipeline}
    for d in deps:
        kind = d.entrypoint.rsplit(":", 1)[1]
        assert d.entrypoint.endswith(f"flows/{kind}.py:{kind}") and d.name.split("-")[0] in (kind, "acquire")
        validated = flows[kind].validate_parameters(d.parameters)
        if kind == "etl" and d.name != "etl-manual":
            # stage deployments fix `stages`, which a partial `spec` given to a run cannot undo
            assert validated["stages"] and "stages" not in d.parameters.get("spec", {}), d.name
        assert d.concurrency_limit == 1
    by_name = {d.name: d for d in deps}
    assert by_name["etl-refresh-daily"].schedules[0].schedule.cron == "0 6 * * *"
    (trigger,) = by_name["etl-downstream"].triggers
    assert trigger.expect == {"stliif.artifact.committed"}
    assert trigger.parameters["spec"]["aois"] == ["{{ event.resource['stliif.aoi'] }}"]
    assert trigger.parameters["stages"] == DOWNSTREAM and "split" in DOWNSTREAM
    assert trigger.parameters["store"] == "{{ event.payload.store }}"  # the event's store, not the served default
    (trigger,) = by_name["acquire-downstream"].triggers
    assert trigger.match.root == {"stliif.stage": "acquire"} and trigger.parameters["stages"] == ["mask"]
    assert trigger.parameters["store"] == "{{ event.payload.store }}"
    assert isinstance(acquire.validate_parameters(by_name["acquire-manual"].parameters)["spec"], AcquireSpec)
    weekly = by_name["acquire-refresh-weekly-kyiv-oblast-field"]
    assert weekly.schedules[0].schedule.cron == "0 5 * * 1"
    assert acquire.validate_parameters(weekly.parameters)["spec"].end == ".."  # each run's own "now"
    # The UI form: the flow's parameter schema exposes every spec field with its description.
    schema = parameter_schema(etl).model_dump()
    assert set(schema["properties"]) == {"spec", "store", "stages"}
    spec_fields = schema["definitions"]["ETLSpec"]["properties"]
    assert {"data", "aois", "stages", "modes", "k", "skip_bad"} <= set(spec_fields)
    assert all(f.get("description") for f in spec_fields.values())
    train_fields = parameter_schema(train).model_dump()["definitions"]["TrainSpec"]["properties"]
    assert {"model", "steps", "strategy", "val_aois"} <= set(train_fields)
    assert all(f.get("description") for f in train_fields.values())
