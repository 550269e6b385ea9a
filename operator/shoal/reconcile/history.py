"""Where a predictive scaler's demand history lives between operator processes: a ConfigMap it owns
(garbage-collected with it), written every few minutes, read when a process first meets the scaler
(a restart, or a new leader). The format and its bounds are scaling/persist.py's."""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from shoal.builders import controller_ref
from shoal.k8s.client import ApiError, Kube
from shoal.k8s.paths import kind_path
from shoal.scaling.forecast import Fit, grid_step
from shoal.scaling.persist import KEY, decode, encode
from shoal.scaling.types import EngineConfig
from shoal.vocab import LABEL_SCALER_HISTORY

log = logging.getLogger("shoal.scaler")


def save_every(poll: float) -> float:
    """Seconds between writes: ten polls, at least 30 s; a crash loses at most that much history."""
    return max(30.0, 10 * poll)


def name_for(scaler: str) -> str:
    name = f"{scaler}-history"
    if len(name) <= 253:
        return name
    return f"{scaler[:230]}-{hashlib.sha256(scaler.encode()).hexdigest()[:8]}-history"


def _path(namespace: str, name: str = "") -> str:
    return kind_path("ConfigMap", namespace, name or None)


class HistoryStore:
    def __init__(self, kube: Kube) -> None:
        self.kube = kube

    def load(self, obj: dict[str, Any], cfg: EngineConfig, wall: float) -> Fit | None:
        """The history saved for this scaler (its uid must match: not a same-named predecessor's)."""
        meta = obj["metadata"]
        try:
            cm = self.kube.get_if_exists(_path(meta["namespace"], name_for(meta["name"])))
        except ApiError as exc:
            log.warning("reading the history of %s/%s: %s", meta["namespace"], meta["name"], exc.message)
            return None
        if cm is None:
            return None
        owners = [o.get("uid") for o in cm["metadata"].get("ownerReferences") or []]
        if meta["uid"] not in owners:
            return None
        step = grid_step(cfg.poll, cfg.season)
        return decode((cm.get("data") or {}).get(KEY, ""), step, cfg.season, cfg.history_seconds, wall)

    def save(self, obj: dict[str, Any], fit: Fit) -> bool:
        meta = obj["metadata"]
        name = name_for(meta["name"])
        data = {KEY: encode(fit)}
        try:
            try:
                self.kube.merge_patch(_path(meta["namespace"], name), {"data": data})
            except ApiError as exc:
                if not exc.not_found:
                    raise
                self.kube.create(
                    _path(meta["namespace"]),
                    {
                        "metadata": {
                            "name": name,
                            "labels": {LABEL_SCALER_HISTORY: meta["name"][:63]},
                            "ownerReferences": [controller_ref("WorkerScaler", meta["name"], meta["uid"])],
                        },
                        "data": data,
                    },
                )
        except ApiError as exc:
            log.warning("saving the history of %s/%s: %s", meta["namespace"], name, exc.message)
            return False
        return True
