"""Metrics, tracing, log context and worker liveness. Leaves: import only core, conf and models."""
