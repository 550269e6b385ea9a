"""The test bed's certificates (one CA, one admin certificate) and its kubeconfig."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

from testbed.config import HOST, KUBECONFIG, PKI, PORTS, log

# --- certificates -------------------------------------------------------------------------------


def openssl(cwd: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], check=True, cwd=cwd, capture_output=True)


def self_signed_ca(cwd: Path, subject: str, *extensions: str) -> None:
    """ca.key and ca.crt in `cwd`; `extensions`: -addext values."""
    addext = [arg for ext in extensions for arg in ("-addext", ext)]
    openssl(
        cwd, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
        "-days", "3650", "-subj", subject, *addext,
    )  # fmt: skip


def signed_by_ca(cwd: Path, name: str, subject: str, extensions: str) -> None:
    """<name>.key and <name>.crt in `cwd`, signed by its ca.crt; `extensions`: an openssl extfile's text."""
    openssl(
        cwd,
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        f"{name}.key",
        "-out",
        f"{name}.csr",
        "-subj",
        subject,
    )
    (cwd / "ext.cnf").write_text(extensions)
    openssl(
        cwd, "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", f"{name}.crt", "-days", "3650", "-extfile", "ext.cnf",
    )  # fmt: skip


def ensure_pki() -> None:
    """One CA and one admin certificate (system:masters) used as server, client and front-proxy cert.

    metrics-server authenticates the API server's proxied requests by the client CA, so the
    front-proxy client certificate can be the admin one (no separate request-header CA needed).
    """
    if (PKI / "admin.crt").exists():
        return
    PKI.mkdir(parents=True, exist_ok=True)
    log("generating certificates")
    self_signed_ca(PKI, "/CN=shoal-testbed-ca")
    signed_by_ca(
        PKI,
        "admin",
        "/O=system:masters/CN=kubernetes-admin",
        "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:10.96.0.1,DNS:kubernetes,"
        "DNS:kubernetes.default,DNS:kubernetes.default.svc\n"
        "extendedKeyUsage=serverAuth,clientAuth\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n",
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
    self_signed_ca(
        out,
        f"/O=kubeflow-trainer/CN={KUBEFLOW_CA}",
        f"subjectAltName=DNS:{KUBEFLOW_CA}",
        "basicConstraints=critical,CA:TRUE",
        "keyUsage=critical,keyCertSign,digitalSignature,keyEncipherment",
    )
    openssl(out, "rsa", "-in", "ca.key", "-traditional", "-out", "ca.key")  # the rotator parses PKCS#1 only
    signed_by_ca(
        out,
        "tls",
        "/CN=webhooks",
        f"subjectAltName=DNS:{KUBEFLOW_DNS},IP:127.0.0.1\n"
        "extendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n",
    )
    return out
