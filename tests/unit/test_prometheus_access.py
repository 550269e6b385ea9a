"""How the operator reaches its Prometheus (credentials, headers, settings checks) and how queries are
limited to a scaler's namespace; against a real HTTP server on loopback that records what it got."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from http.server import HTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlparse

import pytest

from shoal.api.metrics import MetricSpec
from shoal.config import PrometheusAccess, Settings, SettingsError
from shoal.sources.base import SourceContext
from shoal.sources.prometheus import PrometheusSource
from shoal.sources.promscope import ScopeError, scope
from tests.unit.fakes import JsonHandler

ONE = {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [0, "7"]}]}}


class Recorder(JsonHandler):
    """Records each request's headers and query; a non-200 reply echoes the Authorization header,
    as some auth proxies' error pages do."""

    seen: ClassVar[list[tuple[dict[str, str], str]]] = []
    reply: ClassVar[tuple[int, dict[str, Any]]] = (200, ONE)

    def do_GET(self) -> None:
        query = parse_qs(urlparse(self.path).query)["query"][0]
        type(self).seen.append(({k.lower(): v for k, v in self.headers.items()}, query))
        code, body = type(self).reply
        if code != 200:
            body = {"status": "error", "error": f"denied: {self.headers.get('Authorization')}"}
        self.answer(code, body)


@pytest.fixture
def server() -> Iterator[tuple[str, type[Recorder]]]:
    handler = type("R", (Recorder,), {"seen": []})
    srv = HTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", handler
    srv.shutdown()


def ctx(namespace: str = "team-a") -> SourceContext:
    return SourceContext(kube=None, namespace=namespace, selector="", current_replicas=1)  # type: ignore[arg-type]


def metric(query: str = "sum(q)") -> MetricSpec:
    return MetricSpec.model_validate(
        {"type": "Prometheus", "prometheus": {"query": query, "targetPerReplica": 1}}
    )


def env(**kv: str) -> dict[str, str]:
    return {f"SHOAL_PROMETHEUS_{k.upper()}": v for k, v in kv.items()}


def test_a_bearer_token_file_is_read_on_every_request_so_a_rotated_token_is_used(
    server: tuple[str, type[Recorder]], tmp_path: Path
) -> None:
    url, rec = server
    token = tmp_path / "token"
    token.write_text("first-token\n")
    access = PrometheusAccess.from_env(
        env(url=url, bearer_token_file=str(token), headers='{"X-Scope-OrgID": "tenant-7"}')
    )
    source = PrometheusSource(access)
    assert source.read(ctx(), metric()).value == 7.0
    token.write_text("second-token")
    assert source.read(ctx(), metric()).value == 7.0
    assert [h["authorization"] for h, _ in rec.seen] == ["Bearer first-token", "Bearer second-token"]
    assert {h["x-scope-orgid"] for h, _ in rec.seen} == {"tenant-7"}


def test_basic_auth_from_files_and_no_credential_in_an_error_even_when_the_server_echoes_it(
    server: tuple[str, type[Recorder]], tmp_path: Path
) -> None:
    url, rec = server
    (tmp_path / "user").write_text("shoal")
    (tmp_path / "password").write_text("s3cr3t-pw")
    access = PrometheusAccess.from_env(
        env(
            url=url,
            basic_auth_username_file=str(tmp_path / "user"),
            basic_auth_password_file=str(tmp_path / "password"),
        )
    )
    rec.reply = (401, {})
    reading = PrometheusSource(access).read(ctx(), metric())
    pair = base64.b64encode(b"shoal:s3cr3t-pw").decode()
    assert rec.seen[0][0]["authorization"] == f"Basic {pair}"
    assert reading.error is not None and reading.error.startswith("Prometheus answered 401")
    assert "s3cr3t-pw" not in reading.error and pair not in reading.error and "***" in reading.error


def test_a_missing_credential_file_is_a_reading_error_not_a_crash(tmp_path: Path) -> None:
    access = PrometheusAccess(url="http://127.0.0.1:9", bearer_token_file=str(tmp_path / "absent"))
    reading = PrometheusSource(access).read(ctx(), metric())
    assert reading.error is not None and "cannot read the Prometheus bearer token file" in reading.error


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"url": "ftp://prom"}, "http:// or https://"),
        ({"url": "https://user:pw@prom"}, "carries credentials"),
        ({"url": "http://p", "bearer_token_file": "/t", "basic_auth_username_file": "/u"}, "exclude"),
        ({"url": "http://p", "basic_auth_username_file": "/u"}, "both a username file and a password"),
        ({"url": "https://p", "cert_file": "/c"}, "both a certificate file and a key file"),
        ({"url": "http://p", "ca_file": "/ca"}, "is not https://"),
        ({"url": "http://p", "headers": '{"Authorization": "Bearer x"}'}, "not as a header"),
        ({"url": "http://p", "headers": "[1]"}, "JSON object of strings"),
        ({"url": "http://p", "headers": "{x"}, "not a JSON object"),
    ],
)
def test_settings_the_operator_cannot_use_are_refused_at_start_with_the_reason(
    settings: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env(**settings))


def test_with_namespace_scoping_the_server_receives_the_scoped_query(
    server: tuple[str, type[Recorder]],
) -> None:
    url, rec = server
    source = PrometheusSource(PrometheusAccess(url=url, namespace_label="namespace"))
    assert source.read(ctx("team-a"), metric('sum(rate(jobs{queue="x"}[1m]))')).value == 7.0
    assert rec.seen[0][1] == 'sum(rate(jobs{queue="x",namespace="team-a"}[1m]))'
    refused = source.read(ctx("team-a"), metric('sum(jobs{namespace="team-b"})'))
    assert refused.error is not None and "cannot limit it to namespace team-a" in refused.error
    assert len(rec.seen) == 1  # a query that cannot be scoped is never sent


@pytest.mark.parametrize(
    ("query", "scoped"),
    [
        ("up", 'up{namespace="a"}'),
        (
            'sum by (le) (rate(h_bucket{job="x"}[5m]))',
            'sum by (le)(rate(h_bucket{job="x",namespace="a"}[5m]))',
        ),
        ("max_over_time(rate(x[1m])[10m:1m])", 'max_over_time(rate(x{namespace="a"}[1m])[10m:1m])'),
        ("a / on () group_left () b", 'a{namespace="a"} / on () group_left () b{namespace="a"}'),
        ("scalar(sum(q)) * 2 > bool 1", 'scalar(sum(q{namespace="a"})) * 2 > bool 1'),
        ("absent(up offset 5m)", 'absent(up{namespace="a"} offset 5m)'),
        ('{__name__=~"a|b"}', '{__name__=~"a|b",namespace="a"}'),
        ('q{namespace="a"}', 'q{namespace="a"}'),
        ("vector(1)", "vector(1)"),
        # Values with backslashes and quotes survive (the parser's printer does not escape them).
        ('q{v=~"x\\\\.y", w!="say \\"hi\\""}', 'q{v=~"x\\\\.y",w!="say \\"hi\\"",namespace="a"}'),
        (
            'label_replace(q, "d", "$1", "s", "(.*)\\\\.z")',
            'label_replace(q{namespace="a"}, "d", "$1", "s", "(.*)\\\\.z")',
        ),
    ],
)
def test_every_vector_selector_gets_the_namespace_matcher(query: str, scoped: str) -> None:
    assert scope(query, "namespace", "a") == scoped


@pytest.mark.parametrize(
    ("query", "why"),
    [
        ('q{namespace="b"}', 'it selects namespace="b"; only namespace="a" may be read'),
        ('q{namespace=~"a|b"}', "it selects namespace=~"),
        ('q{namespace!="b"}', "it selects namespace!="),
        ("sum(", "not valid PromQL"),
    ],
)
def test_a_query_that_cannot_be_scoped_is_refused_with_the_reason(query: str, why: str) -> None:
    with pytest.raises(ScopeError, match=why.replace("(", r"\(")):
        scope(query, "namespace", "a")
