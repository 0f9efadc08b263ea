"""Errors of the logger plugins. Each says which backend, what is wrong and what to do.

They derive from :class:`omlcore.errors.OmlcoreError` (not from ``ValueError``/``TypeError``), so the
registry passes them through unchanged when a logger is built and the CLI prints them as they are.
"""

from __future__ import annotations

from collections.abc import Sequence

from omlcore.errors import OmlcoreError

__all__ = [
    "LoggerCallError",
    "LoggerError",
    "LoggerSetupError",
    "MissingCredentialsError",
    "MissingSDKError",
    "ServerUnreachableError",
]


class LoggerError(OmlcoreError):
    """Base class of the errors raised by omlcore's experiment loggers."""


class MissingSDKError(LoggerError, ImportError):
    """The backend's SDK is not installed; the message gives the ``pip install`` that adds it."""

    def __init__(self, backend: str, module: str, cause: BaseException | None = None) -> None:
        self.backend = backend
        self.module = module
        why = f" ({type(cause).__name__}: {cause})" if cause is not None else ""
        super().__init__(
            f"The {backend} logger needs the Python package {module!r}, which cannot be imported{why}. "
            f'Install it with: pip install "omlcore[{backend}]"'
        )


class LoggerSetupError(LoggerError):
    """A logger cannot start: bad settings, no credentials, or no server. Raised when the logger is built,
    so a pipeline fails before training starts."""


class MissingCredentialsError(LoggerSetupError):
    """An online backend found no credentials in its SDK's environment variables or own config files."""

    def __init__(self, backend: str, what_to_set: Sequence[str], offline_hint: str | None = None) -> None:
        self.backend = backend
        self.what_to_set = list(what_to_set)
        offline = f" To log without an account, {offline_hint}." if offline_hint else ""
        super().__init__(
            f"The {backend} logger runs online but finds no credentials. Set "
            + "; or ".join(self.what_to_set)
            + f".{offline} omlcore never reads credentials from its configs: only from the {backend} SDK's "
            f"environment variables and its own configuration files."
        )


class ServerUnreachableError(LoggerSetupError):
    """The backend's server does not answer within the connection timeout."""

    def __init__(self, backend: str, address: str, cause: BaseException, timeout: float, hint: str) -> None:
        self.backend = backend
        self.address = address
        super().__init__(
            f"The {backend} logger cannot reach its server at {address}: {type(cause).__name__}: {cause} "
            f"(connection timeout {timeout:g} s). {hint}"
        )


class LoggerCallError(LoggerError):
    """A logging call failed while the logger runs with ``strict: true`` (otherwise failures are reported
    as :class:`~omlcore_loggers_base.LoggerFailureWarning` and the run goes on)."""

    def __init__(self, backend: str, call: str, cause: BaseException) -> None:
        self.backend = backend
        self.call = call
        super().__init__(
            f"The {backend} logger's {call} failed: {type(cause).__name__}: {cause} (strict mode: logging "
            f"failures stop the run; set strict: false to report them and go on)."
        )
