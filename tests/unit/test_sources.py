"""The Prometheus source against a real HTTP server on loopback answering like Prometheus does."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import HTTPServer
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlparse

import pytest

from shoal.api.metrics import MetricSpec
from shoal.reconcile.scaler import startup_seconds
from shoal.sources.base import SourceContext
from shoal.sources.metrics_api import MetricsApiSource, go_duration
from shoal.sources.prometheus import PrometheusSource
from tests.unit.fakes import JsonHandler


@pytest.fixture
def prom() -> Iterator[tuple[PrometheusSource, type[JsonHandler]]]:
    handler = type("H", (JsonHandler,), {})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield PrometheusSource(f"http://127.0.0.1:{server.server_address[1]}"), handler
    server.shutdown()


def vector(*values: float) -> dict[str, Any]:
    return {
        "status": "success",
        "data": {"resultType": "vector", "result": [{"metric": {}, "value": [0, str(v)]} for v in values]},
    }


CTX = SourceContext(kube=None, namespace="team-a", selector="", current_replicas=1)  # type: ignore[arg-type]


def metric(**prom: Any) -> MetricSpec:
    return MetricSpec.model_validate({"type": "Prometheus", "prometheus": {"query": "sum(q)", **prom}})


def test_single_series_value(prom: tuple[PrometheusSource, type[JsonHandler]]) -> None:
    source, handler = prom
    handler.reply = (200, vector(42.5))
    r = source.read(CTX, metric(targetPerReplica=10))
    assert (r.value, r.error, r.target_per_replica) == (42.5, None, 10.0)


@pytest.mark.parametrize(
    ("reply", "fragment"),
    [
        ((200, vector()), "no series"),
        ((200, vector(1, 2, 3)), "3 series; aggregate"),
        ((400, {"status": "error", "error": "parse error at char 4"}), "400: parse error at char 4"),
        ((200, {"status": "success", "data": {"resultType": "matrix", "result": []}}), "a matrix"),
    ],
)
def test_query_problems_become_clear_errors(
    prom: tuple[PrometheusSource, type[JsonHandler]], reply: tuple[int, dict[str, Any]], fragment: str
) -> None:
    source, handler = prom
    handler.reply = reply
    r = source.read(CTX, metric(targetPerReplica=10))
    assert r.value is None and r.error is not None and fragment in r.error


def test_an_oversized_answer_is_refused(prom: tuple[PrometheusSource, type[JsonHandler]]) -> None:
    source, handler = prom
    handler.reply = (200, vector(*range(60_000)))  # about 2 MiB of series
    r = source.read(CTX, metric(targetPerReplica=10))
    assert r.value is None and r.error is not None and "over 1 MiB" in r.error


class _Routed(JsonHandler):
    """Answers by query: the scaling query and its health guard get different replies."""

    replies: ClassVar[dict[str, tuple[int, dict[str, Any]]]] = {}

    def do_GET(self) -> None:
        query = parse_qs(urlparse(self.path).query)["query"][0]
        type(self).reply = type(self).replies[query]
        super().do_GET()


@pytest.mark.parametrize(
    ("when_empty", "health", "health_reply", "value", "fragment"),
    [
        ("Fail", None, None, None, "no series"),  # the default: missing data, the size is held
        ("Zero", None, None, 0.0, None),  # stated: no series is an empty queue
        ("Zero", "up", vector(1, 1), 0.0, None),  # the exporter is up: the queue is empty
        ("Zero", "up", vector(1, 0), None, "source is down (1, 0)"),  # one target is down
        ("Zero", "up", vector(), None, "source is down (no series)"),  # the target is gone
        ("Zero", "up", (400, {"status": "error", "error": "bad"}), None, "healthQuery failed"),
    ],
)
def test_an_empty_result_means_what_the_metric_says(
    when_empty: str, health: str | None, health_reply: Any, value: float | None, fragment: str | None
) -> None:
    handler: type[_Routed] = type("H", (_Routed,), {"replies": {}})
    handler.replies = {"sum(q)": (200, vector())}
    if health:
        handler.replies[health] = health_reply if isinstance(health_reply, tuple) else (200, health_reply)
    server = HTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        source = PrometheusSource(f"http://127.0.0.1:{server.server_address[1]}")
        spec = {"targetPerReplica": 10, "whenEmpty": when_empty} | ({"healthQuery": health} if health else {})
        r = source.read(CTX, metric(**spec))
    finally:
        server.shutdown()
    assert r.value == value
    assert (r.error is None) if fragment is None else (r.error is not None and fragment in r.error), r.error


def test_unreachable_and_unconfigured() -> None:
    r = PrometheusSource("http://127.0.0.1:9").read(CTX, metric(targetPerReplica=1))
    assert r.error is not None and r.error.startswith("Prometheus unreachable")
    r = PrometheusSource("").read(CTX, metric(targetPerReplica=1))
    assert r.error is not None and "SHOAL_PROMETHEUS_URL" in r.error


def test_startup_seconds_is_the_median_creation_to_ready_time() -> None:
    def pod(created: str, ready: str | None) -> dict[str, Any]:
        conds = [{"type": "Ready", "status": "True", "lastTransitionTime": ready}] if ready else []
        return {"metadata": {"creationTimestamp": created}, "status": {"conditions": conds}}

    pods = [
        pod("2026-01-01T00:00:00Z", "2026-01-01T00:00:10Z"),
        pod("2026-01-01T00:00:00Z", "2026-01-01T00:00:30Z"),
        pod("2026-01-01T00:00:00Z", "2026-01-01T00:00:20Z"),
        pod("2026-01-01T00:00:00Z", None),
    ]
    assert startup_seconds(pods) == 20.0
    assert startup_seconds([]) is None


def test_go_durations_as_metrics_k8s_io_writes_windows() -> None:
    assert [go_duration(t) for t in ("1m0s", "10.159s", "1h2m3.5s", "250ms", "", None, "10 s", "5x")] == [
        60.0,
        10.159,
        3723.5,
        0.25,
        None,
        None,
        None,
        None,
    ]


def test_the_metrics_api_source_passes_what_hpa_judges_pods_by() -> None:
    """Phase, deletion, start and Ready times, and the sample's time and window reach the calculator."""

    class FakeKube:
        def list_items(self, path: str, selector: str | None = None) -> list[dict[str, Any]]:
            if path.startswith("/apis/metrics.k8s.io"):
                return [
                    {
                        "metadata": {"name": "a"},
                        "timestamp": "2027-01-11T10:00:00Z",
                        "window": "1m0s",
                        "containers": [{"usage": {"cpu": "250m"}}],
                    }
                ]
            spec = {"containers": [{"resources": {"requests": {"cpu": "500m"}}}]}
            ready = {"type": "Ready", "status": "True", "lastTransitionTime": "2027-01-11T09:59:00Z"}
            return [
                {
                    "metadata": {"name": "a"},
                    "spec": spec,
                    "status": {
                        "phase": "Running",
                        "startTime": "2027-01-11T09:58:00Z",
                        "conditions": [ready],
                    },
                },
                {
                    "metadata": {"name": "b", "deletionTimestamp": "2027-01-11T10:00:00Z"},
                    "spec": spec,
                    "status": {},
                },
                {"metadata": {"name": "c"}, "spec": spec, "status": {"phase": "Succeeded"}},
            ]

    ctx = SourceContext(FakeKube(), "ns", "app=x", 2)  # type: ignore[arg-type]
    spec = MetricSpec.model_validate(
        {"type": "Resource", "resource": {"name": "cpu", "targetAverageUtilization": 50}}
    )
    a, b = MetricsApiSource().read(ctx, spec).pods
    assert (a.usage, a.request, a.ready, a.phase, a.deleting) == (0.25, 0.5, True, "Running", False)
    assert (a.ready_since - a.started, a.sampled - a.ready_since, a.window) == (60.0, 60.0, 60.0)  # type: ignore[operator]
    assert (b.name, b.phase, b.deleting, b.started, b.ready_since) == ("b", "Pending", True, None, None)
