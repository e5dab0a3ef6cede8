"""Render a training job as a Kubeflow ``PyTorchJob`` that runs it on several nodes.

This is the pure part of ``RenderTrainingJobManifest``: no grpc, no I/O. The servicer maps
the request (``TrainingJob.resources``, ``image``, ``namespace``) to :class:`JobManifestSpec`
and the service's settings to :class:`ManifestSettings`, then returns :func:`to_yaml` of
:func:`render_pytorchjob`.

Every pod of the rendered job runs the worker command the service runs locally
(:func:`worker_command`), under ``torchrun`` (:func:`torchrun_command`). The Kubeflow Training
Operator (API ``kubeflow.org/v1``) creates one ``Master`` pod and ``num_nodes - 1`` ``Worker``
pods and sets ``MASTER_ADDR``, ``MASTER_PORT`` and ``RANK`` (the pod's node rank) in each; the
kubelet expands the ``$(VAR)`` references in the container's arguments from them. Secrets
(S3 keys, the train database URL, the auth token) appear only as ``secretKeyRef`` references
to a Secret (``ferry-secrets`` by default, the one ``deploy/k8s`` uses), never as values.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import yaml

from ferry_common.errors import FailedPrecondition, InvalidArgument
from ferry_common.names import shorten
from ferry_common.settings import Settings

__all__ = [
    "ACCELERATORS",
    "CONTAINER_NAME",
    "DEFAULT_SECRET_NAME",
    "JOB_LABEL",
    "MASTER_PORT",
    "MAX_NAME_LENGTH",
    "WORKER_MODULE",
    "JobManifestSpec",
    "ManifestSettings",
    "default_train_image",
    "job_resource_name",
    "kubernetes_name",
    "render_pytorchjob",
    "to_yaml",
    "torchrun_command",
    "worker_command",
]

API_VERSION = "kubeflow.org/v1"
KIND = "PyTorchJob"
#: The operator finds the rendezvous port on the container with this name.
CONTAINER_NAME = "pytorch"
#: The operator's default port, named as the operator expects (``pytorchjob-port``).
MASTER_PORT = 23456
_PORT_NAME = "pytorchjob-port"
WORKER_MODULE = "ferry_train.worker"
DEFAULT_SECRET_NAME = "ferry-secrets"
JOB_LABEL = "ferry.dev/training-job"
_JOB_ANNOTATION = "ferry.dev/training-job-name"
_RESOURCE_PREFIX = "trainingJobs/"
ACCELERATORS = ("cpu", "gpu", "auto")
_GPU_RESOURCE = "nvidia.com/gpu"
_STATE_DIR = "/var/lib/ferry"
_UID = 10001

#: The operator names each pod and its Service ``<job>-worker-<index>``; a Service name is a
#: DNS-1035 label of at most 63 characters. 50 leaves room for ``-worker-`` and five digits,
#: so a job keeps the same name whatever its node count.
MAX_NAME_LENGTH = 50
_DNS_1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?")
_DNS_1123 = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_HASH_LENGTH = 6


def default_train_image() -> str:
    """The train service's own image, ``ferry/train:<installed version>``.

    deploy/k8s tags the images with the package version, so a job rendered by a service
    runs the code of that service.
    """
    try:
        version = metadata.version("ferry-train")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare source tree
        version = "latest"
    return f"ferry/train:{version}"


@dataclass(frozen=True)
class JobManifestSpec:
    """What of a training job the manifest depends on.

    Attributes:
        training_job_id: the job id (``churn-1``); a ``trainingJobs/`` prefix is accepted.
        devices: processes (CPU processes or GPUs) per node, ``Resources.devices``.
        num_nodes: pods, one per node, ``Resources.num_nodes``.
        accelerator: ``cpu``, ``gpu`` or ``auto`` (``auto`` requests no GPU, so it runs on
            CPU). Empty means ``cpu``, the proto default.
        image: the worker image; empty means :attr:`ManifestSettings.image`.
        namespace: Kubernetes namespace; empty leaves it to ``kubectl apply -n``.
    """

    training_job_id: str
    devices: int = 1
    num_nodes: int = 1
    accelerator: str = "cpu"
    image: str = ""
    namespace: str = ""

    @property
    def job_id(self) -> str:
        """The id without a ``trainingJobs/`` prefix."""
        return self.training_job_id.removeprefix(_RESOURCE_PREFIX)


@dataclass(frozen=True)
class ManifestSettings:
    """The service settings the worker pods need, and the shape of their pods.

    Only addresses, URLs and names: secret values never pass through here.

    Attributes:
        object_store_url: ``s3://bucket[/prefix]``; pods on several nodes share nothing else.
        s3_endpoint: S3 ``host:port``.
        s3_secure: reach S3 over TLS.
        ingest_address: how a pod reaches ingest (datasets).
        registry_address: how a pod reaches registry (model versions).
        train_address: how a pod reaches train.
        monitor_address: how a pod reaches monitor.
        otlp_endpoint: where the workers send spans; ``None`` sends none.
        secret_name: the Secret holding ``FERRY_S3_ACCESS_KEY``, ``FERRY_S3_SECRET_KEY``,
            ``FERRY_TRAIN_DATABASE_URL`` and, with ``auth``, ``FERRY_AUTH_TOKEN``.
        auth: authentication is on, so pods send ``FERRY_AUTH_TOKEN`` from the Secret.
        image: the default worker image.
        cpus_per_device: CPU cores requested per process.
        memory_gib_per_device: memory (GiB) requested and limited per process.
        shared_memory_gib: size of ``/dev/shm`` (DDP and data loaders use it).
        backoff_limit: pod restarts before the PyTorchJob fails; a restarted worker resumes
            from the job's last checkpoint.
    """

    object_store_url: str
    ingest_address: str
    registry_address: str
    train_address: str
    monitor_address: str
    s3_endpoint: str = ""
    s3_secure: bool = False
    otlp_endpoint: str | None = None
    secret_name: str = DEFAULT_SECRET_NAME
    auth: bool = False
    image: str = field(default_factory=default_train_image)
    cpus_per_device: int = 2
    memory_gib_per_device: int = 4
    shared_memory_gib: int = 2
    backoff_limit: int = 3

    @classmethod
    def from_settings(cls, settings: Settings, *, image: str | None = None) -> ManifestSettings:
        """The train service's own view of the cluster, as its pods need it.

        Args:
            settings: the train service's settings.
            image: the default worker image (default :func:`default_train_image`).

        Returns:
            Settings for :func:`render_pytorchjob`.
        """
        return cls(
            object_store_url=settings.object_store_url,
            s3_endpoint=settings.s3.endpoint,
            s3_secure=settings.s3.secure,
            ingest_address=settings.addresses["ingest"],
            registry_address=settings.addresses["registry"],
            train_address=settings.addresses["train"],
            monitor_address=settings.addresses["monitor"],
            otlp_endpoint=settings.otlp_endpoint,
            auth=settings.auth_tokens_file is not None or settings.auth_token is not None,
            image=image or default_train_image(),
        )


def job_resource_name(job_id: str) -> str:
    """``trainingJobs/{job_id}``, the name the worker is given."""
    return _RESOURCE_PREFIX + job_id.removeprefix(_RESOURCE_PREFIX)


def worker_command(job_id: str) -> list[str]:
    """The command that runs one job's worker, as the service starts it locally.

    Args:
        job_id: the job id (or its ``trainingJobs/`` name).

    Returns:
        ``["python", "-m", "ferry_train.worker", "--job", "trainingJobs/<id>"]``.
    """
    return ["python", "-m", WORKER_MODULE, "--job", job_resource_name(job_id)]


def torchrun_command(job_id: str, *, num_nodes: int, devices: int) -> list[str]:
    """:func:`worker_command` under ``torchrun``, as each pod of a PyTorchJob runs it.

    ``torchrun`` starts ``devices`` worker processes on the pod and joins the other pods at
    the master pod. The node rank, master address and port are ``$(VAR)`` references that the
    kubelet fills from the variables the training operator sets in every pod.

    Args:
        job_id: the job id (or its ``trainingJobs/`` name).
        num_nodes: pods in the job.
        devices: processes per pod.

    Returns:
        The container command.
    """
    _, *module_and_args = worker_command(job_id)
    return [
        "torchrun",
        f"--nnodes={num_nodes}",
        f"--nproc-per-node={devices}",
        "--node-rank=$(RANK)",
        "--master-addr=$(MASTER_ADDR)",
        "--master-port=$(MASTER_PORT)",
        *module_and_args,
    ]


def kubernetes_name(job_id: str) -> str:
    """A PyTorchJob name for a job id: a DNS-1035 label of at most :data:`MAX_NAME_LENGTH`.

    A Ferry id that already fits is used as is. Anything else is lower-cased, runs of other
    characters become ``-``, a leading digit gets a ``job-`` prefix, and a short hash of the
    original id keeps two ids that sanitise alike apart.

    Args:
        job_id: the job id (or its ``trainingJobs/`` name).

    Returns:
        The name.

    Raises:
        InvalidArgument: the id is empty.
    """
    raw = job_id.removeprefix(_RESOURCE_PREFIX)
    if not raw:
        raise InvalidArgument("training job name is empty", field="training_job.name")
    if len(raw) <= MAX_NAME_LENGTH and _DNS_1035.fullmatch(raw):
        return raw
    digest = hashlib.sha256(raw.encode()).hexdigest()[:_HASH_LENGTH]
    base = re.sub(r"[^a-z0-9]+", "-", raw.lower()).strip("-")
    if not base[:1].isalpha():
        base = f"job-{base}" if base else "job"
    base = base[: MAX_NAME_LENGTH - _HASH_LENGTH - 1].rstrip("-")
    return f"{base}-{digest}"


def _validate(job: JobManifestSpec, settings: ManifestSettings) -> tuple[str, str]:
    """Check the spec; return the accelerator and image to use."""
    if job.devices < 1:
        raise InvalidArgument(
            f"resources.devices must be at least 1, got {job.devices}", field="training_job.resources.devices"
        )
    if job.num_nodes < 1:
        raise InvalidArgument(
            f"resources.num_nodes must be at least 1, got {job.num_nodes}", field="training_job.resources.num_nodes"
        )
    accelerator = job.accelerator or "cpu"
    if accelerator not in ACCELERATORS:
        raise InvalidArgument(
            f"resources.accelerator {shorten(job.accelerator)} is not one of {', '.join(ACCELERATORS)}",
            field="training_job.resources.accelerator",
        )
    image = job.image or settings.image
    if not image or any(c.isspace() for c in image):
        raise InvalidArgument(f"image {shorten(image)} is not a container image reference", field="image")
    if job.namespace and not _DNS_1123.fullmatch(job.namespace):
        raise InvalidArgument(
            f"namespace {shorten(job.namespace)} is not a Kubernetes namespace name", field="namespace"
        )
    if not settings.object_store_url.startswith("s3://"):
        # Pods on several nodes share no directory: checkpoints and exports must go to S3.
        raise FailedPrecondition(
            f"a multi-node job needs an s3:// object store, train is configured with {settings.object_store_url!r}"
        )
    return accelerator, image


def _env(settings: ManifestSettings) -> list[dict[str, Any]]:
    def value(name: str, text: str) -> dict[str, Any]:
        return {"name": name, "value": text}

    def secret(name: str) -> dict[str, Any]:
        return {"name": name, "valueFrom": {"secretKeyRef": {"name": settings.secret_name, "key": name}}}

    env = [
        value("FERRY_OBJECT_STORE_URL", settings.object_store_url),
        value("FERRY_S3_ENDPOINT", settings.s3_endpoint),
        value("FERRY_S3_SECURE", "true" if settings.s3_secure else "false"),
        value("FERRY_INGEST_ADDRESS", settings.ingest_address),
        value("FERRY_REGISTRY_ADDRESS", settings.registry_address),
        value("FERRY_TRAIN_ADDRESS", settings.train_address),
        value("FERRY_MONITOR_ADDRESS", settings.monitor_address),
        value("FERRY_STATE_DIR", _STATE_DIR),
        value("FERRY_LOG_FORMAT", "json"),
        value("OTEL_SERVICE_NAME", "ferry-train-worker"),
    ]
    if settings.otlp_endpoint is None:
        env.append(value("OTEL_SDK_DISABLED", "true"))
    else:
        env.append(value("OTEL_EXPORTER_OTLP_ENDPOINT", settings.otlp_endpoint))
    env += [secret("FERRY_S3_ACCESS_KEY"), secret("FERRY_S3_SECRET_KEY"), secret("FERRY_TRAIN_DATABASE_URL")]
    if settings.auth:
        env.append(secret("FERRY_AUTH_TOKEN"))
    return env


def _pod_template(
    job: JobManifestSpec, settings: ManifestSettings, accelerator: str, image: str, labels: dict[str, str]
) -> dict[str, Any]:
    cpus = job.devices * settings.cpus_per_device
    memory = f"{job.devices * settings.memory_gib_per_device}Gi"
    requests: dict[str, str] = {"cpu": str(cpus), "memory": memory}
    limits: dict[str, str] = {"memory": memory}
    if accelerator == "gpu":
        # Extended resources are requested through limits (requests default to them).
        limits[_GPU_RESOURCE] = str(job.devices)
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": torchrun_command(job.job_id, num_nodes=job.num_nodes, devices=job.devices),
        "ports": [{"name": _PORT_NAME, "containerPort": MASTER_PORT, "protocol": "TCP"}],
        "env": _env(settings),
        "resources": {"requests": requests, "limits": limits},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [
            {"name": "state", "mountPath": _STATE_DIR},
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "dshm", "mountPath": "/dev/shm"},
        ],
    }
    spec: dict[str, Any] = {
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": _UID,
            "runAsGroup": _UID,
            "fsGroup": _UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": [
            {"name": "state", "emptyDir": {"sizeLimit": "10Gi"}},
            {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": f"{settings.shared_memory_gib}Gi"}},
        ],
    }
    if accelerator == "gpu":
        spec["tolerations"] = [{"key": _GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}]
    return {"metadata": {"labels": dict(labels)}, "spec": spec}


def render_pytorchjob(job: JobManifestSpec, settings: ManifestSettings) -> dict[str, Any]:
    """The Kubeflow ``PyTorchJob`` (``kubeflow.org/v1``) that runs a job on ``num_nodes`` pods.

    One ``Master`` replica and ``num_nodes - 1`` ``Worker`` replicas (none for one node), all
    with the same image, command and pod shape; ``nprocPerNode`` is ``devices``.

    Args:
        job: the job's id and resources.
        settings: the service's settings for the pods.

    Returns:
        The manifest as plain data (what ``yaml.safe_dump`` or ``json.dumps`` takes).

    Raises:
        InvalidArgument: devices or num_nodes below 1, an unknown accelerator, a malformed
            image or namespace, or an empty job id.
        FailedPrecondition: the object store is not S3, which pods on several nodes need.
    """
    accelerator, image = _validate(job, settings)
    name = kubernetes_name(job.job_id)
    labels = {
        "app.kubernetes.io/name": "train",
        "app.kubernetes.io/part-of": "ferry",
        "app.kubernetes.io/component": "training-job",
        JOB_LABEL: job.job_id if _LABEL_VALUE.fullmatch(job.job_id) else name,
    }
    metadata_: dict[str, Any] = {"name": name}
    if job.namespace:
        metadata_["namespace"] = job.namespace
    metadata_["labels"] = labels
    metadata_["annotations"] = {_JOB_ANNOTATION: job_resource_name(job.job_id)}

    template = _pod_template(job, settings, accelerator, image, labels)
    replicas: dict[str, Any] = {"Master": {"replicas": 1, "restartPolicy": "OnFailure", "template": template}}
    if job.num_nodes > 1:
        replicas["Worker"] = {
            "replicas": job.num_nodes - 1,
            "restartPolicy": "OnFailure",
            "template": _pod_template(job, settings, accelerator, image, labels),
        }
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": metadata_,
        "spec": {
            "nprocPerNode": str(job.devices),
            "runPolicy": {"cleanPodPolicy": "None", "backoffLimit": settings.backoff_limit},
            "pytorchReplicaSpecs": replicas,
        },
    }


def to_yaml(manifest: dict[str, Any]) -> str:
    """A manifest as a YAML document, keys in the rendered order.

    Args:
        manifest: what :func:`render_pytorchjob` returned.

    Returns:
        YAML text for ``kubectl apply -f -``.
    """
    return yaml.safe_dump(manifest, sort_keys=False, default_flow_style=False, width=120)
