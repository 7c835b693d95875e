"""Tests of the pixel, HOG and HOG-LDA extractors and of the feature cache."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.linalg import sqrtm
from skimage.feature import hog
from sklearn.exceptions import NotFittedError

import labelfree.features.hog as hog_module
from labelfree.data.imageset import DataError, ImageSet
from labelfree.features.base import compute_features
from labelfree.features.hog import HOGExtractor, HOGLDAExtractor, default_cell_size
from labelfree.features.pixels import PixelsExtractor
from labelfree.features.registry import from_dict, get_extractor


def _random_images(n: int, size: int = 28, seed: int = 0) -> ImageSet:
    """Smooth random colour images (blurred noise), so that HOG sees real gradients."""
    rng = np.random.default_rng(seed)
    x = rng.random((n, size // 4 + 1, size // 4 + 1, 3))
    x = np.repeat(np.repeat(x, 4, axis=1), 4, axis=2)[:, :size, :size]
    return ImageSet((x * 255).astype(np.uint8), name="random")


def _luma(images: np.ndarray) -> np.ndarray:
    r, g, b = (images[..., c].astype(np.float64) for c in range(3))
    return (0.299 * r + 0.587 * g + 0.114 * b) / 255.0


def _map_at_r(feats: np.ndarray, labels: np.ndarray) -> float:
    """MAP@R (Musgrave et al. 2020), cosine similarity, every item queries all others."""
    f = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    sim = f @ f.T
    np.fill_diagonal(sim, -np.inf)
    scores = []
    for i in range(len(f)):
        r = int((labels == labels[i]).sum()) - 1
        top = np.argsort(-sim[i], kind="stable")[:r]
        rel = labels[top] == labels[i]
        scores.append(np.sum(np.cumsum(rel) / np.arange(1, r + 1) * rel) / r)
    return float(np.mean(scores))


# ---------------------------------------------------------------- pixels


def test_pixels_of_hand_made_image_are_bt601_luma() -> None:
    img = np.array([[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [10, 20, 30]]], dtype=np.uint8)[None]
    feats = PixelsExtractor().transform(ImageSet(img))
    expected = [0.299, 0.587, 0.114, (0.299 * 10 + 0.587 * 20 + 0.114 * 30) / 255]
    assert feats.dtype == np.float32 and feats.shape == (1, 4)
    np.testing.assert_allclose(feats[0], expected, rtol=1e-6)

    colour = PixelsExtractor(grayscale=False).transform(ImageSet(img))
    np.testing.assert_allclose(colour[0], img.reshape(-1) / 255.0, rtol=1e-6)


def test_pixels_resize_and_config_round_trip() -> None:
    img = np.full((2, 8, 6, 3), 128, dtype=np.uint8)
    img[1, :4] = 0  # top half black, bottom half grey
    ext = PixelsExtractor(size=(4, 3))
    feats = ext.transform(ImageSet(img))
    assert feats.shape == (2, 12)
    np.testing.assert_allclose(feats[0], 128 / 255, rtol=1e-6)  # a constant image stays constant
    top, bottom = feats[1].reshape(4, 3)[0], feats[1].reshape(4, 3)[-1]
    assert np.all(top < 0.1) and np.all(bottom > 0.4)
    assert feats.min() >= 0.0 and feats.max() <= 1.0
    rebuilt = from_dict(ext.to_dict())
    assert rebuilt.config() == {"size": [4, 3], "grayscale": True}
    np.testing.assert_array_equal(rebuilt.transform(ImageSet(img)), feats)


# ---------------------------------------------------------------- HOG


def test_hog_equals_skimage_on_the_luma_image() -> None:
    images = _random_images(3)
    feats = HOGExtractor().transform(images)
    cell = default_cell_size((28, 28))
    assert cell == 5
    for i, im in enumerate(_luma(images.images)):
        ref = hog(im, 9, (cell, cell), (2, 2), block_norm="L2-Hys")
        np.testing.assert_allclose(feats[i], ref, rtol=1e-5, atol=1e-7)

    ext = HOGExtractor(orientations=6, pixels_per_cell=(4, 3), cells_per_block=3, block_norm="L1")
    feats = ext.transform(images)
    ref = hog(_luma(images.images)[1], 6, (4, 3), (3, 3), block_norm="L1")
    np.testing.assert_allclose(feats[1], ref, rtol=1e-5, atol=1e-7)


def test_hog_parallel_path_matches_serial(monkeypatch: pytest.MonkeyPatch) -> None:
    images = _random_images(6)
    serial = HOGExtractor(n_jobs=1).transform(images)
    monkeypatch.setattr(hog_module, "PARALLEL_MIN_IMAGES", 2)
    parallel = HOGExtractor(n_jobs=2).transform(images)
    np.testing.assert_array_equal(parallel, serial)


def test_hog_rejects_images_smaller_than_a_block() -> None:
    with pytest.raises(DataError, match="fewer than one block"):
        HOGExtractor(pixels_per_cell=8).transform(_random_images(1, size=12))


# ---------------------------------------------------------------- HOG-LDA


def test_hog_lda_whitens_a_known_gaussian() -> None:
    rng = np.random.default_rng(1)
    d = 6
    a = rng.normal(size=(d, d))
    cov = a @ a.T + 0.5 * np.eye(d)
    root = np.real(sqrtm(cov))
    # A sample whose mean and (biased) covariance are exactly μ and Σ: centred normal draws,
    # whitened by their own sample covariance, then coloured by Σ^{1/2}.
    z = rng.normal(size=(2000, d))
    z -= z.mean(axis=0)
    z = z @ np.linalg.inv(np.real(sqrtm(z.T @ z / len(z))))
    x = np.arange(d, dtype=float) + z @ root
    lda = HOGLDAExtractor(shrinkage=0.0).fit_features(x)
    w = lda.project(x, normalize=False)
    np.testing.assert_allclose(np.cov(w, rowvar=False, bias=True), np.eye(d), atol=1e-8)
    np.testing.assert_allclose(w.mean(axis=0), 0.0, atol=1e-8)
    # The estimate is then exactly the symmetric Σ^{-1/2} and μ.
    np.testing.assert_allclose(lda.whiten_, np.linalg.inv(root), rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(lda.mean_, np.arange(d), atol=1e-10)


def test_hog_lda_matches_hand_computation_with_shrinkage() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(40, 4)) @ rng.normal(size=(4, 4))
    eps = 0.3
    lda = HOGLDAExtractor(shrinkage=eps).fit_features(x)
    mu = x.mean(axis=0)
    c = (x - mu).T @ (x - mu) / len(x)
    reg = (1 - eps) * c + eps * np.trace(c) / 4 * np.eye(4)
    w = np.linalg.inv(np.real(sqrtm(reg)))
    np.testing.assert_allclose(lda.whiten_, w, rtol=1e-8, atol=1e-10)
    y = rng.normal(size=(5, 4))
    expected = (y - mu) @ w
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(lda.project(y), expected, rtol=1e-8, atol=1e-10)

    # Keeping every component in PCA form is a rotation of the symmetric form: same Gram matrix.
    pca = HOGLDAExtractor(shrinkage=eps, n_components=4).fit_features(x)
    np.testing.assert_allclose(pca.project(y) @ pca.project(y).T, expected @ expected.T, atol=1e-10)
    assert HOGLDAExtractor(shrinkage=eps, n_components=2).fit_features(x).project(y).shape == (5, 2)


def test_hog_lda_rank_deficient_without_shrinkage_stays_finite() -> None:
    x = np.random.default_rng(3).normal(size=(5, 10))  # N < D: Σ₀ has rank 4
    z = HOGLDAExtractor(shrinkage=0.0).fit_features(x).project(x)
    assert np.isfinite(z).all()
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, rtol=1e-10)


def test_hog_lda_transform_needs_fit_and_round_trips_through_from_dict() -> None:
    images = _random_images(40)
    ext = HOGLDAExtractor(pixels_per_cell=7)
    with pytest.raises(NotFittedError, match="not fitted"):
        ext.transform(images)
    feats = ext.fit(images).transform(images)
    assert feats.dtype == np.float32 and feats.shape == (40, 324)
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, rtol=1e-5)

    rebuilt = from_dict(ext.to_dict())
    assert isinstance(rebuilt, HOGLDAExtractor)
    assert rebuilt.config() == ext.config()
    assert rebuilt.key() == ext.key()
    np.testing.assert_array_equal(rebuilt.transform(images), feats)
    # A differently sized collection gives HOG vectors of another length: a clear error.
    with pytest.raises(DataError, match="fitted on 324-d"):
        rebuilt.transform(_random_images(2, size=35))


def _stripes(size: int = 28, width: int = 7) -> ImageSet:
    """Vertical and horizontal black/white stripes (classes 0 and 1), each in both polarities."""
    band = (np.arange(size) // width) % 2 == 0
    vertical = np.broadcast_to(band[None, :], (size, size))
    grey = np.stack([vertical, ~vertical, vertical.T, ~vertical.T]).astype(np.uint8) * 255
    return ImageSet(np.repeat(grey[..., None], 3, axis=-1), np.array([0, 0, 1, 1]))


def test_hog_separates_orientations_that_pixels_confuse() -> None:
    """HOG bins unsigned gradient orientations, so an image and its negative have the same
    descriptor, while vertical and horizontal stripes share no bin; on pixels an image and its
    negative are orthogonal, and stripes of either orientation overlap on a quarter of the image
    (cosine 1/2). Retrieval by cosine is then exact with HOG and always wrong with pixels. (The
    measured ranking on real digits, pixels < HOG < HOG-LDA, is in benchmarks/bench_quality.py.)
    """
    data = _stripes()
    pixels = get_extractor("pixels").transform(data)
    hog = get_extractor("hog").transform(data)
    unit = pixels / np.linalg.norm(pixels, axis=1, keepdims=True)
    np.testing.assert_allclose(
        unit @ unit.T,
        [[1, 0, 0.5, 0.5], [0, 1, 0.5, 0.5], [0.5, 0.5, 1, 0], [0.5, 0.5, 0, 1]],
        atol=1e-6,
    )
    np.testing.assert_array_equal(hog[0], hog[1])
    np.testing.assert_array_equal(hog[2], hog[3])
    assert hog.min() >= 0 and hog[0] @ hog[2] == 0 and hog[0] @ hog[0] > 0
    assert _map_at_r(pixels, data.labels) == 0.0
    assert _map_at_r(hog, data.labels) == 1.0


def test_lda_whitening_separates_classes_hidden_by_a_nuisance_direction() -> None:
    """What HOG-LDA adds to HOG: whitening by the covariance of (other) training data. Here the
    training data vary 20× more along e₁ than along e₂, e₃; the two test classes differ only in
    the sign of e₂ and spread ±10 along e₁. By cosine the raw vectors match across classes;
    whitened (e₁ scaled by √3/20, e₂ by √3) they match within their class (cosine 0.6 vs −0.6)."""
    train = np.concatenate([20 * np.eye(3), -20 * np.eye(3)])
    train[[1, 2, 4, 5]] /= 20  # ±20 e₁, ±e₂, ±e₃: mean 0, covariance diag(400, 1, 1) / 3
    lda = HOGLDAExtractor(shrinkage=0.0).fit_features(train)
    np.testing.assert_allclose(lda.whiten_, np.diag([3**0.5 / 20, 3**0.5, 3**0.5]), atol=1e-12)
    test = np.array([[10.0, 1, 0], [-10, 1, 0], [10, -1, 0], [-10, -1, 0]])
    labels = np.array([0, 0, 1, 1])
    assert _map_at_r(test, labels) == 0.0
    assert _map_at_r(lda.project(test), labels) == 1.0


# ---------------------------------------------------------------- cache and checks


def test_compute_features_reads_the_cache(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    original = PixelsExtractor._transform

    def counting(self, images):
        calls.append(self.config())
        return original(self, images)

    monkeypatch.setattr(PixelsExtractor, "_transform", counting)
    images = _random_images(4, size=8)
    first = compute_features(PixelsExtractor(), images, cache=tmp_path)
    second = compute_features(PixelsExtractor(), images, cache=tmp_path)
    assert len(calls) == 1
    np.testing.assert_array_equal(first, second)
    assert len(list((tmp_path / "features").glob("pixels-*.npy"))) == 1

    colour = compute_features(PixelsExtractor(grayscale=False), images, cache=tmp_path)
    assert len(calls) == 2 and colour.shape == (4, 8 * 8 * 3)
    other = compute_features(PixelsExtractor(), _random_images(4, size=8, seed=9), cache=tmp_path)
    assert len(calls) == 3 and not np.array_equal(other, first)


def test_non_finite_features_raise_data_error() -> None:
    class NaNPixels(PixelsExtractor):
        def _transform(self, images: ImageSet) -> np.ndarray:
            out = super()._transform(images)
            out[1, 2] = np.nan
            return out

    with pytest.raises(DataError, match="NaN/inf values in 1 rows"):
        NaNPixels().transform(_random_images(3, size=8))
