"""One pydantic model per kind: the single source of truth for the CRDs (see shoal.crdgen)."""

from typing import Any


def kinds() -> list[dict[str, Any]]:
    from shoal.api import claim, pool, scaler, session

    return [pool.KIND, scaler.KIND, session.KIND, claim.KIND]
