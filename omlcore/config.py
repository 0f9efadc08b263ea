"""Reading and validating pipeline configs.

A config is a YAML mapping. Command-line overrides (``trainer.max_epochs=3 loss.args.margin=0.2``)
are applied on top. Validation has two phases:

1. **structure** (:func:`parse_config`): the pydantic models of :mod:`omlcore.schemas`, unknown keys
   rejected, no plugin imported;
2. **plugins** (:func:`plugin_issues`): each component slot's plugin is resolved and its ``args`` are
   checked against the constructor's signature; plugins may add checks through the
   ``omlcore_validate_config`` hook. Only the plugins the config names are imported.

Both phases collect every problem before reporting, each with its dotted path.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from omlcore.errors import ConfigError, ConfigIssue, ConfigValidationError, OverrideError
from omlcore.schemas import PIPELINES, ComponentSpec, iter_slots

__all__ = [
    "apply_overrides",
    "component_spec_from_text",
    "cross_field_issues",
    "load_config",
    "parse_config",
    "pipeline_model",
    "pipeline_names",
    "plugin_issues",
    "read_yaml",
]


def read_yaml(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML file; :class:`ConfigError` if it is missing, unreadable or not a mapping."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"Config file {str(p)!r} does not exist (looked in {str(p.resolve().parent)!r}).")
    if p.is_dir():
        raise ConfigError(f"Config path {str(p)!r} is a folder; give the path of a YAML file.")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"Cannot read config file {str(p)!r}: {exc}.") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"Config file {str(p)!r} is not valid YAML{where}: {problem}.") from exc
    if data is None:
        raise ConfigError(f"Config file {str(p)!r} is empty; it must hold a mapping such as 'pipeline: train'.")
    if not isinstance(data, dict):
        raise ConfigError(
            f"Config file {str(p)!r} must hold a mapping of keys to values at its top level, "
            f"but it holds a {type(data).__name__}."
        )
    return data


def _parse_value(text: str, override: str) -> Any:
    try:
        return yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError as exc:
        raise OverrideError(
            f"Override {override!r}: the value {text!r} is not valid YAML ({exc}). Quote it for a string."
        ) from exc


def _describe(node: Any) -> str:
    if isinstance(node, list):
        return f"a list of {len(node)} item(s), not a mapping (use an index from 0 to {len(node) - 1})"
    return f"the value {node!r}, not a mapping"


def apply_overrides(data: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """A copy of ``data`` with dotted overrides applied, in order.

    - ``a.b=VALUE`` sets a key, creating missing mappings; ``VALUE`` is parsed as YAML
      (``3`` → int, ``null`` → None, ``[1, 5]`` → list, ``'3'`` → str);
    - ``~a.b`` removes a key;
    - a numeric part indexes an existing list (``metrics.cmc_top_k.0=1``).
    """
    out: dict[str, Any] = copy.deepcopy(dict(data))
    for override in overrides:
        remove = override.startswith("~")
        if remove:
            dotted, value = override[1:], None
            if "=" in dotted:
                raise OverrideError(f"Override {override!r}: '~key' removes a key and takes no value.")
        else:
            if "=" not in override:
                raise OverrideError(
                    f"Override {override!r} has no '='. Write key.path=value (e.g. trainer.max_epochs=3) "
                    f"or ~key.path to remove a key."
                )
            dotted, text = override.split("=", 1)
            value = _parse_value(text, override)
        parts = dotted.strip().split(".")
        if not all(parts):
            raise OverrideError(f"Override {override!r}: the key {dotted!r} has an empty part.")
        node: Any = out
        for depth, part in enumerate(parts[:-1]):
            here = ".".join(parts[: depth + 1])
            if isinstance(node, MutableMapping):
                if part not in node or node[part] is None:
                    if remove:
                        raise OverrideError(f"Override {override!r}: there is no key {here!r} to remove from.")
                    node[part] = {}
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                parent = ".".join(parts[:depth]) or "the top level"
                raise OverrideError(
                    f"Override {override!r}: cannot enter {here!r}, {parent!r} holds {_describe(node)}."
                )
        last = parts[-1]
        if isinstance(node, MutableMapping):
            if remove:
                if last not in node:
                    raise OverrideError(f"Override {override!r}: there is no key {dotted!r} to remove.")
                del node[last]
            else:
                node[last] = value
        elif isinstance(node, list) and last.isdigit() and int(last) < len(node):
            if remove:
                del node[int(last)]
            else:
                node[int(last)] = value
        else:
            parent = ".".join(parts[:-1])
            raise OverrideError(f"Override {override!r}: cannot set {last!r}, {parent!r} holds {_describe(node)}.")
    return out


def _plugin_pipelines() -> dict[str, Any]:
    """Installed plugin pipelines (group ``omlcore.pipelines``): name → entry (metadata only; nothing
    imported). A pipeline offered by two distributions is a conflict; the core's names cannot be replaced."""
    from omlcore.registry import PIPELINE_GROUP, get_registry

    out: dict[str, Any] = {}
    for name, offered in get_registry().pipelines().items():
        if name in PIPELINES:
            continue
        if len(offered) > 1:
            from omlcore.errors import PluginConflictError

            raise PluginConflictError("pipeline", PIPELINE_GROUP, name, [e.origin for e in offered])
        out[name] = offered[0]
    return out


def pipeline_names() -> list[str]:
    """Every pipeline a config may name: the core's, then the installed plugins' (sorted)."""
    return [*PIPELINES, *sorted(_plugin_pipelines())]


def pipeline_model(name: str) -> tuple[type[BaseModel], str | None]:
    """The config model of pipeline ``name`` and the distribution providing it (``None``: the core).

    Raises :class:`ConfigValidationError` (path ``pipeline``) for an unknown name, and
    :class:`~omlcore.errors.PluginLoadError` when the plugin's model cannot be imported.
    """
    if name in PIPELINES:
        return PIPELINES[name], None
    plugins = _plugin_pipelines()
    if name not in plugins:
        import difflib

        names = pipeline_names()
        close = difflib.get_close_matches(name, names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigValidationError(
            [ConfigIssue("pipeline", f"is {name!r}; it must be one of: {', '.join(names)}{hint}")]
        )
    entry = plugins[name]
    try:
        model = entry.load()
    except Exception as exc:
        from omlcore.errors import PluginLoadError

        raise PluginLoadError("pipeline", name, entry.value, entry.origin, exc) from exc
    if not (isinstance(model, type) and issubclass(model, BaseModel) and "pipeline" in model.model_fields):
        raise ConfigError(
            f"pipeline {name!r} from {entry.origin} is not a config model: {entry.value} must be a pydantic "
            "model with a 'pipeline' field"
        )
    return model, entry.distribution


def parse_config(data: Mapping[str, Any], *, cross_field: bool = True) -> BaseModel:
    """Phase 1: the pipeline model for ``data`` (chosen by its ``pipeline`` key). Imports no plugin, except
    the model of a pipeline that a plugin adds (group ``omlcore.pipelines``)."""
    pipeline = data.get("pipeline")
    if not isinstance(pipeline, str):
        got = "is missing" if pipeline is None else f"is {pipeline!r}"
        raise ConfigValidationError(
            [ConfigIssue("pipeline", f"{got}; it must be one of: {', '.join(pipeline_names())}")]
        )
    model, _ = pipeline_model(pipeline)
    try:
        config = model.model_validate(dict(data))
    except ValidationError as exc:
        from omlcore.registry import issues_from_validation

        raise ConfigValidationError(issues_from_validation(exc, "", data)) from None
    issues = cross_field_issues(config) if cross_field else []
    if issues:
        raise ConfigValidationError(issues)
    return config


def cross_field_issues(config: BaseModel) -> list[ConfigIssue]:
    """The problems of a structurally valid config that involve several keys (its ``cross_field_issues()``)."""
    check = getattr(config, "cross_field_issues", None)
    return list(check()) if callable(check) else []


def plugin_issues(config: BaseModel, registry: Any = None, plugin_manager: Any = None) -> list[ConfigIssue]:
    """Phase 2: every problem with the plugins a parsed config names, and the plugins' own checks."""
    from omlcore.plugins import get_plugin_manager
    from omlcore.registry import get_registry

    reg = registry or get_registry()
    issues: list[ConfigIssue] = []
    for path, kind, spec in iter_slots(config):
        issues += reg.validate(kind, spec, path)
    pm = plugin_manager or get_plugin_manager()
    for contributed in pm.hook.omlcore_validate_config(config=config):
        issues += list(contributed)
    return issues


def load_config(
    source: str | Path | Mapping[str, Any],
    overrides: Sequence[str] = (),
    *,
    check_plugins: bool = True,
    registry: Any = None,
) -> BaseModel:
    """Read, override and validate a config; raise :class:`ConfigValidationError` with every problem.

    ``source`` is a YAML path or an already loaded mapping. With ``check_plugins=False`` only the
    structure is checked (phase 1).
    """
    name = None if isinstance(source, Mapping) else str(source)
    data = dict(source) if isinstance(source, Mapping) else read_yaml(source)
    data = apply_overrides(data, overrides)
    try:
        config = parse_config(data, cross_field=False)
    except ConfigValidationError as exc:
        raise ConfigValidationError(exc.issues, source=name) from None
    # The structure is valid, so the cross-field checks and every plugin's checks can run: report them together.
    issues = cross_field_issues(config)
    if check_plugins:
        issues += plugin_issues(config, registry=registry)
    if issues:
        raise ConfigValidationError(issues, source=name)
    return config


def component_spec_from_text(text: str, kind: str, *, option: str = "") -> ComponentSpec:
    """A ``{name, args}`` spec given on a command line (``omlcore embed --extractor SPEC``), checked.

    ``text`` is one of:

    - a bare registered name: ``resnet``;
    - a YAML flow mapping: ``"{name: resnet, args: {arch: resnet18, weights: null}}"``;
    - the path of a YAML (or JSON) file holding such a mapping.

    The spec is validated against the plugin's signature like a config slot (phase 1 and 2); problems
    raise :class:`ConfigValidationError` whose paths start with ``option`` (e.g. ``--extractor.args.arch``).
    """
    from omlcore.registry import get_registry, kind_of

    where = option or kind_of(kind).name
    candidate = Path(text)
    if text.endswith((".yaml", ".yml", ".json")) or (candidate.suffix == "" and candidate.is_file()):
        if not candidate.is_file():
            raise ConfigError(f"{where}: the file {text!r} does not exist")
        data: Any = read_yaml(candidate)
        source = str(candidate)
    else:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(
                f"{where}: {text!r} is neither a registered name, a YAML mapping "
                f"('{{name: NAME, args: {{...}}}}') nor a file ({exc})"
            ) from exc
        source = where
    if isinstance(data, str):
        data = {"name": data}
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{where}: expected a name or a mapping '{{name: NAME, args: {{...}}}}', got {type(data).__name__}"
        )
    issues = get_registry().validate(kind, data, path=where)
    if issues:
        raise ConfigValidationError(issues, source=source)
    return ComponentSpec.model_validate(data)
