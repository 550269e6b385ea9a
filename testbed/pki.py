"""The test bed's certificates (one CA, one admin certificate) and its kubeconfig."""

from __future__ import annotations

import ssl
import subprocess

from testbed.config import HOST, KUBECONFIG, PKI, PORTS, log

# --- certificates -------------------------------------------------------------------------------


def ensure_pki() -> None:
    """One CA and one admin certificate (system:masters) used as server, client and front-proxy cert.

    metrics-server authenticates the API server's proxied requests by the client CA, so the
    front-proxy client certificate can be the admin one (no separate request-header CA needed).
    """
    if (PKI / "admin.crt").exists():
        return
    PKI.mkdir(parents=True, exist_ok=True)
    log("generating certificates")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, cwd=PKI, capture_output=True)

    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "3650",
        "-subj",
        "/CN=shoal-testbed-ca",
    )
    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "admin.key",
        "-out",
        "admin.csr",
        "-subj",
        "/O=system:masters/CN=kubernetes-admin",
    )
    (PKI / "ext.cnf").write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:10.96.0.1,DNS:kubernetes,"
        "DNS:kubernetes.default,DNS:kubernetes.default.svc\n"
        "extendedKeyUsage=serverAuth,clientAuth\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
    )
    openssl(
        "x509",
        "-req",
        "-in",
        "admin.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "admin.crt",
        "-days",
        "3650",
        "-extfile",
        "ext.cnf",
    )


def write_kubeconfig() -> None:
    KUBECONFIG.write_text(
        f"""apiVersion: v1
kind: Config
clusters:
- name: shoal-testbed
  cluster:
    server: https://{HOST}:{PORTS["kube-apiserver"]}
    certificate-authority: {PKI / "ca.crt"}
users:
- name: shoal-testbed-admin
  user:
    client-certificate: {PKI / "admin.crt"}
    client-key: {PKI / "admin.key"}
contexts:
- name: shoal-testbed
  context: {{cluster: shoal-testbed, user: shoal-testbed-admin}}
current-context: shoal-testbed
"""
    )


def tls_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(PKI / "ca.crt"))
    ctx.load_cert_chain(str(PKI / "admin.crt"), str(PKI / "admin.key"))
    return ctx
