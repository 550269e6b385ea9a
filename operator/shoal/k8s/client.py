"""A thin REST client over the kubernetes package's transport: plain dicts in and out.

The generated model classes are slow to build and hard to hand to pure functions; JSON dicts are
what the decision code reads, so this keeps the auth/TLS handling and drops the models.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import kubernetes
import urllib3
from kubernetes.client.exceptions import ApiException

from shoal import telemetry
from shoal.k8s import fence as socket_fence
from shoal.k8s.events import Correlator
from shoal.k8s.paths import kind_path
from shoal.k8s.ratelimit import TokenBucket
from shoal.times import format_time

log = logging.getLogger("shoal.k8s")
EVENT_BACKLOG = 1000  # client-go's broadcaster queue length: beyond it, events are dropped, not waited on
EVENT_TRIES = 5  # per Event, across transport errors (an API server restart), one second apart
EVENT_RETRY_SECONDS = 1.0
THROTTLE_TRIES = 5  # attempts of one request answered 429 (or 5xx with Retry-After)
THROTTLE_MAX_WAIT = 10.0  # seconds; a longer Retry-After is cut to this


def retry_after(status: int, headers: Any) -> float | None:
    """Seconds to wait before retrying an answer, or None when it is final."""
    value = headers.get("Retry-After") if headers is not None else None
    if status == 429:
        value = value or "1"
    elif status < 500 or value is None:
        return None
    try:
        return min(THROTTLE_MAX_WAIT, max(0.0, float(value)))
    except ValueError:
        return 1.0  # an HTTP date or garbage: wait a second, as client-go does


class ApiError(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        return self.status == 409


class NotLeading(ApiError):
    """A write refused before it was sent: this replica's leadership lapsed (shoal.runtime.leader)."""

    def __init__(self) -> None:
        super().__init__(503, "NotLeading", "this replica is not the leader; the write was not sent")


def load_config(pool_size: int = 16) -> kubernetes.client.ApiClient:
    cfg = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
    except kubernetes.config.ConfigException:
        # KUBECONFIG is read now, not when the kubernetes package was imported.
        kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=os.environ.get("KUBECONFIG"), client_configuration=cfg
        )
    cfg.connection_pool_maxsize = pool_size
    cfg.retries = transport_retries()
    return kubernetes.client.ApiClient(cfg)


def transport_retries() -> urllib3.util.Retry:
    """urllib3 retries connection failures only; answers with Retry-After are Kube.request's to retry
    (one policy for every verb, instead of urllib3's for idempotent ones stacked under ours)."""
    return urllib3.util.Retry(total=3, status=0, respect_retry_after_header=False, raise_on_status=False)


class Kube:
    def __init__(self, api: kubernetes.client.ApiClient | None = None, async_events: bool = False) -> None:
        """`async_events`: Events go through a background poster (as client-go's recorder does), so a
        reconcile never waits on a write nobody reads from; otherwise they are posted inline."""
        self.api = api or load_config()
        socket_fence.install(self.api.rest_client.pool_manager)
        self.component = "shoal-operator"
        self.instance = os.environ.get("HOSTNAME", socket.gethostname())
        self._events: queue.Queue[tuple[str, dict[str, Any]] | threading.Event] | None = None
        # Seconds a write may still take; <= 0: none may start (the leader's fence). None: unfenced.
        self.fence: Callable[[], float] | None = None
        self.limiter: TokenBucket | None = None  # client-side rate limit (SHOAL_KUBE_API_QPS); None: none
        self._poster: threading.Thread | None = None
        self._correlator = Correlator()
        self._correlating = threading.Lock()
        if async_events:
            self._events = queue.Queue(maxsize=EVENT_BACKLOG)
            self._poster = threading.Thread(target=self._post_events, name="event-poster", daemon=True)
            self._poster.start()

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: dict[str, Any] | None = None,
        content_type: str = "application/json",
        timeout: float = 30.0,
    ) -> dict[str, Any]:
        if query:
            path = f"{path}?{urlencode(query)}"
        _, url, headers, data, _ = self.api.param_serialize(
            method,
            path,
            header_params={"Content-Type": content_type, "Accept": "application/json"},
            body=body,
            auth_settings=["BearerToken"],
        )
        # An answer that says when to come back (429, or a 5xx with Retry-After: the API server's
        # priority and fairness, a storage re-initialising) is retried after that wait, for every verb:
        # urllib3's own retries cover only idempotent verbs and never honour Retry-After. As client-go's
        # request.go does it, but with fewer tries and a capped wait so a reconcile is never held long.
        fence = self.fence if method != "GET" else None
        for attempt in range(1, THROTTLE_TRIES + 1):
            if self.limiter is not None:
                self._throttle(method, path)
            if fence is not None:
                budget = fence()
                if budget <= 0:
                    raise NotLeading()
                timeout = min(timeout, budget)
            try:
                with socket_fence.armed(lambda: fence() > 0) if fence else contextlib.nullcontext():
                    resp = self.api.call_api(
                        method, url, header_params=headers, body=data, _request_timeout=timeout
                    )
            except socket_fence.FenceClosed:
                raise NotLeading() from None
            except ApiException as exc:
                status, reason, raw, answer_headers = exc.status or 0, exc.reason, exc.body, exc.headers
                telemetry.API_REQUESTS.labels(method, str(status)).inc()
            else:
                raw = resp.read()  # type: ignore[no-untyped-call]
                telemetry.API_REQUESTS.labels(method, str(resp.status)).inc()
                if 200 <= resp.status < 300:
                    return json.loads(raw) if raw else {}
                status, reason, answer_headers = resp.status, resp.reason, resp.headers
            wait = retry_after(status, answer_headers)
            if wait is None or attempt == THROTTLE_TRIES:
                raise _api_error(status, reason, raw)
            log.info(
                "%s %s answered %d; retry %d/%d in %.1fs",
                method,
                path,
                status,
                attempt,
                THROTTLE_TRIES - 1,
                wait,
            )
            time.sleep(wait)
        raise AssertionError("unreachable")

    def _throttle(self, method: str, path: str) -> None:
        assert self.limiter is not None
        delay = self.limiter.reserve()
        if delay <= 0:
            return
        telemetry.CLIENT_THROTTLE_SECONDS.inc(delay)
        if delay >= 1.0:  # as client-go says it, so the same log search finds both
            log.info("Waited for %.3fs due to client-side throttling: %s %s", delay, method, path)
        time.sleep(delay)  # the limit itself: the request may not go before then

    def list_items(self, path: str, label_selector: str | None = None) -> list[dict[str, Any]]:
        query = {"labelSelector": label_selector} if label_selector else None
        return list(self.request("GET", path, query=query).get("items", []))

    def pages(
        self, path: str, label_selector: str | None = None, limit: int = 500
    ) -> Iterator[dict[str, Any]]:
        """A list's answers, a page at a time, following the continue token (the last page's
        metadata holds the list's resourceVersion)."""
        query: dict[str, Any] = {"limit": limit}
        if label_selector:
            query["labelSelector"] = label_selector
        while True:
            page = self.request("GET", path, query=query)
            yield page
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return
            query["continue"] = token

    def list_paged(
        self, path: str, label_selector: str | None = None, limit: int = 500
    ) -> Iterator[dict[str, Any]]:
        """Every item, a page at a time: only one page is held (a list of thousands of pods in one
        answer is held whole, as text and as objects, until its last item is read)."""
        for page in self.pages(path, label_selector, limit):
            yield from page.pop("items", None) or []

    def get(self, path: str) -> dict[str, Any]:
        return self.request("GET", path)

    def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.request("POST", path, body)

    def merge_patch(self, path: str, patch: dict[str, Any]) -> dict[str, Any]:
        return self.request("PATCH", path, patch, content_type="application/merge-patch+json")

    def merge_patch_if_exists(self, path: str, patch: dict[str, Any]) -> dict[str, Any] | None:
        """Merge-patch: the object as the API server returned it, None (not an error) when it is gone."""
        try:
            return self.merge_patch(path, patch)
        except ApiError as exc:
            if exc.not_found:
                return None
            raise

    def json_patch(self, path: str, ops: list[dict[str, Any]]) -> dict[str, Any]:
        return self.request("PATCH", path, ops, content_type="application/json-patch+json")

    def delete(
        self,
        path: str,
        uid: str | None = None,
        resource_version: str | None = None,
        propagation: str | None = None,
    ) -> bool:
        """Delete; False when already gone or changed. `uid` guards against deleting a same-named
        successor, `resource_version` against deleting an object changed since it was read (a pod
        claimed a moment ago): the API server answers 409 and nothing is deleted. `propagation`: what
        becomes of its dependents (a Job's pods are orphaned unless it says Background or Foreground)."""
        body: dict[str, Any] = {"apiVersion": "v1", "kind": "DeleteOptions"}
        if propagation:
            body["propagationPolicy"] = propagation
        preconditions = {k: v for k, v in (("uid", uid), ("resourceVersion", resource_version)) if v}
        if preconditions:
            body["preconditions"] = preconditions
        try:
            self.request("DELETE", path, body)
        except ApiError as exc:
            if exc.not_found or exc.conflict:
                return False
            raise
        return True

    def remove_finalizer(self, path: str, obj: dict[str, Any], finalizer: str) -> dict[str, Any] | None:
        """`obj` without `finalizer` (the patched object; None once it is gone); guarded by its
        resourceVersion so that a concurrent edit of the list is not overwritten (a conflict raises,
        and the reconcile is retried on the fresh object)."""
        meta = obj["metadata"]
        kept = [f for f in meta.get("finalizers") or [] if f != finalizer]
        try:
            return self.json_patch(
                path,
                [
                    {"op": "test", "path": "/metadata/resourceVersion", "value": meta["resourceVersion"]},
                    {"op": "replace", "path": "/metadata/finalizers", "value": kept},
                ],
            )
        except ApiError as exc:
            if exc.not_found:
                return None
            raise

    def get_if_exists(self, path: str) -> dict[str, Any] | None:
        try:
            return self.get(path)
        except ApiError as exc:
            if exc.not_found:
                return None
            raise

    def apply(self, namespace: str, body: dict[str, Any], create_only: bool = False) -> None:
        """Create `body`; when it exists already, merge-patch it to match (or leave it: `create_only`)."""
        path = kind_path(body["kind"], namespace)
        try:
            self.create(path, body)
        except ApiError as exc:
            if not exc.conflict:
                raise
            if not create_only:
                self.merge_patch(f"{path}/{body['metadata']['name']}", body)

    def event(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        """Post a core/v1 Event about `obj`; failures are not the caller's problem."""
        meta = obj["metadata"]
        now = format_time(datetime.now(UTC))
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{meta['name']}.{uuid.uuid4().hex[:16]}", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": obj.get("apiVersion"),
                "kind": obj.get("kind"),
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "source": {"component": self.component},
            "reportingComponent": f"shoal.dev/{self.component}",
            "reportingInstance": self.instance[:128],
        }
        path = kind_path("Event", meta["namespace"])
        if self._events is None:
            with contextlib.suppress(OSError):
                self._post_event(path, body)
            return
        try:
            self._events.put_nowait((path, body))
        except queue.Full:
            log.warning("event backlog full: dropped %s %s for %s", type_, reason, meta["name"])

    def events_alive(self) -> bool:
        return self._poster is None or self._poster.is_alive()

    def events_backlog(self) -> int:
        return self._events.qsize() if self._events is not None else 0

    def flush_events(self, timeout: float = 5.0) -> bool:
        """Wait until every queued Event was posted (shutdown, tests); False on timeout."""
        if self._events is None:
            return True
        done = threading.Event()
        self._events.put(done)
        return done.wait(timeout)

    def _post_events(self) -> None:
        assert self._events is not None
        while True:
            item = self._events.get()
            if isinstance(item, threading.Event):
                item.set()
                continue
            for attempt in range(EVENT_TRIES):
                try:
                    self._post_event(*item)
                    break
                except Exception as exc:  # the poster outlives anything: transport errors, API outages
                    log.debug("posting an event failed (attempt %d): %s", attempt + 1, exc)
                    time.sleep(EVENT_RETRY_SECONDS)

    def _post_event(self, path: str, body: dict[str, Any]) -> None:
        """Post one Event, or count it on the one it repeats (k8s/events.py); an API answer (namespace
        gone, forbidden, ...) is final, not retried."""
        inv = body["involvedObject"]
        key = (inv["namespace"], inv.get("uid") or inv["name"], body["type"], body["reason"], body["message"])
        with self._correlating:
            repeat = self._correlator.repeat_of(key)
            if repeat is not None:
                patch = {"count": repeat.count, "lastTimestamp": body["lastTimestamp"]}
                try:
                    self.merge_patch(f"{path}/{repeat.name}", patch)
                    return
                except ApiError as exc:
                    if not exc.not_found:  # gone (the Event TTL): post it afresh below
                        return
                    self._correlator.forget(key)
            with contextlib.suppress(ApiError):
                self.create(path, body)
                self._correlator.posted(key, body["metadata"]["name"])


def _api_error(status: int, reason: Any, body: Any) -> ApiError:
    message = str(reason or "")
    kind = message
    try:
        payload = json.loads(body or "{}")
        message = payload.get("message", message)
        kind = payload.get("reason", kind)
    except (ValueError, TypeError, AttributeError):
        pass
    return ApiError(int(status), kind, message)
