"""429 and 5xx answers from a real HTTP server on loopback: the client raises ApiError with the
status, and the work queue retries the reconcile with growing delays until the server recovers."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler
from typing import Any, ClassVar

import kubernetes
import pytest

from shoal.k8s.client import THROTTLE_TRIES, ApiError, Kube, NotLeading
from shoal.runtime.workqueue import WorkQueue, run_workers
from tests.unit.fakes import JsonHandler, loopback


class Flaky(JsonHandler):
    answers: ClassVar[list[int]] = []
    seen: ClassVar[list[float]] = []

    def do_GET(self) -> None:
        type(self).seen.append(time.monotonic())
        code = type(self).answers.pop(0) if type(self).answers else 200
        body: dict[str, Any] = {"kind": "PodList", "items": [{"metadata": {"name": "p"}}]}
        if code != 200:
            body = {
                "kind": "Status",
                "status": "Failure",
                "reason": "TooManyRequests" if code == 429 else "ServiceUnavailable",
                "message": f"try again later ({code})",
                "code": code,
            }
        self.answer(code, body, {"Retry-After": "1"} if code == 429 else None)


@pytest.fixture
def kube() -> Iterator[tuple[Kube, type[Flaky]]]:
    handler: type[Flaky] = type("H", (Flaky,), {"answers": [], "seen": []})
    with loopback(handler) as cfg:
        yield Kube(kubernetes.client.ApiClient(cfg)), handler


def test_throttling_is_retried_after_retry_after_and_server_errors_surface(
    kube: tuple[Kube, type[Flaky]],
) -> None:
    client, handler = kube
    handler.answers = [429, 503]
    with pytest.raises(ApiError) as err:
        client.list_items("/api/v1/namespaces/x/pods")
    # The 429 was retried after its Retry-After (as client-go does); the 503 without one surfaced.
    assert err.value.status == 503 and err.value.reason == "ServiceUnavailable"
    assert len(handler.seen) == 2 and handler.seen[1] - handler.seen[0] >= 0.95
    assert [p["metadata"]["name"] for p in client.list_items("/api/v1/namespaces/x/pods")] == ["p"]


def test_work_queue_backs_off_until_the_server_recovers(kube: tuple[Kube, type[Flaky]]) -> None:
    client, handler = kube
    handler.answers = [503, 500, 503, 500]
    done: list[int] = []

    def reconcile(_: object) -> float | None:
        done.append(len(client.list_items("/api/v1/namespaces/x/pods")))
        return None

    async def scenario() -> None:
        q = WorkQueue()
        q.add("pool")
        with ThreadPoolExecutor(1) as ex:
            task = asyncio.create_task(run_workers(q, reconcile, 1, ex))
            deadline = time.monotonic() + 30
            while not done and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())
    assert done == [1]
    gaps = [b - a for a, b in zip(handler.seen, handler.seen[1:], strict=False)]
    assert len(handler.seen) == 5  # four failures, then success
    assert gaps[0] >= 0.45 and gaps[1] >= 0.95 and gaps[2] >= 1.95 and gaps[3] >= 3.9  # 0.5, 1, 2, 4 s


class DropsFirstPost(BaseHTTPRequestHandler):
    posted: ClassVar[list[str]] = []
    drops: ClassVar[int] = 1

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if type(self).drops > 0:
            type(self).drops -= 1
            self.close_connection = True  # hang up without an answer: a transport error, not an API one
            return
        type(self).posted.append(body["reason"])
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(json.dumps(body).encode())

    def log_message(self, *_: Any) -> None:
        pass


def test_the_event_recorder_survives_a_transport_error_and_posts_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import shoal.k8s.client as client_module

    monkeypatch.setattr(client_module, "EVENT_RETRY_SECONDS", 0.01)
    handler: type[DropsFirstPost] = type("H", (DropsFirstPost,), {"posted": [], "drops": 1})
    with loopback(handler) as cfg:
        cfg.retries = False  # let the first failure reach the recorder
        kube = Kube(kubernetes.client.ApiClient(cfg), async_events=True)
        obj = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "x", "uid": "u"}}
        for reason in ("First", "Second", "Third"):
            kube.event(obj, "Normal", reason, "m")
        assert kube.flush_events(10)
        assert handler.posted == ["First", "Second", "Third"]


class Throttles(BaseHTTPRequestHandler):
    """Answers the first `throttled` POSTs and PATCHes 429 with a short Retry-After, then succeeds."""

    throttled: ClassVar[int] = 2
    seen: ClassVar[list[tuple[str, float]]] = []

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        mine = [m for m, _ in type(self).seen if m == self.command]
        type(self).seen.append((self.command, time.monotonic()))
        if len(mine) < type(self).throttled:
            data = json.dumps(
                {"kind": "Status", "reason": "TooManyRequests", "message": "slow down", "code": 429}
            )
            self.send_response(429)
            self.send_header("Retry-After", "0.2")
        else:
            data = json.dumps({"metadata": {"name": "cm"}})
            self.send_response(201 if self.command == "POST" else 200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(data.encode())

    do_POST = do_PATCH = _answer

    def log_message(self, *_: Any) -> None:
        pass


def test_a_throttled_post_and_patch_are_retried_after_retry_after() -> None:
    handler: type[Throttles] = type("H", (Throttles,), {"throttled": 2, "seen": []})
    with loopback(handler) as cfg:
        kube = Kube(kubernetes.client.ApiClient(cfg))
        assert (
            kube.create("/api/v1/namespaces/x/configmaps", {"metadata": {"name": "cm"}})["metadata"]["name"]
            == "cm"
        )
        kube.merge_patch("/api/v1/namespaces/x/configmaps/cm", {"data": {"a": "1"}})
    for verb in ("POST", "PATCH"):
        times = [t for m, t in handler.seen if m == verb]
        assert len(times) == 3, handler.seen  # two 429s, then the answer
        assert all(b - a >= 0.19 for a, b in itertools.pairwise(times)), times


def test_throttling_retries_are_bounded() -> None:
    handler: type[Throttles] = type("H", (Throttles,), {"throttled": 1000, "seen": []})
    with loopback(handler) as cfg:
        kube = Kube(kubernetes.client.ApiClient(cfg))
        with pytest.raises(ApiError) as err:
            kube.merge_patch("/api/v1/namespaces/x/configmaps/cm", {"data": {"a": "1"}})
    assert err.value.status == 429 and len(handler.seen) == THROTTLE_TRIES


def test_a_fenced_client_sends_no_write_once_the_fence_closes() -> None:
    from shoal.k8s.client import NotLeading

    handler: type[Throttles] = type("H", (Throttles,), {"throttled": 0, "seen": []})
    budget = [5.0]
    with loopback(handler) as cfg:
        kube = Kube(kubernetes.client.ApiClient(cfg))
        kube.fence = lambda: budget[0]
        kube.create("/api/v1/namespaces/x/configmaps", {"metadata": {"name": "cm"}})
        budget[0] = 0.0
        with pytest.raises(NotLeading):
            kube.merge_patch("/api/v1/namespaces/x/configmaps/cm", {"data": {"a": "1"}})
    assert [m for m, _ in handler.seen] == ["POST"]  # the PATCH never left


class EventStore(BaseHTTPRequestHandler):
    """Events by name, as the API server keeps them; every write recorded."""

    events: ClassVar[dict[str, dict[str, Any]]] = {}
    writes: ClassVar[list[str]] = []

    def _body(self) -> dict[str, Any]:
        return dict(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))

    def _send(self, code: int, body: dict[str, Any]) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(json.dumps(body).encode())

    def do_POST(self) -> None:
        body = self._body()
        type(self).writes.append("POST")
        type(self).events[body["metadata"]["name"]] = body
        self._send(201, body)

    def do_PATCH(self) -> None:
        patch = self._body()
        type(self).writes.append("PATCH")
        name = self.path.rsplit("/", 1)[1]
        if name not in type(self).events:
            self._send(404, {"kind": "Status", "reason": "NotFound", "message": "gone", "code": 404})
            return
        type(self).events[name].update(patch)
        self._send(200, type(self).events[name])

    def log_message(self, *_: Any) -> None:
        pass


def test_a_repeated_event_is_one_event_with_a_count_as_client_go_aggregates_it() -> None:
    handler: type[EventStore] = type("H", (EventStore,), {"events": {}, "writes": []})
    with loopback(handler) as cfg:
        kube = Kube(kubernetes.client.ApiClient(cfg))
        obj = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "x", "uid": "u"}}
        for _ in range(100):
            kube.event(obj, "Warning", "ConflictingScaler", "another scaler targets this Deployment")
        kube.event(obj, "Warning", "ConflictingScaler", "a different message")
        assert handler.writes.count("POST") == 2 and handler.writes.count("PATCH") == 99
        counts = sorted(e["count"] for e in handler.events.values())
        assert counts == [1, 100]
        handler.events.clear()  # the Events expired (their TTL): the next repeat is posted afresh
        kube.event(obj, "Warning", "ConflictingScaler", "a different message")
        assert handler.writes[-2:] == ["PATCH", "POST"] and len(handler.events) == 1


def test_aggregation_ends_with_its_window() -> None:
    from shoal.k8s.events import Correlator

    clock = [0.0]
    c = Correlator(clock=lambda: clock[0], window=600.0)
    key = ("x", "u", "Warning", "R", "m")
    assert c.repeat_of(key) is None
    c.posted(key, "e1")
    clock[0] = 599.0
    seen = c.repeat_of(key)
    assert seen is not None and (seen.name, seen.count) == ("e1", 2)
    clock[0] = 601.0
    assert c.repeat_of(key) is None  # a new Event after ten minutes, as client-go starts one


def test_a_fence_that_closes_after_the_clients_check_stops_the_write_at_the_socket() -> None:
    """A replica frozen between Kube.request's check and the send (as the e2e hand-over test froze
    one): the fence is asked again as the bytes go out, and nothing reaches the server."""
    handler: type[Throttles] = type("H", (Throttles,), {"throttled": 0, "seen": []})
    with loopback(handler) as cfg:
        kube = Kube(kubernetes.client.ApiClient(cfg))
        budgets = iter([5.0])  # open for the client's own check, closed from then on
        kube.fence = lambda: next(budgets, 0.0)
        with pytest.raises(NotLeading):
            kube.create("/api/v1/namespaces/x/configmaps", {"metadata": {"name": "cm"}})
        assert handler.seen == []
        kube.fence = lambda: 5.0  # open throughout: the write goes out once
        kube.create("/api/v1/namespaces/x/configmaps", {"metadata": {"name": "cm"}})
    assert [m for m, _ in handler.seen] == ["POST"]


def test_the_client_side_limit_spaces_requests_and_counts_the_wait() -> None:
    """SHOAL_KUBE_API_QPS=20 with a burst of 2: the first two requests go at once, the next ones at
    1/20 s intervals as the server sees them; the wait is counted in shoal_client_throttle_seconds_total."""
    from shoal import telemetry
    from shoal.config import Settings, SettingsError
    from shoal.k8s.ratelimit import TokenBucket

    settings = Settings.from_env({"SHOAL_KUBE_API_QPS": "20", "SHOAL_KUBE_API_BURST": "2"})
    assert (settings.kube_api_qps, settings.kube_api_burst) == (20.0, 2)
    for bad in ("-1", "fast"):
        with pytest.raises(SettingsError):
            Settings.from_env({"SHOAL_KUBE_API_QPS": bad})
    handler: type[Throttles] = type("H", (Throttles,), {"throttled": 0, "seen": []})
    waited_before = telemetry.CLIENT_THROTTLE_SECONDS._value.get()
    with loopback(handler) as cfg:
        kube = Kube(kubernetes.client.ApiClient(cfg))
        kube.limiter = TokenBucket(settings.kube_api_qps, settings.kube_api_burst)
        for _ in range(6):
            kube.merge_patch("/api/v1/namespaces/x/configmaps/cm", {"data": {"a": "1"}})
    times = [t for _, t in handler.seen]
    assert len(times) == 6 and times[-1] - times[0] >= 4 / 20 - 0.01, times  # 4 beyond the burst
    assert telemetry.CLIENT_THROTTLE_SECONDS._value.get() - waited_before >= 0.15


def test_a_paged_list_holds_one_page_and_follows_the_continue_token() -> None:
    class Pages(BaseHTTPRequestHandler):
        queries: ClassVar[list[str]] = []

        def do_GET(self) -> None:
            type(self).queries.append(self.path)
            last = "continue=" in self.path
            body = {
                "items": [{"metadata": {"name": "b" if last else "a"}}],
                "metadata": {} if last else {"continue": "t"},
            }
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_: Any) -> None:
            pass

    with loopback(Pages) as cfg:
        names = [
            p["metadata"]["name"]
            for p in Kube(kubernetes.client.ApiClient(cfg)).list_paged("/api/v1/pods", "x", limit=1)
        ]
    assert names == ["a", "b"]
    assert Pages.queries == [
        "/api/v1/pods?limit=1&labelSelector=x",
        "/api/v1/pods?limit=1&labelSelector=x&continue=t",
    ]
