"""The JSON Schemas shipped in `jetpolicy/common/schemas/`, and the small validator that applies them.

Robots run Python 3.8 from a minimal wheel set without internet, so the robot side cannot depend
on `jsonschema`. This validator implements only the Draft 2020-12 keywords our schemas use, and
refuses a schema that uses any other: a keyword it does not know would otherwise be skipped
silently, enforcing less than the schema says. The tests check that every schema is a valid Draft
2020-12 schema for `jsonschema` and that both validators agree on valid and mutated documents.
"""

from __future__ import annotations

import json
import math
import operator
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, TypeVar

from jetpolicy.common.errors import JetpolicyError

__all__ = [
    "SCHEMA_DIR",
    "SCHEMA_NAMES",
    "Schema",
    "SchemaProblem",
    "describe_problems",
    "load_schema",
    "parse_checked",
    "version_problem",
]

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
SCHEMA_NAMES = (
    "policy-manifest",
    "runner-config",
    "runner-status",
    "operator-hold",
    "release-history-record",
    "host-record",
    "rollout-report",
    "failure-policy",
)

# Keywords that only annotate; everything else a schema uses must be one _check_keyword applies.
_ANNOTATIONS = {"$schema", "$id", "$comment", "$defs", "title", "description", "default", "examples"}
_ASSERTIONS = {
    "$ref", "type", "enum", "const", "properties", "required", "additionalProperties", "items",
    "minItems", "maxItems", "minLength", "pattern", "minimum", "maximum", "exclusiveMinimum",
    "exclusiveMaximum",
}  # fmt: skip
T = TypeVar("T")
# Problems collected per document before giving up: the first names the fix, the count the extent.
_MAX_PROBLEMS = 20


@dataclass(frozen=True)
class SchemaProblem:
    """One way a document is off its schema: the dotted field path ("" for the top level) and why."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"field '{self.path}': {self.message}" if self.path else self.message


def describe_problems(problems: Sequence[SchemaProblem], schema: str) -> str:
    """One line naming the first problem, how many more there are and the schema (readers prefix the file)."""
    more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
    return f"{problems[0]}{more}, against {schema}.schema.json"


def parse_checked(
    schema: Schema, raw: Any, parse: Callable[[], T], refuse: Callable[[List[SchemaProblem]], Exception]
) -> T:
    """`parse()`'s result for a document that must also be valid against `schema`.

    Where the parser and the schema both find a problem, the parser's error is raised: it names the
    case's own fix (export static shapes, point release_dir at a release). Where only the schema
    does, `refuse(problems)` is raised, also when the parser tripped over the unexpected structure
    (a list where it expects an object) instead of reporting it, so no reader crashes on one.
    """
    problems = schema.problems(raw)
    if not problems:
        return parse()
    try:
        parse()
    except JetpolicyError:
        raise
    except (TypeError, AttributeError, LookupError, ValueError):
        pass
    raise refuse(problems)


def version_problem(raw: Mapping[str, Any], key: str, supported: int) -> Optional[str]:
    """Why this reader cannot read the document's `key` version, or None when it can.

    A document without the field was written before versions were recorded: version 1. Only
    equality is accepted: a newer major changed the meaning of fields, an unknown value is foreign.
    """
    value = raw.get(key, 1)
    if value == supported and _is_type(value, "integer"):
        return None
    if _is_type(value, "integer") and value > supported:
        return (
            f"'{key}' is {value}, newer than this jetpolicy reads ({supported}): "
            "it was written by a newer jetpolicy"
        )
    return f"'{key}' must be {supported}, got {_show(value)}"


def _json_type(value: Any) -> str:
    for name in ("null", "boolean", "integer", "number", "string", "array", "object"):
        if _is_type(value, name):
            return name
    return type(value).__name__


def _is_type(value: Any, name: str) -> bool:
    # JSON has one number type: 1.0 is an integer, and true is never a number (Python says it is).
    if name == "null":
        return value is None
    if name == "boolean":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if name == "integer":
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if name == "number":
        return isinstance(value, (int, float))
    if name == "string":
        return isinstance(value, str)
    if name == "array":
        return isinstance(value, list)
    if name == "object":
        return isinstance(value, dict)
    raise ValueError(f"unknown JSON type {name!r}")


def _equal(left: Any, right: Any) -> bool:
    """JSON equality: 1 == 1.0, but true != 1, and containers compare item by item."""
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left == right
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(_equal(a, b) for a, b in zip(left, right))
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(_equal(left[k], right[k]) for k in left)
    if _is_type(left, "number") and _is_type(right, "number"):
        return bool(left == right)
    return type(left) is type(right) and bool(left == right)


def _show(value: Any) -> str:
    try:
        text = json.dumps(value, allow_nan=True)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _join(path: str, key: Any) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


class Schema:
    """One loaded schema; `$ref`s resolve within it (`#/$defs/x`) or to a sibling file."""

    def __init__(self, name: str, document: Dict[str, Any], siblings: Dict[str, Dict[str, Any]]) -> None:
        self.name = name
        self.document = document
        self._siblings = siblings
        _check_keywords(document, f"{name}.schema.json")

    def problems(self, instance: Any) -> List[SchemaProblem]:
        """Every problem of `instance` (up to a cap), in document order; empty when it is valid."""
        found: List[SchemaProblem] = []
        self._validate(instance, self.document, self.document, "", found)
        return found[:_MAX_PROBLEMS]

    def _resolve(self, ref: str, base: Dict[str, Any]) -> Tuple[Dict[str, Any], Dict[str, Any]]:
        """(the schema `ref` names, the document its own `#` refs resolve in)."""
        target, _, pointer = ref.partition("#")
        document = base if not target else self._siblings[target]
        node: Any = document
        for part in [p for p in pointer.split("/") if p]:
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return node, document

    def _validate(
        self, value: Any, schema: Any, base: Dict[str, Any], path: str, found: List[SchemaProblem]
    ) -> None:
        if len(found) >= _MAX_PROBLEMS:
            return
        if schema is True:
            return
        if schema is False:
            found.append(SchemaProblem(path, "is not allowed here"))
            return
        if "$ref" in schema:
            target, document = self._resolve(schema["$ref"], base)
            self._validate(value, target, document, path, found)
        types = schema.get("type")
        if types is not None:
            allowed = [types] if isinstance(types, str) else list(types)
            if not any(_is_type(value, t) for t in allowed):
                found.append(
                    SchemaProblem(
                        path, f"expected {' or '.join(allowed)}, got {_json_type(value)} {_show(value)}"
                    )
                )
                return  # the other keywords would only repeat the type error
        if "enum" in schema and not any(_equal(value, option) for option in schema["enum"]):
            options = ", ".join(_show(o) for o in schema["enum"])
            found.append(SchemaProblem(path, f"expected one of {options}, got {_show(value)}"))
        if "const" in schema and not _equal(value, schema["const"]):
            found.append(SchemaProblem(path, f"expected {_show(schema['const'])}, got {_show(value)}"))
        if _is_type(value, "number"):
            self._numbers(value, schema, path, found)
        if isinstance(value, str):
            if "minLength" in schema and len(value) < schema["minLength"]:
                found.append(SchemaProblem(path, f"must have at least {schema['minLength']} character(s)"))
            if "pattern" in schema and re.search(schema["pattern"], value) is None:
                found.append(SchemaProblem(path, f"{_show(value)} does not match {schema['pattern']}"))
        if isinstance(value, list):
            self._array(value, schema, base, path, found)
        if isinstance(value, dict):
            self._object(value, schema, base, path, found)

    @staticmethod
    def _numbers(value: float, schema: Mapping[str, Any], path: str, found: List[SchemaProblem]) -> None:
        # Written as "fails when beyond", as jsonschema does, so NaN (which compares false) passes
        # here the same way; the readers refuse NaN themselves where it matters.
        limits = (
            ("minimum", operator.lt, "is below the minimum"),
            ("maximum", operator.gt, "is above the maximum"),
            ("exclusiveMinimum", operator.le, "must be greater than"),
            ("exclusiveMaximum", operator.ge, "must be less than"),
        )
        for key, beyond, words in limits:
            nan = isinstance(value, float) and math.isnan(value)
            if key in schema and not nan and beyond(value, schema[key]):
                found.append(SchemaProblem(path, f"{_show(value)} {words} {schema[key]}"))

    def _array(
        self, value: List[Any], schema: Mapping[str, Any], base: Dict[str, Any], path: str,
        found: List[SchemaProblem],
    ) -> None:  # fmt: skip
        count = f"has {len(value)} item(s)"
        if "minItems" in schema and len(value) < schema["minItems"]:
            found.append(SchemaProblem(path, f"{count}, needs at least {schema['minItems']}"))
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            found.append(SchemaProblem(path, f"{count}, at most {schema['maxItems']} allowed"))
        if "items" in schema:
            for index, item in enumerate(value):
                self._validate(item, schema["items"], base, _join(path, index), found)

    def _object(
        self, value: Dict[str, Any], schema: Mapping[str, Any], base: Dict[str, Any], path: str,
        found: List[SchemaProblem],
    ) -> None:  # fmt: skip
        properties: Mapping[str, Any] = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in value:
                found.append(SchemaProblem(_join(path, key), "is required but missing"))
        for key, item in value.items():
            if key in properties:
                self._validate(item, properties[key], base, _join(path, key), found)
            elif "additionalProperties" in schema:
                extra = schema["additionalProperties"]
                if extra is False:
                    known = ", ".join(sorted(properties))
                    found.append(SchemaProblem(_join(path, key), f"unknown field (known: {known})"))
                else:
                    self._validate(item, extra, base, _join(path, key), found)


def _check_keywords(node: Any, where: str) -> None:
    """Refuse a schema using a keyword this validator does not apply (see the module docstring)."""
    if isinstance(node, bool):
        return
    if not isinstance(node, dict):
        raise ValueError(f"{where}: a schema must be an object or a boolean, got {_show(node)}")
    unknown = sorted(set(node) - _ANNOTATIONS - _ASSERTIONS)
    if unknown:
        raise ValueError(f"{where}: keyword(s) {unknown} are not supported by jetpolicy.common.schema")
    for key in ("properties", "$defs"):
        for name, child in node.get(key, {}).items():
            _check_keywords(child, f"{where} {key}.{name}")
    for key in ("items", "additionalProperties"):
        if key in node:
            _check_keywords(node[key], f"{where} {key}")


_LOADED: Dict[str, Schema] = {}


def _read(name: str) -> Dict[str, Any]:
    document = json.loads((SCHEMA_DIR / f"{name}.schema.json").read_text(encoding="utf-8"))
    if not isinstance(document, dict):
        raise ValueError(f"{name}.schema.json must hold a JSON object")
    return document


def load_schema(name: str) -> Schema:
    """The schema `<name>.schema.json` shipped with the package (read once per process)."""
    if name not in SCHEMA_NAMES:
        raise KeyError(f"no schema {name!r}; known: {', '.join(SCHEMA_NAMES)}")
    if name not in _LOADED:
        # Sibling files by name, as `$ref`s name them ("host-record.schema.json#/$defs/gates").
        siblings = {f"{other}.schema.json": _read(other) for other in SCHEMA_NAMES}
        _LOADED[name] = Schema(name, siblings[f"{name}.schema.json"], siblings)
    return _LOADED[name]
