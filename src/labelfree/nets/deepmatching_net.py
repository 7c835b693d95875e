"""The trainable DeepMatching network of the ``deepmatching`` method (seed 004 Ch.3): patch
descriptors (fixed HOG or learned on top of it) and the matching pyramid with its exponents ν.

``forward(images)`` gives the descriptor maps (stride 2), so the shared training loop embeds a
pair's two images in one call; ``match(f0, f1)`` runs the pyramid on a pair's descriptors.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from labelfree.nets.deepmatching import MatchDescriptor, MatchPyramid


class DeepMatchingNet(nn.Module):
    """Descriptors + pyramid (seed 004 Ch.3 §2.1; Table 1's elements: descriptors and ν)."""

    def __init__(
        self,
        learned: bool = True,
        width: int = 32,
        levels: int = 4,
        radius: int = 12,
        nu: float = 1.4,
        learn_nu: bool = True,
        border: str = "inside",
    ) -> None:
        super().__init__()
        self.descriptor = MatchDescriptor(learned=learned, width=width)
        self.pyramid = MatchPyramid(
            levels=levels, radius=radius, nu=nu, learn_nu=learn_nu, border=border
        )
        self._config = {
            "learned": learned,
            "width": width,
            "levels": levels,
            "radius": radius,
            "nu": nu,
            "learn_nu": learn_nu,
            "border": border,
        }

    def forward(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) in [0, 1] → (B, 32, H/2, W/2) non-negative unit descriptors."""
        return self.descriptor(images)

    def match(self, f0: Tensor, f1: Tensor) -> Tensor:
        """Q_0 (B, H/2, W/2, 2R+1, 2R+1) of reference ``f0`` against target ``f1``."""
        return self.pyramid(f0, f1)

    def config(self) -> dict[str, Any]:
        return {"type": "deepmatching", **self._config}
