"""Property-based fuzzing of every TrainService RPC through a real server.

One ``ferry-train`` process per module (its real ``main()``: the ``grpc.aio`` server
with the real interceptors, on a free port, a SQLite file), restarted when a call
crashes it, and talked to through the generated stubs. Nothing trains
(``FERRY_TRAIN_MAX_CONCURRENT_JOBS=0``: jobs stay queued), so a call costs milliseconds.
Create checks a job's data through ingest: a real ``ferry-ingest`` process holds the
penguins data (``datasets/penguins/versions/1`` with ``train`` and ``validation``
splits, and ``datasets/penguins-raw/versions/1`` without splits), so that fuzzed jobs
get past the data checks and are queued. Train is seeded with queued and cancelled jobs
for Get, Cancel, Resume and Watch to reach; its object store is an ``s3://`` URL (never
contacted: the service itself stores nothing) so that RenderTrainingJobManifest renders.
Two tests per RPC:

- ``test_malformed_requests_get_a_clean_status``: hypothesis builds requests from the
  message descriptor (see :mod:`ferry_common.fuzzing`): all sane, sane but for one bad
  field, or anything, with targeted values for job names and ids, dataset versions,
  splits, columns, the model, hyper-parameters, resources, filters, page tokens, images
  and namespaces;
- ``test_every_field_with_classic_bad_values``: a sane request with each field in turn
  (nested ones included) set to a trailing newline, 80 KB, one non-ASCII character,
  ``٣`` or 10**30 for a number, integer limits, an unknown enum number, NaN, bad map
  keys, page tokens holding what the service never issues.

Whatever the request:

- the status is never INTERNAL or UNKNOWN, and the call does not hang (WatchTrainingJob
  follows a queued job until the job ends, that is forever here: it is read for
  ``WATCH_SECONDS`` and may end DEADLINE_EXCEEDED);
- the status message fits in the client's trailing metadata (no echoed 70 KB id);
- a success names resources canonically (jobs, dataset versions, models) and answers
  about the job asked for (a rendered manifest names the job it was asked to render);
- the server still answers afterwards (health check and a GetTrainingJob), and is still
  running, and so is the ingest process it forwards data checks to;
- a Create, Cancel or Resume that fails leaves no trace. What a caller sees of train is
  its job list: every job with its spec, state, attempt and ``last_sequence`` (so an
  event appended to any job shows too). What succeeds is undone where it can be: a
  created job is cancelled (there is no delete), and the seeded jobs are put back in
  their states after a Cancel or Resume, so that the shrinker's replays meet the same state.

A custom model's entry point is checked at Create by importing it in a fresh interpreter
(about 8 s): the strategies pair a well-formed entry point with ``init_args`` that are
refused before that, but for about one request in 32, so that the default budget stays
well under a minute.

Budgets (examples per RPC):

- ``pytest services/train/tests/test_fuzz.py``: 30, derandomized (part of ``make
  test``); ``FERRY_FUZZ_EXAMPLES=200`` raises it.
- ``pytest -m fuzz services/train/tests/test_fuzz.py``: the big budget, 1000 per RPC
  with a fresh random seed each run (``FERRY_FUZZ_EXAMPLES`` sets it; ``FERRY_FUZZ=1``
  runs it alongside the rest without ``-m fuzz``). A failure prints the falsifying
  request and a ``@reproduce_failure`` blob; ``.hypothesis/`` replays it next run.
"""

from __future__ import annotations

import base64
import json
import pathlib
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
import yaml
from hypothesis import strategies as st

from ferry.train.v1 import train_pb2 as pb
from ferry.train.v1 import train_pb2_grpc
from ferry_common import fuzzing
from ferry_common.fuzzing import Call, ids, messages, resource_names, well_formed_names
from ferry_common.process import free_port
from ferry_sdk import IngestClient

palmerpenguins = pytest.importorskip("palmerpenguins")

pytestmark = pytest.mark.xdist_group("fuzz-train")

SERVICE = pb.DESCRIPTOR.services_by_name["TrainService"]
SPLIT_VERSION = "datasets/penguins/versions/1"
RAW_VERSION = "datasets/penguins-raw/versions/1"
SPLIT_RECIPE = {
    "steps": [
        {
            "split": {
                "fractions": [{"name": "train", "fraction": 0.8}, {"name": "validation", "fraction": 0.2}],
                "seed": 7,
                "stratify_column": "species",
            }
        }
    ]
}
# Columns of the penguins data, and two that cannot train a classifier (one class).
COLUMNS = ("species", "island", "bill_length_mm", "flipper_length_mm", "body_mass_g", "sex", "year")
TARGETS = ("species", "island", "sex", "body_mass_g", "constant", "one")
# The jobs the strategies aim at, and the state each is kept in.
SEEDED = {
    "queued-a": pb.TrainingJob.STATE_QUEUED,
    "queued-b": pb.TrainingJob.STATE_QUEUED,
    "cancelled-a": pb.TrainingJob.STATE_CANCELLED,
}
# Read by the liveness probe; no strategy draws it, so no fuzzed call cancels it.
SENTINEL = "fuzz-sentinel-job"
MUTATING = {"CreateTrainingJob", "CancelTrainingJob", "ResumeTrainingJob"}
# How long a watch is read: a queued job's watch never ends by itself.
WATCH_SECONDS = 0.3
# Well-formed entry points: one does not import, the other is a LightningModule.
ENTRY_POINTS = ("ferry_fuzz_no_such_module:Net", "pytorch_lightning:LightningModule")
MALFORMED_ENTRY_POINTS = (
    "",
    "pkg.mod",
    "pkg.mod Net",
    ":Net",
    "pkg.mod:",
    "1pkg:Net",
    "pkg..mod:Net",
    "pkg.mod:Net\n",
    " pkg.mod:Net",
    "p\u00e9kg:Net",
    "pkg/mod:Net",
    "pkg.mod:Net:Other",
    "a" * 199 + ":N",
)


def good_job(**changes: Any) -> pb.TrainingJob:
    """A job that passes every check (its data included) and is queued."""
    job = pb.TrainingJob(
        dataset_version=SPLIT_VERSION,
        target="species",
        task=pb.TASK_CLASSIFICATION,
        model=pb.ModelSpec(mlp=pb.MlpModel(hidden_units=[8])),
        register_model="models/penguins",
    )
    for name, value in changes.items():
        if isinstance(value, pb.ModelSpec):
            job.model.CopyFrom(value)
        else:
            setattr(job, name, value)
    return job


# ------------------------------------------------------------------------ strategies
# Each field has sane values (that reach the service's logic: the penguins version and
# its columns, existing jobs, valid ids) and nasty ones; fuzzing.messages() mixes
# whole-sane requests, requests with one bad field, and anything.

Field = fuzzing.Field
INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
sane_jobs = st.one_of(st.sampled_from(tuple(SEEDED)), st.sampled_from(tuple(SEEDED)), fuzzing.valid_ids())
JOB_ID = Field(st.one_of(st.just(""), sane_jobs), ids(tuple(SEEDED)))
JOB_NAME = Field(
    fuzzing.well_formed_names("trainingJobs/{job}", job=sane_jobs),
    resource_names("trainingJobs/{job}", job=ids(tuple(SEEDED))),
)
REQUEST_ID = Field(
    st.sampled_from(("", "req-1", "req-2")),
    st.one_of(st.from_regex(r"[A-Za-z0-9_.:-]{127,130}", fullmatch=True), fuzzing.nasty_text()),
)
DATASET_VERSION = Field(
    st.sampled_from((SPLIT_VERSION, SPLIT_VERSION, SPLIT_VERSION, RAW_VERSION, "datasets/penguins/versions/9")),
    st.one_of(
        # Near misses of the one version that gets past the data checks.
        well_formed_names(
            "datasets/{dataset}/versions/{version}",
            dataset=st.just("penguins"),
            version=st.sampled_from(("01", "001", "+1", "1 ", "1.0", "latest", "0", "\u00b9", "\u0661", "\uff11")),
        ),
        resource_names(
            "datasets/{dataset}/versions/{version}",
            dataset=ids(("penguins", "penguins-raw")),
            version=fuzzing.version_segments(("1", "2", "latest")),
        ),
    ),
)


def split_field(sane: str) -> Field:
    return Field(
        st.sampled_from(("", sane)),
        st.one_of(
            st.sampled_from(("train", "validation", "test", "TRAIN", f"{sane}\n", f" {sane}", "../x", "x" * 257)),
            fuzzing.nasty_text(),
        ),
    )


COLUMN_NASTY = st.one_of(
    st.sampled_from(("", "wingspan", "Species", "species\n", "species ", "x" * 257, "\u00e9" * 256)),
    fuzzing.nasty_text(),
)
DEEP_JSON = "[" * 5_000 + "]" * 5_000  # 10,000 characters: the most an init_args value may hold
# init_args a constructor never sees: one entry (at least) that decode_init_args refuses.
BAD_INIT_ARGS = st.builds(
    lambda extra, bad: {**extra, **bad},
    st.dictionaries(
        st.one_of(st.sampled_from(("width", "depth", "\u00e9t\u00e9", "null")), fuzzing.nasty_text()),
        st.one_of(st.sampled_from(("8", '"relu"', "1e400", "NaN", "[]")), fuzzing.nasty_text()),
        max_size=2,
    ),
    st.one_of(
        st.dictionaries(
            st.sampled_from(("width", "depth")),
            st.one_of(
                st.sampled_from((DEEP_JSON, '{"a":' * 3_000 + "1" + "}" * 3_000, "four", "", "[1", "9" * 5_000)),
                fuzzing.huge_text((10_001, 70_000)),
            ),
            min_size=1,
            max_size=1,
        ),
        st.dictionaries(
            st.one_of(
                st.sampled_from(("n_inputs", "task", "class", "1x", "a-b", "", "x" * 65, "width\n")),
                fuzzing.huge_text((65, 70_000)),
            ),
            fuzzing.nasty_text(),
            min_size=1,
            max_size=1,
        ),
    ),
)
# A custom model's entry point is imported in a fresh interpreter (about 8 s) once a job
# passes every other check: its init_args are nearly always refused first.
MODEL_FIELDS: dict[str, Field] = {
    "model.mlp.hidden_units": Field(
        st.lists(st.integers(1, 32), min_size=1, max_size=3),
        st.lists(fuzzing.int_values(*INT32, (0, -1, 2**31 - 1)), max_size=4),
    ),
    "model.mlp.dropout": Field(st.sampled_from((0.0, 0.1, 0.5)), fuzzing.nasty_doubles()),
    "model.custom.entry_point": Field(
        st.sampled_from(ENTRY_POINTS), st.one_of(st.sampled_from(MALFORMED_ENTRY_POINTS), fuzzing.nasty_text())
    ),
    "model.custom.init_args": Field(
        # One in 32; not the first or last choice, which hypothesis draws far more often.
        st.integers(0, 31).flatmap(lambda n: st.sampled_from(({}, {"width": "8"})) if n == 16 else BAD_INIT_ARGS),
        BAD_INIT_ARGS,
    ),
}


def int32(sane: st.SearchStrategy[int], *known: int) -> Field:
    return Field(sane, fuzzing.int_values(*INT32, known))


TEXT_NASTY = fuzzing.nasty_text()
JOB_FIELDS: dict[str, Field] = {
    "dataset_version": DATASET_VERSION,
    "training_split": split_field("train"),
    "validation_split": split_field("validation"),
    "target": Field(st.sampled_from(TARGETS), COLUMN_NASTY),
    "features": Field(
        st.lists(st.sampled_from(COLUMNS), max_size=3, unique=True),
        st.lists(st.one_of(st.sampled_from(COLUMNS), COLUMN_NASTY), min_size=1, max_size=4),
    ),
    "task": Field(
        st.sampled_from((pb.TASK_CLASSIFICATION, pb.TASK_REGRESSION)), fuzzing.enum_numbers(pb.Task.DESCRIPTOR)
    ),
    **MODEL_FIELDS,
    "hyperparameters.max_epochs": int32(st.integers(0, 5)),
    "hyperparameters.batch_size": int32(st.integers(0, 64)),
    "hyperparameters.learning_rate": Field(st.sampled_from((0.0, 1e-3, 0.1)), fuzzing.nasty_doubles()),
    "hyperparameters.seed": Field(st.integers(0, 10), fuzzing.int_values(*INT64)),
    "hyperparameters.extra": Field(st.just({}), st.dictionaries(TEXT_NASTY, TEXT_NASTY, min_size=1, max_size=3)),
    "resources.accelerator": Field(
        st.sampled_from(("", "cpu", "auto")),
        st.one_of(st.sampled_from(("gpu", "tpu", "CPU", "cpu\n", " cpu")), TEXT_NASTY),
    ),
    "resources.devices": int32(st.sampled_from((0, 1)), 2, 64, 4096),
    "resources.num_nodes": int32(st.sampled_from((0, 1, 2)), 1000),
    "resources.strategy": Field(
        st.sampled_from(("", "auto", "ddp")),
        st.one_of(st.sampled_from(("DDP", "ddp\n", "ddp-spawn", "a" * 64, "_x")), TEXT_NASTY),
    ),
    "resources.precision": Field(
        st.sampled_from(("", "32-true", "bf16-mixed")),
        st.one_of(st.sampled_from(("32", "fp16", "32-true\n", "BF16-MIXED")), TEXT_NASTY),
    ),
    "register_model": Field(
        st.sampled_from(("models/penguins", "models/churn")),
        resource_names("models/{model}", model=ids(("penguins",))),
    ),
    "code_revision": Field(
        st.sampled_from(("", "0123abc")), st.one_of(fuzzing.huge_text((199, 200, 201, 70_000)), TEXT_NASTY)
    ),
}
FILTER = Field(
    st.sampled_from(
        (
            "",
            "state=STATE_QUEUED",
            "state=STATE_CANCELLED",
            "register_model=penguins",
            'state="STATE_QUEUED" AND register_model=models/penguins',
        )
    ),
    st.one_of(
        st.sampled_from(
            (
                "state=",
                "state=SLEEPING",
                "state=STATE_QUEUED AND state=STATE_QUEUED",
                "state=STATE_QUEUED AND",
                "state=STATE_QUEUED\n",
                'state="STATE_QUEUED',
                "register_model=",
                "register_model=Penguins",
                "register_model=models/",
                "register_model=models/penguins/versions/1",
                "labels.team=risk",
                " AND ".join(["register_model=penguins"] * 1_000),
            )
        ),
        fuzzing.nasty_text(),
    ),
)
# The shape of ListTrainingJobs' page tokens (for a request with no filter and the default size).
TOKEN = {"filter": "", "page_size": 50}
TOKENS: dict[str, tuple[dict[str, Any], str]] = {
    "ListTrainingJobs": ({**TOKEN, "after_id": "queued-a"}, "after_time"),
}
IMAGE = Field(
    st.sampled_from(("", "ferry/train:dev", "registry.example.com:5000/ferry/train@sha256:" + "ab" * 32)),
    st.one_of(st.sampled_from(("a b", " ", "\t", "img\n", "\u00a0", "x" * 300)), fuzzing.huge_text(), TEXT_NASTY),
)
NAMESPACE = Field(
    st.sampled_from(("", "ml", "default")),
    st.one_of(st.sampled_from(("ML", "-ml", "ml-", "a" * 64, "ml\n", "m.l", "ml/x", "\u0131")), TEXT_NASTY),
)

REQUESTS: dict[str, st.SearchStrategy[Any]] = {
    "CreateTrainingJob": messages(
        pb.CreateTrainingJobRequest,
        {
            "training_job_id": JOB_ID,
            "request_id": REQUEST_ID,
            **{f"training_job.{path}": value for path, value in JOB_FIELDS.items()},
        },
    ),
    "GetTrainingJob": messages(pb.GetTrainingJobRequest, {"name": JOB_NAME}),
    "ListTrainingJobs": messages(
        pb.ListTrainingJobsRequest,
        {
            "page_size": Field(st.integers(0, 3), fuzzing.page_sizes()),
            "page_token": Field(
                st.just(""),
                fuzzing.page_tokens(
                    (TOKEN, {**TOKEN, "after_id": "queued-a"}, {**TOKEN, "after_time": "2026-01-01T00:00:00+00:00"}),
                    ("after_time", "after_id"),
                ),
            ),
            "filter": FILTER,
        },
    ),
    "CancelTrainingJob": messages(pb.CancelTrainingJobRequest, {"name": JOB_NAME}),
    "ResumeTrainingJob": messages(pb.ResumeTrainingJobRequest, {"name": JOB_NAME}),
    "WatchTrainingJob": messages(
        pb.WatchTrainingJobRequest,
        {
            "name": JOB_NAME,
            "since_sequence": Field(st.integers(0, 3), fuzzing.int_values(*INT64, (0, 1, 2, 3))),
        },
    ),
    "RenderTrainingJobManifest": messages(
        pb.RenderTrainingJobManifestRequest,
        {
            "training_job.name": JOB_NAME,
            "training_job.resources.accelerator": Field(
                st.sampled_from(("", "cpu", "gpu", "auto")), JOB_FIELDS["resources.accelerator"].nasty
            ),
            "training_job.resources.devices": int32(st.sampled_from((0, 1, 2, 8)), 1000),
            "training_job.resources.num_nodes": int32(st.sampled_from((0, 1, 2, 4)), 1000),
            "image": IMAGE,
            "namespace": NAMESPACE,
        },
    ),
}
CALLS, SWEEP_EXTRA = fuzzing.call_tables(REQUESTS, TOKENS)

# ------------------------------------------------------------------ response checks

NAMES = {
    "ferry.train.v1.TrainingJob.name": "trainingJobs/{job}",
    "ferry.train.v1.TrainingJob.dataset_version": "datasets/{dataset}/versions/{version}",
    "ferry.train.v1.TrainingJob.register_model": "models/{model}",
    "ferry.train.v1.TrainingJob.model_version": "models/{model}/versions/{version}",
}


def _rendered_job(response: pb.RenderTrainingJobManifestResponse) -> str:
    """The job a rendered PyTorchJob runs (its annotation), ``""`` when the YAML has none."""
    manifest = yaml.safe_load(response.yaml)
    annotations = manifest.get("metadata", {}).get("annotations", {}) if isinstance(manifest, dict) else {}
    return str(annotations.get("ferry.dev/training-job-name", ""))


def _created(q: pb.CreateTrainingJobRequest, r: tuple[Any, ...]) -> list[tuple[str, str]]:
    # The same request_id answers with the job it created first, whatever else the request says.
    if q.request_id:
        return []
    pairs = [(q.training_job.dataset_version, r[0].dataset_version)]
    if q.training_job_id:
        pairs.append((f"trainingJobs/{q.training_job_id}", r[0].name))
    return pairs


Pairs = Callable[[Any, tuple[Any, ...]], list[tuple[str, str]]]
# For each RPC, the (asked, returned) resource names a success must agree on.
SAME_RESOURCE: dict[str, Pairs] = {
    "CreateTrainingJob": _created,
    "GetTrainingJob": lambda q, r: [(q.name, r[0].name)],
    "CancelTrainingJob": lambda q, r: [(q.name, r[0].name)],
    "ResumeTrainingJob": lambda q, r: [(q.name, r[0].name)],
    "RenderTrainingJobManifest": lambda q, r: [(q.training_job.name, _rendered_job(r[0]))],
}

# --------------------------------------------------------------------------- server


class IngestDown(AssertionError):
    """The ingest process that train checks data with stopped running after a call."""


class FuzzedTrain(fuzzing.FuzzedService):
    """A train server seeded for fuzzing, and the property every call must satisfy."""

    stub_class = train_pb2_grpc.TrainServiceStub

    def __init__(self, server: fuzzing.ServerProcess, objects: pathlib.Path, ingest: fuzzing.ServerProcess) -> None:
        self.ingest = ingest
        super().__init__(server, objects, self._read)

    def check_alive(self, after: fuzzing.Outcome) -> None:
        """Train answers, and the ingest it forwards data checks to still runs (else it is restarted)."""
        super().check_alive(after)
        status = self.ingest.exit_status()
        if status != "running":
            self.ingest.start()  # on the same address, its state on disk
            raise IngestDown(f"after {after}: the ingest process {status}")

    def probe(self) -> None:
        self.stub.GetTrainingJob(pb.GetTrainingJobRequest(name=f"trainingJobs/{SENTINEL}"), timeout=10)

    def jobs(self) -> list[pb.TrainingJob]:
        """Every job, newest first."""
        listed = self.listing("ListTrainingJobs", pb.ListTrainingJobsRequest(page_size=1000), "training_jobs")
        assert all(isinstance(item, bytes) for item in listed), f"ListTrainingJobs failed: {listed[-1]}"
        return [pb.TrainingJob.FromString(item) for item in listed]

    def seed(self) -> None:
        """The seeded jobs in their states; every other job cancelled (what Create and Resume queued)."""
        jobs = {job.name: job for job in self.jobs()}
        for job_id, state in {SENTINEL: pb.TrainingJob.STATE_QUEUED, **SEEDED}.items():
            name = f"trainingJobs/{job_id}"
            if name not in jobs:
                request = pb.CreateTrainingJobRequest(training_job_id=job_id, training_job=good_job())
                jobs[name] = self.stub.CreateTrainingJob(request, timeout=60)
            if jobs[name].state != state:
                self._set_state(name, state)
        for name, job in jobs.items():
            if job.state == pb.TrainingJob.STATE_QUEUED and name.split("/", 1)[1] not in (SENTINEL, *SEEDED):
                self._set_state(name, pb.TrainingJob.STATE_CANCELLED)
        self.dirty = False

    def _set_state(self, name: str, state: int) -> None:
        if state == pb.TrainingJob.STATE_CANCELLED:
            self.stub.CancelTrainingJob(pb.CancelTrainingJobRequest(name=name), timeout=30)
        else:
            self.stub.ResumeTrainingJob(pb.ResumeTrainingJobRequest(name=name), timeout=30)

    def _read(self, part: str) -> Any:
        """What a caller can see of train: every job, with its state and last event's sequence."""
        assert part == "jobs", part
        return self.listing("ListTrainingJobs", pb.ListTrainingJobsRequest(page_size=1000), "training_jobs")

    def undo(self, rpc: str, responses: tuple[Any, ...]) -> None:
        """Cancel a job the call queued; put the seeded jobs back in their states."""
        try:
            if rpc == "CreateTrainingJob" and responses[0].state == pb.TrainingJob.STATE_QUEUED:
                self._set_state(responses[0].name, pb.TrainingJob.STATE_CANCELLED)
            elif rpc != "CreateTrainingJob":
                self.dirty = True  # seed() puts the job back as it was
        except grpc.RpcError:
            self.dirty = True

    def check(self, call: Call) -> None:
        """The property: a live server, a sane status and response, no trace of a failed change."""
        if self.dirty:
            self.seed()
            self.visible.forget()
        mutating = call.rpc in MUTATING
        before = self.visible.take(["jobs"] if mutating else [])
        watch = call.rpc == "WatchTrainingJob"
        mark = self.server.log_mark()
        outcome = fuzzing.call_rpc(
            self.stub, SERVICE.methods_by_name[call.rpc], call.request, timeout=WATCH_SECONDS if watch else 60
        )
        try:
            # First, so that the server is done with the call (its span records the error)
            # before a failure is reported.
            self.check_alive(outcome)
            fuzzing.check_outcome(outcome, allow_deadline=watch, server_errors=lambda: self.server.errors_since(mark))
            if outcome.code is grpc.StatusCode.OK:
                fuzzing.check_names(outcome, NAMES)
                if call.rpc in SAME_RESOURCE:
                    fuzzing.check_same_resource(outcome, SAME_RESOURCE[call.rpc](call.request, outcome.responses))
            elif mutating:
                self.visible.check_unchanged(before, outcome)
        finally:
            if mutating and outcome.code is grpc.StatusCode.OK:
                # Undo changes, so that a replay by the shrinker meets the same state.
                self.undo(call.rpc, outcome.responses)
                self.visible.forget()


@pytest.fixture(scope="module")
def ingest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[fuzzing.ServerProcess]:
    """``ferry-ingest`` holding the penguins data, raw and split into train and validation."""
    root = tmp_path_factory.mktemp("train-fuzz-ingest")
    # A fixed address: train keeps it, and a restarted ingest listens there again.
    env = {
        "FERRY_STATE_DIR": str(root),
        "FERRY_LOG_LEVEL": "warning",
        "FERRY_INGEST_ADDRESS": f"127.0.0.1:{free_port()}",
    }
    server = fuzzing.ServerProcess("ferry_ingest", "ingest", env, root / "server.log")
    server.start()
    try:
        frame = palmerpenguins.load_penguins()
        frame["constant"] = "same"  # a string target with one class
        frame["one"] = 1  # a numeric target with one class
        with IngestClient(server.target) as client:
            raw = client.upload_dataset("penguins-raw", frame)
            split = client.transform_dataset(raw.name, "penguins", SPLIT_RECIPE)
        assert (raw.name, split.name) == (RAW_VERSION, SPLIT_VERSION)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def train(tmp_path_factory: pytest.TempPathFactory, ingest: fuzzing.ServerProcess) -> Iterator[FuzzedTrain]:
    """``ferry-train`` in a process of its own, on SQLite, running no job."""
    root = tmp_path_factory.mktemp("train-fuzz")
    env = {
        "FERRY_STATE_DIR": str(root),
        "FERRY_LOG_LEVEL": "warning",
        "FERRY_INGEST_ADDRESS": ingest.target,
        "FERRY_TRAIN_MAX_CONCURRENT_JOBS": "0",
        "FERRY_TRAIN_POLL_MS": "50",
        # Only rendered into manifests (a multi-node job needs S3); nothing listens there.
        "FERRY_OBJECT_STORE_URL": "s3://ferry-fuzz/train",
        "FERRY_S3_ENDPOINT": "127.0.0.1:1",
    }
    server = fuzzing.ServerProcess("ferry_train", "train", env, root / "server.log")
    server.start()
    try:
        fuzzed = FuzzedTrain(server, root / "objects", ingest)  # train itself stores no object
        fuzzed.seed()
        yield fuzzed
        fuzzed.close()
    finally:
        server.stop()


@pytest.fixture(scope="module")
def fuzzed(train: FuzzedTrain) -> FuzzedTrain:
    return train


# The tests every fuzzed service runs (ferry_common.fuzzing.rpc_tests), then this service's own.
globals().update(fuzzing.rpc_tests(CALLS, SERVICE.methods_by_name, SWEEP_EXTRA))

# ---------------------------------------------------------------------------- tests


def refused(train: FuzzedTrain, rpc: str, request: Any) -> grpc.RpcError:
    """``request`` passes the property, and is refused (the error of a second, identical call)."""
    train.check(Call(rpc, request))
    with pytest.raises(grpc.RpcError) as caught:
        getattr(train.stub, rpc)(request, timeout=60)
    return caught.value


def test_a_page_token_holding_no_time_is_invalid_argument(train: FuzzedTrain) -> None:
    """A token of the service's shape whose position is not a time (found by this fuzzing: INTERNAL)."""
    position = {**TOKEN, "after_time": "x", "after_id": "queued-a"}
    token = base64.urlsafe_b64encode(json.dumps(position).encode()).decode()
    error = refused(train, "ListTrainingJobs", pb.ListTrainingJobsRequest(page_token=token))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert "page_token" in error.details()


def test_init_args_nested_too_deep_are_invalid_argument(train: FuzzedTrain) -> None:
    """JSON nested deeper than the decoder goes (found by this fuzzing: INTERNAL), and no job is stored."""
    model = pb.ModelSpec(custom=pb.CustomModel(entry_point=ENTRY_POINTS[0], init_args={"width": DEEP_JSON}))
    request = pb.CreateTrainingJobRequest(training_job_id="too-deep", training_job=good_job(model=model))
    error = refused(train, "CreateTrainingJob", request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert "training_job.model.custom.init_args" in error.details()
    assert "trainingJobs/too-deep" not in {job.name for job in train.jobs()}


def test_a_dataset_version_with_leading_zeros_is_shown_canonically(train: FuzzedTrain) -> None:
    """``versions/001`` is version 1 (the job used to show ``versions/001``: a name that is not canonical)."""
    job = good_job(dataset_version="datasets/penguins/versions/001")
    train.check(Call("CreateTrainingJob", pb.CreateTrainingJobRequest(training_job_id="zeros", training_job=job)))
    got = train.stub.GetTrainingJob(pb.GetTrainingJobRequest(name="trainingJobs/zeros"), timeout=30)
    assert got.dataset_version == SPLIT_VERSION
