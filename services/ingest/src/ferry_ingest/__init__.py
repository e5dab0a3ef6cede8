"""Ferry ingest service: Dataset ingestion: versioned, profiled datasets in MinIO/S3, SQL imports, recipes."""
