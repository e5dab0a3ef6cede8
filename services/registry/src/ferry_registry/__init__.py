"""Ferry registry service: Model registry: versions, aliases with compare-and-set, audit history, rollback, lineage, watch."""
