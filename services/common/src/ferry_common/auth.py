"""Bearer-token authentication with roles viewer < editor < admin.

Off unless ``FERRY_AUTH_TOKENS_FILE`` is set. The file is YAML::

    tokens:
      - identity: alice          # becomes the `actor` in audit records
        role: editor             # viewer | editor | admin
        sha256: 5e884898da28...  # sha256 hex of the token; the token itself is never stored

Methods need a role by name: reads (Get*, List*, Resolve*, Watch*, Download*, Read*,
and the inference data plane) need viewer, Delete* need admin, everything else
editor. Health and reflection need nothing, so probes work.
"""

from __future__ import annotations

import contextvars
import hashlib
import hmac
import pathlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import yaml

from ferry_common.errors import PermissionDenied, Unauthenticated
from ferry_common.settings import SettingsError

__all__ = [
    "ANONYMOUS",
    "ROLES",
    "Principal",
    "TokenTable",
    "current_actor",
    "current_principal",
    "required_role",
]

_SHA256 = re.compile(r"[0-9a-f]{64}")

ROLES: Mapping[str, int] = {"viewer": 1, "editor": 2, "admin": 3}
ANONYMOUS = "anonymous"
_READ_PREFIXES = ("Get", "List", "Resolve", "Watch", "Download", "Read")
# Triton's data plane (inference.GRPCInferenceService): reads and inference.
_DATA_PLANE_METHODS = frozenset(
    {
        "ServerLive",
        "ServerReady",
        "ServerMetadata",
        "ModelReady",
        "ModelMetadata",
        "ModelConfig",
        "ModelStatistics",
        "ModelInfer",
        "ModelStreamInfer",
    }
)
_EXEMPT_SERVICES = (
    "grpc.health.v1.Health",
    "grpc.reflection.v1alpha.ServerReflection",
    "grpc.reflection.v1.ServerReflection",
)


@dataclass(frozen=True)
class Principal:
    """An authenticated caller."""

    identity: str
    role: str


current_principal: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("ferry_principal", default=None)


def current_actor() -> str:
    """The identity of the caller of the RPC being handled, or ``anonymous``."""
    principal = current_principal.get()
    return principal.identity if principal else ANONYMOUS


def is_exempt(method: str) -> bool:
    service = method.lstrip("/").split("/", 1)[0]
    return service in _EXEMPT_SERVICES


def required_role(method: str) -> str:
    """The least role allowed to call ``/package.Service/Method``."""
    name = method.rsplit("/", 1)[-1]
    if name in _DATA_PLANE_METHODS or name.startswith(_READ_PREFIXES):
        return "viewer"
    if name.startswith("Delete"):
        return "admin"
    return "editor"


class TokenTable:
    """Known tokens (by sha256) and their principals."""

    def __init__(self, principals: Mapping[str, Principal]) -> None:
        self._by_digest = dict(principals)

    @classmethod
    def from_file(cls, path: pathlib.Path) -> TokenTable:
        """Load a tokens file.

        Raises:
            SettingsError: the file cannot be read or is malformed; the message names
                ``FERRY_AUTH_TOKENS_FILE``, the file and the problem (the service then
                stops with a configuration error instead of a traceback).
        """
        where = f"FERRY_AUTH_TOKENS_FILE {str(path)!r}"
        try:
            document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except OSError as exc:
            raise SettingsError(f"{where}: cannot be read ({exc.strerror or exc})") from None
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise SettingsError(f"{where}: not valid YAML ({exc})") from None
        entries = document.get("tokens") if isinstance(document, dict) else None
        if not isinstance(entries, list):
            raise SettingsError(f"{where}: expected a top-level 'tokens' list")
        principals: dict[str, Principal] = {}
        for index, entry in enumerate(entries):
            if not isinstance(entry, dict):
                raise SettingsError(f"{where}: tokens[{index}] is not a mapping")
            identity, role, digest = entry.get("identity"), entry.get("role"), str(entry.get("sha256", "")).lower()
            if not identity or role not in ROLES or not _SHA256.fullmatch(digest):
                raise SettingsError(
                    f"{where}: tokens[{index}] needs identity, role ({', '.join(ROLES)}) and a 64-digit hex sha256"
                )
            if digest in principals:
                raise SettingsError(f"{where}: tokens[{index}] repeats the sha256 of another token")
            principals[digest] = Principal(identity=str(identity), role=str(role))
        return cls(principals)

    def authenticate(self, metadata: Sequence[tuple[str, str | bytes]] | None) -> Principal:
        """The principal of a request's ``authorization: Bearer <token>`` header."""
        header = next((value for key, value in metadata or () if key == "authorization"), None)
        if header is None:
            raise Unauthenticated("missing authorization metadata (expected 'authorization: Bearer <token>')")
        text = header.decode() if isinstance(header, bytes) else header
        scheme, _, token = text.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthenticated("authorization metadata is not of the form 'Bearer <token>'")
        digest = hashlib.sha256(token.strip().encode()).hexdigest()
        for known, principal in self._by_digest.items():
            if hmac.compare_digest(known, digest):
                return principal
        raise Unauthenticated("unknown bearer token")

    def authorize(self, principal: Principal, method: str) -> None:
        needed = required_role(method)
        if ROLES[principal.role] < ROLES[needed]:
            raise PermissionDenied(f"{principal.identity!r} has role {principal.role!r}; {method} needs {needed!r}")
