"""Where a pod's time goes, as a watch in the benchmark sees it: from its owner's create call to the
pod's first appearance (the controller saw the owner and created it), to its node (the scheduler), to
Ready (the kubelet, KWOK here). The same watch for every controller, so its own lag is on both sides."""

from __future__ import annotations

import statistics
import threading
import time
from typing import Any

from bench.stats import quantiles
from shoal.k8s.client import Kube
from shoal.k8s.paths import pods_path
from shoal.k8s.watch import Event, Reflector

STAGES = (
    ("created", "owner's create call -> the pod exists (the controller's reaction and its create)"),
    ("scheduled", "-> bound to a node (the scheduler)"),
    ("ready", "-> Ready (the kubelet: KWOK)"),
)


class PodTimes:
    def __init__(self, kube: Kube, namespace: str, owner_label: str = "app") -> None:
        self.owner_label = owner_label
        self.owner: dict[str, str] = {}
        self.at: dict[str, dict[str, float]] = {stage: {} for stage, _ in STAGES}
        self._lock = threading.Lock()
        self.reflector = Reflector(kube, pods_path(namespace), owner_label, self._deliver)

    def __enter__(self) -> PodTimes:
        self.reflector.start()
        if not self.reflector.synced.wait(30):
            raise TimeoutError("the benchmark's pod watch did not list in 30 s")
        return self

    def __exit__(self, *_: Any) -> None:
        self.reflector.stop()

    def _deliver(self, batch: list[Event]) -> None:
        now = time.time()
        with self._lock:
            for kind, pod in batch:
                if kind == "DELETED":
                    continue
                meta, spec, status = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
                name = meta["name"]
                self.owner.setdefault(name, (meta.get("labels") or {}).get(self.owner_label, ""))
                self.at["created"].setdefault(name, now)
                if spec.get("nodeName"):
                    self.at["scheduled"].setdefault(name, now)
                if any(
                    c.get("type") == "Ready" and c.get("status") == "True"
                    for c in status.get("conditions") or []
                ):
                    self.at["ready"].setdefault(name, now)

    def stages(self, created: dict[str, float]) -> dict[str, dict[str, float]]:
        """Each stage's p50 and p90 over the pods, in seconds from the stage before it."""
        with self._lock:
            spans: dict[str, list[float]] = {stage: [] for stage, _ in STAGES}
            for pod, owner in self.owner.items():
                before = created.get(owner)
                for stage, _ in STAGES:
                    t = self.at[stage].get(pod)
                    if before is None or t is None:
                        break
                    spans[stage].append(max(0.0, t - before))
                    before = t
        out = {}
        for stage, values in spans.items():
            q = quantiles(values)
            out[stage] = {"p50": q.get("p50", 0.0), "p90": q.get("p90", 0.0)}
        return out


def median_stages(runs: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per stage, the median over runs of each run's p50 and p90."""
    have = [r["stages"] for r in runs if r.get("stages")]
    return {
        stage: {p: round(statistics.median(s[stage][p] for s in have), 3) for p in ("p50", "p90")}
        for stage, _ in STAGES
        if have
    }


def table(rows: dict[str, dict[str, dict[str, float]]], status: dict[str, float]) -> list[str]:
    """`rows`: column name -> median stages; `status`: column -> seconds from the last pod Ready to
    every status saying so."""
    cols = list(rows)
    lines = [
        "| stage | " + " | ".join(cols) + " |",
        "|---|" + "---|" * len(cols),
    ]
    for stage, says in STAGES:
        cells = [
            f"{rows[c][stage]['p50']} / {rows[c][stage]['p90']}" if stage in rows[c] else "-" for c in cols
        ]
        lines.append(f"| {stage}: {says} | " + " | ".join(cells) + " |")
    lines.append(
        "| status: the last pod Ready -> every status says so | "
        + " | ".join(str(status.get(c, "-")) for c in cols)
        + " |"
    )
    return lines
