"""Kubernetes label selectors: parse the ``labelSelector`` query string and match label sets.

Called by the adapter's HTTPS layer (``adapter/server.py``) for ``?labelSelector=…`` and by the KEDA servicer to
build ``deployment=<name>``. Follows the grammar of ``k8s.io/apimachinery/pkg/labels/selector.go``::

    selector     = requirement ("," requirement)*     (empty string = match everything)
    requirement  = key | "!" key | key ("=" | "==" | "!=") value
                 | key ("in" | "notin") "(" value ("," value)* ")" | key (">" | "<") integer
    key          = [prefix "/"] name   (prefix: DNS-1123 subdomain; name: 1–63 chars of [A-Za-z0-9-_.], alnum ends)
    value        = "" | 1–63 chars of [A-Za-z0-9-_.] with alphanumeric ends

Semantics as upstream: ``!=`` and ``notin`` also match when the key is absent; ``in`` and ``=`` need it present.
Errors are :class:`SelectorError` naming the position and the offending token.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from faro.optimizer.errors import InvalidInputError

Operator = Literal["=", "!=", "in", "notin", "exists", "!", "gt", "lt"]

_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_INTEGER = re.compile(r"^-?[0-9]+$")
_SPECIAL = "=!(),<>"
_OPERATOR_TOKENS = frozenset({*_SPECIAL, "==", "!="})


class SelectorError(InvalidInputError):
    """A label selector does not parse or names an invalid key/value."""

    def __init__(self, selector: str, reason: str) -> None:
        super().__init__(f"labelSelector {selector!r}", reason)


@dataclass(frozen=True)
class Requirement:
    """One ``key <op> values`` clause; ``values`` is sorted and empty for ``exists``/``!``."""

    key: str
    operator: Operator
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key, "")
        match self.operator:
            case "=" | "in":
                return present and value in self.values
            case "!=" | "notin":
                return not present or value not in self.values
            case "exists":
                return present
            case "!":
                return not present
            case "gt" | "lt":
                if not present or not _INTEGER.match(value):
                    return False
                bound = int(self.values[0])
                return int(value) > bound if self.operator == "gt" else int(value) < bound
        return False  # pragma: no cover - exhaustive above


@dataclass(frozen=True)
class Selector:
    """A conjunction of requirements (the empty selector matches every label set)."""

    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)

    @property
    def empty(self) -> bool:
        return not self.requirements

    def equality_value(self, key: str) -> str | None:
        """The value ``key`` must equal (``key=v`` or ``key in (v)``), else None."""
        for r in self.requirements:
            if r.key == key and r.operator in ("=", "in") and len(r.values) == 1:
                return r.values[0]
        return None

    @classmethod
    def equals(cls, **labels: str) -> Selector:
        """``k1=v1,k2=v2`` built from keyword arguments (values are validated)."""
        return parse(",".join(f"{k}={v}" for k, v in labels.items()))

    def __str__(self) -> str:
        parts = []
        for r in self.requirements:
            match r.operator:
                case "exists":
                    parts.append(r.key)
                case "!":
                    parts.append(f"!{r.key}")
                case "=" | "!=":
                    parts.append(f"{r.key}{r.operator}{r.values[0]}")
                case "gt":
                    parts.append(f"{r.key}>{r.values[0]}")
                case "lt":
                    parts.append(f"{r.key}<{r.values[0]}")
                case _:
                    parts.append(f"{r.key} {r.operator} ({','.join(r.values)})")
        return ",".join(parts)


def _tokens(text: str, selector: str) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch in _SPECIAL:
            two = text[i : i + 2]
            if two in ("==", "!="):
                out.append(two)
                i += 2
            else:
                out.append(ch)
                i += 1
        else:
            j = i
            while j < len(text) and not text[j].isspace() and text[j] not in _SPECIAL:
                j += 1
            out.append(text[i:j])
            i = j
    return out


def _check_key(key: str, selector: str) -> str:
    prefix, slash, name = key.rpartition("/")
    if not key or key in _OPERATOR_TOKENS or key in ("in", "notin"):
        raise SelectorError(selector, f"expected a label key, got {key!r}")
    if slash and not (prefix and len(prefix) <= 253 and _DNS1123_SUBDOMAIN.match(prefix)):
        raise SelectorError(selector, f"invalid label key {key!r}: prefix must be a DNS-1123 subdomain")
    if not (len(name) <= 63 and _NAME.match(name)):
        raise SelectorError(
            selector, f"invalid label key {key!r}: name must be 1-63 alphanumeric characters, '-', '_' or '.'"
        )
    return key


def _check_value(value: str, selector: str) -> str:
    if value and not (len(value) <= 63 and _NAME.match(value)):
        raise SelectorError(
            selector, f"invalid label value {value!r}: must be empty or 1-63 alphanumeric characters, '-', '_' or '.'"
        )
    return value


def parse(selector: str) -> Selector:
    """Parse a label selector string; raise :class:`SelectorError` on any syntax or validation error."""
    if len(selector) > 4096:
        raise SelectorError(selector[:32] + "…", "longer than 4096 characters")
    toks = _tokens(selector, selector)
    pos = 0
    reqs: list[Requirement] = []

    def peek() -> str | None:
        return toks[pos] if pos < len(toks) else None

    def take(what: str) -> str:
        nonlocal pos
        tok = peek()
        if tok is None:
            raise SelectorError(selector, f"expected {what}, got end of selector")
        pos += 1
        return tok

    while pos < len(toks):
        tok = take("a requirement")
        if tok == "!":
            key = _check_key(take("a label key after '!'"), selector)
            reqs.append(Requirement(key, "!"))
        else:
            key = _check_key(tok, selector)
            op = peek()
            if op is None or op == ",":
                reqs.append(Requirement(key, "exists"))
            elif op in ("=", "==", "!="):
                pos += 1
                nxt = peek()
                value = "" if nxt is None or nxt == "," else take("a value")
                if value in _OPERATOR_TOKENS:
                    raise SelectorError(selector, f"expected a value after {key}{op}, got {value!r}")
                reqs.append(Requirement(key, "!=" if op == "!=" else "=", (_check_value(value, selector),)))
            elif op in ("in", "notin"):
                pos += 1
                if take("'('") != "(":
                    raise SelectorError(selector, f"expected '(' after {key} {op}")
                values: list[str] = []
                while True:
                    v = take("a value or ')'")
                    if v == ")" and not values:
                        raise SelectorError(selector, f"{key} {op} () needs at least one value")
                    if v in (",", ")"):
                        values.append("")  # upstream allows empty values inside the set
                        if v == ")":
                            break
                        continue
                    values.append(_check_value(v, selector))
                    sep = take("',' or ')'")
                    if sep == ")":
                        break
                    if sep != ",":
                        raise SelectorError(selector, f"expected ',' or ')' in the value set of {key}, got {sep!r}")
                reqs.append(Requirement(key, op, tuple(sorted(set(values)))))
            elif op in (">", "<"):
                pos += 1
                bound = take("an integer")
                if not _INTEGER.match(bound):
                    raise SelectorError(selector, f"{key}{op} needs an integer, got {bound!r}")
                reqs.append(Requirement(key, "gt" if op == ">" else "lt", (bound,)))
            else:
                raise SelectorError(selector, f"unexpected {op!r} after label key {key!r}")
        nxt = peek()
        if nxt is not None:
            if nxt != ",":
                raise SelectorError(selector, f"expected ',' between requirements, got {nxt!r}")
            pos += 1
            if peek() is None:
                raise SelectorError(selector, "trailing ','")
    return Selector(tuple(reqs))
