"""Ferry registry service: model versions, aliases with compare-and-set, audit history, rollback, lineage, watch."""
