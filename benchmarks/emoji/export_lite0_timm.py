"""Write omlcore's EfficientNet-Lite0 ImageNet weights as a timm ``tf_efficientnet_lite0`` state dict.

Runs in the dev venv (it needs omlcore and omlcore-extractors[lite0]); the file it writes is what
benchmarks/emoji/oml_emoji.py loads, strictly, into OML's pipeline in the peer venv, so both frameworks
start from the same weights.

Usage: .venv/bin/python benchmarks/emoji/export_lite0_timm.py /tmp/emoji/lite0_timm.pth
"""

from __future__ import annotations

import argparse
import hashlib
import os
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="where to write the state dict (.pth)")
    args = parser.parse_args()

    import torch

    import omlcore

    config = {"name": "efficientnet_lite0", "args": {"weights": "efficientnet_lite0_imagenet"}}
    extractor = omlcore.build("extractor", config)
    state = {k: v.detach().clone() for k, v in extractor.model.state_dict().items()}
    out: Path = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, out)
    digest = hashlib.sha256(out.read_bytes()).hexdigest()[:16]
    n = sum(v.numel() for v in state.values())
    print(f"wrote {out}: {len(state)} tensors, {n} numbers, sha256 {digest}")


if __name__ == "__main__":
    main()
