"""The emoji recipe (examples/emoji.yaml) through OML 4.0's own training pipeline, for a side-by-side figure.

Runs in the peer venv (benchmarks/setup_peer_venv.sh: open-metric-learning[pipelines] 4.0.0, timm):

    .venv/bin/python benchmarks/emoji/export_lite0_timm.py /tmp/emoji/lite0_timm.pth      # dev venv, once
    flock /tmp/omlcore-cpu.lock benchmarks/.venv-peers/bin/python benchmarks/emoji/oml_emoji.py \\
        --dataset-root /tmp/emoji/out --weights /tmp/emoji/lite0_timm.pth --json benchmarks/emoji/results-oml.json

What is mapped, and how:

- Every hyper-parameter of the omlcore YAML goes into the config dict of OML's
  ``oml.lightning.pipelines.train.extractor_training_pipeline``, which is called unchanged: seed, max_epochs,
  valid_period, precision, accelerator/devices, ``trainer.extra_args`` (``max_time``) as
  ``lightning_trainer_extra_args``, BalanceSampler n_labels/n_instances, TripletLossWithMiner margin +
  HardTripletsMiner, Adam lr/weight_decay, CosineAnnealingLR T_max stepped per epoch, bs_val, num_workers,
  cmc/precision/map top-k (OML's extra ``pcf`` metric turned off), checkpoint monitor/mode.
- The extractor is registered in OML's ``EXTRACTORS_REGISTRY``: timm ``tf_efficientnet_lite0`` with no
  classifier, loading (strictly) the state dict written from omlcore's extractor, output = the pooled
  1280-d features, L2-normalised (omlcore's ``normalise_features: true``).
- The transforms are registered in OML's ``TRANSFORMS_REGISTRY`` and build the same torchvision v2 pipelines
  as omlcore-images' ``augs_torch`` / ``norm_resize_torch`` with the YAML's arguments.
- OML's image reader converts RGBA to RGB by dropping alpha (black background); omlcore composites on
  white. So the PNGs are composited on white once, into ``--rgb-root`` (default /tmp/emoji/oml-rgb), with a
  rewritten ``df.csv`` (``../`` in paths becomes ``up/``), and OML reads those.
- Timing and metrics are recorded by a logger registered in OML's ``LOGGERS_REGISTRY`` (OML's pipeline
  builds its own callbacks list, so a callback cannot be added): a TensorBoard logger that also notes the
  wall-clock time of each train-epoch end and each validation, counted from the start of ``fit``.

Torch uses 2 threads (as omlcore's timed run). The run folder (OML writes into the current directory) is
``--run-dir``, under /tmp.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------------------------- data


def _rgb_rel(path: str) -> str:
    parts = Path(os.path.normpath(path)).parts
    return str(Path(*["up" if p == ".." else p for p in parts]))


def prepare_rgb(src_root: Path, dst_root: Path, dataframe: str) -> Path:
    """Composite every image of ``src_root/dataframe`` on white into ``dst_root`` (same file names under
    rewritten relative paths) and write the matching dataframe there. Files already there are kept."""
    from PIL import Image

    with open(src_root / dataframe, newline="") as f:
        reader = csv.DictReader(f)
        fields = list(reader.fieldnames or [])
        rows = list(reader)
    made = 0
    for row in rows:
        rel = _rgb_rel(row["path"])
        dst = dst_root / rel
        if not dst.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            with Image.open(src_root / row["path"]) as im:
                im.load()
                if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
                    rgba = im.convert("RGBA")
                    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                    out = Image.alpha_composite(white, rgba).convert("RGB")
                else:
                    out = im.convert("RGB")
            tmp = dst.with_name(dst.name + ".tmp.png")
            out.save(tmp)
            os.replace(tmp, dst)
            made += 1
        row["path"] = rel
    df_out = dst_root / dataframe
    tmp_df = df_out.with_name(df_out.name + ".tmp")
    with open(tmp_df, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp_df, df_out)
    print(f"rgb copies: {len(rows)} rows, {made} images composited on white into {dst_root}", flush=True)
    return df_out


def write_subset(root: Path, dataframe: str, n_train: int, n_val: int) -> str:
    """A smaller dataframe for smoke tests: the first ``n_train`` training and ``n_val`` validation labels."""
    with open(root / dataframe, newline="") as f:
        reader = csv.DictReader(f)
        fields = list(reader.fieldnames or [])
        rows = list(reader)
    keep: dict[str, set[str]] = {"train": set(), "validation": set()}
    limit = {"train": n_train, "validation": n_val}
    for row in rows:
        labels = keep[row["split"]]
        if len(labels) < limit[row["split"]]:
            labels.add(row["label"])
    sub = [r for r in rows if r["label"] in keep[r["split"]]]
    name = f"df-subset-{n_train}-{n_val}.csv"
    with open(root / name, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(sub)
    return name


# --------------------------------------------------------------------------- OML registry additions


def register_components() -> type:
    """Add the extractor, the two transforms and the timing logger to OML's registries; return the logger class."""
    import timm
    import torch
    from oml.interfaces.models import IExtractor
    from oml.lightning.pipelines.logging import TensorBoardPipelineLogger
    from oml.registry.loggers import LOGGERS_REGISTRY
    from oml.registry.models import EXTRACTORS_REGISTRY
    from oml.registry.transforms import TRANSFORMS_REGISTRY
    from torch import Tensor, nn
    from torchvision.transforms import Compose, v2

    class TimmLite0Extractor(IExtractor):
        """timm tf_efficientnet_lite0, pooled 1280-d features, optionally L2-normalised."""

        def __init__(self, weights: str, normalise_features: bool = True) -> None:
            super().__init__()
            self.model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=0)
            state = torch.load(weights, map_location="cpu", weights_only=True)
            self.model.load_state_dict(state, strict=True)
            self.normalise_features = normalise_features

        def forward(self, x: Tensor) -> Tensor:
            out: Tensor = self.model(x)
            return nn.functional.normalize(out, p=2.0, dim=1) if self.normalise_features else out

        def extract(self, x: Tensor) -> Tensor:
            return self.forward(x)

        @property
        def feat_dim(self) -> int:
            return int(self.model.num_features)

    # OML's datasets accept torchvision's (v1) Compose or albumentations' only; v1 Compose applies the same v2
    # steps one after the other, as omlcore's v2.Compose does.
    def tail(mean: list[float], std: list[float]) -> list[Any]:
        return [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean=list(mean), std=list(std)), v2.ToPureTensor()]

    def augs_torch_like_omlcore(
        im_size: int,
        mean: list[float],
        std: list[float],
        hflip: float = 0.5,
        min_scale: float = 1.0,
        rotation: float = 0.0,
        jitter: float = 0.25,
    ) -> Any:
        steps: list[Any] = [v2.ToImage()]
        if min_scale < 1.0:
            steps.append(v2.RandomResizedCrop((im_size, im_size), scale=(min_scale, 1.0), antialias=True))
        else:
            steps.append(v2.Resize((im_size, im_size), antialias=True))
        if rotation > 0:
            steps.append(v2.RandomRotation(rotation, fill=255))
        if hflip > 0:
            steps.append(v2.RandomHorizontalFlip(p=hflip))
        if jitter > 0:
            steps.append(
                v2.ColorJitter(brightness=jitter, contrast=jitter, saturation=jitter, hue=min(jitter / 5, 0.5))
            )
        return Compose([*steps, *tail(mean, std)])

    def norm_resize_torch_like_omlcore(im_size: int, mean: list[float], std: list[float]) -> Any:
        return Compose([v2.ToImage(), v2.Resize((im_size, im_size), antialias=True), *tail(mean, std)])

    class TimingLogger(TensorBoardPipelineLogger):
        """OML's TensorBoard logger that also notes when each train epoch and each validation ended."""

        instances: list[TimingLogger] = []

        def __init__(self, save_dir: str, cmc_keys: list[str]) -> None:
            super().__init__(save_dir)
            self.cmc_keys = cmc_keys
            self.t0: float | None = None
            self.cpu0 = 0.0
            self.train_epoch_cpu: dict[int, float] = {}
            self.train_epoch_step: dict[int, int] = {}
            self.train_epoch_end: dict[int, float] = {}
            self.validations: list[dict[str, Any]] = []
            TimingLogger.instances.append(self)

        def _start(self) -> None:
            if self.t0 is None:  # lightning logs hyper-parameters/graph when fit starts
                self.t0 = time.monotonic()
                self.cpu0 = time.process_time()

        def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
            self._start()
            super().log_hyperparams(params, *args, **kwargs)

        def log_graph(self, model: Any, input_array: Any = None) -> None:
            self._start()
            super().log_graph(model, input_array)

        def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
            self._start()
            assert self.t0 is not None
            now = round(time.monotonic() - self.t0, 3)
            cpu = round(time.process_time() - self.cpu0, 3)  # all threads of this process: robust to other load
            epoch = int(metrics.get("epoch", -1))
            if self.cmc_keys[0] in metrics:
                rec: dict[str, Any] = {"epoch": epoch, "elapsed_s": now, "cpu_s": cpu}
                for key in self.cmc_keys:
                    rec[key] = float(metrics[key])
                self.validations.append(rec)
                print(f"[oml-emoji] validation epoch {epoch} at {now:.1f}s: {rec}", flush=True)
            if any(k.endswith("_epoch") and k != "epoch" for k in metrics):
                self.train_epoch_end[epoch] = now
                self.train_epoch_cpu[epoch] = cpu
                self.train_epoch_step[epoch] = int(step) if step is not None else -1
                print(f"[oml-emoji] train epoch {epoch} ended at {now:.1f}s", flush=True)
            super().log_metrics(metrics, step)

    EXTRACTORS_REGISTRY["omlcore_lite0_timm"] = TimmLite0Extractor
    TRANSFORMS_REGISTRY["augs_torch_like_omlcore"] = augs_torch_like_omlcore
    TRANSFORMS_REGISTRY["norm_resize_torch_like_omlcore"] = norm_resize_torch_like_omlcore
    LOGGERS_REGISTRY["timing_tensorboard"] = TimingLogger
    return TimingLogger


# --------------------------------------------------------------------------------------- mapping


def oml_config(
    recipe: dict[str, Any], dataset_root: Path, dataframe: str, weights: Path
) -> tuple[dict[str, Any], list[str]]:
    """OML 4.0 ``extractor_training_pipeline`` config equivalent to the omlcore recipe, and the notes on it."""
    notes: list[str] = []
    trainer = recipe["trainer"]
    data = recipe["data"]
    metrics = recipe["metrics"]
    cmc_keys = [f"OVERALL/cmc/{k}" for k in metrics["cmc_top_k"]]

    extractor_args = dict(recipe["extractor"]["args"])
    weights_key = extractor_args.pop("weights")
    if recipe["extractor"]["name"] != "efficientnet_lite0" or weights_key != "efficientnet_lite0_imagenet":
        raise SystemExit("this script maps the efficientnet_lite0 + efficientnet_lite0_imagenet extractor only")

    loss = recipe["loss"]
    if loss["name"] != "triplet_with_miner" or loss["args"]["miner"]["name"] != "hard_triplets":
        raise SystemExit("this script maps triplet_with_miner + hard_triplets only")
    loss_args = {k: v for k, v in loss["args"].items() if k != "miner"}

    sched = recipe["scheduling"]
    if sched["scheduler"]["name"] != "cosine_annealing" or recipe["optimizer"]["name"] != "adam":
        raise SystemExit("this script maps adam + cosine_annealing only")

    extra = dict(trainer.get("extra_args") or {})
    max_epochs = int(trainer["max_epochs"])
    env_epochs = os.environ.get("OMLCORE_EPOCHS")
    if env_epochs:
        max_epochs = int(env_epochs)
        extra.pop("max_time", None)
        notes.append(f"OMLCORE_EPOCHS={env_epochs}: max_epochs set to it and max_time dropped")

    sampler = recipe["sampler"]
    if sampler["name"] != "balance":
        raise SystemExit("this script maps the balance sampler only")

    ckpt = recipe.get("checkpoint") or {}
    cfg: dict[str, Any] = {
        "seed": recipe["seed"],
        "precision": int(str(trainer.get("precision", "32"))),
        "accelerator": "cpu",  # 'auto' in the recipe; the comparison runs on CPU
        "devices": trainer.get("devices", 1),
        "dataset_root": str(dataset_root),
        "dataframe_name": dataframe,
        "logs_root": ".",
        "logs_folder": "oml-emoji",
        "num_workers": data["num_workers"],
        "cache_size": 0,
        "transforms_train": {"name": "augs_torch_like_omlcore", "args": dict(recipe["transforms_train"]["args"])},
        "transforms_val": {"name": "norm_resize_torch_like_omlcore", "args": dict(recipe["transforms_val"]["args"])},
        "sampler": {"name": "balance", "args": dict(sampler["args"])},
        "bs_val": data["batch_size_val"],
        "max_epochs": max_epochs,
        "valid_period": trainer["valid_period"],
        "metric_args": {
            "cmc_top_k": list(metrics["cmc_top_k"]),
            "precision_top_k": list(metrics.get("precision_top_k", [])),
            "map_top_k": list(metrics.get("map_top_k", [])),
            "fmr_vals": [],
            "pcf_variance": [],
            "return_only_overall_category": True,
        },
        "log_images": False,
        "metric_for_checkpointing": ckpt.get("monitor", "OVERALL/cmc/1"),
        "mode_for_checkpointing": ckpt.get("mode", "max"),
        "extractor": {
            "name": "omlcore_lite0_timm",
            "args": {"weights": str(weights), "normalise_features": bool(extractor_args.get("normalise_features"))},
        },
        "criterion": {
            "name": "triplet_with_miner",
            "args": {**loss_args, "miner": {"name": "hard_triplets", "args": {}}},
        },
        "optimizer": {"name": "adam", "args": dict(recipe["optimizer"]["args"])},
        "scheduling": {
            "scheduler": {"name": "cosine_annealing", "args": dict(sched["scheduler"]["args"])},
            "scheduler_interval": sched.get("interval", "epoch"),
            "scheduler_frequency": 1,
        },
        "logger": {"name": "timing_tensorboard", "args": {"save_dir": ".", "cmc_keys": cmc_keys}},
        "show_dataset_warnings": False,
        "lightning_trainer_extra_args": extra,
    }
    if trainer.get("accelerator") not in (None, "auto", "cpu"):
        notes.append(f"recipe accelerator {trainer['accelerator']!r} replaced by cpu")
    return cfg, notes


# ------------------------------------------------------------------------------------------- main


def _shown(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("open-metric-learning", "torch", "torchvision", "pytorch-lightning", "timm", "numpy", "pillow"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "missing"
    return out


def machine() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"platform": platform.platform(), "cpu": cpu, "cpu_count": os.cpu_count(), "torch_threads": 2}


def main() -> None:
    parser = argparse.ArgumentParser(description="The emoji recipe through OML 4.0's extractor_training_pipeline.")
    parser.add_argument("--config", type=Path, default=REPO / "examples" / "emoji.yaml")
    parser.add_argument("--dataset-root", type=Path, default=Path("/tmp/emoji/out"))
    parser.add_argument("--rgb-root", type=Path, default=Path("/tmp/emoji/oml-rgb"))
    parser.add_argument("--weights", type=Path, default=Path("/tmp/emoji/lite0_timm.pth"))
    parser.add_argument("--run-dir", type=Path, default=Path("/tmp/oml-emoji-run"))
    parser.add_argument("--json", type=Path, required=True, help="where to write the results")
    parser.add_argument("--subset", type=int, nargs=2, metavar=("N_TRAIN", "N_VAL"), help="smoke test: fewer labels")
    parser.add_argument("--max-epochs", type=int, help="smoke test: override max_epochs")
    parser.add_argument("--valid-period", type=int, help="smoke test: override valid_period")
    parser.add_argument("--limit-train-batches", type=int, help="smoke test: lightning limit_train_batches")
    args = parser.parse_args()

    import torch
    import yaml

    torch.set_num_threads(2)
    recipe = yaml.safe_load(args.config.read_text())
    if not args.weights.is_file():
        raise SystemExit(f"{args.weights} is missing: run benchmarks/emoji/export_lite0_timm.py in the dev venv")
    dataframe = recipe["data"].get("dataframe_name", "df.csv")
    prepare_rgb(args.dataset_root.resolve(), args.rgb_root.resolve(), dataframe)
    if args.subset:
        dataframe = write_subset(args.rgb_root.resolve(), dataframe, *args.subset)

    cfg, notes = oml_config(recipe, args.rgb_root.resolve(), dataframe, args.weights.resolve())
    if args.max_epochs is not None:
        cfg["max_epochs"] = args.max_epochs
        notes.append(f"smoke test: max_epochs {args.max_epochs}")
    if args.valid_period is not None:
        cfg["valid_period"] = args.valid_period
        notes.append(f"smoke test: valid_period {args.valid_period}")
    if args.limit_train_batches is not None:
        cfg["lightning_trainer_extra_args"]["limit_train_batches"] = args.limit_train_batches
        notes.append(f"smoke test: limit_train_batches {args.limit_train_batches}")
    if args.subset:
        notes.append(f"smoke test: subset of {args.subset[0]} train / {args.subset[1]} validation labels")

    logger_cls = register_components()
    from oml.lightning.pipelines.train import extractor_training_pipeline

    json_path = args.json.resolve()
    args.run_dir.mkdir(parents=True, exist_ok=True)
    os.chdir(args.run_dir)  # OML writes its logs and checkpoints into the current directory
    started = time.monotonic()
    extractor_training_pipeline(cfg)
    total = time.monotonic() - started

    log = logger_cls.instances[-1]  # type: ignore[attr-defined]
    ends = dict(sorted(log.train_epoch_end.items()))
    valid_period = int(cfg["valid_period"])
    # optimizer steps per epoch, from the global step at each epoch end; an epoch cut short by max_time has fewer
    steps = dict(sorted(log.train_epoch_step.items()))
    batches: dict[int, int] = {}
    prev_step = 0
    for epoch, st in steps.items():  # lightning logs epoch ends at the epoch's last step: (batches so far) - 1
        batches[epoch] = st + 1 - prev_step
        prev_step = st + 1
    full = max(batches.values(), default=0)
    complete = {e for e, b in batches.items() if b == full}
    durations: dict[int, float] = {}
    prev = 0.0
    for epoch, t in ends.items():
        durations[epoch] = round(t - prev, 3)
        prev = t
    no_val = [d for e, d in durations.items() if (e + 1) % valid_period != 0 and e > 0 and e in complete]
    with_val = [d for e, d in durations.items() if (e + 1) % valid_period == 0 and e in complete]
    per_epoch = statistics.median(no_val) if no_val else None
    cpu_ends = dict(sorted(log.train_epoch_cpu.items()))
    cpu_durations: dict[int, float] = {}
    prev_cpu = 0.0
    for epoch, c in cpu_ends.items():
        cpu_durations[epoch] = round(c - prev_cpu, 3)
        prev_cpu = c
    cpu_no_val = [d for e, d in cpu_durations.items() if (e + 1) % valid_period != 0 and e > 0 and e in complete]
    final = log.validations[-1] if log.validations else {}
    result = {
        "framework": "OML 4.0.0 extractor_training_pipeline",
        "recipe": _shown(args.config.resolve()),
        "command": " ".join([_shown(Path(sys.executable)), *sys.argv]),
        "oml_config": cfg,
        "notes": notes,
        "epochs_completed": len(complete),
        "epochs_started": len(ends),
        "batches_per_epoch": batches,
        "fit_wall_s": round(prev, 3),
        "pipeline_wall_s": round(total, 3),
        "train_epoch_s_median_without_validation": per_epoch,
        "train_epoch_s_how": "median over complete epochs > 0 without validation of the gap between train-epoch ends",
        "epoch_with_validation_s_median": statistics.median(with_val) if with_val else None,
        "epoch_durations_s": durations,
        "train_epoch_cpu_s_median_without_validation": statistics.median(cpu_no_val) if cpu_no_val else None,
        "epoch_cpu_s": cpu_durations,
        "fit_cpu_s": round(prev_cpu, 3),
        "validations": log.validations,
        "final": final,
        "versions": versions(),
        "machine": machine(),
    }
    json_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = json_path.with_name(json_path.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, json_path)
    print(f"[oml-emoji] wrote {json_path}: final {final}, train epoch {per_epoch} s", flush=True)


if __name__ == "__main__":
    main()
