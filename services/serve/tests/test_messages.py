"""Serve's proto <-> domain mapping: defaults a user relies on, and errors that name the field at fault."""

from __future__ import annotations

import datetime
import math
from collections.abc import Callable

import pytest
from google.protobuf import field_mask_pb2

from ferry.serve.v1 import serve_pb2 as pb
from ferry_common.errors import FailedPrecondition, InvalidArgument
from ferry_serve.domain import (
    KEEP,
    BatchingSpec,
    Deployment,
    DeploymentState,
    Route,
    ServedVersion,
    Split,
    Target,
)
from ferry_serve.messages import (
    apply_update,
    deployment_from_create,
    deployment_ref,
    deployment_to_proto,
    route_from_proto,
)


def create(deployment_id: str = "", **fields: object) -> pb.CreateDeploymentRequest:
    message = pb.Deployment(model="models/churn")
    for key, value in fields.items():
        if isinstance(value, pb.TrafficTarget | pb.TrafficSplit | pb.Batching):
            getattr(message, key).CopyFrom(value)
        else:
            setattr(message, key, value)
    return pb.CreateDeploymentRequest(deployment_id=deployment_id, deployment=message)


def update(paths: list[str], **fields: object) -> pb.UpdateDeploymentRequest:
    request = create(**fields)
    request.deployment.name = "deployments/churn"
    request.deployment.ClearField("model")
    return pb.UpdateDeploymentRequest(deployment=request.deployment, update_mask=field_mask_pb2.FieldMask(paths=paths))


CURRENT = Deployment(
    deployment_id="churn",
    model_id="churn",
    primary=Target(version=2),
    canary=Split(Target(version=3), 10),
    batching=BatchingSpec(enabled=True, max_batch_size=8, max_queue_delay_microseconds=100),
    sample_rate=0.5,
)


# ---------------------------------------------------------------- create


def test_create_defaults_a_user_relies_on() -> None:
    draft = deployment_from_create(pb.CreateDeploymentRequest(deployment=pb.Deployment(model="models/churn")))

    assert draft.deployment_id == "churn", "the deployment id defaults to the model id"
    assert draft.model_id == "churn"
    assert draft.primary == Target(alias="production")
    assert draft.canary is None and draft.shadow is None
    assert draft.batching == BatchingSpec(enabled=False, max_batch_size=32, max_queue_delay_microseconds=500)
    assert draft.sample_rate == 1.0, "an unset (zero) sample_rate at create is the default 1.0"
    assert draft.state is DeploymentState.PENDING and draft.etag == "" and draft.revision == 0


def test_create_keeps_every_field_set() -> None:
    draft = deployment_from_create(
        create(
            "churn-canary",
            primary=pb.TrafficTarget(version=7),
            canary=pb.TrafficSplit(target=pb.TrafficTarget(alias="candidate"), percent=100),
            shadow=pb.TrafficSplit(target=pb.TrafficTarget(version=9), percent=0),
            batching=pb.Batching(enabled=True, max_batch_size=1024, max_queue_delay_microseconds=10_000_000),
            sample_rate=0.25,
        )
    )

    assert draft.deployment_id == "churn-canary"
    assert draft.primary == Target(version=7)
    assert draft.canary == Split(Target(alias="candidate"), 100), "a canary may take all traffic"
    assert draft.shadow == Split(Target(version=9), 0), "a split may take no traffic yet"
    assert draft.batching == BatchingSpec(enabled=True, max_batch_size=1024, max_queue_delay_microseconds=10_000_000)
    assert draft.sample_rate == 0.25


def test_zero_batch_settings_mean_the_defaults() -> None:
    draft = deployment_from_create(create(batching=pb.Batching(enabled=True)))
    assert draft.batching == BatchingSpec(enabled=True, max_batch_size=32, max_queue_delay_microseconds=500)


CREATE_ERRORS: list[tuple[str, Callable[[], pb.CreateDeploymentRequest]]] = [
    ("deployment_id", lambda: create("Churn_1")),
    ("deployment_id", lambda: create("churn-")),
    ("deployment_id", lambda: create("x" * 64)),
    ("deployment.model", lambda: pb.CreateDeploymentRequest(deployment=pb.Deployment())),
    ("deployment.model", lambda: pb.CreateDeploymentRequest(deployment=pb.Deployment(model="churn"))),
    ("deployment.model", lambda: pb.CreateDeploymentRequest(deployment=pb.Deployment(model="models/Churn"))),
    ("deployment.model", lambda: pb.CreateDeploymentRequest(deployment=pb.Deployment(model="models/churn/x"))),
    ("deployment.primary", lambda: create(primary=pb.TrafficTarget())),
    ("deployment.primary.alias", lambda: create(primary=pb.TrafficTarget(alias=""))),
    ("deployment.primary.alias", lambda: create(primary=pb.TrafficTarget(alias="Production"))),
    ("deployment.primary.alias", lambda: create(primary=pb.TrafficTarget(alias="3"))),
    ("deployment.primary.version", lambda: create(primary=pb.TrafficTarget(version=0))),
    ("deployment.primary.version", lambda: create(primary=pb.TrafficTarget(version=-4))),
    ("deployment.canary.target", lambda: create(canary=pb.TrafficSplit(percent=10))),
    ("deployment.canary.target", lambda: create(canary=pb.TrafficSplit(target=pb.TrafficTarget(), percent=10))),
    (
        "deployment.canary.percent",
        lambda: create(canary=pb.TrafficSplit(target=pb.TrafficTarget(version=2), percent=101)),
    ),
    (
        "deployment.canary.percent",
        lambda: create(canary=pb.TrafficSplit(target=pb.TrafficTarget(version=2), percent=-1)),
    ),
    ("deployment.shadow.target.alias", lambda: create(shadow=pb.TrafficSplit(target=pb.TrafficTarget(alias="a_b")))),
    ("deployment.shadow.target.version", lambda: create(shadow=pb.TrafficSplit(target=pb.TrafficTarget(version=0)))),
    (
        "deployment.shadow.percent",
        lambda: create(shadow=pb.TrafficSplit(target=pb.TrafficTarget(version=2), percent=200)),
    ),
    ("deployment.batching.max_batch_size", lambda: create(batching=pb.Batching(enabled=True, max_batch_size=1025))),
    ("deployment.batching.max_batch_size", lambda: create(batching=pb.Batching(max_batch_size=-1))),
    (
        "deployment.batching.max_queue_delay_microseconds",
        lambda: create(batching=pb.Batching(enabled=True, max_queue_delay_microseconds=-1)),
    ),
    (
        "deployment.batching.max_queue_delay_microseconds",
        lambda: create(batching=pb.Batching(enabled=True, max_queue_delay_microseconds=10_000_001)),
    ),
    ("deployment.sample_rate", lambda: create(sample_rate=1.5)),
    ("deployment.sample_rate", lambda: create(sample_rate=-0.1)),
    ("deployment.sample_rate", lambda: create(sample_rate=math.nan)),
    ("deployment.sample_rate", lambda: create(sample_rate=math.inf)),
]


@pytest.mark.parametrize(
    ("field", "request_of"), CREATE_ERRORS, ids=[f"{f}-{i}" for i, (f, _) in enumerate(CREATE_ERRORS)]
)
def test_every_create_error_names_its_field(field: str, request_of: Callable[[], pb.CreateDeploymentRequest]) -> None:
    with pytest.raises(InvalidArgument) as caught:
        deployment_from_create(request_of())
    assert caught.value.field == field
    assert caught.value.message.startswith(f"{field}: ")


def test_a_huge_value_is_echoed_short() -> None:
    with pytest.raises(InvalidArgument) as caught:
        deployment_from_create(create(primary=pb.TrafficTarget(alias="A" * 100_000)))
    assert caught.value.field == "deployment.primary.alias"
    assert "100000 characters" in caught.value.message
    assert len(caught.value.message) < 400


# ---------------------------------------------------------------- update


def test_a_mask_path_replaces_that_field_only() -> None:
    changes = apply_update(CURRENT, update(["canary"], canary=pb.TrafficSplit(target=pb.TrafficTarget(version=4))))

    assert changes.canary == Split(Target(version=4), 0)
    assert (changes.primary, changes.shadow, changes.batching, changes.sample_rate) == (KEEP, KEEP, KEEP, KEEP)
    applied = changes.apply(CURRENT)
    assert applied.canary == Split(Target(version=4), 0)
    assert applied.primary == CURRENT.primary and applied.batching == CURRENT.batching


def test_a_named_field_left_absent_is_reset() -> None:
    changes = apply_update(CURRENT, update(["canary", "primary", "batching", "sample_rate"]))
    applied = changes.apply(CURRENT)

    assert applied.canary is None, "canary in the mask and absent removes the canary"
    assert applied.primary == Target(alias="production")
    assert applied.batching == BatchingSpec()
    assert applied.sample_rate == 0.0, "sample_rate named in the mask takes 0 as sent: sampling off"


def test_an_empty_mask_takes_the_fields_present() -> None:
    changes = apply_update(
        CURRENT, update([], shadow=pb.TrafficSplit(target=pb.TrafficTarget(alias="next"), percent=50), sample_rate=0.1)
    )
    applied = changes.apply(CURRENT)

    assert applied.shadow == Split(Target(alias="next"), 50)
    assert applied.sample_rate == 0.1
    assert applied.canary == CURRENT.canary, "an absent canary is kept when the mask is empty"
    assert applied.primary == CURRENT.primary


def test_an_empty_mask_with_nothing_to_change_is_refused_naming_update_mask() -> None:
    with pytest.raises(InvalidArgument) as caught:
        apply_update(CURRENT, update([], sample_rate=0.0))
    assert caught.value.field == "update_mask"
    assert "sample_rate" in caught.value.message


def test_canary_percent_changes_only_the_share() -> None:
    changes = apply_update(CURRENT, update(["canary.percent"]))

    assert changes.canary is KEEP and changes.canary_percent == 0
    assert changes.apply(CURRENT).canary == Split(Target(version=3), 0)


def test_a_percent_of_a_missing_split_is_a_failed_precondition_naming_update_mask() -> None:
    with pytest.raises(FailedPrecondition) as caught:
        apply_update(CURRENT, update(["shadow.percent"], shadow=pb.TrafficSplit(percent=20)))
    assert caught.value.field == "update_mask"


UPDATE_ERRORS: list[tuple[str, Callable[[], pb.UpdateDeploymentRequest]]] = [
    ("update_mask", lambda: update(["state"])),
    ("update_mask", lambda: update(["model"])),
    ("update_mask", lambda: update(["etag"])),
    ("update_mask", lambda: update(["sampleRate"])),
    ("update_mask", lambda: update(["batching.max_batch_size"])),
    ("update_mask", lambda: update(["sample_rate", "x" * 5000])),
    ("deployment.name", lambda: pb.UpdateDeploymentRequest(deployment=pb.Deployment(name="churn"))),
    ("deployment.name", lambda: pb.UpdateDeploymentRequest(deployment=pb.Deployment(name="models/churn"))),
    ("deployment.primary.version", lambda: update(["primary"], primary=pb.TrafficTarget(version=0))),
    (
        "deployment.canary.percent",
        lambda: update(["canary.percent"], canary=pb.TrafficSplit(percent=101)),
    ),
    ("deployment.sample_rate", lambda: update(["sample_rate"], sample_rate=2.0)),
    ("deployment.batching.max_batch_size", lambda: update(["batching"], batching=pb.Batching(max_batch_size=2000))),
]


@pytest.mark.parametrize(
    ("field", "request_of"), UPDATE_ERRORS, ids=[f"{f}-{i}" for i, (f, _) in enumerate(UPDATE_ERRORS)]
)
def test_every_update_error_names_its_field(field: str, request_of: Callable[[], pb.UpdateDeploymentRequest]) -> None:
    with pytest.raises(InvalidArgument) as caught:
        apply_update(CURRENT, request_of())
    assert caught.value.field == field
    assert caught.value.message.startswith(f"{field}: ")
    assert len(caught.value.message) < 400


def test_deployment_ref_parses_the_resource_name() -> None:
    assert deployment_ref("name", "deployments/churn") == "churn"
    with pytest.raises(InvalidArgument) as caught:
        deployment_ref("name", "deployments/")
    assert caught.value.field == "name"


# ---------------------------------------------------------------- domain -> proto


def test_deployment_to_proto_carries_everything_a_client_reads() -> None:
    now = datetime.datetime(2026, 11, 30, 12, 0, tzinfo=datetime.UTC)
    stored = Deployment(
        deployment_id="churn-live",
        model_id="churn",
        primary=Target(alias="production"),
        canary=Split(Target(version=3), 10),
        shadow=None,
        batching=BatchingSpec(enabled=True, max_batch_size=16, max_queue_delay_microseconds=250),
        sample_rate=0.0,
        state=DeploymentState.READY,
        message="ok",
        etag="abc",
        revision=5,
        create_time=now,
        update_time=now + datetime.timedelta(seconds=1),
    )

    message = deployment_to_proto(
        stored, [ServedVersion(2, Route.PRIMARY, True), ServedVersion(3, Route.CANARY, False)]
    )

    assert message.name == "deployments/churn-live"
    assert message.model == "models/churn"
    assert message.primary.alias == "production"
    assert (message.canary.target.version, message.canary.percent) == (3, 10)
    assert not message.HasField("shadow")
    assert (message.batching.enabled, message.batching.max_batch_size) == (True, 16)
    assert message.batching.max_queue_delay_microseconds == 250
    assert message.state == pb.Deployment.STATE_READY and message.message == "ok"
    assert [(v.version, v.route, v.ready) for v in message.served_versions] == [
        (2, pb.ROUTE_PRIMARY, True),
        (3, pb.ROUTE_CANARY, False),
    ]
    assert route_from_proto(pb.ROUTE_SHADOW) is Route.SHADOW
    assert message.etag == "abc"
    assert message.create_time.ToDatetime(datetime.UTC) == now
    assert message.update_time.seconds - message.create_time.seconds == 1

    # What a client sends back from a Get creates the same deployment.
    again = deployment_from_create(pb.CreateDeploymentRequest(deployment_id="churn-live", deployment=message))
    assert again.same_spec(stored) is False, "sample_rate 0 at create means the default"
    assert again.sample_rate == 1.0
    assert (again.primary, again.canary, again.shadow, again.batching) == (
        stored.primary,
        stored.canary,
        stored.shadow,
        stored.batching,
    )
