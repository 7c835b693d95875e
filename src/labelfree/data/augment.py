"""Batch image augmentation on tensors (kornia), for invariance-based training.

:class:`Augment` applies, per image and on any device: a small random rotation, a random
resized crop back to the input size, a horizontal flip (optional: flips change the identity of
some digits and characters) and colour jitter — the train-time augmentation of the papers
(METHODS.md §0). Input and output are ``(B, 3, H, W)`` float tensors in [0, 1].
"""

from __future__ import annotations

import math

import kornia.augmentation as K
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Augment"]


class Augment(nn.Module):
    """Random rotation → resized crop → horizontal flip → colour jitter.

    ``strength`` scales every magnitude at once (1 = the defaults below, 0 = identity):

    * rotation: uniform in ``±rotation · strength`` degrees (zero padding at the corners);
    * crop: area fraction in ``crop_scale`` moved towards 1 by ``1 - strength`` (at strength
      0.5 and ``crop_scale=(0.5, 1)``: 0.75..1), aspect ratio in ``crop_ratio ** strength``,
      resized (bilinear) to ``size``; ``crop_scale=(1, 1)`` disables cropping;
    * flip: probability ``flip_p`` when ``flip`` is true (not scaled by strength);
    * colour jitter with probability ``jitter_p``: brightness, contrast and saturation factors
      in ``1 ± jitter · strength`` (capped at 1), hue shift ``± hue · strength`` (capped at
      0.5).

    Randomness comes from torch's global generator: with the same ``torch.manual_seed`` the
    output repeats.

    Args:
        size: ``(H, W)`` of the output, normally the input size.
        strength: overall magnitude, ``>= 0``.
        flip: whether to flip horizontally at all.
        crop_scale: range of the crop's area fraction at strength 1.
        rotation: maximum rotation in degrees at strength 1.
        crop_ratio: range of the crop's aspect ratio at strength 1.
        jitter: brightness / contrast / saturation magnitude at strength 1.
        hue: hue magnitude at strength 1.
        jitter_p: probability of applying colour jitter to an image.
        flip_p: probability of flipping an image (when ``flip``).
    """

    def __init__(
        self,
        size: tuple[int, int],
        strength: float = 1.0,
        flip: bool = True,
        crop_scale: tuple[float, float] = (0.5, 1.0),
        rotation: float = 10.0,
        *,
        crop_ratio: tuple[float, float] = (3 / 4, 4 / 3),
        jitter: float = 0.4,
        hue: float = 0.1,
        jitter_p: float = 0.8,
        flip_p: float = 0.5,
    ) -> None:
        super().__init__()
        if isinstance(size, int):
            size = (size, size)
        size = (int(size[0]), int(size[1]))
        if size[0] <= 0 or size[1] <= 0:
            raise ValueError(f"size must be positive, got {size}")
        if not strength >= 0:
            raise ValueError(f"strength must be >= 0, got {strength}")
        lo, hi = float(crop_scale[0]), float(crop_scale[1])
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"crop_scale must satisfy 0 < low <= high <= 1, got {crop_scale}")
        r_lo, r_hi = float(crop_ratio[0]), float(crop_ratio[1])
        if not 0 < r_lo <= r_hi:
            raise ValueError(f"crop_ratio must satisfy 0 < low <= high, got {crop_ratio}")
        for label, value in (("rotation", rotation), ("jitter", jitter), ("hue", hue)):
            if value < 0:
                raise ValueError(f"{label} must be >= 0, got {value}")
        for label, value in (("jitter_p", jitter_p), ("flip_p", flip_p)):
            if not 0 <= value <= 1:
                raise ValueError(f"{label} must lie in [0, 1], got {value}")

        self.size = size
        self.strength = float(strength)
        s = self.strength
        ops: list[nn.Module] = []
        if s > 0:
            degrees = float(rotation) * s
            if degrees > 0:
                ops.append(K.RandomRotation(degrees=degrees, p=1.0))
            if lo < 1:
                scale_lo = max(1.0 - s * (1.0 - lo), 0.05)
                scale_hi = max(1.0 - s * (1.0 - hi), scale_lo)
                ratio = (math.exp(s * math.log(r_lo)), math.exp(s * math.log(r_hi)))
                ops.append(
                    K.RandomResizedCrop(
                        size, scale=(scale_lo, scale_hi), ratio=ratio, cropping_mode="resample"
                    )
                )
            if flip and flip_p > 0:
                ops.append(K.RandomHorizontalFlip(p=flip_p))
            amount = min(float(jitter) * s, 1.0)
            hue_amount = min(float(hue) * s, 0.5)
            if jitter_p > 0 and (amount > 0 or hue_amount > 0):
                ops.append(K.ColorJitter(amount, amount, amount, hue_amount, p=jitter_p))
        self._crops = s > 0 and lo < 1
        self.ops = nn.Sequential(*ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Augment a ``(B, 3, H, W)`` float batch in [0, 1]; each image draws its own parameters.

        Returns a new ``(B, 3, *size)`` tensor of the same dtype and device (``x`` itself when
        ``strength`` is 0).
        """
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected a (B, 3, H, W) tensor, got shape {tuple(x.shape)}")
        if not x.is_floating_point():
            raise ValueError(f"expected a float tensor in [0, 1], got dtype {x.dtype}")
        if self.strength == 0 or (len(self.ops) == 0 and tuple(x.shape[-2:]) == self.size):
            return x
        out = self.ops(x) if len(self.ops) else x
        if not self._crops and tuple(out.shape[-2:]) != self.size:
            out = F.interpolate(out, size=self.size, mode="bilinear", antialias=True)
        # Never in place: kornia may hand back (views of) the input for untouched images.
        return out.clamp(0.0, 1.0)

    def extra_repr(self) -> str:
        return f"size={self.size}, strength={self.strength}"
