"""The pairwise models: the core's conformance suite, STIR's concatenation and TTA, weights, bad sizes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from omlcore_reranking import ConcatSiamese, InputSizeError, LinearSiamese, TrivialDistanceSiamese, WeightsFileError
from reranking_helpers import PositionalConvExtractor, SquareOnlyExtractor, TinyConvExtractor
from torch import Tensor, nn

import omlcore
from omlcore.protocols import PairwiseModel
from omlcore.testing.conformance import PairwiseModelConformance

# ---- conformance -------------------------------------------------------------------------------------------


class TestConcatSiameseConformance(PairwiseModelConformance):
    kind_name = "concat_siamese"
    input_shape = (3, 16, 16)

    @pytest.fixture
    def component_args(self) -> dict[str, Any]:
        return {"extractor": TinyConvExtractor(), "mlp_hidden_dims": [6, 5], "use_tta": True}


class TestLinearSiameseConformance(PairwiseModelConformance):
    kind_name = "linear_siamese"
    args = {"feat_dim": 16, "identity_init": False}
    input_shape = (16,)


class TestTrivialDistanceSiameseConformance(PairwiseModelConformance):
    kind_name = "trivial_distance_siamese"
    input_shape = (16,)


class TestTrivialWithExtractorConformance(PairwiseModelConformance):
    kind_name = "trivial_distance_siamese"
    input_shape = (3, 8, 8)

    @pytest.fixture
    def component_args(self) -> dict[str, Any]:
        return {"extractor": TinyConvExtractor()}


def test_models_are_listed_and_satisfy_the_protocol() -> None:
    assert set(omlcore.available("pairwise_model")) >= {"concat_siamese", "linear_siamese", "trivial_distance_siamese"}
    for model in (ConcatSiamese(TinyConvExtractor(), [4]), LinearSiamese(3), TrivialDistanceSiamese()):
        assert isinstance(model, PairwiseModel)


# ---- concat_siamese ----------------------------------------------------------------------------------------


class _Recorder(TinyConvExtractor):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[Tensor] = []

    def extract(self, x: Tensor) -> Tensor:
        self.seen.append(x.clone())
        return super().extract(x)


def test_concat_siamese_stacks_the_pair_along_the_height() -> None:
    ext = _Recorder()
    model = ConcatSiamese(ext, [4]).eval()
    x1, x2 = torch.rand(2, 3, 8, 12), torch.rand(2, 3, 8, 12)
    logits = model(x1, x2)
    assert logits.shape == (2,)
    (seen,) = ext.seen
    assert seen.shape == (2, 3, 16, 12)
    assert torch.equal(seen[:, :, :8], x1)
    assert torch.equal(seen[:, :, 8:], x2)


def test_concat_siamese_predict_is_a_probability_and_tta_is_symmetric() -> None:
    x1, x2 = torch.rand(4, 3, 8, 8), torch.rand(4, 3, 8, 8)
    plain = ConcatSiamese(PositionalConvExtractor(seed=1), [5], use_tta=False).eval()
    with torch.no_grad():
        p = plain.predict(x1, x2)
        assert bool(((p > 0) & (p < 1)).all())
        torch.testing.assert_close(p, torch.sigmoid(plain(x1, x2)))
        assert not torch.allclose(p, plain.predict(x2, x1))  # without TTA the order matters
    tta = ConcatSiamese(PositionalConvExtractor(seed=1), [5], use_tta=True)
    tta.load_state_dict(plain.state_dict())
    tta.eval()
    with torch.no_grad():
        both = tta.predict(x1, x2)
        torch.testing.assert_close(both, tta.predict(x2, x1))
        torch.testing.assert_close(both, (p + plain.predict(x2, x1)) / 2)


def test_concat_siamese_head_layout() -> None:
    model = ConcatSiamese(TinyConvExtractor(feat_dim=8), [6, 3], dropout=0.25, activation="relu")
    linears = [m for m in model.head if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(8, 6), (6, 3), (3, 1)]
    assert linears[-1].bias is None
    assert [m.p for m in model.head if isinstance(m, nn.Dropout)] == [0.25, 0.25]


def test_concat_siamese_freeze_keeps_the_head_trainable() -> None:
    model = ConcatSiamese(TinyConvExtractor(), [4])
    model.freeze()
    assert not any(p.requires_grad for p in model.extractor.parameters())
    assert all(p.requires_grad for p in model.head.parameters())
    model.unfreeze()
    assert all(p.requires_grad for p in model.parameters())


def test_concat_siamese_size_errors_are_clear() -> None:
    model = ConcatSiamese(TinyConvExtractor(), [4])
    with pytest.raises(InputSizeError, match=r"differ in shape, x1 \(2, 3, 8, 8\) and x2 \(2, 3, 8, 12\)"):
        model(torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 12))
    with pytest.raises(InputSizeError, match=r"expected image batches \(B, C, H, W\)"):
        model(torch.rand(2, 8), torch.rand(2, 8))
    sized = ConcatSiamese(TinyConvExtractor(), [4], image_size=(16, 16))
    with pytest.raises(InputSizeError, match=r"built for 16x16 images .* got 8x8 images: make the transforms resize"):
        sized(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))
    square = ConcatSiamese(SquareOnlyExtractor(), [4])
    with pytest.raises(
        InputSizeError, match=r"failed on a pair stacked along the height, a batch of shape \(1, 3, 16, 8\)"
    ):
        square(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))


def test_concat_siamese_rejects_bad_arguments() -> None:
    with pytest.raises(TypeError, match="torch.nn.Module extractor"):
        ConcatSiamese(object(), [4])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="mlp_hidden_dims must be positive"):
        ConcatSiamese(TinyConvExtractor(), [4, 0])
    with pytest.raises(ValueError, match="dropout"):
        ConcatSiamese(TinyConvExtractor(), [4], dropout=1.0)


def test_concat_siamese_from_a_config_with_a_registered_extractor(installed_registry: Any) -> None:
    installed_registry.register("extractor", "tiny_conv", TinyConvExtractor)
    model = omlcore.build(
        "pairwise_model",
        {
            "name": "concat_siamese",
            "args": {"extractor": {"name": "tiny_conv", "args": {"feat_dim": 4}}, "mlp_hidden_dims": [3]},
        },
    )
    assert isinstance(model, ConcatSiamese)
    assert model.feat_dim == 4
    issues = installed_registry.validate(
        "pairwise_model", {"name": "concat_siamese", "args": {"extractor": {"name": "tiny_conv"}, "use_tta": "maybe"}}
    )
    assert [i.path for i in issues] == ["pairwise_model.args.use_tta"]


# ---- weights ------------------------------------------------------------------------------------------------


def test_weights_round_trip_plain_and_lightning_prefixed(tmp_path: Path) -> None:
    source = ConcatSiamese(TinyConvExtractor(seed=3), [4])
    plain = tmp_path / "plain.pth"
    torch.save(source.state_dict(), plain)
    lightning = tmp_path / "best.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in source.state_dict().items()}, "epoch": 3}, lightning)
    x = torch.rand(2, 3, 8, 8)
    source.eval()
    for file in (plain, lightning):
        loaded = ConcatSiamese(TinyConvExtractor(seed=9), [4], weights=str(file)).eval()
        with torch.no_grad():
            torch.testing.assert_close(loaded.predict(x, x.flip(0)), source.predict(x, x.flip(0)))


def test_weights_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(WeightsFileError, match="does not exist"):
        LinearSiamese(4, weights=str(tmp_path / "missing.pth"))
    other = tmp_path / "other.pth"
    torch.save(LinearSiamese(8).state_dict(), other)
    with pytest.raises(WeightsFileError, match=r"other.pth does not fit the model"):
        LinearSiamese(4, weights=str(other))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsFileError, match="cannot read the weights file"):
        LinearSiamese(4, weights=str(junk))


# ---- linear / trivial ------------------------------------------------------------------------------------------


def test_linear_siamese_identity_is_plain_l2() -> None:
    x1, x2 = torch.randn(5, 6), torch.randn(5, 6)
    model = LinearSiamese(6)
    torch.testing.assert_close(model.predict(x1, x2), torch.linalg.vector_norm(x1 - x2, dim=1))
    with pytest.raises(InputSizeError, match="built for 6-d embeddings"):
        model(torch.randn(2, 5), torch.randn(2, 5))


def test_trivial_distance_siamese_uses_the_extractor() -> None:
    ext = TinyConvExtractor()
    model = TrivialDistanceSiamese(ext)
    x1, x2 = torch.rand(3, 3, 8, 8), torch.rand(3, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(
            model.predict(x1, x2), torch.linalg.vector_norm(ext.extract(x1) - ext.extract(x2), dim=1)
        )
    with pytest.raises(InputSizeError):
        TrivialDistanceSiamese()(torch.randn(2, 3), torch.randn(2, 4))


# ---- with the real ViT (omlcore-extractors, the [stir] extra) -------------------------------------------------


@pytest.fixture(scope="module")
def vit() -> Any:
    from omlcore.registry import Registry

    registry = Registry(disabled=())
    if "vit" not in registry.available("extractor"):
        pytest.skip("omlcore-extractors (the `vit` extractor) is not installed: pip install 'omlcore-reranking[stir]'")
    torch.manual_seed(0)
    return registry.build("extractor", {"name": "vit", "args": {"arch": "vits16", "weights": None}})


def test_concat_siamese_over_vit_scores_stacked_pairs(vit: Any) -> None:
    model = ConcatSiamese(vit, mlp_hidden_dims=[192], use_tta=True).eval()
    assert model.feat_dim == 384
    x1, x2 = torch.rand(2, 3, 32, 48), torch.rand(2, 3, 32, 48)
    with torch.no_grad():
        p = model.predict(x1, x2)
        assert p.shape == (2,)
        assert bool(((p > 0) & (p < 1)).all())
        torch.testing.assert_close(p, model.predict(x2, x1))
        torch.testing.assert_close(model.predict(x1[1:], x2[1:]), p[1:], rtol=1e-4, atol=1e-5)


def test_concat_siamese_over_vit_refuses_sizes_off_the_patch_grid(vit: Any) -> None:
    model = ConcatSiamese(vit, mlp_hidden_dims=[8])
    with pytest.raises(InputSizeError, match=r"images of 40x32 do not split into the extractor's 16x16 patches.*32x32"):
        model(torch.rand(1, 3, 40, 32), torch.rand(1, 3, 40, 32))


def test_concat_siamese_over_vit_from_a_config() -> None:
    from omlcore.registry import get_registry

    if "vit" not in get_registry().available("extractor"):
        pytest.skip("omlcore-extractors is not installed")
    spec = {
        "name": "concat_siamese",
        "args": {"extractor": {"name": "vit", "args": {"arch": "vits16"}}, "mlp_hidden_dims": [192], "use_tta": True},
    }
    assert get_registry().validate("pairwise_model", spec) == []
    bad = {**spec, "args": {**spec["args"], "extractor": {"name": "vit", "args": {"arch": "vits15"}}}}
    assert [i.path for i in get_registry().validate("pairwise_model", bad)] == [
        "pairwise_model.args.extractor.args.arch"
    ]
