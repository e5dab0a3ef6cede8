"""The package versions a job trained with: recorded on the job and the registered version."""

from __future__ import annotations

from importlib import metadata

__all__ = ["RECORDED_PACKAGES", "package_versions"]

RECORDED_PACKAGES = ("torch", "pytorch-lightning", "scikit-learn", "onnx", "onnxruntime", "skl2onnx")
"""Distributions whose versions decide a run's numbers (``unknown`` when absent)."""


def package_versions() -> dict[str, str]:
    """``{distribution: version}`` for :data:`RECORDED_PACKAGES` in this interpreter."""
    versions: dict[str, str] = {}
    for package in RECORDED_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "unknown"
    return versions
