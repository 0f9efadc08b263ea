"""JSON Schemas of the pipeline configs, with each installed plugin's ``args``, for editors and CI.

Every component slot becomes a union of ``{name: <const>, args: <that plugin's args>}`` objects, one per
installed plugin of the slot's kind, so an editor completes ``name`` and then that plugin's ``args``.
A kind with no plugin installed accepts any ``{name, args}``. The files are written atomically;
``check`` reports the files that differ from what would be written.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue, PydanticJsonSchemaWarning
from pydantic_core import core_schema

from omlcore.registry import Registry, get_registry, kind_of, normalize_dist
from omlcore.schemas import KIND_KEY, PIPELINES, ComponentSpec

__all__ = ["build_schemas", "check_schemas", "write_schemas"]

DIALECT = "https://json-schema.org/draft/2020-12/schema"


class _Lenient(GenerateJsonSchema):
    """Types with no JSON form (tensors, callables) get a schema that no JSON value matches."""

    def handle_invalid_for_json_schema(self, schema: Any, error_info: str) -> JsonSchemaValue:
        return {"not": {}, "description": f"Not settable from a config ({error_info})."}

    def callable_schema(self, schema: core_schema.CallableSchema) -> JsonSchemaValue:
        return {"not": {}, "description": "A Python callable; not settable from a config."}


def _rewrite_refs(node: Any, mapping: dict[str, str]) -> Any:
    if isinstance(node, dict):
        return {
            k: (mapping.get(v, v) if k == "$ref" and isinstance(v, str) else _rewrite_refs(v, mapping))
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_rewrite_refs(v, mapping) for v in node]
    return node


def _args_schema(registry: Registry, kind: str, name: str, defs: dict[str, Any]) -> dict[str, Any]:
    model = registry.args_model(kind, name).model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PydanticJsonSchemaWarning)
        schema = model.model_json_schema(by_alias=True, schema_generator=_Lenient)
    local = schema.pop("$defs", {})
    prefix = f"{kind}.{name}."
    mapping = {f"#/$defs/{k}": f"#/$defs/{prefix}{k}" for k in local}
    for k, v in local.items():
        defs[prefix + k] = _rewrite_refs(v, mapping)
    return _rewrite_refs(schema, mapping)  # type: ignore[no-any-return]


def _kind_schema(
    registry: Registry, kind: str, defs: dict[str, Any], distributions: frozenset[str] | None
) -> dict[str, Any]:
    k = kind_of(kind)
    options = []
    for name, offered in registry.entries(k.name).items():
        if len(offered) != 1:
            continue  # a conflict: `omlcore plugins check` reports it
        dist = offered[0].distribution
        if distributions is not None and (dist is None or normalize_dist(dist) not in distributions):
            continue
        args = _args_schema(registry, k.name, name, defs)
        option: dict[str, Any] = {
            "type": "object",
            "title": f"{k.name} {name}",
            "description": f"From {offered[0].origin}.",
            "properties": {"name": {"const": name}, "args": args},
            "required": ["name", "args"] if args.get("required") else ["name"],
            "additionalProperties": False,
        }
        options.append(option)
    if not options:
        generic = ComponentSpec.model_json_schema()
        generic["description"] = f"Any {k.name} ({k.summary}): no {k.name} plugin was installed at export time."
        return generic
    return {"description": f"One of the installed {k.name} plugins ({k.summary}).", "oneOf": options}


def _retarget(node: Any, kinds: set[str], kind: str | None = None) -> Any:
    """Point each slot's ``ComponentSpec`` reference at the definition of its kind (collected in ``kinds``)."""
    if isinstance(node, dict):
        kind = node.get(KIND_KEY, kind)
        if kind is not None and node.get("$ref") == "#/$defs/ComponentSpec":
            kinds.add(kind)
            return {**{k: v for k, v in node.items() if k != KIND_KEY}, "$ref": f"#/$defs/{kind}"}
        return {k: _retarget(v, kinds, kind) for k, v in node.items() if k != KIND_KEY}
    if isinstance(node, list):
        return [_retarget(v, kinds, kind) for v in node]
    return node


def build_schemas(
    registry: Registry | None = None, distributions: Iterable[str] | None = None
) -> dict[str, dict[str, Any]]:
    """File name → schema for every pipeline (``train.schema.json``...), plugins' pipelines included.

    ``distributions`` limits the plugins included (their components and pipelines) to those
    distributions (default: all installed).
    """
    reg = registry or get_registry()
    only = None if distributions is None else frozenset(normalize_dist(d) for d in distributions)
    out = {}
    from omlcore.config import pipeline_model, pipeline_names

    for pipeline in pipeline_names():
        model, provider = pipeline_model(pipeline)
        if (
            pipeline not in PIPELINES
            and only is not None
            and (provider is None or normalize_dist(provider) not in only)
        ):
            continue
        schema = model.model_json_schema(by_alias=True)
        defs: dict[str, Any] = schema.pop("$defs", {})
        kinds: set[str] = set()
        schema = _retarget(schema, kinds)
        defs = _retarget(defs, kinds)
        for kind in sorted(kinds):
            defs[kind] = _kind_schema(reg, kind, defs, only)
        ordered = {"$schema": DIALECT, "$id": f"omlcore/{pipeline}.schema.json", **schema}
        ordered["$defs"] = dict(sorted(defs.items()))
        out[f"{pipeline}.schema.json"] = ordered
    return out


def _render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_schemas(
    directory: str | Path, registry: Registry | None = None, distributions: Iterable[str] | None = None
) -> list[Path]:
    """Write the schemas into ``directory`` (created if needed); each file is replaced atomically."""
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for fname, schema in build_schemas(registry, distributions).items():
        path = target / fname
        fd, tmp = tempfile.mkstemp(prefix=f".{fname}.", dir=target)
        try:
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes the file private; give it the usual mode
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(_render(schema))
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        written.append(path)
    return written


def check_schemas(
    directory: str | Path, registry: Registry | None = None, distributions: Iterable[str] | None = None
) -> list[str]:
    """Names of the files in ``directory`` that are missing or differ from a fresh export."""
    target = Path(directory)
    stale = []
    for fname, schema in build_schemas(registry, distributions).items():
        path = target / fname
        if not path.exists() or path.read_text(encoding="utf-8") != _render(schema):
            stale.append(fname)
    return stale
