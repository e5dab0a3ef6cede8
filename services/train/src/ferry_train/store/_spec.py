"""JobSpec <-> the JSON the jobs table stores."""

from __future__ import annotations

import dataclasses
from typing import Any

from ferry_train.spec import CustomSpec, Hyperparameters, JobSpec, MlpSpec, ResourceSpec

__all__ = ["spec_from_json", "spec_to_json"]


def spec_to_json(spec: JobSpec) -> dict[str, Any]:
    return dataclasses.asdict(spec)


def spec_from_json(value: dict[str, Any]) -> JobSpec:
    data = dict(value)
    mlp = dict(data.pop("mlp", {}))
    mlp["hidden_units"] = tuple(mlp.get("hidden_units", (64, 32)))
    hyperparameters = Hyperparameters(**data.pop("hyperparameters", {}))
    resources = ResourceSpec(**data.pop("resources", {}))
    data["features"] = tuple(data.get("features", ()))
    custom_data = data.pop("custom", None)
    custom = None
    if custom_data is not None:
        pairs = tuple((str(key), str(value)) for key, value in custom_data.get("init_args", ()))
        custom = CustomSpec(entry_point=str(custom_data["entry_point"]), init_args=pairs)
    return JobSpec(**data, mlp=MlpSpec(**mlp), custom=custom, hyperparameters=hyperparameters, resources=resources)
