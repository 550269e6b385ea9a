"""HTTP to the operator's Prometheus: TLS (own CA, client certificate), a bearer token or basic auth
from mounted files, extra headers, a deadline and a bounded answer. urllib rather than a Prometheus
client library: one GET of /api/v1/query is all Shoal sends, and none of them does the per-request
credential reload a rotated Secret needs."""

from __future__ import annotations

import base64
import json
import os
import ssl
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from shoal.config import PrometheusAccess

TIMEOUT_SECONDS = 5.0
MAX_ANSWER_BYTES = 2**20  # a query for one number that returns more is a mistake


def _read(path: str, what: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except OSError as exc:
        raise CredentialError(f"cannot read the Prometheus {what} file {path}: {exc.strerror}") from None


class CredentialError(OSError):
    pass


class PrometheusHttp:
    def __init__(self, access: PrometheusAccess) -> None:
        self.access = access
        self._tls: tuple[tuple[float, ...], ssl.SSLContext] | None = None

    def _context(self) -> ssl.SSLContext | None:
        """The TLS context, built again when a mounted CA or client certificate file changes."""
        a = self.access
        if not a.url.startswith("https://"):
            return None
        files = [f for f in (a.ca_file, a.cert_file, a.key_file) if f]
        try:
            stamp = tuple(os.stat(f).st_mtime for f in files)
        except OSError as exc:
            raise CredentialError(f"cannot read a Prometheus TLS file: {exc}") from None
        if self._tls is None or self._tls[0] != stamp:
            ctx = ssl.create_default_context(cafile=a.ca_file or None)
            if a.cert_file:
                ctx.load_cert_chain(a.cert_file, a.key_file)
            self._tls = (stamp, ctx)
        return self._tls[1]

    def _headers(self) -> tuple[dict[str, str], list[str]]:
        """The request's headers, and the secret strings no message may show."""
        a = self.access
        headers = {"Accept": "application/json", **dict(a.headers)}
        secrets: list[str] = []
        if a.bearer_token_file:
            token = _read(a.bearer_token_file, "bearer token")
            headers["Authorization"] = f"Bearer {token}"
            secrets.append(token)
        elif a.basic_auth_username_file:
            user = _read(a.basic_auth_username_file, "basic-auth username")
            password = _read(a.basic_auth_password_file, "basic-auth password")
            pair = base64.b64encode(f"{user}:{password}".encode()).decode()
            headers["Authorization"] = f"Basic {pair}"
            secrets += [password, pair]
        return headers, [s for s in secrets if s]

    def get(self, path: str, params: dict[str, str]) -> tuple[dict[str, Any] | None, str | None]:
        """(decoded JSON answer, error): the error in words, never carrying a credential."""
        if not self.access.url:
            return None, "no Prometheus address configured (operator setting SHOAL_PROMETHEUS_URL)"
        secrets: list[str] = []
        try:
            headers, secrets = self._headers()
            request = urllib.request.Request(
                f"{self.access.url}{path}?{urllib.parse.urlencode(params)}", headers=headers
            )
            with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS, context=self._context()) as resp:
                raw = resp.read(MAX_ANSWER_BYTES + 1)
            if len(raw) > MAX_ANSWER_BYTES:
                return None, f"the answer is over {MAX_ANSWER_BYTES // 2**20} MiB; aggregate the query"
            return json.loads(raw), None
        except urllib.error.HTTPError as exc:
            try:
                detail = json.load(exc).get("error", "")
            except (ValueError, AttributeError):
                detail = ""
            return None, _redact(f"Prometheus answered {exc.code}: {detail or exc.reason}", secrets)[:300]
        except CredentialError as exc:
            return None, str(exc)[:300]
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            return None, _redact(f"Prometheus unreachable: {reason}", secrets)[:300]


def _redact(text: str, secrets: list[str]) -> str:
    """A proxy may echo a request back in its error page: no secret leaves in a message."""
    for s in secrets:
        text = text.replace(s, "***")
    return text
