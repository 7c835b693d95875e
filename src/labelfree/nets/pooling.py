"""Global pooling of a convolutional feature map ``(B, C, h, w)`` into a vector ``(B, C)``.

Four poolings, chosen by name with :func:`make_pooling`:

``avg``
    Global average pooling.
``mac``
    Maximum Activations of Convolutions: the global spatial maximum of each channel
    (Tolias, Sicre, Jégou 2016, "Particular object retrieval with integral max-pooling of CNN
    activations", ICLR).
``gem``
    Generalised mean, ``(mean_hw x^p)^(1/p)`` (Radenović, Tolias, Chum 2018, "Fine-tuning CNN
    image retrieval with no human annotation", TPAMI). ``p = 1`` is average pooling and
    ``p → ∞`` tends to MAC; ``p`` can be learned.
``rmac``
    Regional MAC (Tolias, Sicre, Jégou 2016): MAC over square regions at ``L`` scales, each region
    vector L2-normalised, summed, and the sum L2-normalised. The paper's per-region PCA-whitening
    is not applied (it needs a learned whitening; apply one to the output if wanted).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "AvgPool",
    "GeM",
    "MAC",
    "POOLINGS",
    "RMAC",
    "make_pooling",
    "rmac_regions",
]


class AvgPool(nn.Module):
    """Global average pooling: ``(B, C, h, w) → (B, C)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(-2, -1))


class MAC(nn.Module):
    """Global max pooling (MAC; Tolias, Sicre, Jégou 2016): ``(B, C, h, w) → (B, C)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.amax(dim=(-2, -1))


class GeM(nn.Module):
    """Generalised-mean pooling (Radenović, Tolias, Chum 2018).

    ``GeM(x)_c = (mean_{h,w} max(x_chw, eps)^p)^(1/p)``. Activations are clamped at ``eps`` so
    that fractional powers of negative values never occur (after a ReLU they are ≥ 0 anyway).

    Args:
        p: the exponent; 3 is the paper's initial value. ``p = 1`` equals average pooling (of the
            clamped map) and large ``p`` approaches MAC.
        learnable: make ``p`` a trainable parameter (the paper learns it); otherwise it is a
            buffer. Either way it is stored under the name ``p`` in the state dict.
        eps: the clamp floor.
    """

    def __init__(self, p: float = 3.0, learnable: bool = False, eps: float = 1e-6) -> None:
        super().__init__()
        if p <= 0:
            raise ValueError(f"GeM exponent p must be positive, got {p}")
        self.eps = float(eps)
        self.learnable = bool(learnable)
        value = torch.tensor(float(p))
        if learnable:
            self.p = nn.Parameter(value)
        else:
            self.register_buffer("p", value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.p.to(x.dtype)
        return x.clamp(min=self.eps).pow(p).mean(dim=(-2, -1)).pow(1.0 / p)

    def extra_repr(self) -> str:
        return f"p={float(self.p):.3g}, learnable={self.learnable}, eps={self.eps}"


def _positions(length: int, side: int, count: int) -> list[int]:
    """``count`` start offsets of a window of ``side`` spread evenly over ``[0, length - side]``."""
    if count <= 1 or length <= side:
        return [max(0, (length - side) // 2)]
    step = (length - side) / (count - 1)
    return [int(round(i * step)) for i in range(count)]


def rmac_regions(
    h: int, w: int, levels: int = 3, overlap: float = 0.4
) -> list[tuple[int, int, int, int]]:
    """The R-MAC regions of an ``h × w`` map as ``(top, left, height, width)`` boxes.

    Following Tolias, Sicre, Jégou (2016, §3): at scale ``l = 1`` the region is the largest
    square, side ``min(h, w)``, placed at ``m`` positions along the longer side, where ``m`` is
    chosen so that consecutive regions overlap as close to ``overlap`` (40 %) as possible. At
    scale ``l`` the squares have side ``⌊2·min(h, w)/(l + 1)⌋`` and ``l × (l + m − 1)`` of them
    are spread uniformly (``l`` along the shorter side). Region offsets are rounded to whole
    cells, and boxes that coincide on small maps are kept once, so a square map has at most
    ``1 + 4 + 9 = 14`` regions for ``levels = 3`` (exactly 14 on 3×3 and 7×7 maps).
    """
    if h < 1 or w < 1:
        raise ValueError(f"R-MAC needs a non-empty feature map, got {h}×{w}")
    short, long_ = min(h, w), max(h, w)
    # m: number of full-size squares along the longer side (1 on a square map).
    m = 1
    if long_ > short:
        best = math.inf
        for n in range(2, 8):  # a handful of candidates is plenty for aspect ratios up to ~4:1
            stride = (long_ - short) / (n - 1)
            err = abs((short - stride) / short - overlap)
            if err < best:
                best, m = err, n
    boxes: dict[tuple[int, int, int, int], None] = {}  # ordered set: tiny maps repeat boxes
    for level in range(1, levels + 1):
        side = max(1, int(math.floor(2 * short / (level + 1))))
        n_short, n_long = level, level + m - 1
        n_h, n_w = (n_short, n_long) if h <= w else (n_long, n_short)
        for top in _positions(h, side, n_h):
            for left in _positions(w, side, n_w):
                boxes[(top, left, side, side)] = None
    return list(boxes)


class RMAC(nn.Module):
    """Regional MAC (Tolias, Sicre, Jégou 2016), without the per-region PCA-whitening.

    ``RMAC(x) = normalise(Σ_R normalise(MAC(x restricted to R)))`` over the regions of
    :func:`rmac_regions`. The regions depend only on the map size and are cached per size.

    Args:
        levels: number of scales ``L`` (3 in the paper).
        overlap: target overlap of consecutive regions (0.4 in the paper).
        eps: added to norms to avoid division by zero.
    """

    def __init__(self, levels: int = 3, overlap: float = 0.4, eps: float = 1e-6) -> None:
        super().__init__()
        if levels < 1:
            raise ValueError(f"R-MAC needs at least one level, got {levels}")
        self.levels = int(levels)
        self.overlap = float(overlap)
        self.eps = float(eps)
        self._cache: dict[tuple[int, int], list[tuple[int, int, int, int]]] = {}

    def regions(self, h: int, w: int) -> list[tuple[int, int, int, int]]:
        key = (h, w)
        if key not in self._cache:
            self._cache[key] = rmac_regions(h, w, self.levels, self.overlap)
        return self._cache[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        total = torch.zeros(x.shape[:-2], dtype=x.dtype, device=x.device)
        for top, left, rh, rw in self.regions(int(h), int(w)):
            v = x[..., top : top + rh, left : left + rw].amax(dim=(-2, -1))
            total = total + v / (v.norm(dim=-1, keepdim=True) + self.eps)
        return total / (total.norm(dim=-1, keepdim=True) + self.eps)

    def extra_repr(self) -> str:
        return f"levels={self.levels}, overlap={self.overlap}"


POOLINGS: dict[str, type[nn.Module]] = {"avg": AvgPool, "mac": MAC, "gem": GeM, "rmac": RMAC}


def make_pooling(name: str, **kw: object) -> nn.Module:
    """A global pooling module ``(B, C, h, w) → (B, C)`` by name.

    Args:
        name: ``"avg"``, ``"mac"``, ``"gem"`` (kwargs ``p=3.0``, ``learnable=False``,
            ``eps=1e-6``) or ``"rmac"`` (kwargs ``levels=3``, ``overlap=0.4``, ``eps=1e-6``).

    Raises:
        ValueError: unknown name (the message lists the choices).
    """
    key = name.lower()
    if key not in POOLINGS:
        raise ValueError(f"unknown pooling {name!r}; choose one of {', '.join(POOLINGS)}")
    return POOLINGS[key](**kw)


def l2_normalize(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Rows of ``x`` scaled to unit L2 norm."""
    return F.normalize(x, p=2.0, dim=-1, eps=eps)
