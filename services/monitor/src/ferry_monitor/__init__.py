"""Ferry monitor service: Monitoring: OTLP traces, latency percentiles, SLOs, drift, feedback loop."""
