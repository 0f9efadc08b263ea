"""``python lightning_entry.py train|validate|predict CONFIG ...``: the omlcore CLI with the test fakes.

Lightning's DDP launcher starts the other processes by running this same command again, so each
process registers the fakes. With ``LIGHTNING_TEST_RECORD=DIR`` a hook plugin adds a callback that writes,
per process and epoch, the dataset indices of the training and validation batches it saw and the indices
the metric kept after gathering (``DIR/rank<r>_<stage><epoch>.json``).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from lightning_fakes import register_fakes

from omlcore import hookimpl


class _Record:
    @hookimpl
    def omlcore_trainer_callbacks(self, config: Any) -> list[Any]:
        from lightning.pytorch.callbacks import Callback

        out = Path(os.environ["LIGHTNING_TEST_RECORD"])

        class Recorder(Callback):
            def __init__(self) -> None:
                self.seen: dict[str, list[int]] = {"train": [], "val": []}

            def _dump(self, trainer: Any, stage: str, extra: dict[str, Any] | None = None) -> None:
                data = {"seen": self.seen[stage], **(extra or {})}
                name = f"rank{trainer.global_rank}_{stage}{trainer.current_epoch}.json"
                (out / name).write_text(json.dumps(data))
                self.seen[stage] = []

            def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, i: int) -> None:
                self.seen["train"].append(batch["idx"].tolist())

            def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
                self._dump(trainer, "train")

            def on_validation_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, *a: Any) -> None:
                self.seen["val"].extend(batch["idx"].tolist())

            def on_validation_epoch_end(self, trainer: Any, pl_module: Any) -> None:
                from omlcore_lightning.callbacks import MetricValCallback

                (metric_cb,) = [cb for cb in trainer.callbacks if isinstance(cb, MetricValCallback)]
                kept = metric_cb.metric.storage["idx"].tolist()
                self._dump(trainer, "val", {"kept": kept, "metrics": metric_cb.latest, "world": trainer.world_size})

        return [Recorder()]


if __name__ == "__main__":
    register_fakes()
    if os.environ.get("LIGHTNING_TEST_RECORD"):
        from omlcore.plugins import get_plugin_manager

        get_plugin_manager().register(_Record(), name="lightning-test-record")
    from omlcore.cli import main

    sys.exit(main(sys.argv[1:]))
