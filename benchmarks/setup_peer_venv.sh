#!/usr/bin/env bash
# Build the one peer venv of all side-by-side benchmarks (samplers, losses, metrics), benchmarks/.venv-peers:
# open-metric-learning 4.0.0 (OML; needs numpy<2 and, undeclared, omegaconf), pytorch-metric-learning 2.9.0
# (PML) and faiss-cpu (PML's AccuracyCalculator uses it). They resolve together.
# OML's training pipelines (benchmarks/emoji/oml_emoji.py) need its "pipelines" extra (pytorch-lightning<=2.1.2,
# hydra-core), timm (the EfficientNet-Lite0 there), and setuptools<81: lightning 2.1 imports pkg_resources.
#
# torch is not installed a second time (~5.5 GB): the venv gets a .pth file pointing at the repository's
# shared torch store (.torch/<key>/site, see the docstring of noxfile.py), so pip sees torch/torchvision
# as installed. The .pth entry comes after the venv's own site-packages, so the venv's numpy<2 wins
# over the numpy 2 that the shared store also holds.
#
# Usage: benchmarks/setup_peer_venv.sh [python3]   (re-running it is cheap: pip finds everything)
# Env:   OMLCORE_TORCH_DIR  where the shared torch store lives (default: <repo>/.torch)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
python="${1:-python3}"
venv="$here/.venv-peers"
store="${OMLCORE_TORCH_DIR:-$root/.torch}"

site=""
for marker in "$store"/*/shared-torch.json; do
    [ -f "$marker" ] || continue
    if "$python" -c 'import json, sys, sysconfig; m = json.load(open(sys.argv[1])); sys.exit(m["tag"] != sys.implementation.cache_tag or m["platform"] != sysconfig.get_platform())' "$marker"; then
        site="$(dirname "$marker")/site"
        break
    fi
done
if [ -z "$site" ]; then
    echo "no shared torch install for $("$python" --version) in $store." >&2
    echo "Create one with a nox session that needs torch (e.g. 'python3 -m nox -s typecheck'), or set OMLCORE_TORCH_DIR." >&2
    exit 2
fi

[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
purelib="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
echo "$site" > "$purelib/_omlcore_shared_torch.pth"
echo "peer venv: $venv (torch from $site)"

pins="$(mktemp)"
trap 'rm -f "$pins"' EXIT
# pip must not replace the shared torch (a second 5.5 GB copy)
"$venv/bin/python" - "$site" > "$pins" <<'PY'
import sys
from importlib import metadata
for d in metadata.distributions(path=[sys.argv[1]]):
    if d.metadata["Name"].lower() in ("torch", "torchvision"):
        print(f"{d.metadata['Name']}=={d.version}")
PY
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --progress-bar=off -c "$pins" \
    "open-metric-learning[pipelines]==4.0.0" "pytorch-metric-learning==2.9.0" "numpy<2" omegaconf faiss-cpu \
    timm "setuptools<81"
"$venv/bin/python" - <<'PY'
from importlib import metadata

import faiss
import numpy
import torch
import pytorch_lightning
import timm
from oml.functional.knn import batched_knn
from oml.lightning.pipelines.train import extractor_training_pipeline
from oml.losses.triplet import TripletLossWithMiner
from oml.miners.inbatch_all_tri import AllTripletsMiner
from oml.miners.inbatch_hard_tri import HardTripletsMiner
from oml.samplers.balance import BalanceSampler
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
from pytorch_metric_learning.losses import TripletMarginLoss
from pytorch_metric_learning.miners import TripletMarginMiner

print(
    "ok: oml", metadata.version("open-metric-learning"),
    "| pml", metadata.version("pytorch-metric-learning"),
    "| lightning", pytorch_lightning.__version__, "| timm", timm.__version__,
    "| faiss", faiss.__version__, "| numpy", numpy.__version__, "| torch", torch.__version__,
)
PY
