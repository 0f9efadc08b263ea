"""The core's extractor conformance suite, run on every extractor of the distribution through the registry.

Small architectures at small inputs are built per test; the 224-px-only models (CLIP, UniCom) are built once
per module and shared by their checks, with a batch of 2, to keep the run short.
"""

from functools import cache
from typing import Any, ClassVar

import pytest
import torch

import omlcore
from omlcore.testing.conformance import ExtractorConformance


class TestViTDino(ExtractorConformance):
    kind_name = "vit"
    args: ClassVar[dict[str, Any]] = {"arch": "vits16"}
    input_shape = (3, 48, 32)  # a 3x2 patch grid: position embeddings are interpolated


class TestViTDinov2RegistersMultiScale(ExtractorConformance):
    kind_name = "vit"
    args: ClassVar[dict[str, Any]] = {"arch": "vits14_reg", "use_multi_scale": True, "normalise_features": True}
    input_shape = (3, 56, 56)


class TestResnetGem(ExtractorConformance):
    kind_name = "resnet"
    args: ClassVar[dict[str, Any]] = {"arch": "resnet18", "gem_p": 3.0, "remove_fc": True}


class TestResnetWithHead(ExtractorConformance):
    kind_name = "resnet"
    args: ClassVar[dict[str, Any]] = {"arch": "resnet18", "remove_fc": False, "normalise_features": True}


class TestEfficientNetLite0(ExtractorConformance):
    kind_name = "efficientnet_lite0"
    args: ClassVar[dict[str, Any]] = {}


class TestExtractorWithMLP(ExtractorConformance):
    kind_name = "extractor_with_mlp"
    args: ClassVar[dict[str, Any]] = {
        "extractor": {"name": "resnet", "args": {"arch": "resnet18"}},
        "mlp_features": [64, 16],
    }


class TestExtractorWithMLPTrainBackbone(ExtractorConformance):
    kind_name = "extractor_with_mlp"
    args: ClassVar[dict[str, Any]] = {
        "extractor": {"name": "efficientnet_lite0", "args": {}},
        "mlp_features": [8],
        "train_backbone": True,
    }


@cache
def _shared(name: str, arch: str) -> Any:
    torch.manual_seed(0)
    return omlcore.build("extractor", {"name": name, "args": {"arch": arch}})


class TestViTCLIP(ExtractorConformance):
    kind_name = "vit_clip"
    args: ClassVar[dict[str, Any]] = {"arch": "vitb32_224"}
    input_shape = (3, 224, 224)
    batch_size = 2

    @pytest.fixture
    def component(self) -> Any:
        return _shared("vit_clip", "vitb32_224")


class TestViTUnicom(ExtractorConformance):
    kind_name = "vit_unicom"
    args: ClassVar[dict[str, Any]] = {"arch": "vitb32_unicom"}
    input_shape = (3, 224, 224)
    batch_size = 2

    @pytest.fixture
    def component(self) -> Any:
        return _shared("vit_unicom", "vitb32_unicom")
