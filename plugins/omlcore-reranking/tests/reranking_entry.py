"""``python reranking_entry.py train-postprocessor CONFIG ...``: the omlcore CLI with the test extractor
``tiny_conv`` and the postprocessor ``counting_pairwise_images`` registered. Lightning's DDP launcher starts
the other processes by running this same command again, so each process registers them."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reranking_helpers import TinyConvExtractor, counting_images_reranker

if __name__ == "__main__":
    from omlcore.cli import main
    from omlcore.registry import register

    register("extractor", "tiny_conv", TinyConvExtractor)
    register("postprocessor", "counting_pairwise_images", counting_images_reranker)
    sys.exit(main(sys.argv[1:]))
