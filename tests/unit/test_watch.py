"""The operator's own reflector (shoal.k8s.watch) against a real HTTP server on loopback speaking the
API server's list and watch protocol: paged lists, chunked watch streams, bookmarks, 410 Gone and
error answers."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlparse

import kubernetes

from shoal.k8s.client import Kube
from shoal.k8s.watch import Event, Reflector
from tests.unit.fakes import loopback


def pod(name: str, rv: int, **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns", "resourceVersion": str(rv), "labels": labels}}


def line(kind: str, obj: dict[str, Any]) -> bytes:
    return json.dumps({"type": kind, "object": obj}).encode() + b"\n"


class ApiServer(BaseHTTPRequestHandler):
    """Answers each request with the next step of `script`: ("list", body), ("watch", [chunks]) or
    ("fail", status). Records every request's query."""

    protocol_version = "HTTP/1.1"
    script: ClassVar[list[tuple[str, Any]]] = []
    queries: ClassVar[list[dict[str, str]]] = []
    idle: ClassVar[float] = 0.2  # how long a watch with nothing to say stays open

    def do_GET(self) -> None:
        query = {k: v[0] for k, v in parse_qs(urlparse(self.path).query).items()}
        type(self).queries.append(query)
        step: str
        what: Any
        step, what = type(self).script.pop(0) if type(self).script else ("watch", [])
        if step == "fail":
            self._answer(what, {"kind": "Status", "code": what, "message": "storage unavailable"})
        elif step == "list":
            self._answer(200, what)
        else:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            if not what:
                time.sleep(type(self).idle)  # an idle watch, ended by the server
            for chunk in what:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")

    def _answer(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_: Any) -> None:
        pass


def test_lists_in_pages_watches_resumes_relists_on_410_and_reports_what_went_meanwhile() -> None:
    a, b, c, d = pod("a", 5, app="x"), pod("b", 6), pod("c", 7), pod("d", 11)
    handler: type[ApiServer] = type(
        "H",
        (ApiServer,),
        {
            "queries": [],
            "script": [
                ("list", {"items": [a, b], "metadata": {"continue": "page2", "resourceVersion": "10"}}),
                ("list", {"items": [c], "metadata": {"resourceVersion": "10"}}),
                # Two events in one chunk, one split across two chunks, then a bookmark.
                (
                    "watch",
                    [
                        line("ADDED", d) + line("MODIFIED", pod("a", 12, app="y"))[:20],
                        line("MODIFIED", pod("a", 12, app="y"))[20:],
                        line("BOOKMARK", {"metadata": {"resourceVersion": "13"}}),
                    ],
                ),
                ("watch", [line("ERROR", {"kind": "Status", "code": 410, "message": "too old"})]),
                ("list", {"items": [pod("a", 12, app="y"), d], "metadata": {"resourceVersion": "20"}}),
                ("fail", 500),
                ("fail", 410),  # Gone as the answer itself, not as an event
                ("list", {"items": [pod("a", 12, app="y"), d], "metadata": {"resourceVersion": "21"}}),
                ("watch", [line("DELETED", d)]),
            ],
        },
    )
    batches: list[list[Event]] = []
    done = threading.Event()

    def deliver(batch: list[Event]) -> None:
        batches.append(batch)
        if any(kind == "DELETED" and obj["metadata"]["name"] == "d" for kind, obj in batch):
            done.set()

    with loopback(handler) as cfg:
        reflector = Reflector(Kube(kubernetes.client.ApiClient(cfg)), "/api/v1/pods", "app", deliver)
        reflector.start()
        assert done.wait(10), batches
        reflector.stop()

    seen = [[(kind, obj["metadata"]["name"]) for kind, obj in batch] for batch in batches]
    assert seen == [
        [(None, "a"), (None, "b")],  # each page as it comes
        [(None, "c")],
        [("ADDED", "d")],  # the first read of the stream: the rest of its second line came later
        [("MODIFIED", "a")],
        [(None, "a"), (None, "d")],  # listed again after the 410 event,
        [("DELETED", "b"), ("DELETED", "c")],  # and what went while the watch was down
        [(None, "a"), (None, "d")],  # listed again after the 410 answer: nothing gone meanwhile
        [("DELETED", "d")],
    ]
    assert batches[3][0][1]["metadata"]["labels"] == {"app": "y"}
    q = handler.queries
    assert [x.get("continue") for x in q[:2]] == [None, "page2"] and q[0]["limit"] == "500"
    assert all(x["labelSelector"] == "app" for x in q)
    watches = [(x["resourceVersion"], x["allowWatchBookmarks"]) for x in q if x.get("watch") == "true"]
    # Resumed from the bookmark; after the 410 event a list, its version watched (again after the
    # 500); after the 410 answer another list, and its version watched.
    assert watches[:5] == [("10", "true"), ("13", "true"), ("20", "true"), ("20", "true"), ("21", "true")]
    assert sum(1 for x in q if "watch" not in x) == 4  # two pages, then the two relists


def test_a_watch_that_ends_at_once_is_retried_with_growing_delays_not_in_a_tight_loop() -> None:
    handler: type[ApiServer] = type(
        "H",
        (ApiServer,),
        {
            "queries": [],
            "idle": 0.0,
            "script": [("list", {"items": [], "metadata": {"resourceVersion": "1"}})],
        },
    )
    with loopback(handler) as cfg:
        reflector = Reflector(Kube(kubernetes.client.ApiClient(cfg)), "/api/v1/pods", "app", lambda _: None)
        reflector.start()
        time.sleep(1.6)  # the window the requests are counted over, not a synchronisation
        reflector.stop()
    watches = [q for q in handler.queries if q.get("watch") == "true"]
    # At 0, 0.5 and 1.5 s (delays 0.5 and 1.0); a tight loop would have made hundreds.
    assert 2 <= len(watches) <= 3, len(watches)
