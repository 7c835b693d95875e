"""Tests for the kornia batch augmentation."""

from __future__ import annotations

import pytest
import torch

from labelfree.data import Augment


def _batch(n: int = 8, size: int = 28, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    gen = torch.Generator().manual_seed(123)
    return torch.rand(n, 3, size, size, generator=gen, dtype=dtype)


def _flip_only(size: int, p: float) -> Augment:
    return Augment((size, size), crop_scale=(1.0, 1.0), rotation=0.0, jitter=0.0, hue=0.0, flip_p=p)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shape_dtype_and_range_are_preserved(dtype: torch.dtype) -> None:
    x = _batch(16, 32, dtype)
    torch.manual_seed(0)
    y = Augment((32, 32))(x)
    assert y.shape == x.shape
    assert y.dtype == dtype
    assert y.device == x.device
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    assert not torch.equal(y, x)  # it did change something


def test_non_square_output_size() -> None:
    x = torch.rand(4, 3, 24, 40)
    torch.manual_seed(1)
    assert Augment((24, 40))(x).shape == (4, 3, 24, 40)
    # crop off: the output is still resized to the requested size
    assert Augment((12, 20), crop_scale=(1.0, 1.0))(x).shape == (4, 3, 12, 20)


def test_strength_zero_is_identity() -> None:
    x = _batch()
    aug = Augment((28, 28), strength=0.0)
    torch.manual_seed(0)
    assert torch.equal(aug(x), x)


def test_same_seed_repeats_and_other_seed_differs() -> None:
    x = _batch(32)
    aug = Augment((28, 28))
    torch.manual_seed(7)
    a = aug(x)
    torch.manual_seed(7)
    b = aug(x)
    torch.manual_seed(8)
    c = aug(x)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_pure_flip_equals_torch_flip() -> None:
    x = _batch(6)
    torch.manual_seed(0)
    assert torch.equal(_flip_only(28, 1.0)(x), torch.flip(x, dims=[3]))


def test_half_flip_flips_some_images_and_keeps_others() -> None:
    x = _batch(64)
    torch.manual_seed(3)
    y = _flip_only(28, 0.5)(x)
    flipped = torch.flip(x, dims=[3])
    same = [torch.equal(y[i], x[i]) for i in range(len(x))]
    mirrored = [torch.equal(y[i], flipped[i]) for i in range(len(x))]
    assert all(s or m for s, m in zip(same, mirrored, strict=True))
    assert 10 < sum(mirrored) < 54


def test_flip_false_never_flips() -> None:
    x = _batch(32)
    aug = Augment((28, 28), flip=False, crop_scale=(1.0, 1.0), rotation=0.0, jitter=0.0, hue=0.0)
    torch.manual_seed(0)
    assert torch.equal(aug(x), x)
    assert not any(isinstance(m, type(_flip_only(28, 1.0).ops[0])) for m in aug.ops)


def test_strength_scales_the_magnitude() -> None:
    x = _batch(64)
    torch.manual_seed(0)
    weak = (Augment((28, 28), strength=0.1, flip=False)(x) - x).abs().mean()
    torch.manual_seed(0)
    strong = (Augment((28, 28), strength=1.0, flip=False)(x) - x).abs().mean()
    assert 0 < weak < strong


def test_bad_input_is_rejected() -> None:
    aug = Augment((28, 28))
    with pytest.raises(ValueError, match="B, 3, H, W"):
        aug(torch.rand(3, 28, 28))
    with pytest.raises(ValueError, match="float"):
        aug(torch.zeros(2, 3, 28, 28, dtype=torch.uint8))
    with pytest.raises(ValueError, match="crop_scale"):
        Augment((28, 28), crop_scale=(0.0, 1.0))
    with pytest.raises(ValueError, match="strength"):
        Augment((28, 28), strength=-1.0)
