"""Each service that skips Alembic when its database is at ``HEAD_REVISION`` names the real head.

A stale constant is silent data loss of a migration: a database created before the newest
migration matches the old constant, is never upgraded, and the service fails on a missing
column (this happened to train's ``0002_package_versions``).
"""

from __future__ import annotations

import importlib
import pathlib

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory

MODULES = ["ferry_train.store.database", "ferry_serve.store.database", "ferry_monitor.store.database"]


@pytest.mark.parametrize("module_name", MODULES)
def test_head_revision_is_the_newest_migration(module_name: str) -> None:
    module = importlib.import_module(module_name)
    migrations = pathlib.Path(module.__file__).resolve().parent.parent / "migrations"
    config = Config()
    config.set_main_option("script_location", str(migrations))
    heads = ScriptDirectory.from_config(config).get_heads()
    assert heads == [module.HEAD_REVISION], f"{module_name}.HEAD_REVISION is {module.HEAD_REVISION!r}, heads {heads}"
