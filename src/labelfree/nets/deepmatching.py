"""Trainable DeepMatching as differentiable torch layers (seed 004 Ch.3, METHODS.md §6.6).

Source: Thewlis et al., "Fully-Trainable Deep Matching" (BMVC 2016), chapter 3 of seed 004
(/work/shared/seeds/004_77fad0f12a5bea3d.txt, §2.1 eqs. (2)–(6) and §2.3 "Discretization").
The bottom-up pass (correlation, max-pooling, aggregation, power) builds ``S_0 .. S_L``; the
top-down pass (disaggregation, unpooling, summation) builds ``Q_L .. Q_0``, which equals
DeepMatching's memoised best-path recursion ``Q_0(q0|p0) = max_H Σ_l S_l(q_l|p_l)`` (§2.1).

Discretisation (our documented simplification of §2.3; everything in CELL units):

* Descriptor maps come at stride 2 px: cell ``(i, j)`` is centred on pixel ``(2j + ½, 2i + ½)``.
  Reference points ``p`` are every cell of the level-0 grid (α0 = δ0 = γ0 = η0 = 1 cell).
* Offsets ``q − p`` lie on a square grid: level ``l`` has radius ``R_l`` (``R_0 = radius``,
  ``R_{l+1} = ceil(R_l / 2)``) and spacing ``2^l`` cells; index ``k ∈ {0..2R_l}²`` means offset
  ``2^l (k − R_l)`` cells, stored (row, col) inside tensors, ``S_l`` of shape
  ``(B, H_l, W_l, 2R_l+1, 2R_l+1)``. Callers see displacements as ``(dx, dy) = (col, row)``.
* Eq. (2): ``S_0[b,i,j,a,c] = <f0[b,:,i,j], f1[b,:,i+a−R,j+c−R]>``; ``f1`` is zero outside the
  map, so those scores are 0 (the lowest cosine of non-negative descriptors: "no evidence",
  which keeps every entry finite and the power well defined).
* Eq. (3): max-pool over ``q`` with 3×3 windows, stride 2, after padding the offset axes with
  −inf by ``P_l = 1 + 2R_{l+1} − R_l`` (1 or 2; padded by hand because max_pool2d limits the
  padding to half the window). Switches are flat indices into the unpadded level-``l`` offset
  grid; ties go to the FIRST maximum in row-major window order.
* Eq. (4): level 0 is ``H0×W0``; every level ≥ 1 uses one ``(H0−1)×(W0−1)`` grid whose point
  ``(i, j)`` sits at level-0 position ``(i + ½, j + ½)`` (our reading of τ_l). ``S_1(i, j)``
  averages ``S_½`` at the four level-0 children ``(i + {0,1}, j + {0,1})``; for ``l ≥ 1``,
  ``S_{l+1}(i, j)`` averages ``S_{l+½}`` at ``(i ± 2^{l−1}, j ± 2^{l−1})`` (the four ε_i) on the
  same grid. Children outside the grid: ``border="inside"`` (default, as the released MatConvNet
  code: average over the existing children) or ``"zero"`` (the text's ¼Σ, missing children
  count 0). No shift of the offset index (offsets are relative to ``p``). Then
  ``S_{l+1} = clamp_min(mean, 1e-8) ** ν_l``: the clamp keeps ``x ** ν`` and its ν-derivative
  ``x^ν log x`` finite when every child scored 0 (also the guard for a point with no child).
* Eqs. (5), (6): ``Q_L = S_L``; disaggregation takes, at each child, the max of ``Q_{l+1}`` over
  the parents that used it (−inf where none); unpooling scatters ``Q_{l+½}`` through the
  switches with a max (−inf where no switch points) and adds ``S_l``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import reduce

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["MatchDescriptor", "MatchPyramid", "correlate", "dense_hog", "pyramid_radii"]

NEG_INF = float("-inf")
SCORE_FLOOR = 1e-8  # clamp before the power (eq. 4), see module docstring


def pyramid_radii(radius: int, levels: int) -> list[int]:
    """Offset radii ``R_0 .. R_L`` with ``R_{l+1} = ceil(R_l / 2)`` (seed 004 Ch.3 §2.3)."""
    radii = [int(radius)]
    for _ in range(levels):
        radii.append(-(-radii[-1] // 2))
    return radii


def correlate(f0: Tensor, f1: Tensor, radius: int, tile: int = 32) -> Tensor:
    """Level-0 scores, eq. (2): ``(B, C, H, W)`` × 2 -> ``(B, H, W, 2R+1, 2R+1)``.

    ``out[b,i,j,a,c] = <f0[b,:,i,j], f1[b,:,i+a−R,j+c−R]>`` with ``f1`` zero outside the map.
    For each row offset ``a`` the columns are cut into tiles of ``tile`` cells; one batched
    matmul scores a tile against the ``tile + 2R`` columns it can reach, and a gather keeps the
    band of ``2R+1`` offsets. The extra work is a factor ``(tile + 2R) / (2R+1)``, but it runs in
    BLAS, and autograd keeps only views of the inputs (no ``(B, C·K², H·W)`` tensor).
    """
    if f0.shape != f1.shape:
        raise ValueError(f"descriptor maps differ in shape: {tuple(f0.shape)} vs {tuple(f1.shape)}")
    b, c, h, w = f0.shape
    r, k = radius, 2 * radius + 1
    t = min(tile, w)
    nb = -(-w // t)
    wp = nb * t
    a0 = F.pad(f0, (0, wp - w)).permute(0, 2, 3, 1).reshape(b, h, nb, t, c)
    f1p = F.pad(f1, (r, r + wp - w, r, r)).permute(0, 2, 1, 3)  # (B, H+2R, C, wp+2R)
    win = f1p.unfold(3, t + 2 * r, t).permute(0, 1, 3, 2, 4)  # (B, H+2R, nb, C, t+2R)
    ar = torch.arange(max(t, k), device=f0.device)
    band = (ar[:t].view(t, 1) + ar[:k]).expand(b, h, nb, t, k)  # column j + c of the tile
    rows = []
    for a in range(k):
        m = torch.matmul(a0, win[:, a : a + h])  # (B, H, nb, t, t+2R)
        rows.append(m.gather(-1, band).reshape(b, h, wp, k)[:, :, :w])
    return torch.stack(rows, dim=3)


def _pad_hw(x: Tensor, before: int, after: int, value: float) -> Tensor:
    """Pad the two spatial axes (1, 2) of a ``(B, H, W, K, K)`` map."""
    return F.pad(x, (0, 0, 0, 0, before, after, before, after), value=value)


def _maxpool(s: Tensor, r_next: int) -> tuple[Tensor, Tensor]:
    """Eq. (3): 3×3 / stride-2 max over the offset axes; returns values and switches.

    Switches are flat ``row * K_l + col`` indices into the UNPADDED level-``l`` offset grid; on
    ties ``argmax`` returns the first maximum in row-major window order.
    """
    k = s.shape[-1]
    r = (k - 1) // 2
    pad = 1 + 2 * r_next - r
    sp = F.pad(s, (pad, pad, pad, pad), value=NEG_INF)
    win = sp.unfold(3, 3, 2).unfold(4, 3, 2)  # (B, H, W, K', K', 3, 3)
    win = win.reshape(*win.shape[:5], 9)
    arg = win.argmax(-1, keepdim=True)
    val = win.gather(-1, arg).squeeze(-1)
    arg = arg.squeeze(-1)
    kn = 2 * r_next + 1
    base = torch.arange(kn, device=s.device) * 2 - pad
    row = base.view(kn, 1) + torch.div(arg, 3, rounding_mode="floor")
    col = base.view(1, kn) + arg % 3
    return val, row * k + col


def _children(level: int) -> tuple[int, int, int]:
    """(padding, first start, second start) of the two child slices along one axis."""
    if level == 0:
        return 0, 0, 1  # children i and i + 1 of the level-0 grid
    d = 2 ** (level - 1)
    return d, 0, 2 * d  # children i − d and i + d, after padding by d


def _aggregate(s_half: Tensor, level: int, border: str, nu: Tensor) -> Tensor:
    """Eq. (4): average the four children of every point of the level-``l+1`` grid, then power."""
    b, h, w = s_half.shape[:3]
    hg, wg = (h - 1, w - 1) if level == 0 else (h, w)
    pad, s0, s1 = _children(level)
    sp = _pad_hw(s_half, pad, pad, 0.0) if pad else s_half
    kids = [sp[:, ra : ra + hg, cb : cb + wg] for ra in (s0, s1) for cb in (s0, s1)]
    total = reduce(torch.add, kids)
    if border == "inside" and pad:
        ones = F.pad(s_half.new_ones(1, 1, h, w), (pad, pad, pad, pad))[0, 0]
        count = sum(ones[ra : ra + hg, cb : cb + wg] for ra in (s0, s1) for cb in (s0, s1))
        mean = total / count.clamp(min=1.0)[None, :, :, None, None]
    else:
        mean = total / 4.0
    return mean.clamp_min(SCORE_FLOOR) ** nu


def _disaggregate(q: Tensor, level: int, child_hw: tuple[int, int]) -> Tensor:
    """Eq. (5): each child takes the max of ``Q_{l+1}`` over the parents that averaged it."""
    h, w = child_hw
    if level == 0:
        qp = _pad_hw(q, 1, 1, NEG_INF)  # parents of child c are c − {0, 1}
        starts = (0, 1)
    else:
        d = 2 ** (level - 1)
        qp = _pad_hw(q, d, d, NEG_INF)  # parents of child c are c ± d
        starts = (0, 2 * d)
    cands = [qp[:, ra : ra + h, cb : cb + w] for ra in starts for cb in starts]
    return reduce(torch.maximum, cands)


def _unpool(q_half: Tensor, switch: Tensor, s: Tensor) -> Tensor:
    """Eq. (6): ``Q_l = S_l + max{Q_{l+½}[k'] : switch[k'] = k}`` (−inf where no k' points)."""
    b, h, w, k, _ = s.shape
    src = q_half.reshape(b, h, w, -1)
    idx = switch.reshape(b, h, w, -1)
    up = src.new_full((b, h, w, k * k), NEG_INF)
    up = up.scatter_reduce(-1, idx, src, reduce="amax", include_self=False)
    return s + up.view(b, h, w, k, k)


class MatchPyramid(nn.Module):
    """The full DeepMatching network of seed 004 Ch.3 Fig. 2 (CORR, MP, AG, PW, DA, UP, +).

    ``forward(f0, f1)`` maps two ``(B, C, H0, W0)`` non-negative L2-normalised descriptor maps
    to ``Q_0`` of shape ``(B, H0, W0, 2R+1, 2R+1)``. ``nu`` (one exponent per aggregation level
    ``l = 1..L``, default 1.4 as in DM) is a learnable parameter when ``learn_nu`` (Table 1 rows
    b, d, f), a buffer otherwise; both are stored in float32 (so 1.4 is its float32 rounding) and
    cast to the descriptors' dtype in ``forward``.
    """

    def __init__(
        self,
        levels: int = 4,
        radius: int = 12,
        nu: float | Sequence[float] = 1.4,
        learn_nu: bool = False,
        border: str = "inside",
    ) -> None:
        super().__init__()
        if border not in ("inside", "zero"):
            raise ValueError(f"border must be 'inside' or 'zero', not {border!r}")
        if levels < 0 or radius < 0:
            raise ValueError("levels and radius must be non-negative")
        self.levels, self.radius, self.border = int(levels), int(radius), border
        self.learn_nu = bool(learn_nu)
        values = [float(nu)] * levels if isinstance(nu, int | float) else [float(v) for v in nu]
        if len(values) != levels:
            raise ValueError(f"need {levels} exponents, got {len(values)}")
        self._nu_init = values
        t = torch.tensor(values, dtype=torch.float32)
        if self.learn_nu:
            self.nu = nn.Parameter(t)
        else:
            self.register_buffer("nu", t)
        self.radii = pyramid_radii(self.radius, self.levels)

    def config(self) -> dict:
        """Constructor arguments, for saving alongside the weights."""
        return {
            "levels": self.levels,
            "radius": self.radius,
            "nu": list(self._nu_init),
            "learn_nu": self.learn_nu,
            "border": self.border,
        }

    def forward(
        self, f0: Tensor, f1: Tensor, return_all: bool = False
    ) -> Tensor | tuple[Tensor, dict[str, list[Tensor]]]:
        """``Q_0``; with ``return_all`` also ``{"S", "S_half", "switches", "Q"}`` (lists by level)."""
        if f0.dim() != 4:
            raise ValueError(f"expected (B, C, H, W) descriptors, got {tuple(f0.shape)}")
        if self.levels and min(f0.shape[-2:]) < 2:
            raise ValueError("a pyramid with levels needs maps of at least 2×2 cells")
        nu = self.nu.to(f0.dtype)
        s = [correlate(f0, f1, self.radius)]
        s_half, switches = [], []
        for lvl in range(self.levels):
            val, sw = _maxpool(s[lvl], self.radii[lvl + 1])
            s_half.append(val)
            switches.append(sw)
            s.append(_aggregate(val, lvl, self.border, nu[lvl]))
        q: list[Tensor] = [s[-1]]  # Q_L = S_L, filled top-down then reversed
        for lvl in reversed(range(self.levels)):
            q_half = _disaggregate(q[-1], lvl, tuple(s_half[lvl].shape[1:3]))
            q.append(_unpool(q_half, switches[lvl], s[lvl]))
        q.reverse()
        if return_all:
            return q[0], {"S": s, "S_half": s_half, "switches": switches, "Q": q}
        return q[0]


_GRAY = (0.299, 0.587, 0.114)


def _gaussian_kernel(sigma: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    half = max(1, math.ceil(2 * sigma))
    x = torch.arange(-half, half + 1, dtype=dtype, device=device)
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def dense_hog(images: Tensor, sigma: float = 1.0, floor: float = 0.02) -> Tensor:
    """DeepMatching-style dense HOG at stride 2 px (the "HOG" descriptor of seed 004 Ch.3 Table 1).

    ``(B, 3 or 1, H, W)`` in [0, 1] -> ``(B, 32, H//2, W//2)``: grayscale, central-difference
    gradients, 8 signed orientation bins (45° apart) with linear soft assignment weighted by the
    gradient magnitude, a per-bin Gaussian blur (``sigma`` px), then for the cell centred on
    pixel ``(2j + ½, 2i + ½)`` the mean histogram of its 2×2 sub-cells of 2×2 px (8·4 = 32 dims),
    square root, clamp ≥ 0, ``+ floor`` and L2 normalisation. The added ``floor`` makes a flat
    region (no gradient) the uniform unit vector instead of 0/0, and damps weak noisy gradients,
    like DM's constant extra dimension (which we fold into the 32 dims). Not meant to be
    differentiated w.r.t. the images (atan2 at zero gradient).
    """
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected (B, 3 or 1, H, W) images, got {tuple(images.shape)}")
    b, _, h, w = images.shape
    if images.shape[1] == 3:
        gray = (images * images.new_tensor(_GRAY).view(1, 3, 1, 1)).sum(1, keepdim=True)
    else:
        gray = images
    g = F.pad(gray, (1, 1, 1, 1), mode="replicate")
    gx = (g[..., 1:-1, 2:] - g[..., 1:-1, :-2]) / 2
    gy = (g[..., 2:, 1:-1] - g[..., :-2, 1:-1]) / 2
    mag = torch.sqrt(gx**2 + gy**2)
    t = torch.remainder(torch.atan2(gy, gx) / (2 * math.pi / 8), 8.0)
    lo = torch.floor(t)
    frac = t - lo
    lo = lo.long() % 8
    hist = torch.zeros(b, 8, h, w, dtype=images.dtype, device=images.device)
    hist = hist.scatter_add(1, lo, mag * (1 - frac)).scatter_add(1, (lo + 1) % 8, mag * frac)
    ker = _gaussian_kernel(sigma, images.dtype, images.device)
    n = ker.numel() // 2
    hist = F.conv2d(
        F.pad(hist, (n, n, 0, 0), mode="replicate"),
        ker.view(1, 1, 1, -1).expand(8, 1, 1, -1),
        groups=8,
    )
    hist = F.conv2d(
        F.pad(hist, (0, 0, n, n), mode="replicate"),
        ker.view(1, 1, -1, 1).expand(8, 1, -1, 1),
        groups=8,
    )
    sub = F.avg_pool2d(F.pad(hist, (1, 1, 1, 1), mode="replicate"), 2, stride=1)
    hc, wc = h // 2, w // 2
    parts = [sub[..., r : r + 2 * hc : 2, c : c + 2 * wc : 2] for r in (0, 2) for c in (0, 2)]
    desc = torch.sqrt(torch.cat(parts, dim=1).clamp_min(0.0)) + floor
    return F.normalize(desc, dim=1)


class MatchDescriptor(nn.Module):
    """Patch descriptor ``φ`` of eq. (2): dense HOG, optionally with a learned residual.

    ``learned=True``: ``normalise(relu(h + conv2(relu(conv1(h)))))`` with ``h = dense_hog``;
    ``conv2``'s weight and bias start at zero, so at initialisation the output equals HOG (a
    small stand-in for the chapter's VGG conv1–conv2 features, rows c–g of Table 1, trainable
    through the pyramid).
    """

    def __init__(self, learned: bool = False, width: int = 32) -> None:
        super().__init__()
        self.learned, self.width = bool(learned), int(width)
        if self.learned:
            self.conv1 = nn.Conv2d(32, self.width, 3, padding=1)
            self.conv2 = nn.Conv2d(self.width, 32, 3, padding=1)
            nn.init.zeros_(self.conv2.weight)
            nn.init.zeros_(self.conv2.bias)

    def config(self) -> dict:
        """Constructor arguments, for saving alongside the weights."""
        return {"learned": self.learned, "width": self.width}

    def forward(self, images: Tensor) -> Tensor:
        h = dense_hog(images)
        if not self.learned:
            return h
        return F.normalize(F.relu(h + self.conv2(F.relu(self.conv1(h)))), dim=1)
