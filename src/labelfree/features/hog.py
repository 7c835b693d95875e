"""HOG and HOG-LDA (LDA-whitened HOG) initial representations.

HOG is ``skimage.feature.hog`` on the ITU-R BT.601 luma image. HOG-LDA is the whitened HOG of
Hariharan, Malik & Ramanan (ECCV 2012) as CliqueCNN uses it for its initial similarities
(seed 001 Ch.3; METHODS.md §2): background statistics (mean μ₀, covariance Σ₀) are estimated
from the HOG vectors of the unlabeled collection itself and every vector is mapped to
φ(x) = Σ₀^{-1/2}(h(x) − μ₀), then L2-normalised, so that s_ij = φ_iᵀφ_j.

Cost model: HOG is a per-image Python call (≈0.4–0.6 ms for a 28×28 image with the default
grid, growing with the number of blocks: 5,000 MNIST digits take 2–3 s on one core), spread over
``n_jobs`` worker processes for collections of at least :data:`PARALLEL_MIN_IMAGES` images. HOG-LDA adds an ``O(N·D²)`` covariance, an ``O(D³)`` eigendecomposition at fit
time and an ``O(N·D²)`` product at transform time (D = HOG length, 576 with the default
5×5-cell grid and 9 orientations).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from joblib import Parallel, delayed
from skimage.feature import hog
from sklearn.exceptions import NotFittedError

from labelfree.data.imageset import DataError, ImageSet
from labelfree.features.base import FeatureExtractor, register
from labelfree.features.pixels import to_gray

#: Default grid: about this many cells across the shorter image side.
CELLS_PER_SIDE = 5
#: Collections smaller than this are computed in the calling process. Starting the worker pool
#: measured ≈1.7 s on the project's 2-core machine, more than half the serial time of 5,000
#: 28×28 images (2–3 s), so only large collections are worth spreading over processes.
PARALLEL_MIN_IMAGES = 10_000
_BLOCK_NORMS = ("L1", "L1-sqrt", "L2", "L2-Hys")


def default_cell_size(image_size: tuple[int, int]) -> int:
    """Default HOG cell side in pixels: ``max(2, min(H, W) // 5)``, i.e. ~5 cells per side.

    Chosen by measurement (MAP@R, cosine, leave-one-out, mnist5k test digits 5–9, 28×28,
    2×2-cell blocks): cell 3 → 0.513, 4 → 0.501, **5 → 0.520**, 6 → 0.512, 7 → 0.492 (the
    project calibration's 0.491), 8 → 0.414. HOG-LDA (shrinkage 0.85) fitted on digits 0–4
    agrees: cell 4 → 0.533, 5 → 0.562, 6 → 0.565, 7 → 0.539; at 50 images per digit cell 5 is
    best for both (HOG 0.557 vs 0.541 for cell 6; HOG-LDA 0.601 vs 0.584). Tying the cell to the image size keeps the
    descriptor length fixed (576 for 5×5 cells) whatever the resolution, which also keeps the
    HOG-LDA covariance estimable from a few thousand images. The floor of 2 px keeps a
    gradient histogram meaningful on tiny images (sklearn's 8×8 digits get 4×4 cells; on those
    HOG, 0.446, is below raw pixels, 0.606, whatever the cell).
    """
    return max(2, min(int(image_size[0]), int(image_size[1])) // CELLS_PER_SIDE)


def _pair(v: int | Sequence[int], what: str) -> tuple[int, int]:
    if isinstance(v, int | np.integer):
        out = (int(v), int(v))
    else:
        vals = [int(x) for x in v]
        if len(vals) != 2:
            raise ValueError(f"{what} must be an int or a pair of ints, got {v!r}")
        out = (vals[0], vals[1])
    if min(out) < 1:
        raise ValueError(f"{what} must be positive, got {v!r}")
    return out


#: Images converted and described per chunk: the float64 luma of a chunk and its HOG rows are
#: the only per-image arrays alive at once (1,024 images of 128 px: 134 MB), so memory stays
#: bounded on a streamed collection of any size.
HOG_CHUNK = 1024


def _hog_all(images: np.ndarray, kwargs: dict[str, Any], n_jobs: int) -> np.ndarray:
    """HOG of every luma image of ``(N, H, W, 3)`` ``images`` (an array or an on-disk store),
    a chunk at a time, serially or over processes, into one float32 ``(N, D)`` array."""
    n = len(images)
    out: np.ndarray | None = None
    parallel = n_jobs != 1 and n >= PARALLEL_MIN_IMAGES
    # One task per image, batched automatically by joblib. The task is scikit-image's own
    # function, so a worker imports only scikit-image (not this package, hence not torch).
    with Parallel(n_jobs=n_jobs if parallel else 1, backend="loky") as pool:
        for start in range(0, n, HOG_CHUNK):
            gray = to_gray(images[start : start + HOG_CHUNK])
            if parallel:
                rows = pool(delayed(hog)(im, feature_vector=True, **kwargs) for im in gray)
            else:
                rows = [hog(im, feature_vector=True, **kwargs) for im in gray]
            block = np.stack(rows).astype(np.float32)
            if out is None:
                out = np.empty((n, block.shape[1]), np.float32)
            out[start : start + len(block)] = block
    assert out is not None
    return out


@register
class HOGExtractor(FeatureExtractor):
    """Histogram of oriented gradients of the luma image (``skimage.feature.hog``).

    Args:
        orientations: orientation bins (9, Dalal & Triggs and the scikit-image default).
        pixels_per_cell: cell side in pixels (an int or ``(rows, cols)``); ``None`` picks
            :func:`default_cell_size` from the size of the images being transformed.
        cells_per_block: block side in cells (2, as in Dalal & Triggs).
        block_norm: ``"L1"``, ``"L1-sqrt"``, ``"L2"`` or ``"L2-Hys"`` (default, Dalal & Triggs).
        n_jobs: worker processes for collections of at least :data:`PARALLEL_MIN_IMAGES`
            images (1 = serial, -1 = all cores). A run-time setting: it does not change the
            features, so it is not part of :meth:`config` or of the cache key. Processes
            (joblib's loky backend) rather than threads because ``skimage.feature.hog`` spends
            most of its time in Python under the GIL: on 5,000 digits threads measured no
            faster than serial, while processes used the same total CPU time as serial
            (2.7 vs 2.8 CPU-s), so they can divide the wall time by up to ``n_jobs`` on idle
            cores (they cannot on a machine already saturated by other work).

    The image is converted to grey with ITU-R BT.601 luma (:func:`labelfree.features.pixels.
    to_gray`), in [0, 1], with no gamma (``transform_sqrt=False``). Cells that do not fit
    whole are dropped at the bottom/right edge, as scikit-image does.
    """

    name = "hog"

    def __init__(
        self,
        orientations: int = 9,
        pixels_per_cell: int | Sequence[int] | None = None,
        cells_per_block: int | Sequence[int] = 2,
        block_norm: str = "L2-Hys",
        n_jobs: int = 2,
    ) -> None:
        if int(orientations) < 1:
            raise ValueError(f"orientations must be >= 1, got {orientations!r}")
        if block_norm not in _BLOCK_NORMS:
            raise ValueError(f"block_norm must be one of {_BLOCK_NORMS}, got {block_norm!r}")
        self.orientations = int(orientations)
        self.pixels_per_cell = (
            None if pixels_per_cell is None else _pair(pixels_per_cell, "pixels_per_cell")
        )
        self.cells_per_block = _pair(cells_per_block, "cells_per_block")
        self.block_norm = block_norm
        self.n_jobs = int(n_jobs)

    def config(self) -> dict[str, Any]:
        return {
            "orientations": self.orientations,
            "pixels_per_cell": None if self.pixels_per_cell is None else list(self.pixels_per_cell),
            "cells_per_block": list(self.cells_per_block),
            "block_norm": self.block_norm,
        }

    def cell_size(self, image_size: tuple[int, int]) -> tuple[int, int]:
        """The cell ``(rows, cols)`` used for images of ``image_size`` ``(H, W)``."""
        if self.pixels_per_cell is not None:
            return self.pixels_per_cell
        c = default_cell_size(image_size)
        return (c, c)

    def hog_kwargs(self, image_size: tuple[int, int]) -> dict[str, Any]:
        """Keyword arguments passed to ``skimage.feature.hog`` for images of ``image_size``."""
        cell = self.cell_size(image_size)
        cells = (image_size[0] // cell[0], image_size[1] // cell[1])
        if cells[0] < self.cells_per_block[0] or cells[1] < self.cells_per_block[1]:
            raise DataError(
                f"hog: images of {image_size[0]}x{image_size[1]} px hold only "
                f"{cells[0]}x{cells[1]} cells of {cell[0]}x{cell[1]} px, fewer than one block "
                f"of {self.cells_per_block[0]}x{self.cells_per_block[1]} cells; use smaller "
                f"pixels_per_cell / cells_per_block or larger images"
            )
        return {
            "orientations": self.orientations,
            "pixels_per_cell": cell,
            "cells_per_block": self.cells_per_block,
            "block_norm": self.block_norm,
            "transform_sqrt": False,
        }

    def _transform(self, images: ImageSet) -> np.ndarray:
        kwargs = self.hog_kwargs(images.image_size)
        if len(images) == 0:
            dim = _hog_all(np.zeros((1, *images.image_size, 3), np.uint8), kwargs, 1).shape[1]
            return np.zeros((0, dim), np.float32)
        return _hog_all(images.images, kwargs, self.n_jobs)


@register
class HOGLDAExtractor(FeatureExtractor):
    """LDA-whitened HOG (Hariharan, Malik & Ramanan 2012), as in CliqueCNN (seed 001 Ch.3;
    METHODS.md §2).

    ``fit`` estimates the background mean μ₀ and covariance Σ₀ of the HOG vectors of the
    unlabeled collection; ``transform`` returns φ(x) = W (h(x) − μ₀), L2-normalised, with
    W = Σ̃₀^{-1/2} from the symmetric eigendecomposition (``numpy.linalg.eigh``) of the
    regularised covariance

        Σ̃₀ = (1 − ε) Σ₀ + ε · tr(Σ₀)/D · I,   ε = ``shrinkage`` ∈ [0, 1].

    Choices the sources leave open, and why:

    * Shrinkage toward the scaled identity, in convex form. It equals Σ₀ + a·tr(Σ₀)/D·I with
      a = ε/(1 − ε) up to a global scale that the final L2 normalisation removes; the convex
      form is bounded (0 = plain LDA whitening, 1 = centring only). Default **ε = 0.85**, by
      measurement (MAP@R on mnist5k test digits 5–9, fitted on train digits 0–4, default HOG):
      ε = 0 → 0.420, 0.5 → 0.547, 0.7 → 0.557, 0.8 → 0.561, **0.85 → 0.562**, 0.9 → 0.563,
      0.95 → 0.562, 0.98 → 0.556, 1 (centred HOG) → 0.538; raw HOG 0.520. At 50 images per
      digit (fit on 250 images, D = 576 > N) ε = 0.85 is also the best measured (0.601 vs
      HOG 0.557). Full whitening (ε = 0) is far worse than raw HOG on this data, and the
      Ledoit–Wolf estimate (≈0.01) is tuned for covariance error, not retrieval.
    * Σ₀ is the maximum-likelihood (1/N) covariance; its scale does not matter (see above).
    * Eigen-directions of Σ̃₀ with eigenvalue ≤ D·eps·λ_max (only possible when ε = 0 and Σ₀
      is rank-deficient) are dropped, i.e. a pseudo-inverse square root.
    * ``n_components = k`` keeps the k largest eigen-directions and outputs k values,
      W = V_k Λ_k^{-1/2} (PCA whitening); inner products equal those of the symmetric form
      V_k Λ_k^{-1/2} V_kᵀ restricted to the same directions. ``None`` keeps all, with the
      symmetric W = V Λ^{-1/2} Vᵀ = Σ̃₀^{-1/2}.

    Args:
        orientations, pixels_per_cell, cells_per_block, block_norm, n_jobs: the settings of
            the inner :class:`HOGExtractor` (same defaults).
        shrinkage: ε above (default 0.85).
        n_components: keep the top ``k`` components (``None`` = all).

    State (``state_dict``): ``{"mean": μ₀ (D,), "whiten": W (D, k)}``, float64.
    """

    name = "hog-lda"

    def __init__(
        self,
        orientations: int = 9,
        pixels_per_cell: int | Sequence[int] | None = None,
        cells_per_block: int | Sequence[int] = 2,
        block_norm: str = "L2-Hys",
        shrinkage: float = 0.85,
        n_components: int | None = None,
        n_jobs: int = 2,
    ) -> None:
        if not 0.0 <= float(shrinkage) <= 1.0:
            raise ValueError(f"shrinkage must lie in [0, 1], got {shrinkage!r}")
        if n_components is not None and int(n_components) < 1:
            raise ValueError(f"n_components must be >= 1 or None, got {n_components!r}")
        self.hog = HOGExtractor(
            orientations=orientations,
            pixels_per_cell=pixels_per_cell,
            cells_per_block=cells_per_block,
            block_norm=block_norm,
            n_jobs=n_jobs,
        )
        self.shrinkage = float(shrinkage)
        self.n_components = None if n_components is None else int(n_components)
        self.mean_: np.ndarray | None = None
        self.whiten_: np.ndarray | None = None

    def config(self) -> dict[str, Any]:
        return {
            **self.hog.config(),
            "shrinkage": self.shrinkage,
            "n_components": self.n_components,
        }

    @property
    def is_fitted(self) -> bool:
        return self.mean_ is not None and self.whiten_ is not None

    def fit(self, images: ImageSet) -> HOGLDAExtractor:
        """Estimate μ₀ and Σ₀ from the HOG vectors of the unlabeled collection ``images``."""
        return self.fit_features(self.hog.transform(images))

    def fit_features(self, feats: np.ndarray) -> HOGLDAExtractor:
        """Estimate μ₀ and W = Σ̃₀^{-1/2} from given ``(N, D)`` descriptors (N ≥ 2)."""
        h = np.asarray(feats, dtype=np.float64)
        if h.ndim != 2 or len(h) < 2:
            raise DataError(f"hog-lda: need at least 2 feature vectors to fit, got shape {h.shape}")
        mean = h.mean(axis=0)
        centred = h - mean
        cov = centred.T @ centred / len(h)
        d = cov.shape[0]
        eps = self.shrinkage
        reg = (1.0 - eps) * cov
        reg[np.diag_indices(d)] += eps * np.trace(cov) / d
        evals, evecs = np.linalg.eigh(reg)  # ascending
        top = float(evals[-1])
        if top <= 0.0:
            raise DataError("hog-lda: the HOG vectors of the fitting collection are all equal")
        keep = evals > d * np.finfo(np.float64).eps * top
        if self.n_components is not None:
            keep &= np.arange(d) >= d - self.n_components
        v = evecs[:, keep] / np.sqrt(evals[keep])
        whiten = v if self.n_components is not None else v @ evecs[:, keep].T
        self.mean_, self.whiten_ = mean, np.ascontiguousarray(whiten)
        return self

    def project(self, feats: np.ndarray, normalize: bool = True) -> np.ndarray:
        """W (h − μ₀) for ``(N, D)`` descriptors ``feats``, L2-normalised rows if ``normalize``."""
        self._check_fitted()
        assert self.mean_ is not None and self.whiten_ is not None
        h = np.asarray(feats, dtype=np.float64)
        if h.ndim != 2 or h.shape[1] != self.mean_.shape[0]:
            raise DataError(
                f"hog-lda: fitted on {self.mean_.shape[0]}-d HOG vectors, got shape {h.shape}; "
                "transform images of the size (and HOG settings) it was fitted on"
            )
        z = (h - self.mean_) @ self.whiten_
        if normalize:
            z /= np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
        return z

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(
                "hog-lda is not fitted: call fit(images) on the unlabeled training collection "
                "(or load_state_dict) before transform"
            )

    def _transform(self, images: ImageSet) -> np.ndarray:
        self._check_fitted()  # before spending time on HOG
        return self.project(self.hog.transform(images)).astype(np.float32)

    def state_dict(self) -> dict[str, np.ndarray]:
        if not self.is_fitted:
            return {}
        assert self.mean_ is not None and self.whiten_ is not None
        return {"mean": self.mean_.copy(), "whiten": self.whiten_.copy()}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        if not state:
            self.mean_ = self.whiten_ = None
            return
        if set(state) != {"mean", "whiten"}:
            raise ValueError(f"hog-lda state needs keys 'mean' and 'whiten', got {sorted(state)}")
        mean = np.asarray(state["mean"], dtype=np.float64)
        whiten = np.asarray(state["whiten"], dtype=np.float64)
        if mean.ndim != 1 or whiten.ndim != 2 or whiten.shape[0] != mean.shape[0]:
            raise ValueError(
                f"hog-lda state: mean {mean.shape} and whiten {whiten.shape} do not match"
            )
        self.mean_, self.whiten_ = mean.copy(), whiten.copy()
