"""``deepmatching``: Fully-Trainable Deep Matching (seed 004 Ch.3; METHODS.md §6.6).

DeepMatching's matching pyramid as network layers (:mod:`labelfree.nets.deepmatching`): level-0
scores from L2-normalised patch descriptors, bottom-up max-pooling with switches, aggregation of
the four shifted children and the power ν, top-down disaggregation and unpooling — Q_0, whose
argmax is DeepMatching's match. Trained end to end on warp pairs with exact correspondences by
the chapter's structured hinge loss (§2.2) applied to Q_0; learnable are the per-level exponents
ν_l (``learn_nu``) and the descriptors (``descriptors=learned``: a small residual CNN on top of
HOG that starts exactly at HOG). ``descriptors=hog, learn_nu=false`` is DeepMatching as
published (untrained): the evaluation's baseline row.

Choices where the released code and the text differ (exposed as options): children outside the
image are averaged over those that exist (``border=inside``, the code) or counted as 0
(``zero``, the text); the margin is constant (``sigma=0``, the code) or 1 − g_σ (the text).
The loss is applied to Q_0, the final map (§2.2 expects "the last level" to matter most).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from labelfree.data.imageset import DataError, ImageSet
from labelfree.evaluate.results import Metrics
from labelfree.frames.options import FrameNetwork, PairSource
from labelfree.losses.deepmatching import structured_hinge
from labelfree.methods.frames import FRAME_RUNTIME, FrameMethod
from labelfree.methods.registry import register_method
from labelfree.nets.deepmatching_net import DeepMatchingNet
from labelfree.options import AT_LEAST_1, NON_NEGATIVE, POSITIVE
from labelfree.train.config import Runtime, Training

#: One warp pair a step was the chapter's setting (§3: "mini-batches comprising one image pair");
#: 4 pairs a step at Adam 1e-3, 64 steps an epoch, 5 epochs fit a CPU run in a few minutes.
MATCH_TRAINING = Training(batch_size=4, lr=1e-3, steps=64, epochs=5)


@register_method
class DeepMatching(FrameMethod):
    """Fully-Trainable Deep Matching (seed 004 Ch.3 eqs. 1–6, §2.2 loss)."""

    name = "deepmatching"
    option_ranges = {"levels": AT_LEAST_1, "radius": AT_LEAST_1, "nu": POSITIVE}
    option_ranges |= {"sigma": NON_NEGATIVE}
    option_choices = {"descriptors": ("hog", "learned"), "border": ("inside", "zero")}

    def __init__(
        self,
        *,
        descriptors: str = "learned",
        learn_nu: bool = True,
        levels: int = 4,
        radius: int = 12,
        nu: float = 1.4,
        border: str = "inside",
        sigma: float = 0.0,
        network: FrameNetwork = FrameNetwork(),
        source: PairSource = PairSource(strength=2.0, pairs="warp"),
        training: Training = MATCH_TRAINING,
        runtime: Runtime = FRAME_RUNTIME,
    ) -> None:
        """Args:
        descriptors: ``hog`` (fixed, DeepMatching's own kind) or ``learned`` (a residual CNN on
            HOG, zero-initialised so training starts from HOG; its width is 32 × ``width``).
        learn_nu: learn the exponent ν_l of each level (Table 1 "expon."); else fixed at ``nu``.
        levels: pyramid levels L above level 0 (the chapter: 6 at 1024 px; 4 suit 64–256 px).
        radius: search radius R in cells of the stride-2 map (12 cells = 24 px; the chapter's
            80 px at full resolution); it bounds the score volume to (H/2)(W/2)(2R+1)².
        nu: initial / fixed exponent ν (1.4, as in DeepMatching).
        border: ``inside`` (average the children inside the image, the released code) or
            ``zero`` (the text's ¼Σ with missing children counting 0).
        sigma: σ of the margin 1 − g_σ(q − Γ₀(p)) in cells; 0 = the code's constant margin.

        Pairs: random affine ∘ thin-plate-spline warps at twice the frame methods' default
        strength (rotation σ 10°, scale σ 0.2, translation σ 0.2 of the half-width), so
        displacements reach ~15 px at 64 px.
        """
        super().__init__(network=network, source=source, training=training, runtime=runtime)
        self.descriptors, self.learn_nu, self.levels, self.radius = (
            descriptors,
            learn_nu,
            levels,
            radius,
        )
        self.nu, self.border, self.sigma = nu, border, sigma

    def out_channels(self) -> int:
        return 32

    def build_net(self) -> torch.nn.Module:
        return DeepMatchingNet(
            learned=self.descriptors == "learned",
            width=max(4, round(32 * self.network.width)),
            levels=self.levels,
            radius=self.radius,
            nu=self.nu,
            learn_nu=self.learn_nu,
            border=self.border,
        )

    def validate_params(self) -> None:
        super().validate_params()
        if self.descriptors == "hog" and not self.learn_nu:
            raise DataError(
                "deepmatching: descriptors=hog with learn_nu=false has nothing to train (it is "
                "the published, untrained DeepMatching); set -o learn_nu=true or "
                "-o descriptors=learned"
            )

    def make_inputs(self, images: ImageSet, device: torch.device) -> Any:
        if self.source.pairs == "flow":
            raise DataError("deepmatching trains on warp pairs: use -o pairs=warp (the default)")
        self._items = np.arange(len(images))

        def inputs(idx: np.ndarray, augment: bool) -> tuple[torch.Tensor, dict]:
            return self._warp_inputs(images, idx, device)

        return inputs

    def pair_loss(
        self, phi: torch.Tensor, phi2: torch.Tensor, pair: dict[str, Any]
    ) -> torch.Tensor:
        """§2.2's structured hinge on Q_0 of (x, x′), truth Γ₀ from the exact warp."""
        hm, wm = pair["map_size"]
        b = phi.shape[0]
        ys, xs = torch.meshgrid(
            torch.arange(hm, device=phi.device), torch.arange(wm, device=phi.device), indexing="ij"
        )
        grid = torch.stack([xs, ys], -1).to(phi.dtype)
        truth = pair["G"].reshape(b, hm, wm, 2) - grid
        valid = pair["mask"].reshape(b, hm, wm)
        q0 = self.net_.match(phi, phi2)
        loss, _ = structured_hinge(q0, truth, valid, self.radius, self.sigma)
        return loss

    def points(self, images: ImageSet) -> np.ndarray:
        raise DataError("deepmatching gives dense matches, not landmarks")

    # ---- evaluation ------------------------------------------------------------------------------
    def evaluate(self, eval_set: ImageSet, train: ImageSet | None = None, **_: Any) -> Metrics:
        """Accuracy@2/5/10 px and EPE on held-out warp pairs of ``eval_set`` beside the untrained
        pyramid (:func:`labelfree.frames.matching_probe.evaluate_matching`)."""
        from labelfree.frames.matching_probe import evaluate_matching

        self._require_fitted()
        return evaluate_matching(self, eval_set, seed=self.runtime.seed)

    def draw_evaluation(self, out: Path, eval_set: ImageSet, metrics: Metrics) -> None:
        """``matches.png``: held-out pairs, exact and matched displacement fields."""
        from labelfree.frames.matching_probe import draw_matches

        draw_matches(self, eval_set, Path(out) / "matches.png", seed=self.runtime.seed)
