"""Namespace scoping of PromQL, as prom-label-proxy does: every vector selector of a WorkerScaler's
query gets the scaler's namespace as a label matcher, so a scaler reads only its own namespace's
series, inside aggregations, functions, subqueries and binary expressions alike.

The query is parsed by promql-parser (the Rust parser of GreptimeDB); no regular expression ever
looks at PromQL. Its printer (0.12) writes label values and strings without escaping them, so every
value is handed to it escaped once more, and the printed query is parsed again and compared with the
intended one: a query whose rewrite would mean anything else is refused, never sent.
"""

from __future__ import annotations

from typing import Any

import promql_parser as pq


class ScopeError(ValueError):
    """The query cannot be limited to the namespace; the message says why."""


def _escaped(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _quoted_for_printer(value: str) -> str:
    """A literal that parses to `value` escaped once: what the printer must be given to write `value`."""
    return '"' + _escaped(_escaped(value)) + '"'


def _op(m: Any) -> str:
    return {"Equal": "=", "NotEqual": "!=", "Re": "=~", "NotRe": "!~"}[str(m.op).rsplit(".", 1)[-1]]


def _selector(node: Any, label: str, value: str) -> Any:
    """`node` (a VectorSelector) with label="value" added, as a fresh node ready for the printer."""
    matchers = node.matchers
    if matchers.or_matchers:
        raise ScopeError("selectors with `or` between matchers cannot be scoped")
    own = False
    for m in matchers.matchers:
        if m.name == label:
            if _op(m) != "=" or m.value != value:
                raise ScopeError(
                    f'it selects {m.name}{_op(m)}"{m.value}"; only {label}="{value}" may be read'
                )
            own = True
    kept = list(matchers.matchers)
    node.matchers = pq.Matchers([])
    bare = str(node)  # name{} and its modifiers (offset, @): the parts around the matchers
    prefix, _, suffix = bare.partition("{}")
    pairs = [(m.name, _op(m), m.value) for m in kept] + ([] if own else [(label, "=", value)])
    body = ",".join(f"{n}{op}{_quoted_for_printer(v)}" for n, op, v in pairs)
    return pq.parse(f"{prefix}{{{body}}}{suffix}")


def _skeleton(expr: Any) -> list[tuple[Any, ...]]:
    """What the rewrite must keep, in walk order: selectors (name, matchers, modifiers), strings,
    numbers, functions and operators."""
    out: list[tuple[Any, ...]] = []

    def visit(n: Any) -> None:
        if isinstance(n, pq.VectorSelector):
            ms = tuple(sorted((m.name, _op(m), m.value) for m in n.matchers.matchers))
            out.append(("selector", n.name, ms, n.offset, str(n.at) if n.at else None))
        elif isinstance(n, pq.StringLiteral):
            out.append(("string", n.val))
        elif isinstance(n, pq.NumberLiteral):
            out.append(("number", n.val))
        elif isinstance(n, pq.Call):
            out.append(("call", n.func.name))
        elif isinstance(n, pq.AggregateExpr | pq.BinaryExpr | pq.UnaryExpr):
            out.append((type(n).__name__, str(getattr(n, "op", ""))))

    pq.walk(expr, pre_visit=visit)
    return out


def parse(query: str) -> Any:
    try:
        return pq.parse(query)
    except ValueError as exc:
        raise ScopeError(f"not valid PromQL: {exc}") from None


def scope(query: str, label: str, value: str) -> str:
    """`query` with label="value" on every vector selector; ScopeError if that cannot be done."""
    expr = parse(query)
    calls: list[str] = []
    pq.walk(expr, pre_visit=lambda n: calls.append(n.func.name) if isinstance(n, pq.Call) else None)
    if "info" in calls:  # info() joins series no selector of the query names
        raise ScopeError("info() reads series outside the query's selectors")

    def rewrite(n: Any) -> Any:
        if isinstance(n, pq.VectorSelector):
            return _selector(n, label, value)
        if isinstance(n, pq.StringLiteral):
            return pq.parse(_quoted_for_printer(n.val))
        return None

    expected = [
        ("selector", s[1], tuple(sorted({*s[2], (label, "=", value)})), *s[3:]) if s[0] == "selector" else s
        for s in _skeleton(expr)
    ]
    printed = str(pq.transform(expr, post_visit=rewrite))
    try:
        again = pq.parse(printed)
    except ValueError:
        again = None
    if again is None or _skeleton(again) != expected:
        raise ScopeError("the query does not survive rewriting by the PromQL parser unchanged")
    return printed
