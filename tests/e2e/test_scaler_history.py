"""A predictive scaler's demand history outlives the operator: learned from the test bed's Prometheus,
written to the ConfigMap the scaler owns, read back by the next process, which forecasts the seasonal
pattern from its first evaluation instead of starting from nothing.

The season here is one minute, not a day (a test cannot wait two days); the grid, the persistence
and the restore are the same code as for a daily season (tests/unit/test_persist.py runs a week of
a daily pattern through them)."""

from __future__ import annotations

import json
import statistics
import threading
import time
from typing import Any

from shoal.k8s.client import Kube
from shoal.k8s.paths import custom_path
from shoal.scaling.persist import KEY
from tests.e2e.conftest import Exporter, OperatorProcess, scaler_manifest
from tests.e2e.util import apply, create_deployment, scaler, wait_until

PERIOD = 60.0
HORIZON = 15.0


def pattern(t: float) -> float:
    """Queue depth: 80 in the first half of every minute, 20 in the second (8 or 2 replicas' worth)."""
    return 80.0 if (t % PERIOD) < PERIOD / 2 else 20.0


def test_a_seasonal_forecast_learned_before_a_restart_is_there_after_it(
    kube: Kube, namespace: str, exporter: Exporter, running_operator: OperatorProcess
) -> None:
    stop = threading.Event()

    def feed() -> None:
        while not stop.is_set():
            exporter.set(pattern(time.time()))
            stop.wait(0.2)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        create_deployment(kube, namespace, "seasonal", 2)
        apply(
            scaler_manifest(
                "seasonal",
                {"apiVersion": "apps/v1", "kind": "Deployment", "name": "seasonal"},
                [{"type": "Prometheus", "prometheus": {"query": exporter.query, "targetPerReplica": 10}}],
                pollIntervalSeconds=1,
                predictive={
                    "enabled": True,
                    "horizonSeconds": int(HORIZON),
                    "seasonalityPeriodSeconds": int(PERIOD),
                    "historySeconds": 300,
                },
            ),
            namespace,
        )
        path = f"/api/v1/namespaces/{namespace}/configmaps/seasonal-history"

        def saved_two_seasons() -> dict[str, Any]:
            cm = kube.get_if_exists(path)
            if cm is None:
                return {}
            stored = json.loads(cm["data"][KEY])
            return stored if len(stored["values"].split(",")) >= 2 * PERIOD + 10 else {}

        stored = wait_until(saved_two_seasons, 240, "two seasons of history in the scaler's ConfigMap")
        cm = kube.get(path)
        owner = scaler(kube, namespace, "seasonal")["metadata"]["uid"]
        assert [o["uid"] for o in cm["metadata"]["ownerReferences"]] == [owner]
        assert len(cm["data"][KEY]) <= 100 * 1024 and stored["step"] == 1.0
        before = scaler(kube, namespace, "seasonal")["status"]["forecast"]
        assert before["model"] == "HoltWinters", before
        # The gate's record reaches status through the CRD's schema (nothing of it pruned): two minutes
        # of a pattern that repeats, forecast HORIZON ahead, beat "demand stays as it is".
        assert before["seasonSource"] == "Configured" and before["seasonSeconds"] == PERIOD, before
        assert before["gate"] in ("Trusted", "LessAccurateThanReactive"), before
        assert before["errorRatio"] is not None, before

        running_operator.kill()  # no goodbye: whatever was saved is what the next process gets
        # Whatever forecast is in status from now on is the new process's.
        kube.merge_patch(
            custom_path("workerscalers", namespace, "seasonal", "status"), {"status": {"forecast": None}}
        )
        restarted_at = time.time()
        running_operator.start()

        def forecast_after_restart() -> dict[str, Any]:
            st = scaler(kube, namespace, "seasonal").get("status") or {}
            f = st.get("forecast") or {}
            return f if f.get("samples") else {}

        # The first forecasts of the new process come from the restored history: a Holt-Winters fit
        # on more than two seasons of points, not a fresh Holt fit on a handful.
        seen: list[tuple[float, dict[str, Any]]] = []
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            f = forecast_after_restart()
            if f and f.get("samples", 0) >= 2 * PERIOD and (not seen or seen[-1][1] != f):
                seen.append((time.time(), f))
            time.sleep(0.5)
        assert seen, "no forecast after the restart"
        first = seen[0][1]
        assert first["model"] == "HoltWinters" and first["samples"] >= 2 * PERIOD, first
        assert seen[0][0] - restarted_at < 15, "the first forecast came late"
        # They follow the pattern HORIZON seconds ahead: the low and the high half both forecast.
        errors = [abs(f["demand"] - pattern(t + f["horizonSeconds"]) / 10) for t, f in seen]
        demands = [f["demand"] for _, f in seen]
        assert statistics.median(errors) < 2.0, list(zip(errors, demands, strict=True))
        assert max(demands) - min(demands) >= 3.0, demands
    finally:
        stop.set()
        feeder.join(5)
