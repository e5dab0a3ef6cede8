"""Find the Triton server inside the ``nvidia-pytriton`` wheel and prepare what it needs to run.

The wheel ships Triton 2.51 (DESIGN.md "Running the bundled Triton"):

    <site-packages>/pytriton/tritonserver/bin/tritonserver
    <site-packages>/pytriton/tritonserver/backends/python/{libtriton_python.so, triton_python_backend_utils.py}
    <site-packages>/pytriton/tritonserver/python_backend_stubs/<X.Y>/triton_python_backend_stub
    <site-packages>/pytriton/tritonserver/caches/
    <site-packages>/nvidia_pytriton.libs/       (libtritonserver and friends)

Triton wants one backends directory holding ``python/`` with the backend library, the utils
module and the stub for the Python that runs ``model.py``. The wheel keeps one stub per Python
version elsewhere, so :func:`prepare_backends` assembles that directory under Ferry's state dir.
The copied files lose their relative RPATH, hence :func:`triton_environment`.
"""

from __future__ import annotations

import filecmp
import importlib.util
import os
import shutil
import sys
import sysconfig
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ferry_common.errors import FailedPrecondition

__all__ = ["TritonInstallation", "locate_triton", "prepare_backends", "triton_environment"]

_WHEEL = "nvidia-pytriton"
_BACKEND_FILES = ("libtriton_python.so", "triton_python_backend_utils.py")
_STUB = "triton_python_backend_stub"


@dataclass(frozen=True)
class TritonInstallation:
    """The pieces of the wheel that running Triton needs.

    Attributes:
        binary: the ``tritonserver`` executable.
        libs: ``nvidia_pytriton.libs``, the shared libraries the binary and the stub load.
        python_backend: directory holding ``libtriton_python.so`` and ``triton_python_backend_utils.py``.
        stub: ``triton_python_backend_stub`` built for ``python_version``.
        caches: the wheel's cache-implementation directory (``--cache-directory``).
        python_version: ``"3.11"``: the Python the stub embeds; ``model.py`` runs under it.
        python_bin: the directory of the interpreter whose packages ``model.py`` imports
            (the venv's ``bin``; the stub finds its prefix through ``python3`` on ``PATH``).
        python_libdir: that interpreter's ``sysconfig`` ``LIBDIR`` (where its ``libpython`` is).
    """

    binary: Path
    libs: Path
    python_backend: Path
    stub: Path
    caches: Path
    python_version: str
    python_bin: Path
    python_libdir: Path


def locate_triton(site_packages: Path | None = None) -> TritonInstallation:
    """Finds the bundled Triton for the running interpreter.

    Args:
        site_packages: the directory holding ``pytriton/`` and ``nvidia_pytriton.libs/``;
            default: wherever the ``pytriton`` package is installed.

    Returns:
        The paths, all checked to exist.

    Raises:
        FailedPrecondition: the wheel is not installed, is incomplete, or has no stub for
            this Python version.
    """
    if site_packages is None:
        spec = importlib.util.find_spec("pytriton")
        if spec is None or spec.origin is None:
            raise FailedPrecondition(
                f"the embedded Triton needs the {_WHEEL} wheel, which is not installed in {sys.prefix} "
                f"(pip install -c constraints.txt {_WHEEL}), or set FERRY_SERVE_TRITON_URL to an external Triton"
            )
        site_packages = Path(spec.origin).parent.parent
    root = site_packages / "pytriton" / "tritonserver"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    install = TritonInstallation(
        binary=root / "bin" / "tritonserver",
        libs=site_packages / "nvidia_pytriton.libs",
        python_backend=root / "backends" / "python",
        stub=root / "python_backend_stubs" / version / _STUB,
        caches=root / "caches",
        python_version=version,
        python_bin=Path(sys.executable).parent,
        python_libdir=Path(str(sysconfig.get_config_var("LIBDIR"))),
    )
    required = [
        install.binary,
        install.libs,
        install.caches,
        install.stub,
        *(install.python_backend / name for name in _BACKEND_FILES),
    ]
    missing = [str(path) for path in required if not path.exists()]
    if not install.stub.exists() and install.binary.exists():
        raise FailedPrecondition(
            f"the {_WHEEL} wheel under {site_packages} has no Python backend stub for Python {version} "
            f"(missing {install.stub})"
        )
    if missing:
        raise FailedPrecondition(
            f"the {_WHEEL} wheel under {site_packages} is incomplete: missing {', '.join(missing)}"
        )
    if not os.access(install.binary, os.X_OK):
        raise FailedPrecondition(f"{install.binary} is not executable")
    return install


def prepare_backends(install: TritonInstallation, state_dir: Path) -> Path:
    """Assembles Triton's backends directory under ``state_dir`` (``<state_dir>/backends``).

    Files are copied only when missing or different, so a restart reuses them. Copies, not
    symlinks: the stub is executed and must be a regular executable file in ``python/``.

    Returns:
        The directory to pass as ``--backend-directory``.
    """
    backends = state_dir / "backends"
    python = backends / "python"
    python.mkdir(parents=True, exist_ok=True)
    sources = [install.python_backend / name for name in _BACKEND_FILES] + [install.stub]
    for source in sources:
        target = python / source.name
        if target.exists() and filecmp.cmp(source, target, shallow=False):
            continue
        staging = python / f".{source.name}.tmp"
        shutil.copy2(source, staging)
        os.replace(staging, target)  # never a half-copied stub, even if two servers share a state dir
    return backends


def triton_environment(install: TritonInstallation, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for ``tritonserver`` and its Python backend stubs.

    ``LD_LIBRARY_PATH`` starts with the interpreter's ``LIBDIR`` (without it the stub picks
    the system's ``libpython`` and fails with ``RLock ... _recursion_count``), then the wheel's
    libraries; ``PATH`` starts with the venv's ``bin`` so the stub's ``python3`` is ours and
    ``model.py`` imports our numpy and onnxruntime.

    Args:
        install: from :func:`locate_triton`.
        base: the environment to extend (default ``os.environ``).
    """
    environ = dict(os.environ if base is None else base)
    library_path = [str(install.python_libdir), str(install.libs)]
    if environ.get("LD_LIBRARY_PATH"):
        library_path.append(environ["LD_LIBRARY_PATH"])
    environ["LD_LIBRARY_PATH"] = os.pathsep.join(library_path)
    path = [str(install.python_bin)]
    if environ.get("PATH"):
        path.append(environ["PATH"])
    environ["PATH"] = os.pathsep.join(path)
    # A VIRTUAL_ENV/PYTHONHOME from the caller must not point the stub at another prefix.
    environ.pop("PYTHONHOME", None)
    return environ
