"""Thin kopf adapters: watch events only enqueue keys for the runtime's workers."""

from shoal.handlers import lifecycle, pool, scaler, session

__all__ = ["lifecycle", "pool", "scaler", "session"]
