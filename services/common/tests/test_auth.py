"""Bearer tokens with roles, TLS and mTLS, through a real server and socket."""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import pathlib
from typing import Any

import grpc
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ferry.registry.v1 import registry_pb2, registry_pb2_grpc
from ferry_common.testing import ServiceThread, test_settings

TOKENS = {"viewer": "v-secret", "editor": "e-secret", "admin": "a-secret"}


def write_tokens(path: pathlib.Path) -> pathlib.Path:
    entries = [
        {"identity": f"{role}-bot", "role": role, "sha256": hashlib.sha256(token.encode()).hexdigest()}
        for role, token in TOKENS.items()
    ]
    path.write_text(yaml.safe_dump({"tokens": entries}))
    return path


def bearer(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


@pytest.fixture(scope="module")
def auth_stub(tmp_path_factory: pytest.TempPathFactory, probe_build: Any) -> Any:
    path = tmp_path_factory.mktemp("auth")
    settings = test_settings("registry", path, {"FERRY_AUTH_TOKENS_FILE": str(write_tokens(path / "tokens.yaml"))})
    with ServiceThread(settings, probe_build) as service:
        channel = service.channel()
        yield registry_pb2_grpc.RegistryServiceStub(channel), channel


def code_of(call: Any) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as raised:
        call()
    return raised.value.code()  # type: ignore[no-any-return]


def test_no_token_is_unauthenticated(auth_stub: Any) -> None:
    stub, _ = auth_stub
    assert (
        code_of(lambda: stub.GetModel(registry_pb2.GetModelRequest(name="models/a"))) == grpc.StatusCode.UNAUTHENTICATED
    )


def test_wrong_token_is_unauthenticated(auth_stub: Any) -> None:
    stub, _ = auth_stub
    call = lambda: stub.GetModel(registry_pb2.GetModelRequest(name="models/a"), metadata=bearer("guess"))
    assert code_of(call) == grpc.StatusCode.UNAUTHENTICATED


def test_malformed_header_is_unauthenticated(auth_stub: Any) -> None:
    stub, _ = auth_stub
    call = lambda: stub.GetModel(
        registry_pb2.GetModelRequest(name="models/a"), metadata=(("authorization", "Basic abc"),)
    )
    assert code_of(call) == grpc.StatusCode.UNAUTHENTICATED


def test_viewer_reads_but_cannot_write(auth_stub: Any) -> None:
    stub, _ = auth_stub
    model = stub.GetModel(registry_pb2.GetModelRequest(name="models/a"), metadata=bearer(TOKENS["viewer"]))
    assert model.description == "viewer-bot"  # the servicer sees the caller's identity
    call = lambda: stub.CreateModel(registry_pb2.CreateModelRequest(model_id="b"), metadata=bearer(TOKENS["viewer"]))
    assert code_of(call) == grpc.StatusCode.PERMISSION_DENIED


def test_editor_writes_but_only_admin_deletes(auth_stub: Any) -> None:
    stub, _ = auth_stub
    created = stub.CreateModel(registry_pb2.CreateModelRequest(model_id="b"), metadata=bearer(TOKENS["editor"]))
    assert created.description == "editor-bot"
    delete = registry_pb2.DeleteModelRequest(name="models/b")
    assert (
        code_of(lambda: stub.DeleteModel(delete, metadata=bearer(TOKENS["editor"])))
        == grpc.StatusCode.PERMISSION_DENIED
    )
    stub.DeleteModel(delete, metadata=bearer(TOKENS["admin"]))


def test_streaming_rpc_is_checked_too(auth_stub: Any) -> None:
    stub, _ = auth_stub
    assert (
        code_of(lambda: list(stub.WatchAliases(registry_pb2.WatchAliasesRequest()))) == grpc.StatusCode.UNAUTHENTICATED
    )
    events = list(stub.WatchAliases(registry_pb2.WatchAliasesRequest(), metadata=bearer(TOKENS["viewer"])))
    assert len(events) == 3


def test_health_needs_no_token(auth_stub: Any) -> None:
    _, channel = auth_stub
    response = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    assert response.status == health_pb2.HealthCheckResponse.SERVING


# --- TLS -------------------------------------------------------------------------------


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _cert(
    subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Certificate | None, issuer_key: Any, *, ca: bool
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pathlib.Path]:
    """A self-signed CA with a server and a client certificate."""
    root = tmp_path_factory.mktemp("pki")
    ca_key = _key()
    ca = _cert("ferry-test-ca", ca_key, None, ca_key, ca=True)
    files: dict[str, pathlib.Path] = {}
    for name in ("server", "client"):
        key = _key()
        cert = _cert(f"ferry-{name}", key, ca, ca_key, ca=False)
        files[f"{name}_key"] = root / f"{name}.key"
        files[f"{name}_key"].write_bytes(_pem_key(key))
        files[f"{name}_cert"] = root / f"{name}.pem"
        files[f"{name}_cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files["ca"] = root / "ca.pem"
    files["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return files


def _health(channel: grpc.Channel) -> int:
    return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5).status  # type: ignore[no-any-return]


def test_tls_handshake_with_self_signed_certificate(
    tmp_path: pathlib.Path, pki: dict[str, pathlib.Path], probe_build: Any
) -> None:
    env = {"FERRY_TLS_CERT_FILE": str(pki["server_cert"]), "FERRY_TLS_KEY_FILE": str(pki["server_key"])}
    with ServiceThread(test_settings("registry", tmp_path, env), probe_build) as service:
        trusted = grpc.ssl_channel_credentials(pki["ca"].read_bytes())
        assert _health(service.channel(trusted)) == health_pb2.HealthCheckResponse.SERVING
        stub = registry_pb2_grpc.RegistryServiceStub(service.channel(trusted))
        assert stub.GetModel(registry_pb2.GetModelRequest(name="models/tls")).name == "models/tls"
        # A plaintext client cannot talk to a TLS server.
        assert code_of(lambda: _health(service.channel())) == grpc.StatusCode.UNAVAILABLE
        # A client that does not trust the CA refuses the server.
        other_key = _key()
        other_ca = _cert("some-other-ca", other_key, None, other_key, ca=True)
        untrusting = grpc.ssl_channel_credentials(other_ca.public_bytes(serialization.Encoding.PEM))
        assert code_of(lambda: _health(service.channel(untrusting))) == grpc.StatusCode.UNAVAILABLE


def test_mtls_requires_a_client_certificate(
    tmp_path: pathlib.Path, pki: dict[str, pathlib.Path], probe_build: Any
) -> None:
    env = {
        "FERRY_TLS_CERT_FILE": str(pki["server_cert"]),
        "FERRY_TLS_KEY_FILE": str(pki["server_key"]),
        "FERRY_TLS_CLIENT_CA_FILE": str(pki["ca"]),
    }
    with ServiceThread(test_settings("registry", tmp_path, env), probe_build) as service:
        no_cert = grpc.ssl_channel_credentials(pki["ca"].read_bytes())
        assert code_of(lambda: _health(service.channel(no_cert))) == grpc.StatusCode.UNAVAILABLE
        with_cert = grpc.ssl_channel_credentials(
            pki["ca"].read_bytes(), pki["client_key"].read_bytes(), pki["client_cert"].read_bytes()
        )
        assert _health(service.channel(with_cert)) == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("tokens: [", "not valid YAML"),
        ("tokens: {a: 1}", "expected a top-level 'tokens' list"),
        ("tokens:\n  - identity: ci\n    role: owner\n    sha256: abc\n", "tokens[0] needs identity, role"),
        ("tokens:\n  - just-a-string\n", "tokens[0] is not a mapping"),
        (None, "does not exist"),
    ],
)
def test_a_malformed_tokens_file_stops_the_service_with_a_configuration_error(
    tmp_path: pathlib.Path, content: str | None, problem: str
) -> None:
    import os
    import subprocess
    import sys

    from ferry_common.pytest_plugin import free_port

    tokens = tmp_path / "tokens.yaml"
    if content is not None:
        tokens.write_text(content)
    env = {
        **os.environ,
        "FERRY_AUTH_TOKENS_FILE": str(tokens),
        "FERRY_STATE_DIR": str(tmp_path),
        "FERRY_REGISTRY_ADDRESS": f"127.0.0.1:{free_port()}",
        "OTEL_TRACES_EXPORTER": "none",
    }
    exe = pathlib.Path(sys.executable).parent / "ferry-registry"
    result = subprocess.run([str(exe)], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "FERRY_AUTH_TOKENS_FILE" in result.stderr and str(tokens) in result.stderr and problem in result.stderr
    assert "Traceback" not in result.stderr
