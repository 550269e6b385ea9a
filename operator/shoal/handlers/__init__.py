"""Thin kopf adapters: watch events only enqueue keys for the runtime's workers."""

from shoal.handlers import claim, lifecycle, pods, pool, scaler, session

__all__ = ["claim", "lifecycle", "pods", "pool", "scaler", "session"]
