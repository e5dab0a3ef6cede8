"""The example notebook (``examples/lifecycle.ipynb``) executes top to bottom against a real stack.

The five services run as processes on free ports with their state under ``tmp_path``
(started here, so this process reaps them); the notebook's own ``stack.start_all()`` finds
them serving and leaves them. The notebook runs in a real Jupyter kernel through nbclient,
as a user's Jupyter would run it: kernel ``python3`` as resolved by this environment's
Jupyter paths, which must be the venv's ipykernel (the kernel inherits this process's
``FERRY_*`` variables).
"""

from __future__ import annotations

import os
import pathlib
import sys
from collections.abc import Iterator

import nbclient
import nbformat
import pytest
from jupyter_client import kernelspec

from ferry_sdk import stack
from ferry_sdk.spawn import free_port

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("lifecycle")]

NOTEBOOK = pathlib.Path(__file__).resolve().parents[1] / "examples" / "lifecycle.ipynb"


@pytest.fixture
def local_stack(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    monkeypatch.setenv("FERRY_STATE_DIR", str(tmp_path / "state"))
    for service in stack.SERVICES:
        monkeypatch.setenv(f"FERRY_{service.upper()}_ADDRESS", f"127.0.0.1:{free_port()}")
    monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)  # the notebook reads latency from monitor
    monkeypatch.delenv("OTEL_SDK_DISABLED", raising=False)
    try:
        stack.start_all(stack.SERVICES, timeout=120)
        yield stack.addresses()
    finally:
        stack.stop_many(stack.SERVICES)


def _text(cell: dict[str, object]) -> str:
    parts = []
    for output in cell.get("outputs", []):  # type: ignore[attr-defined]
        parts.append(output.get("text", ""))
        parts.append(output.get("data", {}).get("text/plain", ""))
    return "".join(parts)


def test_the_kernel_is_this_environments_python() -> None:
    spec = kernelspec.KernelSpecManager().get_kernel_spec("python3")
    # The venv's ipykernel spec (share/jupyter/kernels/python3 under the venv: Jupyter prefers
    # the environment's paths over the user's inside a venv), or ipykernel's built-in one; its
    # argv[0] "python" is replaced by jupyter_client with sys.executable, this venv's python.
    resource_dir = pathlib.Path(spec.resource_dir).resolve()
    assert resource_dir.is_relative_to(pathlib.Path(sys.prefix).resolve()), spec.resource_dir
    assert spec.argv[0] in ("python", "python3", sys.executable), spec.argv


@pytest.mark.timeout(600)
def test_the_example_notebook_runs_against_a_real_stack(local_stack: dict[str, str]) -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        kernel_name="python3",
        timeout=300,
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    client.execute()  # raises CellExecutionError naming the cell on any failure

    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    setup = _text(code[0])
    for service, address in local_stack.items():
        assert f"ferry-{service}" in setup and address in setup, setup
    assert f"python: {sys.executable}" in setup, (setup, os.environ.get("JUPYTER_PATH"))
    everything = "\n".join(_text(cell) for cell in code)
    for expected in (
        "datasets/wine/versions/1 178 rows",
        "datasets/wine-clean/versions/1 from datasets/wine/versions/1",
        "trainingJobs/wine-notebook -> models/wine/versions/1",
        "lineage: trainingJobs/wine-notebook on datasets/wine-clean/versions/1 (split 'train')",
        "models/wine/aliases/production -> 1",
        "deployments/wine serving version 1",
        "probability_0",
        "accuracy on the test split:",
        "models/wine/versions/1: accuracy",
        "ModelInfer on deployment wine:",
    ):
        assert expected in everything, f"{expected!r} not in the notebook's outputs:\n{everything[-4000:]}"
    accuracy = float(everything.split("accuracy on the test split: ")[1].split()[0])
    assert accuracy > 0.8
    reported = everything.split("models/wine/versions/1: accuracy ")[1].split()
    assert abs(float(reported[0]) - accuracy) < 1e-3  # monitor's accuracy from feedback = the DataFrame's
    test_rows = int(everything.split("'test': ")[1].split("}")[0])  # the recipe cell prints the splits
    assert int(reported[2]) == test_rows  # "0.963 over 26 labeled rows"
