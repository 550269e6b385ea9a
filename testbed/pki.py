"""The test bed's certificates (one CA, one admin certificate) and its kubeconfig."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

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


KUBEFLOW_CA = "kubeflow-trainer-ca"  # the Trainer's certificate rotator accepts a CA only of this name
KUBEFLOW_DNS = "kubeflow-trainer-controller-manager.kubeflow-system.svc"  # and a server cert for this


def kubeflow_certs() -> Path:
    """A CA and a serving certificate for the Trainer's and JobSet's webhooks (testbed/kubeflow.py):
    what the Trainer's rotator keeps as valid, and what the API server verifies on 127.0.0.1."""
    out = PKI / "kubeflow"
    if (out / "tls.crt").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, cwd=out, capture_output=True)

    openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
        "-days", "3650", "-subj", f"/O=kubeflow-trainer/CN={KUBEFLOW_CA}",
        "-addext", f"subjectAltName=DNS:{KUBEFLOW_CA}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,digitalSignature,keyEncipherment",
    )  # fmt: skip
    openssl("rsa", "-in", "ca.key", "-traditional", "-out", "ca.key")  # the rotator parses PKCS#1 only
    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "tls.key",
        "-out",
        "tls.csr",
        "-subj",
        "/CN=webhooks",
    )
    (out / "ext.cnf").write_text(
        f"subjectAltName=DNS:{KUBEFLOW_DNS},IP:127.0.0.1\n"
        "extendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
    )
    openssl(
        "x509", "-req", "-in", "tls.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "tls.crt", "-days", "3650", "-extfile", "ext.cnf",
    )  # fmt: skip
    return out
