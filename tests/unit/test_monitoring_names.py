"""Every series the chart's dashboard and alerts query is one the operator or its agents export: a
panel or rule on a name nothing exports would show nothing and never fire."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from prometheus_client import REGISTRY

# Imported for the metrics they register: the agents' (scraped by the chart's PodMonitor), the operator's.
import shoal.agent.limits
import shoal.agent.main
import shoal.agent.report
import shoal.telemetry  # noqa: F401

FILES = Path(__file__).resolve().parents[2] / "helm" / "shoal" / "files"
NAME = re.compile(r"\bshoal_[a-z_]+")


def exported() -> set[str]:
    """Every sample name the registry can give (a histogram's _bucket, _sum and _count, a counter's _total)."""
    names = set()
    for metric in REGISTRY.collect():
        names.add(metric.name)
        names |= {f"{metric.name}{suffix}" for suffix in ("_total", "_bucket", "_sum", "_count", "_created")}
    return names


def test_the_dashboard_and_the_alerts_query_only_series_shoal_exports() -> None:
    dashboard = json.loads((FILES / "dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    rules = yaml.safe_load((FILES / "alerts.yaml").read_text())
    exprs += [r["expr"] for g in rules["groups"] for r in g["rules"]]
    used = {name for e in exprs for name in NAME.findall(e)}
    assert {
        "shoal_pool_waiting_claims",
        "shoal_pool_overloaded_pods",
        "shoal_agent_memory_limit_bytes",
    } <= used
    assert used - exported() == set()
