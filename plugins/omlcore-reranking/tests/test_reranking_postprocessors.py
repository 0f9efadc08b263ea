"""The postprocessors on hand-made top-k results: order, ties, the tail, padding, thresholds, bad input."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from omlcore_reranking import (
    AdaptiveThresholding,
    ConcatSiamese,
    ConstantThresholding,
    InputSizeError,
    LinearSiamese,
    PairwiseEmbeddingsReranker,
    PairwiseImagesReranker,
    TrivialDistanceSiamese,
    merge_reranked,
)
from omlcore_reranking.postprocessors import TopKPostprocessor
from reranking_helpers import ConstantModel, CountingModel, LabelOracle, TinyConvExtractor
from torch import Tensor

import omlcore
from omlcore.errors import ComponentBuildError
from omlcore.protocols import RetrievalPostprocessor
from omlcore.testing.conformance import RetrievalPostprocessorConformance

INF = math.inf


def _ids(*rows: list[int]) -> Tensor:
    return torch.tensor(rows, dtype=torch.long)


def _d(*rows: list[float]) -> Tensor:
    return torch.tensor(rows, dtype=torch.float32)


# ---- merge_reranked -----------------------------------------------------------------------------------------


def test_merge_orders_top_by_score_and_keeps_tail_when_already_behind() -> None:
    distances = _d([0.1, 0.2, 0.3, 5.0, 6.0])
    retrieved = _ids([10, 11, 12, 13, 14])
    scores = torch.tensor([[0.9, 0.1, 0.5]])
    new_d, new_r = merge_reranked(distances, retrieved, scores, torch.ones(1, 3, dtype=torch.bool))
    assert new_r.tolist() == [[11, 12, 10, 13, 14]]
    assert new_d[0, :3].tolist() == pytest.approx([0.1, 0.5, 0.9])
    assert new_d[0, 3:].tolist() == [5.0, 6.0]  # already above every new score: untouched


def test_merge_shifts_tail_by_one_amount_and_keeps_it_strictly_behind() -> None:
    distances = _d([0.1, 0.2, 0.3, 0.4, 0.6, INF])
    retrieved = _ids([1, 2, 3, 4, 5, -1])
    scores = torch.tensor([[0.7, 0.95, 0.2]])
    new_d, new_r = merge_reranked(distances, retrieved, scores, torch.ones(1, 3, dtype=torch.bool))
    assert new_r.tolist() == [[3, 1, 2, 4, 5, -1]]
    peak = new_d[0, 2].item()
    assert peak == pytest.approx(0.95)
    tail = new_d[0, 3:]
    assert bool((tail[:2] > peak).all())
    assert tail[1] - tail[0] == pytest.approx(0.2)  # one shift for the whole tail keeps its gaps
    assert math.isinf(tail[2].item())  # padding stays padding
    assert bool((new_d[0, 1:] >= new_d[0, :-1]).all())


def test_merge_equal_tail_start_is_raised_to_next_value() -> None:
    distances = _d([0.1, 0.2, 0.5])
    retrieved = _ids([1, 2, 3])
    scores = torch.tensor([[0.5, 0.3]])
    new_d, new_r = merge_reranked(distances, retrieved, scores, torch.ones(1, 2, dtype=torch.bool))
    assert new_r.tolist() == [[2, 1, 3]]
    assert new_d[0, 2] > new_d[0, 1]
    assert new_d[0, 2].item() == torch.nextafter(torch.tensor(0.5), torch.tensor(INF)).item()


def test_merge_ties_keep_the_former_order() -> None:
    distances = _d([0.1, 0.2, 0.3, 0.4], [0.1, 0.1, 0.1, 0.9])
    retrieved = _ids([7, 3, 9, 1], [5, 6, 4, 2])
    scores = torch.tensor([[0.5, 0.5, 0.2], [0.3, 0.3, 0.3]])
    _new_d, new_r = merge_reranked(distances, retrieved, scores, torch.ones(2, 3, dtype=torch.bool))
    assert new_r.tolist() == [[9, 7, 3, 1], [5, 6, 4, 2]]


def test_merge_padding_in_top_is_not_scored_or_moved() -> None:
    distances = _d([0.1, 0.2, INF, INF])
    retrieved = _ids([4, 8, -1, -1])
    valid = retrieved[:, :3] >= 0
    scores = torch.tensor([[0.9, 0.1, -5.0]])  # the padding's score is ignored
    new_d, new_r = merge_reranked(distances, retrieved, scores, valid)
    assert new_r.tolist() == [[8, 4, -1, -1]]
    assert new_d[0, :2].tolist() == pytest.approx([0.1, 0.9])
    assert math.isinf(new_d[0, 2].item())
    assert math.isinf(new_d[0, 3].item())


# ---- pairwise re-rankers --------------------------------------------------------------------------------


def test_embeddings_reranker_scores_only_the_top_and_orders_by_model() -> None:
    emb = torch.tensor([[0.0], [3.0], [1.0], [2.0], [10.0]])
    model = CountingModel()
    pp = PairwiseEmbeddingsReranker(top_n=3, pairwise_model=model, batch_size=2)
    # query row 0; retrieved rows 3, 1, 2, 4 (a deliberately wrong order)
    distances, retrieved, qids = _d([0.1, 0.2, 0.3, 0.4]), _ids([3, 1, 2, 4]), torch.tensor([0])
    new_d, new_r = pp.process(distances, retrieved, qids, emb)
    assert new_r.tolist() == [[2, 3, 1, 4]]
    assert new_d[0, :3].tolist() == [1.0, 2.0, 3.0]
    assert new_d[0, 3] > 3.0
    assert model.pairs == 3
    assert model.calls == 2


def test_constant_model_keeps_the_input_order() -> None:
    g = torch.Generator().manual_seed(0)
    distances = torch.rand(6, 8, generator=g).sort(dim=1).values
    retrieved = torch.stack([torch.randperm(30, generator=g)[:8] for _ in range(6)])
    pp = PairwiseEmbeddingsReranker(top_n=5, pairwise_model=ConstantModel(0.5))
    _, new_r = pp.process(distances, retrieved, torch.arange(6), torch.randn(30, 4))
    assert torch.equal(new_r, retrieved)


def test_rerank_is_deterministic_and_does_not_touch_inputs() -> None:
    emb = torch.randn(40, 6, generator=torch.Generator().manual_seed(1))
    distances = torch.rand(5, 7, generator=torch.Generator().manual_seed(2)).sort(dim=1).values
    retrieved = torch.arange(35).view(5, 7)
    before = distances.clone(), retrieved.clone()
    pp = PairwiseEmbeddingsReranker(top_n=4, pairwise_model=TrivialDistanceSiamese())
    first = pp.process(distances, retrieved, torch.arange(5), emb)
    second = pp.process(distances, retrieved, torch.arange(5), emb)
    assert torch.equal(first[0], second[0])
    assert torch.equal(first[1], second[1])
    assert torch.equal(distances, before[0])
    assert torch.equal(retrieved, before[1])


def test_fewer_columns_than_top_n_and_empty_inputs() -> None:
    pp = PairwiseEmbeddingsReranker(top_n=5, pairwise_model=LabelOracle())
    labels = torch.tensor([[0.0], [1.0], [0.0]])
    new_d, new_r = pp.process(_d([0.1, 0.2]), _ids([1, 2]), torch.tensor([0]), labels)
    assert new_r.tolist() == [[2, 1]]
    assert new_d.tolist() == [[0.0, 1.0]]
    empty = pp.process(torch.empty(0, 3), torch.empty(0, 3, dtype=torch.long), torch.empty(0, dtype=torch.long), labels)
    assert empty[0].shape == (0, 3)


def test_model_mode_is_restored_after_process() -> None:
    model = LinearSiamese(feat_dim=3)
    model.train()
    pp = PairwiseEmbeddingsReranker(top_n=2, pairwise_model=model)
    pp.process(_d([0.1, 0.2]), _ids([1, 2]), torch.tensor([0]), torch.randn(3, 3))
    assert model.training


@pytest.mark.parametrize("top_n", [1, 0, -3])
def test_top_n_below_two_is_a_clear_error(top_n: int) -> None:
    with pytest.raises(ValueError, match=r"top_n must be an int >= 2"):
        PairwiseEmbeddingsReranker(top_n=top_n, pairwise_model=TrivialDistanceSiamese())
    spec = {"name": "pairwise_images", "args": {"top_n": top_n, "pairwise_model": {"name": "trivial_distance_siamese"}}}
    with pytest.raises(ComponentBuildError, match=r"top_n must be an int >= 2"):
        omlcore.build("postprocessor", spec)


def test_embedding_width_mismatch_is_a_clear_error() -> None:
    pp = omlcore.build(
        "postprocessor",
        {
            "name": "pairwise_embeddings",
            "args": {"top_n": 2, "pairwise_model": {"name": "linear_siamese", "args": {"feat_dim": 8}}},
        },
    )
    with pytest.raises(InputSizeError, match=r"built for 8-d embeddings .* got 5-d"):
        pp.process(_d([0.1, 0.2]), _ids([1, 2]), torch.tensor([0]), torch.randn(3, 5))


def test_bad_topk_inputs_are_clear_errors() -> None:
    pp = PairwiseEmbeddingsReranker(top_n=2, pairwise_model=TrivialDistanceSiamese())
    emb = torch.randn(4, 2)
    with pytest.raises(ValueError, match="retrieved must be a long tensor"):
        pp.process(_d([0.1, 0.2]), torch.tensor([[1.0, 2.0]]), torch.tensor([0]), emb)
    with pytest.raises(ValueError, match="query_ids must be a long"):
        pp.process(_d([0.1, 0.2]), _ids([1, 2]), torch.tensor([0, 1]), emb)
    with pytest.raises(IndexError, match=r"outside the dataset's 4 rows"):
        pp.process(_d([0.1, 0.2]), _ids([1, 9]), torch.tensor([0]), emb)
    with pytest.raises(ValueError, match="pass the embeddings"):
        pp.process(_d([0.1, 0.2]), _ids([1, 2]), torch.tensor([0]), None)


class _Images(torch.utils.data.Dataset[dict[str, Any]]):
    """Items with an ``input_tensors`` image; sizes may differ on purpose."""

    def __init__(self, n: int, size: int = 16, odd: int | None = None, odd_size: int = 12) -> None:
        g = torch.Generator().manual_seed(3)
        self.images = [
            torch.rand(3, odd_size if i == odd else size, odd_size if i == odd else size, generator=g) for i in range(n)
        ]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"input_tensors": self.images[i], "idx": i}


def test_images_reranker_matches_scoring_pairs_one_by_one() -> None:
    model = ConcatSiamese(TinyConvExtractor(), mlp_hidden_dims=[6], use_tta=True)
    data = _Images(12)
    pp = PairwiseImagesReranker(top_n=4, pairwise_model=model, batch_size=3)
    retrieved = torch.tensor([[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]])
    distances = torch.linspace(0, 1, 10).view(2, 5)
    new_d, new_r = pp.process(distances, retrieved, torch.tensor([0, 11]), data)
    model.eval()
    with torch.no_grad():
        for row, q in enumerate([0, 11]):
            expected = sorted(
                (float(model.predict(data[q]["input_tensors"][None], data[int(g)]["input_tensors"][None])[0]), int(g))
                for g in retrieved[row, :4]
            )
            assert new_r[row, :4].tolist() == [g for _, g in expected]
            torch.testing.assert_close(new_d[row, :4], torch.tensor([s for s, _ in expected]))
    assert new_r[:, 4].tolist() == [5, 10]


def test_images_of_different_sizes_are_a_clear_error() -> None:
    pp = PairwiseImagesReranker(top_n=2, pairwise_model=ConcatSiamese(TinyConvExtractor(), [4]))
    with pytest.raises(InputSizeError, match="resize every image to one size"):
        pp.process(_d([0.1, 0.2]), _ids([1, 2]), torch.tensor([0]), _Images(4, odd=2))


def test_images_not_matching_the_models_image_size_are_a_clear_error() -> None:
    model = ConcatSiamese(TinyConvExtractor(), [4], image_size=(32, 32))
    pp = PairwiseImagesReranker(top_n=2, pairwise_model=model)
    with pytest.raises(InputSizeError, match=r"built for 32x32 images .* got 16x16"):
        pp.process(_d([0.1, 0.2]), _ids([1, 2]), torch.tensor([0]), _Images(4))


def test_images_reranker_with_workers_gives_the_same_result() -> None:
    model = ConcatSiamese(TinyConvExtractor(), [4])
    data = _Images(9)
    retrieved = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]])
    distances = torch.linspace(0, 1, 8).view(2, 4)
    a = PairwiseImagesReranker(top_n=3, pairwise_model=model, batch_size=2).process(
        distances, retrieved, torch.tensor([0, 0]), data
    )
    b = PairwiseImagesReranker(top_n=3, pairwise_model=model, num_workers=2, batch_size=2).process(
        distances, retrieved, torch.tensor([0, 0]), data
    )
    assert torch.equal(a[0], b[0])
    assert torch.equal(a[1], b[1])


def test_autocast_runs_and_keeps_the_distances_dtype() -> None:
    emb = torch.randn(10, 4, generator=torch.Generator().manual_seed(5))
    pp = PairwiseEmbeddingsReranker(top_n=3, pairwise_model=LinearSiamese(4), autocast=True, autocast_dtype="bfloat16")
    new_d, _ = pp.process(torch.rand(2, 5).sort(dim=1).values, torch.arange(10).view(2, 5), torch.tensor([0, 5]), emb)
    assert new_d.dtype == torch.float32
    assert bool((new_d[:, 1:] >= new_d[:, :-1]).all())


# ---- thresholding ---------------------------------------------------------------------------------------


def test_constant_thresholding_drops_items_above_th() -> None:
    pp = ConstantThresholding(th=0.5)
    new_d, new_r = pp.process(
        _d([0.1, 0.5, 0.6, INF], [0.7, 0.8, 0.9, 1.0]), _ids([1, 2, 3, -1], [4, 5, 6, 7]), torch.tensor([0, 1])
    )
    assert new_r.tolist() == [[1, 2, -1, -1], [-1, -1, -1, -1]]
    assert new_d[0, :2].tolist() == pytest.approx([0.1, 0.5])
    assert bool(torch.isinf(new_d[0, 2:]).all())
    assert bool(torch.isinf(new_d[1]).all())


def test_adaptive_thresholding_cuts_at_the_first_large_gap() -> None:
    # gaps 1, 1, 7, 1: mean 2.5, population std sqrt(((1.5^2)*3 + 4.5^2)/4) = sqrt(6.75) = 2.598...
    # n_std = 1: limit 5.098 -> the gap of 7 (between the 3rd and 4th item) is the first above: keep 3
    distances = _d([0, 1, 2, 9, 10])
    pp = AdaptiveThresholding(n_std=1.0)
    new_d, new_r = pp.process(distances, _ids([5, 6, 7, 8, 9]), torch.tensor([0]))
    assert new_r.tolist() == [[5, 6, 7, -1, -1]]
    assert math.isinf(new_d[0, 3].item())
    # n_std = 2: limit 7.696: no gap above, the row is kept whole
    assert AdaptiveThresholding(n_std=2.0).process(distances, _ids([5, 6, 7, 8, 9]), torch.tensor([0]))[1].tolist() == [
        [5, 6, 7, 8, 9]
    ]


def test_adaptive_thresholding_corner_cases() -> None:
    pp = AdaptiveThresholding(n_std=0.0)
    # equal gaps: none exceeds the mean -> whole row; one gap -> whole row; padding is not a gap
    rows = _d([0, 1, 2, 3], [0.5, 2.0, INF, INF], [0, 0.1, 0.2, 5.0])
    retrieved = _ids([1, 2, 3, 4], [5, 6, -1, -1], [7, 8, 9, 10])
    counts = pp.keep_counts(rows, retrieved)
    assert counts.tolist() == [4, 2, 3]
    # n_std = 0: the first gap above the mean cuts; gaps 0.1, 0.1, 4.8 -> mean 1.667 -> keep 3
    _, new_r = pp.process(rows, retrieved, torch.arange(3))
    assert new_r[2].tolist() == [7, 8, 9, -1]


def test_thresholds_validate_their_numbers() -> None:
    with pytest.raises(ValueError, match="th must be a number"):
        ConstantThresholding(th=float("nan"))
    with pytest.raises(ValueError, match="n_std must be a finite number"):
        AdaptiveThresholding(n_std=float("inf"))


def test_every_postprocessor_satisfies_both_protocols() -> None:
    model = TrivialDistanceSiamese()
    for pp in (
        PairwiseEmbeddingsReranker(2, model),
        PairwiseImagesReranker(2, model),
        ConstantThresholding(1.0),
        AdaptiveThresholding(1.0),
    ):
        assert isinstance(pp, RetrievalPostprocessor)
        assert isinstance(pp, TopKPostprocessor)
        assert pp.reads in ("embeddings", "items", "nothing")


def test_entry_points_build_from_configs() -> None:
    assert set(omlcore.available("postprocessor")) >= {
        "pairwise_embeddings",
        "pairwise_images",
        "constant_thresholding",
        "adaptive_thresholding",
    }
    th = omlcore.build("postprocessor", {"name": "adaptive_thresholding", "args": {"n_std": 2}})
    assert isinstance(th, AdaptiveThresholding)
    assert th.n_std == 2.0
    pp = omlcore.build(
        "postprocessor",
        {
            "name": "pairwise_images",
            "args": {
                "top_n": 5,
                "batch_size": 8,
                "pairwise_model": {"name": "linear_siamese", "args": {"feat_dim": 4}},
            },
        },
    )
    assert isinstance(pp, PairwiseImagesReranker)
    assert isinstance(pp.pairwise_model, LinearSiamese)
    issues = omlcore.registry.get_registry().validate(
        "postprocessor", {"name": "pairwise_images", "args": {"top_n": "x"}}
    )
    assert {i.path for i in issues} >= {"postprocessor.args.top_n", "postprocessor.args.pairwise_model"}


# ---- the core's conformance suite ------------------------------------------------------------------------


class TestPairwiseEmbeddingsConformance(RetrievalPostprocessorConformance):
    kind_name = "pairwise_embeddings"
    args = {"top_n": 3, "pairwise_model": {"name": "trivial_distance_siamese"}}

    @pytest.fixture
    def postprocessor_dataset(self) -> Tensor:
        return torch.randn(40, 5, generator=torch.Generator().manual_seed(0))


class TestPairwiseImagesConformance(RetrievalPostprocessorConformance):
    kind_name = "pairwise_images"
    args = {"top_n": 2, "batch_size": 4}

    @pytest.fixture
    def component_args(self) -> dict[str, Any]:
        return {**self.args, "pairwise_model": ConcatSiamese(TinyConvExtractor(), [4], use_tta=True)}

    @pytest.fixture
    def postprocessor_dataset(self) -> _Images:
        return _Images(40, size=8)


class TestConstantThresholdingConformance(RetrievalPostprocessorConformance):
    kind_name = "constant_thresholding"
    args = {"th": 0.5}
    may_drop = True


class TestAdaptiveThresholdingConformance(RetrievalPostprocessorConformance):
    kind_name = "adaptive_thresholding"
    args = {"n_std": 0.5}
    may_drop = True
