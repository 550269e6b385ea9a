from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from shoal import crdgen
from shoal.api.common import parse_quantity
from shoal.api.pool import ContainerPoolSpec

ROOT = Path(__file__).resolve().parents[2]


def test_committed_crds_match_the_models() -> None:
    for name, text in crdgen.render().items():
        path = ROOT / "crds" / name
        assert path.exists(), f"{path} missing: run make crds"
        assert path.read_text() == text, f"{path} drifted from the models: run make crds"


def test_crd_schema_is_structural() -> None:
    """No anyOf with null, no $ref, no titles: the API server would refuse or misread them."""
    for text in crdgen.render().values():
        doc = yaml.safe_load(text)

        def walk(node: object) -> None:
            if isinstance(node, dict):
                assert "$ref" not in node and "title" not in node and "nullable" not in node
                for branch in node.get("anyOf", []):
                    assert branch.get("type") != "null"
                for v in node.values():
                    walk(v)
            elif isinstance(node, list):
                for v in node:
                    walk(v)

        walk(doc)


def test_pool_crd_has_scale_subresource_and_columns() -> None:
    doc = yaml.safe_load(crdgen.render()["shoal.dev_containerpools.yaml"])
    version = doc["spec"]["versions"][0]
    assert version["subresources"]["scale"]["labelSelectorPath"] == ".status.selector"
    assert [c["name"] for c in version["additionalPrinterColumns"]] == [
        "Desired",
        "Current",
        "Ready",
        "Idle",
        "Claimed",
        "Age",
    ]
    assert doc["spec"]["names"]["shortNames"] == ["cpool"]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("500m", Decimal("0.5")),
        ("2", Decimal(2)),
        ("1Ki", Decimal(1024)),
        ("1.5Gi", Decimal(1.5 * 2**30)),
        ("1e3", Decimal(1000)),
        ("100M", Decimal(10**8)),
        (4, Decimal(4)),
    ],
)
def test_parse_quantity(text: str, value: Decimal) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize("bad", ["2x", "-1Gi", "", "1.2.3", "Gi"])
def test_bad_quantities_are_rejected(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_quantity(bad)


def test_model_rejects_unknown_fields_and_empty_templates() -> None:
    base = {"template": {"spec": {"containers": [{"name": "c", "image": "x"}]}}}
    with pytest.raises(ValidationError):
        ContainerPoolSpec.model_validate({**base, "bogus": 1})
    with pytest.raises(ValidationError):
        ContainerPoolSpec.model_validate({"template": {"spec": {"containers": []}}})
    with pytest.raises(ValidationError):
        ContainerPoolSpec.model_validate({**base, "selection": "Random"})


def schemas() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for text in crdgen.render().values():
        doc = yaml.safe_load(text)
        out.append((doc["spec"]["names"]["kind"], doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]))
    return out


def fields(node: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for key, child in (node.get("properties") or {}).items():
        yield f"{path}.{key}", child
        yield from fields(child, f"{path}.{key}")
    if "items" in node:
        yield from fields(node["items"], f"{path}[]")


def test_kubectl_explain_has_a_description_for_every_spec_and_status_field() -> None:
    """What `kubectl explain tsess.spec.checkpoint` shows comes from these descriptions."""
    undescribed = [
        f"{kind}: {path}"
        for kind, schema in schemas()
        for part in ("spec", "status")
        for path, node in [(part, schema["properties"][part]), *fields(schema["properties"][part], part)]
        if not (node.get("description") or "").strip()
    ]
    undescribed += [kind for kind, schema in schemas() if not (schema.get("description") or "").strip()]
    assert undescribed == [], "\n".join(undescribed)
    count = sum(
        1 for _, schema in schemas() for p in ("spec", "status") for _ in fields(schema["properties"][p], p)
    )
    assert count >= 180  # the walk reaches every kind's nested fields (188 today)


def test_every_cel_message_names_a_field_of_its_object() -> None:
    """An object-level rule's answer is prefixed with the object's path only: its message must say which
    of the object's fields is wrong."""

    def rules(node: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any], dict[str, str]]]:
        for rule in node.get("x-kubernetes-validations") or []:
            yield path, node, rule
        for key, child in (node.get("properties") or {}).items():
            yield from rules(child, f"{path}.{key}")
        if "items" in node:
            yield from rules(node["items"], f"{path}[]")

    checked = 0
    for kind, schema in schemas():
        for path, node, rule in rules(schema, kind):
            names = set(node.get("properties") or {}) | {path.rsplit(".", 1)[-1].rstrip("[]")}
            message = rule["message"]
            if "properties" not in node:
                checked += 1
                continue  # a rule on a leaf: the API server's answer starts with that field's path
            assert any(name in message for name in names), (
                f"{path}: {message!r} names none of {sorted(names)}"
            )
            checked += 1
    assert checked >= 15


def test_every_bound_a_field_declares_is_in_its_schema() -> None:
    """A field typed with an alias that carries its own bounds (PositiveInt: ge=1, le=2**31-1) lost the
    ge/le of its Field(): pydantic lets the alias's win, so the CRD and the operator both accepted a
    pollIntervalSeconds of a year. Every literal ge/le in api/*.py must reach the JSON schema."""
    import ast
    import importlib

    checked = 0
    for path in sorted((ROOT / "operator" / "shoal" / "api").glob("*.py")):
        module = importlib.import_module(f"shoal.api.{path.stem}")
        for cls in ast.parse(path.read_text()).body:
            if not isinstance(cls, ast.ClassDef):
                continue
            for stmt in cls.body:
                if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.value, ast.Call)):
                    continue
                bounds = {k.arg: k.value for k in stmt.value.keywords if k.arg in ("ge", "le")}
                if not bounds or not isinstance(stmt.target, ast.Name):
                    continue
                prop = getattr(module, cls.name).model_json_schema()["properties"][stmt.target.id]
                prop = next((a for a in prop.get("anyOf", []) if a.get("type") != "null"), prop)
                for key, node in bounds.items():
                    want = eval(
                        compile(ast.Expression(node), str(path), "eval"), vars(module)
                    )  # 10**12, a constant
                    got = prop.get("minimum" if key == "ge" else "maximum")
                    assert got == want, f"{cls.name}.{stmt.target.id}: {key}={want} but the schema says {got}"
                    checked += 1
    assert checked >= 30
