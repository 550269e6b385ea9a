"""WorkerScaler watches; polling itself is a delayed re-add in the work queue, not a timer per object."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from shoal.runtime import operator

KIND = "WorkerScaler"


@kopf.on.event("shoal.dev", "v1alpha1", "workerscalers")
async def scaler_event(type: str | None, event: Mapping[str, Any], **_: Any) -> None:
    operator.get().notify(KIND, type, event["object"])
