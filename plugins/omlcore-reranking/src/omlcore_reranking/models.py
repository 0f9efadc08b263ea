"""Pairwise models (kind ``pairwise_model``, group ``omlcore.pairwise_models``).

Every model follows :class:`omlcore.protocols.PairwiseModel`: ``forward(x1, x2)`` gives one logit per
pair of "the two are *different*" (trained with BCE against ``is_negative``), ``predict(x1, x2)`` one
distance-like score per pair (larger = less alike) for re-ranking.

- :class:`ConcatSiamese` (``concat_siamese``): OML's STIR model. The two images are stacked along the
  height into one ``(C, 2H, W)`` image, an extractor (a ViT) embeds it, an MLP head gives the logit;
  ``predict`` is the sigmoid of it, the probability of being different, optionally averaged over both
  orders of the pair (test-time augmentation).
- :class:`LinearSiamese` (``linear_siamese``): the Euclidean distance between linear projections of two
  embeddings, minus a learnt offset; with the identity projection and a zero offset it is plain L2.
- :class:`TrivialDistanceSiamese` (``trivial_distance_siamese``): the Euclidean distance between the
  extractor's outputs (or between the inputs themselves without an extractor); a neutral re-ranker.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn

from omlcore.protocols import Extractor
from omlcore_reranking.errors import InputSizeError, WeightsFileError

__all__ = ["ConcatSiamese", "LinearSiamese", "TrivialDistanceSiamese", "load_weights_file"]

_ACTIVATIONS: dict[str, type[nn.Module]] = {"sigmoid": nn.Sigmoid, "relu": nn.ReLU, "gelu": nn.GELU}


def load_weights_file(module: nn.Module, path: str | os.PathLike[str], owner: str) -> None:
    """Load a state dict saved with ``torch.save`` into ``module``, strictly.

    The file may hold the state dict itself or a Lightning checkpoint (``{"state_dict": ...}``) whose
    keys carry a prefix such as ``model.``; the prefix under which every key of ``module`` is found is
    used, and keys under it that ``module`` lacks are an error. ``owner`` names the model in messages.
    """
    file = Path(path)
    if not file.is_file():
        raise WeightsFileError(f"{owner}: the weights file {file} does not exist; fix 'weights' or set it to null")
    try:
        obj = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsFileError(f"{owner}: cannot read the weights file {file}: {type(exc).__name__}: {exc}") from exc
    state = obj.get("state_dict", obj) if isinstance(obj, Mapping) else None
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise WeightsFileError(f"{owner}: {file} holds no state dict (a mapping of names to tensors)")
    own = list(module.state_dict())
    prefix = _common_prefix(own, list(state))
    if prefix is None:
        missing = [k for k in own if k not in state][:5]
        raise WeightsFileError(
            f"{owner}: {file} does not fit the model: keys such as {missing} are missing (under any prefix); "
            f"was it saved from another architecture or with other mlp_hidden_dims?"
        )
    picked = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    try:
        module.load_state_dict(picked, strict=True)
    except RuntimeError as exc:
        raise WeightsFileError(f"{owner}: {file} does not fit the model (prefix {prefix!r}): {exc}") from exc


def _common_prefix(own: Sequence[str], stored: Sequence[str]) -> str | None:
    """The shortest prefix ``p`` such that ``p + k`` is stored for every key ``k`` of ``own``."""
    stored_set = set(stored)
    if not own:
        return ""
    first = own[0]
    candidates = sorted({s[: len(s) - len(first)] for s in stored if s.endswith(first)}, key=len)
    for p in candidates:
        if all(p + k in stored_set for k in own):
            return p
    return None


def _check_same_shape(name: str, x1: Tensor, x2: Tensor, ndim: int, what: str) -> None:
    for label, x in (("x1", x1), ("x2", x2)):
        if not isinstance(x, Tensor):
            raise TypeError(f"{name}: {label} must be a torch.Tensor, got {type(x).__name__}")
        if x.ndim != ndim:
            raise InputSizeError(f"{name}: {label} has shape {tuple(x.shape)}; expected {what}")
    if x1.shape != x2.shape:
        raise InputSizeError(
            f"{name}: the two sides of the pairs differ in shape, x1 {tuple(x1.shape)} and x2 {tuple(x2.shape)}; "
            f"expected {what} for both"
        )


class ConcatSiamese(nn.Module):
    """The STIR model: two images stacked along the height, embedded by an extractor, scored by an MLP.

    Args:
        extractor: embeds a ``(B, C, 2H, W)`` batch into ``(B, feat_dim)`` (a ``torch.nn.Module``; a ViT
            that interpolates its position embeddings, such as ``vit``, takes the doubled height).
        mlp_hidden_dims: widths of the head's hidden layers (``[192]`` in OML's STIR recipe); the head
            is ``Linear -> activation -> Dropout`` per hidden layer, then a ``Linear(.., 1)`` without bias.
        use_tta: ``predict`` averages the probabilities of ``(x1, x2)`` and ``(x2, x1)`` (symmetric).
        dropout: dropout probability after each hidden layer (active in ``train()`` only).
        activation: the hidden layers' activation.
        image_size: ``(H, W)`` one image must have; checked before the extractor runs, so a transform
            giving another size fails with a clear message. None: any size the extractor accepts. If the
            extractor has an int ``patch_size`` (ViTs), ``H`` and ``W`` must be multiples of it, so that no
            patch straddles the two stacked images.
        weights: a file saved with ``torch.save`` (state dict or Lightning checkpoint) to load.

    ``forward(x1, x2)``: float ``(B, C, H, W)`` each; returns the logits ``(B,)`` of "different".
    ``predict(x1, x2)``: the probabilities ``(B,)`` of "different" (a distance in ``[0, 1]``).
    ``freeze()``/``unfreeze()`` stop/restart training the extractor (the head always trains).
    """

    def __init__(
        self,
        extractor: Extractor,
        mlp_hidden_dims: Sequence[int] = (192,),
        use_tta: bool = False,
        dropout: float = 0.5,
        activation: Literal["sigmoid", "relu", "gelu"] = "sigmoid",
        image_size: tuple[int, int] | None = None,
        weights: str | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(extractor, nn.Module):
            raise TypeError(f"concat_siamese needs a torch.nn.Module extractor, got {type(extractor).__name__}")
        feat_dim = getattr(extractor, "feat_dim", None)
        if isinstance(feat_dim, bool) or not isinstance(feat_dim, int) or feat_dim <= 0:
            raise ValueError(f"concat_siamese: the extractor's feat_dim must be a positive int, got {feat_dim!r}")
        dims = [int(d) for d in mlp_hidden_dims]
        if any(d <= 0 for d in dims):
            raise ValueError(f"concat_siamese: mlp_hidden_dims must be positive ints, got {list(mlp_hidden_dims)}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"concat_siamese: dropout must lie in [0, 1), got {dropout}")
        if activation not in _ACTIVATIONS:
            raise ValueError(f"concat_siamese: activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
        if image_size is not None and (len(image_size) != 2 or min(image_size) <= 0):
            raise ValueError(f"concat_siamese: image_size must be (height, width) > 0, got {image_size!r}")
        self.extractor = extractor
        self.feat_dim = feat_dim
        self.use_tta = use_tta
        self.image_size = tuple(int(s) for s in image_size) if image_size is not None else None
        layers: list[nn.Module] = []
        width = feat_dim
        for d in dims:
            layers += [nn.Linear(width, d), _ACTIVATIONS[activation](), nn.Dropout(dropout)]
            width = d
        layers.append(nn.Linear(width, 1, bias=False))
        self.head = nn.Sequential(*layers)
        if weights is not None:
            load_weights_file(self, weights, "concat_siamese")

    def _check(self, x1: Tensor, x2: Tensor) -> None:
        _check_same_shape("concat_siamese", x1, x2, 4, "image batches (B, C, H, W) of one size")
        if self.image_size is not None and tuple(x1.shape[-2:]) != self.image_size:
            h, w = self.image_size
            raise InputSizeError(
                f"concat_siamese was built for {h}x{w} images (image_size) but got {x1.shape[-2]}x{x1.shape[-1]} "
                f"images: make the transforms resize to {h}x{w}, or change image_size"
            )

        patch = getattr(self.extractor, "patch_size", None)
        if isinstance(patch, int) and not isinstance(patch, bool) and patch > 1:
            h, w = x1.shape[-2:]
            if h % patch or w % patch:
                raise InputSizeError(
                    f"concat_siamese: images of {h}x{w} do not split into the extractor's {patch}x{patch} patches; "
                    f"stacked, a patch would straddle the two images. Make the transforms give a size that is a "
                    f"multiple of {patch} (e.g. {max(patch, h - h % patch)}x{max(patch, w - w % patch)})"
                )

    def _embed(self, x: Tensor) -> Tensor:
        try:
            feats: Tensor = self.extractor.extract(x)
        except torch.cuda.OutOfMemoryError:
            raise
        except (RuntimeError, ValueError, AssertionError, TypeError) as exc:
            h = x.shape[2] // 2
            raise InputSizeError(
                f"concat_siamese: the extractor {type(self.extractor).__name__} failed on a pair stacked along the "
                f"height, a batch of shape {tuple(x.shape)} (each image {h}x{x.shape[3]}): "
                f"{type(exc).__name__}: {exc}. The extractor must accept images twice as high as the transforms "
                f"make them: use one that interpolates its position embeddings (e.g. vit) and an image size it "
                f"supports (a multiple of its patch size)"
            ) from exc
        if tuple(feats.shape) != (x.shape[0], self.feat_dim):
            raise InputSizeError(
                f"concat_siamese: the extractor returned shape {tuple(feats.shape)} for {x.shape[0]} pairs; "
                f"expected ({x.shape[0]}, {self.feat_dim}) (its feat_dim)"
            )
        return feats

    def forward(self, x1: Tensor, x2: Tensor) -> Tensor:
        """Logits ``(B,)`` of "``x1[i]`` and ``x2[i]`` are different"."""
        self._check(x1, x2)
        logits: Tensor = self.head(self._embed(torch.cat([x1, x2], dim=2))).squeeze(1)
        return logits

    def predict(self, x1: Tensor, x2: Tensor) -> Tensor:
        """Probabilities ``(B,)`` of being different; with ``use_tta`` the mean over both orders."""
        prob = torch.sigmoid(self.forward(x1, x2))
        if self.use_tta:
            prob = (prob + torch.sigmoid(self.forward(x2, x1))) / 2
        return prob

    def freeze(self) -> None:
        """Stop gradients into the extractor (train only the head)."""
        for p in self.extractor.parameters():
            p.requires_grad_(False)

    def unfreeze(self) -> None:
        """Train the extractor again."""
        for p in self.extractor.parameters():
            p.requires_grad_(True)


class LinearSiamese(nn.Module):
    """``|W x1 - W x2| - b``: the Euclidean distance between linear projections of two embeddings.

    Args:
        feat_dim: the embeddings' width ``D``; ``W`` is ``D x D``.
        identity_init: start from ``W = I`` (then, with ``b = 0``, the model is plain L2 and a neutral
            re-ranker); otherwise ``torch.nn.Linear``'s default initialisation.
        weights: a file saved with ``torch.save`` to load.

    ``forward`` and ``predict`` give the same value: a distance that is also a logit of "different".
    """

    def __init__(self, feat_dim: int, identity_init: bool = True, weights: str | None = None) -> None:
        super().__init__()
        if isinstance(feat_dim, bool) or not isinstance(feat_dim, int) or feat_dim <= 0:
            raise ValueError(f"linear_siamese: feat_dim must be a positive int, got {feat_dim!r}")
        self.feat_dim = feat_dim
        self.proj = nn.Linear(feat_dim, feat_dim, bias=False)
        self.offset = nn.Parameter(torch.zeros(()))
        if identity_init:
            with torch.no_grad():
                self.proj.weight.copy_(torch.eye(feat_dim))
        if weights is not None:
            load_weights_file(self, weights, "linear_siamese")

    def forward(self, x1: Tensor, x2: Tensor) -> Tensor:
        """``(B,)`` distances between the projections, minus the offset."""
        _check_same_shape("linear_siamese", x1, x2, 2, f"embeddings (B, {self.feat_dim})")
        if x1.shape[1] != self.feat_dim:
            raise InputSizeError(
                f"linear_siamese was built for {self.feat_dim}-d embeddings (feat_dim) but got {x1.shape[1]}-d ones"
            )
        diff = self.proj(x1) - self.proj(x2)
        out: Tensor = torch.linalg.vector_norm(diff, dim=1) - self.offset
        return out

    def predict(self, x1: Tensor, x2: Tensor) -> Tensor:
        """The same as :meth:`forward`."""
        return self.forward(x1, x2)


class TrivialDistanceSiamese(nn.Module):
    """``|e(x1) - e(x2)|``: the Euclidean distance between the extractor's outputs (a neutral re-ranker).

    Args:
        extractor: embeds each side; None: the inputs are embeddings already ``(B, D)``.

    Over the same embeddings the kNN search used (L2), re-ranking with it keeps every result's order
    (up to floating-point rounding of near-equal distances).
    """

    def __init__(self, extractor: Extractor | None = None) -> None:
        super().__init__()
        if extractor is not None and not isinstance(extractor, nn.Module):
            raise TypeError(
                f"trivial_distance_siamese needs a torch.nn.Module extractor, got {type(extractor).__name__}"
            )
        self.extractor = extractor

    def _embed(self, x: Tensor) -> Tensor:
        if self.extractor is None:
            return x
        out: Tensor = self.extractor.extract(x)
        return out

    def forward(self, x1: Tensor, x2: Tensor) -> Tensor:
        """``(B,)`` Euclidean distances."""
        if self.extractor is None:
            _check_same_shape("trivial_distance_siamese", x1, x2, 2, "embeddings (B, D)")
        elif x1.shape != x2.shape:
            raise InputSizeError(
                f"trivial_distance_siamese: x1 {tuple(x1.shape)} and x2 {tuple(x2.shape)} differ in shape"
            )
        out: Tensor = torch.linalg.vector_norm(self._embed(x1) - self._embed(x2), dim=1)
        return out

    def predict(self, x1: Tensor, x2: Tensor) -> Tensor:
        """The same as :meth:`forward`."""
        return self.forward(x1, x2)
