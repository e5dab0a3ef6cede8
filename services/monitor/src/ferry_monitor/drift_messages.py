"""Proto <-> domain for drift reports and model policies: form checks naming the request field."""

from __future__ import annotations

from ferry.monitor.v1 import monitor_pb2 as pb
from ferry_common.errors import InvalidArgument
from ferry_common.names import parse_name, parse_version_name
from ferry_monitor.drift import DriftResult, NumericStatistic
from ferry_monitor.policies import ModelPolicy

__all__ = [
    "parse_model_version",
    "parse_numeric_method",
    "parse_policy",
    "parse_policy_name",
    "policy_to_proto",
    "report_to_proto",
]

_NUMERIC: dict[int, NumericStatistic] = {
    pb.DRIFT_METHOD_UNSPECIFIED: "psi",
    pb.DRIFT_METHOD_PSI: "psi",
    pb.DRIFT_METHOD_KS: "ks",
    pb.DRIFT_METHOD_WASSERSTEIN: "wasserstein",
}
_METHODS = {
    "psi": pb.DRIFT_METHOD_PSI,
    "ks": pb.DRIFT_METHOD_KS,
    "wasserstein": pb.DRIFT_METHOD_WASSERSTEIN,
    "chi_square": pb.DRIFT_METHOD_CHI_SQUARED,
}


def parse_model_version(value: str, field: str = "model_version") -> tuple[str, int]:
    """``models/{model}/versions/{n}`` (a number: no alias, no ``latest``)."""
    model, version = parse_version_name(field, value, "models", latest=False)
    assert version is not None
    return model, version


def parse_numeric_method(value: int) -> NumericStatistic:
    """PSI (also for unset), KS or Wasserstein; chi-square is for categorical features only."""
    if value not in _NUMERIC:
        name = pb.DriftMethod.Name(value) if value in pb.DriftMethod.values() else str(value)
        raise InvalidArgument(
            f"numeric_method: {name} is not a numeric method (DRIFT_METHOD_PSI, DRIFT_METHOD_KS or "
            "DRIFT_METHOD_WASSERSTEIN; categorical features always use chi-square)",
            field="numeric_method",
        )
    return _NUMERIC[value]


def parse_policy_name(value: str, field: str = "name") -> str:
    """``policies/{model}`` -> the model id."""
    return parse_name(field, value, "policies/{model}")["model"]


def parse_policy(request: pb.SetModelPolicyRequest) -> ModelPolicy:
    """The policy of a SetModelPolicy request (every field checked, named ``policy.*``)."""
    if not request.HasField("policy"):
        raise InvalidArgument("policy: required", field="policy")
    policy = request.policy
    model = parse_policy_name(policy.name, "policy.name")
    return ModelPolicy.checked(model, policy.drift_threshold, policy.retrain_on_drift, policy.min_accuracy)


def policy_to_proto(policy: ModelPolicy) -> pb.ModelPolicy:
    return pb.ModelPolicy(
        name=policy.name,
        drift_threshold=policy.drift_threshold,
        retrain_on_drift=policy.retrain_on_drift,
        min_accuracy=policy.min_accuracy,
    )


def report_to_proto(result: DriftResult) -> pb.DriftReport:
    return pb.DriftReport(
        model_version=result.model_version,
        reference_dataset_version=result.reference_dataset_version,
        reference_split=result.reference_split,
        sample_count=result.sample_count,
        features=[
            pb.FeatureDrift(
                feature=f.feature,
                method=_METHODS[f.statistic],
                statistic=f.value,
                p_value=f.p_value,
                threshold=f.threshold,
                drifted=f.drifted,
            )
            for f in result.features
        ],
        drifted=result.drifted,
    )
