"""Exceptions that omlcore raises, each with a message a user can act on.

Every error says what was wrong, where (kind, name, distribution, config path, file) and what to do.
The CLI prints ``str(error)`` as one paragraph and exits non-zero; ``--debug`` shows the traceback.
The catalogue with examples is in ``docs/errors.md``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

__all__ = [
    "ComponentBuildError",
    "ConfigError",
    "ConfigIssue",
    "ConfigValidationError",
    "OmlcoreError",
    "OverrideError",
    "PluginConflictError",
    "PluginError",
    "PluginLoadError",
    "PluginNotFoundError",
    "PluginTypeError",
    "UnknownKindError",
]


def _a(noun: str) -> str:
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


class OmlcoreError(Exception):
    """Base class of every error omlcore raises on purpose."""


class PluginError(OmlcoreError):
    """A problem with a plugin: not installed, broken, ambiguous or of the wrong type."""


class UnknownKindError(PluginError, KeyError):
    """A kind of component that omlcore does not know (``omlcore.available("lozz")``)."""

    def __init__(self, kind: str, known: Sequence[str], suggestion: str | None = None) -> None:
        self.kind = kind
        self.known = list(known)
        hint = f" Did you mean {suggestion!r}?" if suggestion else ""
        super().__init__(f"Unknown component kind {kind!r}.{hint} Known kinds: {', '.join(self.known)}.")

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0])


class PluginNotFoundError(PluginError, LookupError):
    """No installed plugin provides ``name`` for ``kind``."""

    def __init__(
        self,
        kind: str,
        group: str,
        name: str,
        installed: Sequence[str],
        suggestions: Sequence[str] = (),
        extra: str | None = None,
        not_installed: Mapping[str, str] | None = None,
    ) -> None:
        self.kind = kind
        self.group = group
        self.name = name
        self.installed = list(installed)
        self.suggestions = list(suggestions)
        self.extra = extra
        self.not_installed = dict(not_installed or {})
        """First-party names of this kind that are not installed → the omlcore extra providing each."""
        parts = [f"No {kind} named {name!r} is installed (entry-point group {group!r})."]
        if self.suggestions:
            parts.append(f"Did you mean {' or '.join(repr(s) for s in self.suggestions)}?")
        if self.installed:
            parts.append(f"Installed {kind} names: {', '.join(self.installed)}.")
        else:
            parts.append(f"No {kind} plugin is installed at all.")
        if extra:
            parts.append(f'It is provided by an omlcore extra: pip install "omlcore[{extra}]".')
        else:
            if self.not_installed:
                by_extra: dict[str, list[str]] = {}
                for n, x in sorted(self.not_installed.items()):
                    by_extra.setdefault(x, []).append(n)
                offers = "; ".join(
                    f"omlcore[{x}]: {', '.join(ns[:6])}{f' and {len(ns) - 6} more' if len(ns) > 6 else ''}"
                    for x, ns in sorted(by_extra.items())
                )
                parts.append(f"Other {kind} names come with omlcore extras ({offers}).")
            parts.append(
                f"If it comes from your own package, declare it under "
                f'[project.entry-points."{group}"] and reinstall that package.'
            )
        super().__init__(" ".join(parts))


class PluginLoadError(PluginError, ImportError):
    """The plugin providing a component raised while being imported; the cause is chained."""

    def __init__(self, kind: str, name: str, value: str, origin: str, cause: BaseException) -> None:
        self.kind = kind
        self.name = name
        self.value = value
        self.origin = origin
        super().__init__(
            f"The {kind} {name!r} from {origin} failed to load ({value}): "
            f"{type(cause).__name__}: {cause}. Fix or reinstall {origin.split(' ')[0]}, or disable it with "
            f"OMLCORE_DISABLE_PLUGINS={origin.split(' ')[0]}; the original traceback is chained above."
        )


class PluginConflictError(PluginError):
    """Several distributions claim the same component name; omlcore does not guess."""

    def __init__(self, kind: str, group: str, name: str, providers: Sequence[str]) -> None:
        self.kind = kind
        self.group = group
        self.name = name
        self.providers = list(providers)
        listed = "; ".join(self.providers)
        super().__init__(
            f"The {kind} name {name!r} (group {group!r}) is claimed by {len(self.providers)} "
            f"distributions: {listed}. omlcore will not pick one. Uninstall one of them, or disable it "
            f"with OMLCORE_DISABLE_PLUGINS=<distribution>."
        )


class PluginTypeError(PluginError, TypeError):
    """A plugin loaded fine but its object does not satisfy the protocol of its kind."""

    def __init__(self, kind: str, name: str, origin: str, protocol: str, missing: Sequence[str]) -> None:
        self.kind = kind
        self.name = name
        self.origin = origin
        self.protocol = protocol
        self.missing = list(missing)
        super().__init__(
            f"{name!r} from {origin} is not {_a(protocol)}: it lacks {', '.join(self.missing)}. "
            f"See omlcore.protocols.{protocol} for the contract of {_a(kind)}."
        )


@dataclass(frozen=True)
class ConfigIssue:
    """One problem found in a config: a dotted path (``loss.args.margn``) and a message."""

    path: str
    message: str
    cause: BaseException | None = field(default=None, compare=False, repr=False)
    """The exception behind the issue, if any (a plugin's import error); chained when raised."""

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ConfigError(OmlcoreError):
    """A config file cannot be read: missing, not YAML, not a mapping."""


class OverrideError(ConfigError):
    """A command-line override (``trainer.max_epochs=3``) is malformed or cannot be applied."""


class ComponentBuildError(ConfigError):
    """A component's constructor rejected its (well-typed) arguments, e.g. a negative learning rate."""

    def __init__(self, kind: str, name: str, origin: str, args: dict[str, object], cause: BaseException) -> None:
        self.kind = kind
        self.name = name
        self.origin = origin
        super().__init__(
            f"Building the {kind} {name!r} from {origin} failed: {type(cause).__name__}: {cause}. "
            f"Check its args ({', '.join(f'{k}={v!r}' for k, v in args.items()) or 'none given'}); "
            f"the original traceback is chained (--debug shows it)."
        )


class ConfigValidationError(ConfigError):
    """A config has one or more problems; ``issues`` lists every one with its path."""

    def __init__(self, issues: Sequence[ConfigIssue], source: str | None = None) -> None:
        self.issues = list(issues)
        self.source = source
        where = f" in {source}" if source else ""
        lines = [f"{len(self.issues)} problem(s){where}:"]
        lines += [f"  {issue}" for issue in self.issues]
        super().__init__("\n".join(lines))
        causes = [issue.cause for issue in self.issues if issue.cause is not None]
        if causes:  # so that tracebacks (and the CLI's --debug) show why a plugin failed
            self.__cause__ = causes[0]
