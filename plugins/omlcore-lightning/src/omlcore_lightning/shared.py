"""The machinery of ``omlcore train`` that other plugins' training pipelines reuse, under stable names.

omlcore-reranking's ``train_postprocessor`` builds on these, so that its experiment loggers, run folder,
``--resume``, Ctrl-C handling, checkpoints and device checks behave exactly as those of ``omlcore train``:

- :func:`open_loggers`: the config's ``logger`` section started before the run folder is written (a logger
  that cannot start removes a folder this run created);
- :func:`run_folder_for`: the resumed folder, the one chosen by the launching process (DDP), or a new one;
  :func:`shared_run_dir` tells processes launched for DDP which folder that is;
- :func:`make_trainer`: the ``Trainer`` of the pipelines (atomic checkpoint files, no sanity validation, the
  data sharded by the pipeline, DDP for several devices);
- :class:`PipelineDataModule` and :func:`make_sampler_factory`: reproducible, resumable, DDP-aware training
  batches (see :mod:`omlcore_lightning.data`);
- :func:`device_issues`, :func:`extra_args_issues`, :func:`trainer_issues`: the up-front checks of the
  ``trainer`` section; :func:`checkpoint_fits`: a ``--resume`` checkpoint against the module built;
  :func:`checkpoint_callbacks`: best, last and Ctrl-C checkpoints in the run folder;
- :func:`quiet_lightning`, :func:`keep_sigint`, :func:`figure_saver`, :func:`send_figures` (figures to their
  sinks, a failing sink a warning).

Import this module only where Lightning is wanted (it imports torch and Lightning).
"""

from __future__ import annotations

from omlcore_lightning.callbacks import send_figures
from omlcore_lightning.pipelines import _checkpoint_callbacks as checkpoint_callbacks
from omlcore_lightning.pipelines import _checkpoint_fits as checkpoint_fits
from omlcore_lightning.pipelines import _DataModule as PipelineDataModule
from omlcore_lightning.pipelines import _device_issues as device_issues
from omlcore_lightning.pipelines import _extra_args_issues as extra_args_issues
from omlcore_lightning.pipelines import _figure_saver as figure_saver
from omlcore_lightning.pipelines import _keep_sigint as keep_sigint
from omlcore_lightning.pipelines import _open_loggers as open_loggers
from omlcore_lightning.pipelines import _quiet_lightning as quiet_lightning
from omlcore_lightning.pipelines import _run_folder_for as run_folder_for
from omlcore_lightning.pipelines import _shared_run_dir as shared_run_dir
from omlcore_lightning.pipelines import _trainer as make_trainer
from omlcore_lightning.pipelines import _trainer_issues as trainer_issues
from omlcore_lightning.pipelines import make_sampler_factory

__all__ = [
    "PipelineDataModule",
    "checkpoint_callbacks",
    "checkpoint_fits",
    "device_issues",
    "extra_args_issues",
    "figure_saver",
    "keep_sigint",
    "make_sampler_factory",
    "make_trainer",
    "open_loggers",
    "quiet_lightning",
    "run_folder_for",
    "send_figures",
    "shared_run_dir",
    "trainer_issues",
]
