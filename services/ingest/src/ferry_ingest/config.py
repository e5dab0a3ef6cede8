"""Ingest's own settings: the ``FERRY_INGEST_*`` variables, read once at start.

Every variable is listed with its default in ``services/ingest/README.md``.
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass

from ferry_common.settings import Settings, SettingsError

__all__ = ["IngestConfig"]

MIB = 1024 * 1024


@dataclass(frozen=True)
class IngestConfig:
    """Tunables of the ingest service.

    Attributes:
        tmp_dir: where uploads are spooled and Parquet is written before upload.
        read_chunk_bytes: size of the ``chunk`` messages ReadDataset sends.
        infer_bytes: how much of a CSV/JSONL source column types are inferred from.
        max_distinct: distinct values tracked exactly per categorical column.
        sql_batch_rows: rows fetched per round trip of a SQL import.
        max_upload_bytes: uploads above this fail with RESOURCE_EXHAUSTED (0: no limit).
        import_file_roots: directories ``file://`` imports may read (empty: any).
        transform_max_rows: rows a deduplicate step or an exact median may hold (RESOURCE_EXHAUSTED above).
    """

    tmp_dir: pathlib.Path
    read_chunk_bytes: int = 1 * MIB
    infer_bytes: int = 8 * MIB
    max_distinct: int = 65_536
    sql_batch_rows: int = 10_000
    max_upload_bytes: int = 0
    import_file_roots: tuple[pathlib.Path, ...] = ()
    transform_max_rows: int = 10_000_000

    @classmethod
    def from_settings(cls, settings: Settings) -> IngestConfig:
        """Read the ``FERRY_INGEST_*`` extras of ``settings``.

        Raises:
            SettingsError: a variable is malformed (the message names it).
        """
        tmp = settings.get_str("FERRY_INGEST_TMP_DIR", "")
        roots_raw = settings.get_str("FERRY_INGEST_IMPORT_FILE_ROOTS", "")
        roots = tuple(pathlib.Path(p).expanduser().resolve() for p in roots_raw.split(":") if p.strip())
        for root in roots:
            if not root.is_dir():
                raise SettingsError(f"FERRY_INGEST_IMPORT_FILE_ROOTS: {str(root)!r} is not a directory")
        return cls(
            tmp_dir=pathlib.Path(tmp).expanduser().resolve() if tmp else settings.state_dir / "tmp" / "ingest",
            read_chunk_bytes=settings.get_int("FERRY_INGEST_READ_CHUNK_BYTES", cls.read_chunk_bytes, minimum=4096),
            infer_bytes=settings.get_int("FERRY_INGEST_INFER_BYTES", cls.infer_bytes, minimum=65536),
            max_distinct=settings.get_int("FERRY_INGEST_PROFILE_MAX_DISTINCT", cls.max_distinct, minimum=100),
            sql_batch_rows=settings.get_int("FERRY_INGEST_SQL_BATCH_ROWS", cls.sql_batch_rows, minimum=1),
            max_upload_bytes=settings.get_int("FERRY_INGEST_MAX_UPLOAD_BYTES", 0, minimum=0),
            import_file_roots=roots,
            transform_max_rows=settings.get_int("FERRY_INGEST_TRANSFORM_MAX_ROWS", cls.transform_max_rows, minimum=1),
        )
