"""The option groups of the pixel-level object-frame methods (seed 004 Ch.4–7): the network,
where the training pairs come from, and the dense label's settings. Each field is an option
under its own name (``-o arch=simple``); see :class:`labelfree.options.OptionGroup`."""

from __future__ import annotations

from dataclasses import dataclass

from labelfree.frames.nets import ARCHS
from labelfree.options import AT_LEAST_1, NON_NEGATIVE, POSITIVE, OptionGroup

PAIRS = ("auto", "warp", "flow")


@dataclass(frozen=True)
class FrameNetwork(OptionGroup):
    """The fully convolutional network of a frame method (``labelfree.frames.nets``).

    Args:
        arch: ``landmark`` | ``simple`` | ``dilations`` (``labelfree.frames.nets``).
        width: multiplies every hidden layer's width (1.0 = published).
    """

    arch: str = "simple"
    width: float = 1.0

    option_ranges = {"width": POSITIVE}
    option_choices = {"arch": ARCHS}


@dataclass(frozen=True)
class PairSource(OptionGroup):
    """Where a frame method's training pairs come from.

    Args:
        strength: multiplies every σ of the random warps (1.0 = released-code defaults).
        pairs: ``warp`` (synthetic TPS pairs), ``flow`` (consecutive frames with exact flow in
            ``meta["flow"]``), ``auto`` (flow when the data has it).
    """

    strength: float = 1.0
    pairs: str = "auto"

    option_ranges = {"strength": NON_NEGATIVE}
    option_choices = {"pairs": PAIRS}


@dataclass(frozen=True)
class DenseFrame(OptionGroup):
    """The dense per-pixel label Φ_u(x) ∈ ℝᴰ and its loss (seed 004 Ch.5–7).

    Args:
        dim: label dimension D (3 = the spherical frame of Ch.5; EVC uses 16).
        loss: ``dist`` (L_dist) or ``log`` (L_log).
        gamma: exponent of L_dist (0.5, the better of the thesis's {0.5, 1} in Table 3).
        n_points: M virtual points for the landmark probe: M reference label vectors found by
            k-means on confident (top-half norm) pixel labels of 64 training images — label-free,
            unlike the thesis's vectors learnt at annotated landmarks; each image's point m is
            the soft-argmax of softmax_v⟨z_m, Φ_v⟩.
        chunk: rows of the matching matrix built at a time (memory: chunk × h·w per image).
    """

    dim: int = 3
    loss: str = "dist"
    gamma: float = 0.5
    n_points: int = 30
    chunk: int = 1024

    option_ranges = {
        "dim": AT_LEAST_1,
        "gamma": POSITIVE,
        "n_points": AT_LEAST_1,
        "chunk": AT_LEAST_1,
    }
    option_choices = {"loss": ("dist", "log")}
