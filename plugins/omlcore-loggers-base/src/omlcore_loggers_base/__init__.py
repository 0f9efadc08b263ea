"""The shared base of omlcore's experiment-logger plugins.

The backend plugins (``omlcore-tensorboard``, ``omlcore-mlflow``, ``omlcore-wandb``, ``omlcore-neptune``,
``omlcore-clearml``) build on what is here, so that each keeps only its SDK calls:

- :class:`BaseLogger`: the ``ExperimentLogger`` methods with the failure policy (a failing logging call is
  reported as a :class:`LoggerFailureWarning` and the run goes on), rank-zero-only logging, best-checkpoint
  upload; :class:`GuardedLightningLogger` puts a backend's own Lightning logger under the same policy;
  :mod:`omlcore_loggers_base.lightning` has a Lightning logger that forwards to any :class:`BaseLogger`.
- :func:`flatten_params`: a nested config (mapping or pydantic model) to ``{"a/b/c": scalar}``.
- :func:`figure_to_png`, :func:`png_to_pil`, :func:`png_to_rgb_array`: figures for every backend.
- :func:`artifact_name`, :func:`artifact_kind`, :func:`safe_key`, :func:`split_metric_name`: names.
- :func:`import_sdk` (missing SDK → ``pip install "omlcore[<backend>]"``), :class:`MissingCredentialsError`,
  :func:`check_reachable` (an unreachable server fails fast with its address).

Importing this package imports neither an SDK nor lightning, matplotlib or numpy.
"""

from __future__ import annotations

from omlcore_loggers_base._base import BaseLogger, GuardedLightningLogger, LoggerFailure, LoggerFailureWarning
from omlcore_loggers_base._checks import (
    CONNECT_TIMEOUT_S,
    check_reachable,
    env_flag,
    first_env,
    import_sdk,
    is_rank_zero,
)
from omlcore_loggers_base._errors import (
    LoggerCallError,
    LoggerError,
    LoggerSetupError,
    MissingCredentialsError,
    MissingSDKError,
    ServerUnreachableError,
)
from omlcore_loggers_base._media import figure_to_png, png_size, png_to_pil, png_to_rgb_array
from omlcore_loggers_base._names import artifact_kind, artifact_name, safe_key, split_metric_name
from omlcore_loggers_base._params import ParamValue, flatten_params

__version__ = "0.1.0"

__all__ = [
    "CONNECT_TIMEOUT_S",
    "BaseLogger",
    "GuardedLightningLogger",
    "LoggerCallError",
    "LoggerError",
    "LoggerFailure",
    "LoggerFailureWarning",
    "LoggerSetupError",
    "MissingCredentialsError",
    "MissingSDKError",
    "ParamValue",
    "ServerUnreachableError",
    "artifact_kind",
    "artifact_name",
    "check_reachable",
    "env_flag",
    "figure_to_png",
    "first_env",
    "flatten_params",
    "import_sdk",
    "is_rank_zero",
    "png_size",
    "png_to_pil",
    "png_to_rgb_array",
    "safe_key",
    "split_metric_name",
]
