"""The packages stack, they do not loop: each imports only from the layers below it. The vocabulary
(`shoal.vocab`, every label, annotation and environment name) is the ground floor; the pure packages
stack on it and on `api` (pool < claims < builders < sessions, no loops); only the IO layers (`k8s`, `reconcile`, `handlers`, `runtime`)
reach the API server, and only `k8s/paths.py` spells its paths."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SHOAL = Path(__file__).resolve().parents[2] / "operator" / "shoal"
COMMON = {"shoal", "shoal.vocab", "shoal.times"}  # shoal itself: the API group and version
ALLOWED = {
    "vocab": set(),
    "api": COMMON,
    "scaling": COMMON | {"shoal.api"},
    "pool": COMMON | {"shoal.api"},
    "claims": COMMON | {"shoal.api", "shoal.pool"},
    "builders": COMMON | {"shoal.api", "shoal.pool", "shoal.claims", "shoal.config"},
    "sessions": COMMON | {"shoal.api", "shoal.pool", "shoal.claims", "shoal.builders"},
    "agent": COMMON | {"shoal.k8s"},  # a program of its own in the pod, with its own API client
}


def imports(path: Path) -> set[str]:
    """The shoal packages a module imports (shoal.pool.pods -> shoal.pool)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = (
            [node.module or ""]
            if isinstance(node, ast.ImportFrom) and node.level == 0
            else [a.name for a in node.names]
            if isinstance(node, ast.Import)
            else []
        )
        for name in names:
            parts = name.split(".")
            if parts[0] == "shoal":
                found.add(".".join(parts[:2]))
    return found


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_a_layer_imports_only_from_below(layer: str) -> None:
    files = [SHOAL / "vocab.py"] if layer == "vocab" else sorted((SHOAL / layer).glob("*.py"))
    assert files
    own = {f"shoal.{layer}"}
    wrong = {
        f"{f.relative_to(SHOAL)} imports {name}" for f in files for name in imports(f) - ALLOWED[layer] - own
    }
    assert not wrong, sorted(wrong)


def test_every_label_and_annotation_is_named_in_the_vocabulary_only() -> None:
    """No module but vocab.py spells a shoal.dev/ label or annotation (or a pod env name) itself."""
    spelled = re.compile(
        r"""["'](shoal\.dev/[a-z-]+|SHOAL_(WORKDIR|CHECKPOINT_DIR|CONFIG_FILE|RESUME_FROM|STANDBY))["']"""
    )
    wrong = [
        f"{f.relative_to(SHOAL)}: {m.group(1)}"
        for f in sorted(SHOAL.rglob("*.py"))
        if f.name != "vocab.py"
        for m in spelled.finditer(f.read_text())
    ]
    assert not wrong, wrong


def test_api_paths_are_built_in_k8s_paths_only() -> None:
    """No module but k8s/paths.py spells a Kubernetes API path (Prometheus's own /api/v1 aside)."""
    spelled = re.compile(r"""f?["'](/apis?/[^"']*)["']""")
    wrong = [
        f"{f.relative_to(SHOAL)}: {m.group(1)}"
        for f in sorted(SHOAL.rglob("*.py"))
        if f.relative_to(SHOAL).as_posix() not in ("k8s/paths.py", "sources/prometheus.py")
        for m in spelled.finditer(f.read_text())
    ]
    assert not wrong, wrong
