"""Checks a logger makes when it is built: the SDK imports, credentials exist, the server answers."""

from __future__ import annotations

import importlib
import os
import socket
import urllib.request
from collections.abc import Iterable
from types import ModuleType
from urllib.parse import urlsplit

from omlcore_loggers_base._errors import MissingSDKError, ServerUnreachableError

__all__ = ["CONNECT_TIMEOUT_S", "check_reachable", "env_flag", "first_env", "import_sdk", "is_rank_zero"]

CONNECT_TIMEOUT_S = 5.0
"""How long a logger waits for its server to accept a connection before failing (seconds)."""

RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")
"""Environment variables through which launchers (Lightning, torchrun, SLURM, LSF) give a process its rank."""


def import_sdk(module: str, backend: str) -> ModuleType:
    """Import the backend's SDK ``module``; :class:`MissingSDKError` with the ``pip install`` if it is not
    installed. Only a missing ``module`` itself is translated: an SDK that is installed but broken raises
    its own error, chained."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        top = module.split(".")[0]
        if exc.name is not None and exc.name.split(".")[0] == top:
            raise MissingSDKError(backend, module, exc) from exc
        raise


def is_rank_zero() -> bool:
    """Whether this process is the first of a distributed run (or the only one), judged from the
    launchers' environment variables. Loggers log from the first process only."""
    for name in RANK_VARIABLES:
        value = os.environ.get(name, "").strip()
        if value and value != "0":
            return False
    return True


def first_env(names: Iterable[str]) -> str | None:
    """The value of the first of ``names`` that is set to a non-empty value."""
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None


def env_flag(name: str) -> bool | None:
    """An on/off environment variable: ``True`` for 1/true/yes/on, ``False`` for 0/false/no/off, else
    ``None`` (unset or unreadable)."""
    value = os.environ.get(name, "").strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    return None


def _host_port(address: str) -> tuple[str, int]:
    parts = urlsplit(address if "://" in address else f"//{address}")
    if not parts.hostname:
        raise ValueError(f"no host name in {address!r}")
    default = 443 if parts.scheme in ("https", "grpcs", "wss") else 80
    try:
        port = parts.port or default
    except ValueError as exc:  # a port that is not a number
        raise ValueError(f"bad port in {address!r}: {exc}") from None
    return parts.hostname, port


def _proxy_for(address: str, host: str) -> str | None:
    """The proxy the environment (``HTTPS_PROXY``, ``HTTP_PROXY``, ``NO_PROXY``) routes ``address`` through."""
    scheme = urlsplit(address).scheme or "http"
    proxy = urllib.request.getproxies().get(scheme)
    if not proxy or urllib.request.proxy_bypass(host):
        return None
    return proxy


def check_reachable(backend: str, address: str, hint: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Open (and close) a TCP connection to the server of ``address`` (a URL or ``host:port``), or to the
    proxy the environment routes it through; :class:`ServerUnreachableError` naming the address and
    ``hint`` (what to fix) if that fails within ``timeout`` seconds."""
    try:
        host, port = _host_port(address)
        proxy = _proxy_for(address, host)
        if proxy is not None:
            host, port = _host_port(proxy)
    except ValueError as exc:
        raise ServerUnreachableError(backend, address, exc, timeout, hint) from exc
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        where = address if proxy is None else f"{address} (through the proxy {proxy})"
        raise ServerUnreachableError(backend, where, exc, timeout, hint) from exc
