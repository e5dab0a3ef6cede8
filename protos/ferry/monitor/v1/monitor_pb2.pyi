import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class BreachAction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BREACH_ACTION_UNSPECIFIED: _ClassVar[BreachAction]
    BREACH_ACTION_ALERT: _ClassVar[BreachAction]
    BREACH_ACTION_STOP_CANARY: _ClassVar[BreachAction]
    BREACH_ACTION_ROLLBACK: _ClassVar[BreachAction]

class AlertKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ALERT_KIND_UNSPECIFIED: _ClassVar[AlertKind]
    ALERT_KIND_SLO_BREACH: _ClassVar[AlertKind]
    ALERT_KIND_DRIFT: _ClassVar[AlertKind]
    ALERT_KIND_PERFORMANCE: _ClassVar[AlertKind]

class DriftMethod(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DRIFT_METHOD_UNSPECIFIED: _ClassVar[DriftMethod]
    DRIFT_METHOD_PSI: _ClassVar[DriftMethod]
    DRIFT_METHOD_KS: _ClassVar[DriftMethod]
    DRIFT_METHOD_WASSERSTEIN: _ClassVar[DriftMethod]
    DRIFT_METHOD_CHI_SQUARED: _ClassVar[DriftMethod]
BREACH_ACTION_UNSPECIFIED: BreachAction
BREACH_ACTION_ALERT: BreachAction
BREACH_ACTION_STOP_CANARY: BreachAction
BREACH_ACTION_ROLLBACK: BreachAction
ALERT_KIND_UNSPECIFIED: AlertKind
ALERT_KIND_SLO_BREACH: AlertKind
ALERT_KIND_DRIFT: AlertKind
ALERT_KIND_PERFORMANCE: AlertKind
DRIFT_METHOD_UNSPECIFIED: DriftMethod
DRIFT_METHOD_PSI: DriftMethod
DRIFT_METHOD_KS: DriftMethod
DRIFT_METHOD_WASSERSTEIN: DriftMethod
DRIFT_METHOD_CHI_SQUARED: DriftMethod

class SpanFilter(_message.Message):
    __slots__ = ("service", "method", "model", "version", "route", "deployment")
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    service: str
    method: str
    model: str
    version: int
    route: str
    deployment: str
    def __init__(self, service: _Optional[str] = ..., method: _Optional[str] = ..., model: _Optional[str] = ..., version: _Optional[int] = ..., route: _Optional[str] = ..., deployment: _Optional[str] = ...) -> None: ...

class TimeWindow(_message.Message):
    __slots__ = ("start_time", "end_time")
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    def __init__(self, start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetLatencySummaryRequest(_message.Message):
    __slots__ = ("filter", "window")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    filter: SpanFilter
    window: TimeWindow
    def __init__(self, filter: _Optional[_Union[SpanFilter, _Mapping]] = ..., window: _Optional[_Union[TimeWindow, _Mapping]] = ...) -> None: ...

class LatencySummary(_message.Message):
    __slots__ = ("count", "error_count", "p50_ms", "p90_ms", "p99_ms", "max_ms", "relative_accuracy")
    COUNT_FIELD_NUMBER: _ClassVar[int]
    ERROR_COUNT_FIELD_NUMBER: _ClassVar[int]
    P50_MS_FIELD_NUMBER: _ClassVar[int]
    P90_MS_FIELD_NUMBER: _ClassVar[int]
    P99_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_MS_FIELD_NUMBER: _ClassVar[int]
    RELATIVE_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    count: int
    error_count: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    relative_accuracy: float
    def __init__(self, count: _Optional[int] = ..., error_count: _Optional[int] = ..., p50_ms: _Optional[float] = ..., p90_ms: _Optional[float] = ..., p99_ms: _Optional[float] = ..., max_ms: _Optional[float] = ..., relative_accuracy: _Optional[float] = ...) -> None: ...

class ListLatencySeriesRequest(_message.Message):
    __slots__ = ("filter", "window", "step")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    filter: SpanFilter
    window: TimeWindow
    step: _duration_pb2.Duration
    def __init__(self, filter: _Optional[_Union[SpanFilter, _Mapping]] = ..., window: _Optional[_Union[TimeWindow, _Mapping]] = ..., step: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class LatencyPoint(_message.Message):
    __slots__ = ("start_time", "summary")
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    start_time: _timestamp_pb2.Timestamp
    summary: LatencySummary
    def __init__(self, start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., summary: _Optional[_Union[LatencySummary, _Mapping]] = ...) -> None: ...

class ListLatencySeriesResponse(_message.Message):
    __slots__ = ("points",)
    POINTS_FIELD_NUMBER: _ClassVar[int]
    points: _containers.RepeatedCompositeFieldContainer[LatencyPoint]
    def __init__(self, points: _Optional[_Iterable[_Union[LatencyPoint, _Mapping]]] = ...) -> None: ...

class GetTraceRequest(_message.Message):
    __slots__ = ("trace_id",)
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    trace_id: str
    def __init__(self, trace_id: _Optional[str] = ...) -> None: ...

class Span(_message.Message):
    __slots__ = ("span_id", "parent_span_id", "name", "service", "start_time", "end_time", "error", "attributes")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SPAN_ID_FIELD_NUMBER: _ClassVar[int]
    PARENT_SPAN_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    span_id: str
    parent_span_id: str
    name: str
    service: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    error: bool
    attributes: _containers.ScalarMap[str, str]
    def __init__(self, span_id: _Optional[str] = ..., parent_span_id: _Optional[str] = ..., name: _Optional[str] = ..., service: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., error: _Optional[bool] = ..., attributes: _Optional[_Mapping[str, str]] = ...) -> None: ...

class Trace(_message.Message):
    __slots__ = ("trace_id", "spans")
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    SPANS_FIELD_NUMBER: _ClassVar[int]
    trace_id: str
    spans: _containers.RepeatedCompositeFieldContainer[Span]
    def __init__(self, trace_id: _Optional[str] = ..., spans: _Optional[_Iterable[_Union[Span, _Mapping]]] = ...) -> None: ...

class Slo(_message.Message):
    __slots__ = ("name", "filter", "percentile", "latency_threshold_ms", "max_error_rate", "window", "min_count", "action", "breached")
    NAME_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    PERCENTILE_FIELD_NUMBER: _ClassVar[int]
    LATENCY_THRESHOLD_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_ERROR_RATE_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    MIN_COUNT_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    BREACHED_FIELD_NUMBER: _ClassVar[int]
    name: str
    filter: SpanFilter
    percentile: float
    latency_threshold_ms: float
    max_error_rate: float
    window: _duration_pb2.Duration
    min_count: int
    action: BreachAction
    breached: bool
    def __init__(self, name: _Optional[str] = ..., filter: _Optional[_Union[SpanFilter, _Mapping]] = ..., percentile: _Optional[float] = ..., latency_threshold_ms: _Optional[float] = ..., max_error_rate: _Optional[float] = ..., window: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., min_count: _Optional[int] = ..., action: _Optional[_Union[BreachAction, str]] = ..., breached: _Optional[bool] = ...) -> None: ...

class SetSloRequest(_message.Message):
    __slots__ = ("slo_id", "slo")
    SLO_ID_FIELD_NUMBER: _ClassVar[int]
    SLO_FIELD_NUMBER: _ClassVar[int]
    slo_id: str
    slo: Slo
    def __init__(self, slo_id: _Optional[str] = ..., slo: _Optional[_Union[Slo, _Mapping]] = ...) -> None: ...

class ListSlosRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListSlosResponse(_message.Message):
    __slots__ = ("slos", "next_page_token")
    SLOS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    slos: _containers.RepeatedCompositeFieldContainer[Slo]
    next_page_token: str
    def __init__(self, slos: _Optional[_Iterable[_Union[Slo, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class Alert(_message.Message):
    __slots__ = ("name", "sequence", "kind", "slo", "model_version", "deployment", "message", "action", "action_result", "create_time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SLO_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    ACTION_RESULT_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    sequence: int
    kind: AlertKind
    slo: str
    model_version: str
    deployment: str
    message: str
    action: BreachAction
    action_result: str
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., sequence: _Optional[int] = ..., kind: _Optional[_Union[AlertKind, str]] = ..., slo: _Optional[str] = ..., model_version: _Optional[str] = ..., deployment: _Optional[str] = ..., message: _Optional[str] = ..., action: _Optional[_Union[BreachAction, str]] = ..., action_result: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListAlertsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListAlertsResponse(_message.Message):
    __slots__ = ("alerts", "next_page_token")
    ALERTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    alerts: _containers.RepeatedCompositeFieldContainer[Alert]
    next_page_token: str
    def __init__(self, alerts: _Optional[_Iterable[_Union[Alert, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class WatchAlertsRequest(_message.Message):
    __slots__ = ("since_sequence",)
    SINCE_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    since_sequence: int
    def __init__(self, since_sequence: _Optional[int] = ...) -> None: ...

class InferenceRecord(_message.Message):
    __slots__ = ("request_id", "deployment", "model_version", "route", "time", "inputs", "outputs", "latency_ms", "shadow_comparison")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    SHADOW_COMPARISON_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    deployment: str
    model_version: str
    route: str
    time: _timestamp_pb2.Timestamp
    inputs: _struct_pb2.Struct
    outputs: _struct_pb2.Struct
    latency_ms: float
    shadow_comparison: ShadowComparison
    def __init__(self, request_id: _Optional[str] = ..., deployment: _Optional[str] = ..., model_version: _Optional[str] = ..., route: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., inputs: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., outputs: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., latency_ms: _Optional[float] = ..., shadow_comparison: _Optional[_Union[ShadowComparison, _Mapping]] = ...) -> None: ...

class ShadowComparison(_message.Message):
    __slots__ = ("primary_model_version", "primary_latency_ms", "max_abs_diff", "agreement", "error")
    PRIMARY_MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    PRIMARY_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_ABS_DIFF_FIELD_NUMBER: _ClassVar[int]
    AGREEMENT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    primary_model_version: str
    primary_latency_ms: float
    max_abs_diff: float
    agreement: float
    error: str
    def __init__(self, primary_model_version: _Optional[str] = ..., primary_latency_ms: _Optional[float] = ..., max_abs_diff: _Optional[float] = ..., agreement: _Optional[float] = ..., error: _Optional[str] = ...) -> None: ...

class RecordInferencesRequest(_message.Message):
    __slots__ = ("records",)
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[InferenceRecord]
    def __init__(self, records: _Optional[_Iterable[_Union[InferenceRecord, _Mapping]]] = ...) -> None: ...

class RecordInferencesResponse(_message.Message):
    __slots__ = ("accepted_count",)
    ACCEPTED_COUNT_FIELD_NUMBER: _ClassVar[int]
    accepted_count: int
    def __init__(self, accepted_count: _Optional[int] = ...) -> None: ...

class Feedback(_message.Message):
    __slots__ = ("request_id", "ground_truth")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    GROUND_TRUTH_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    ground_truth: _struct_pb2.Value
    def __init__(self, request_id: _Optional[str] = ..., ground_truth: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ...) -> None: ...

class RecordFeedbackRequest(_message.Message):
    __slots__ = ("feedback",)
    FEEDBACK_FIELD_NUMBER: _ClassVar[int]
    feedback: _containers.RepeatedCompositeFieldContainer[Feedback]
    def __init__(self, feedback: _Optional[_Iterable[_Union[Feedback, _Mapping]]] = ...) -> None: ...

class RecordFeedbackResponse(_message.Message):
    __slots__ = ("accepted_count", "unknown_request_ids")
    ACCEPTED_COUNT_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_REQUEST_IDS_FIELD_NUMBER: _ClassVar[int]
    accepted_count: int
    unknown_request_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, accepted_count: _Optional[int] = ..., unknown_request_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class FeatureDrift(_message.Message):
    __slots__ = ("feature", "method", "statistic", "p_value", "threshold", "drifted")
    FEATURE_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    STATISTIC_FIELD_NUMBER: _ClassVar[int]
    P_VALUE_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    DRIFTED_FIELD_NUMBER: _ClassVar[int]
    feature: str
    method: DriftMethod
    statistic: float
    p_value: float
    threshold: float
    drifted: bool
    def __init__(self, feature: _Optional[str] = ..., method: _Optional[_Union[DriftMethod, str]] = ..., statistic: _Optional[float] = ..., p_value: _Optional[float] = ..., threshold: _Optional[float] = ..., drifted: _Optional[bool] = ...) -> None: ...

class GetDriftReportRequest(_message.Message):
    __slots__ = ("model_version", "window", "numeric_method")
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    NUMERIC_METHOD_FIELD_NUMBER: _ClassVar[int]
    model_version: str
    window: TimeWindow
    numeric_method: DriftMethod
    def __init__(self, model_version: _Optional[str] = ..., window: _Optional[_Union[TimeWindow, _Mapping]] = ..., numeric_method: _Optional[_Union[DriftMethod, str]] = ...) -> None: ...

class DriftReport(_message.Message):
    __slots__ = ("model_version", "reference_dataset_version", "reference_split", "sample_count", "features", "drifted")
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_DATASET_VERSION_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_SPLIT_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_COUNT_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    DRIFTED_FIELD_NUMBER: _ClassVar[int]
    model_version: str
    reference_dataset_version: str
    reference_split: str
    sample_count: int
    features: _containers.RepeatedCompositeFieldContainer[FeatureDrift]
    drifted: bool
    def __init__(self, model_version: _Optional[str] = ..., reference_dataset_version: _Optional[str] = ..., reference_split: _Optional[str] = ..., sample_count: _Optional[int] = ..., features: _Optional[_Iterable[_Union[FeatureDrift, _Mapping]]] = ..., drifted: _Optional[bool] = ...) -> None: ...

class GetPerformanceRequest(_message.Message):
    __slots__ = ("model_version", "window", "route")
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    model_version: str
    window: TimeWindow
    route: str
    def __init__(self, model_version: _Optional[str] = ..., window: _Optional[_Union[TimeWindow, _Mapping]] = ..., route: _Optional[str] = ...) -> None: ...

class PerformanceReport(_message.Message):
    __slots__ = ("model_version", "labeled_count", "accuracy", "mean_absolute_error", "root_mean_squared_error", "route")
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    LABELED_COUNT_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_FIELD_NUMBER: _ClassVar[int]
    MEAN_ABSOLUTE_ERROR_FIELD_NUMBER: _ClassVar[int]
    ROOT_MEAN_SQUARED_ERROR_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    model_version: str
    labeled_count: int
    accuracy: float
    mean_absolute_error: float
    root_mean_squared_error: float
    route: str
    def __init__(self, model_version: _Optional[str] = ..., labeled_count: _Optional[int] = ..., accuracy: _Optional[float] = ..., mean_absolute_error: _Optional[float] = ..., root_mean_squared_error: _Optional[float] = ..., route: _Optional[str] = ...) -> None: ...

class ModelPolicy(_message.Message):
    __slots__ = ("name", "drift_threshold", "retrain_on_drift", "min_accuracy")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DRIFT_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    RETRAIN_ON_DRIFT_FIELD_NUMBER: _ClassVar[int]
    MIN_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    name: str
    drift_threshold: float
    retrain_on_drift: bool
    min_accuracy: float
    def __init__(self, name: _Optional[str] = ..., drift_threshold: _Optional[float] = ..., retrain_on_drift: _Optional[bool] = ..., min_accuracy: _Optional[float] = ...) -> None: ...

class SetModelPolicyRequest(_message.Message):
    __slots__ = ("policy",)
    POLICY_FIELD_NUMBER: _ClassVar[int]
    policy: ModelPolicy
    def __init__(self, policy: _Optional[_Union[ModelPolicy, _Mapping]] = ...) -> None: ...

class GetModelPolicyRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...
