"""One method contract: self-describing configs, their published JSON schemas, and a bad-input
sweep generated from those schemas (every min/max/enum/type rule refused with one clear error
naming the field, over the REST API), plus the one job payload shape."""

from __future__ import annotations

import math
from typing import Any, Iterator

import pytest

from tests.helpers.rest import rest_client, session

AREAS = {"quantization": "quantize", "pruning": "prune", "distillation": "distill",
         "federated": "scale", "continual": "continual", "tuning": "tune"}
METHOD_KINDS = ("quantize", "prune", "distill")  # payload {input, method, config}; else {config}


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    with rest_client(tmp_path_factory.mktemp("schema_root")) as client:
        client.headers.update(session(client))
        yield client


def _methods(area: str) -> list[str]:
    from core.registry import list_methods

    return list_methods(area)


ALL = [(area, name) for area in AREAS for name in _methods(area)]


def _named(area: str, name: str) -> tuple[type, dict[str, Any]]:
    """A method's config class and the fields that name the method (a class shared by
    several methods holds it in a field; a class per method needs none)."""
    import dataclasses

    from core.registry import get_method

    cls = get_method(area, name).config_cls
    field = getattr(cls, "method_field", "method")
    shared = field in {f.name for f in dataclasses.fields(cls)}
    return cls, ({field: name} if shared else {})


@pytest.mark.parametrize(("area", "name"), ALL)
def test_config_dict_names_its_method_and_schema_version(area, name):
    cls, naming = _named(area, name)
    cfg = cls.from_dict(naming)
    d = cfg.to_dict()
    assert d["method"] == name and d["schema_version"] == 1
    assert cls.from_dict(d) == cfg
    old = {k: v for k, v in d.items() if k not in ("schema_version",) + (
        () if naming else ("method",))}
    assert cls.from_dict(old) == cfg  # a dict written before schema_version existed
    from core.errors import InvalidParameterError

    with pytest.raises(InvalidParameterError, match="'schema_version'"):
        cls.from_dict({**d, "schema_version": 2})


def _branches(prop: dict[str, Any]) -> list[dict[str, Any]]:
    return prop.get("anyOf", [prop])


def bad_values(prop: dict[str, Any]) -> Iterator[Any]:
    """Values the schema of one field forbids: past each bound, outside an enum, wrong type."""
    types = {b.get("type") for b in _branches(prop)}
    for b in _branches(prop):
        step = 1 if b.get("type") == "integer" else 0.01
        if "minimum" in b:
            yield b["minimum"] - step
        if "maximum" in b:
            yield b["maximum"] + step
        if "exclusiveMinimum" in b:
            yield b["exclusiveMinimum"]
        if "enum" in b:
            yield 17 if all(isinstance(v, str) for v in b["enum"]) else "not-a-choice"
            if b.get("type") == "integer":
                yield max(b["enum"]) + 1
    if types & {"integer", "number", "boolean", "array"} and "string" not in types:
        yield "not-a-number" if types & {"integer", "number"} else "yes"
    if types == {"null"}:
        yield 0.5


def _sweep(area: str, name: str, schema: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    for field, prop in schema["properties"].items():
        if field in ("method", "schema_version"):
            continue
        for value in bad_values(prop):
            yield field, value


def test_api_lists_methods_and_publishes_schemas(api):
    areas = api.get("/api/methods").json()["areas"]
    for area in AREAS:
        assert [m["name"] for m in areas[area]] == _methods(area)
    schema = api.get("/api/methods/pruning/structured-l1/schema").json()
    assert schema["properties"]["sparsity"]["minimum"] == 0.05
    assert schema["properties"]["method"]["const"] == "structured-l1"
    assert set(schema["properties"]["schedule"]["enum"]) == {"oneshot", "gradual", "linear"}
    assert api.get("/api/methods/pruning/nope/schema").status_code == 404
    assert "/api/methods/{area}/{name}/schema" in api.app.openapi()["paths"]


@pytest.mark.parametrize(("area", "name"), ALL)
def test_bad_inputs_from_the_schema_get_one_clear_error(api, area, name):
    schema = api.get(f"/api/methods/{area}/{name}/schema").json()
    cases = list(_sweep(area, name, schema))
    assert len(cases) >= 5  # every method has seed, tolerance/sparsity ... rules
    naming = _named(area, name)[1]
    for field, value in cases:
        body = {"kind": AREAS[area],
                "config": {"input": "job-none", "method": name, "config": {field: value}}
                if AREAS[area] in METHOD_KINDS else {"config": {**naming, field: value}}}
        r = api.post("/api/jobs", json=body)
        detail = r.json().get("detail", "")
        assert r.status_code == 422, (field, value, r.status_code, detail)
        assert f"'{field}'" in detail and "Internal error" not in detail, (field, value, detail)


@pytest.mark.parametrize(("area", "name"), ALL)
def test_schema_bounds_are_accepted(area, name):
    """The reverse: the values at each published bound (and each choice) are valid."""
    from core.registry import config_schema

    cls, naming = _named(area, name)
    # movement gathers scores while fine-tuning (≥ 1 epoch); a grid of 50 points per
    # dimension exceeds the grid search's size limit
    skip = {("movement", "finetune_epochs"), ("grid", "grid_points")}
    # rules between fields: the gradual schedule's steps, the continual sequences' tasks
    with_ = {"gradual": {"steps": 3}, "files": {"files": ["a.csv", "b.csv"]},
             "label-columns": {"data": "t.csv", "label_columns": ["a", "b"]}}
    for field, prop in config_schema(area, name)["properties"].items():
        if field in ("method", "schema_version") or (name, field) in skip:
            continue
        for b in _branches(prop):
            for value in [b.get("minimum"), b.get("maximum"), *b.get("enum", [])]:
                if value is not None and not (isinstance(value, float) and math.isinf(value)):
                    cls.from_dict({**naming, **with_.get(value, {}), field: value})


def test_job_payloads_have_one_shape_and_old_ones_are_read():
    from core.jobs._kinds import method_payload

    new = {"input": "j", "method": "ort-fp16", "config": {"seed": 1}}
    assert method_payload(new) == new
    old_quantize = {"input": "j", "method": "ort-fp16", "options": {"seed": 1}}
    assert method_payload(old_quantize) == new
    old_prune = {"input": "j", "config": {"method": "movement", "schema_version": 1}}
    assert method_payload(old_prune) == {"input": "j", "method": "movement", "config": {}}
    from core.errors import InvalidParameterError

    with pytest.raises(InvalidParameterError, match="'config.method'"):
        method_payload({"method": "movement", "config": {"method": "structured-l1"}})
    with pytest.raises(InvalidParameterError, match="'options'"):
        method_payload({"options": {}, "config": {}})


def test_stored_jobs_of_the_old_shapes_validate(api):
    """An old REST client's quantize payload gets the same answer as the new shape."""
    for config in ({"input": "job-none", "method": "ort-fp16", "options": {"seed": -1}},
                   {"input": "job-none", "method": "ort-fp16", "config": {"seed": -1}}):
        r = api.post("/api/jobs", json={"kind": "quantize", "config": config})
        assert r.status_code == 422 and "'seed'" in r.json()["detail"]
    r = api.post("/api/jobs", json={"kind": "prune", "config": {
        "input": "job-none", "config": {"method": "structured-l1", "sparsity": 0.5}}})
    assert r.status_code == 422 and "'input'" in r.json()["detail"]  # config read, input next


DIRECT = [(area, name) for area in ("lowrank", "fusion") for name in _methods(area)]


@pytest.mark.parametrize(("area", "name"), DIRECT)
def test_methods_without_a_job_kind_refuse_schema_violations_by_name(area, name):
    """Low-rank and fusion run in recipes, not as jobs: their configs refuse the same
    generated violations, each with one error naming the field."""
    from core.errors import InvalidParameterError
    from core.registry import config_schema

    cls, naming = _named(area, name)
    cases = list(_sweep(area, name, config_schema(area, name)))
    assert len(cases) >= 3
    for field, value in cases:
        with pytest.raises(InvalidParameterError, match=f"'{field}'"):
            cls.from_dict({**naming, field: value})


def test_auto_config_refuses_its_schema_violations_by_name():
    """Auto is no registered method, but its config publishes its constraints the same way
    and refuses each generated violation with one error naming the field."""
    import pydantic

    from core.auto._config import AutoConfig
    from core.errors import InvalidParameterError

    cases = list(_sweep("auto", "auto", pydantic.TypeAdapter(AutoConfig).json_schema()))
    assert {field for field, _ in cases} >= {"target", "tolerance", "refine", "seed"}
    for field, value in cases:
        with pytest.raises(InvalidParameterError, match=f"'{field}'"):
            AutoConfig.from_dict({field: value})
