"""The WorkerScaler decision engine: pure functions, no kopf, no kubernetes imports, no clock."""
