"""Dense object frames (seed 004 Ch.5–7; METHODS.md §6.2–6.4): ``dense`` (a per-pixel label
Φ_u(x) ∈ ℝᴰ, L_log / L_dist), ``dense-sym`` (mirror and n-fold rotational symmetry) and ``evc``
(embedding volume compression through auxiliary images of other instances)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from labelfree.data.imageset import ImageSet
from labelfree.frames.options import DenseFrame, FrameNetwork, PairSource
from labelfree.graph.nn import kmeans
from labelfree.losses.frames import (
    dense_loss,
    evc_reconstruct,
    group_min_dense_loss,
    mirror_correspondence,
    reflect_labels,
    soft_argmax,
)
from labelfree.methods.frames import DENSE_TRAINING, FRAME_RUNTIME, FrameMethod, cells_to_pixels
from labelfree.methods.registry import register_method
from labelfree.options import AT_LEAST_1, UNIT
from labelfree.train.config import Runtime, Training


@register_method
class Dense(FrameMethod):
    """Dense equivariant labelling Φ_u(x) ∈ ℝᴰ (seed 004 Ch.5 eqs. 4–5; METHODS.md §6.2)."""

    name = "dense"

    def __init__(
        self,
        *,
        frame: DenseFrame = DenseFrame(),
        network: FrameNetwork = FrameNetwork(),
        source: PairSource = PairSource(),
        training: Training = DENSE_TRAINING,
        runtime: Runtime = FRAME_RUNTIME,
    ) -> None:
        """Args:
        frame: the label dimension D, the loss and the probe's virtual points.
        """
        super().__init__(network=network, source=source, training=training, runtime=runtime)
        self.frame = frame
        self.refs_: torch.Tensor | None = None

    def out_channels(self) -> int:
        return self.frame.dim

    def _dense(self, phi, phi2, G, mask, reduce=True):
        return dense_loss(
            phi,
            phi2,
            G,
            mask,
            loss=self.frame.loss,
            gamma=self.frame.gamma,
            chunk=self.frame.chunk,
            reduce=reduce,
        )

    def pair_loss(
        self, phi: torch.Tensor, phi2: torch.Tensor, pair: dict[str, Any]
    ) -> torch.Tensor:
        return self._dense(phi, phi2, pair["G"], pair["mask"])

    def _finalize(self, images: ImageSet) -> None:
        rng = np.random.default_rng(self.runtime.seed)
        pick = np.sort(rng.permutation(len(images))[:64])
        m = self.maps(images.subset(pick)).permute(0, 2, 3, 1).reshape(-1, self.frame.dim).numpy()
        norms = np.linalg.norm(m, axis=1)
        conf = m[norms >= np.median(norms)]
        k = min(self.frame.n_points, len(conf))
        km = kmeans(conf, k, nredo=3, seed=self.runtime.seed)
        self.refs_ = torch.from_numpy(km.centroids)

    def points(self, images: ImageSet) -> np.ndarray:
        """M virtual points: per reference label z_m, the soft-argmax of softmax_v⟨z_m, Φ_v⟩."""
        phi = self.maps(images)
        b, d, h, w = phi.shape
        logits = torch.einsum("md,bdn->bmn", self.refs_, phi.reshape(b, d, h * w))
        prob = logits.softmax(-1).reshape(b, -1, h, w)
        return cells_to_pixels(soft_argmax(prob)).numpy()

    def _extra_state(self) -> dict[str, Any]:
        return {"refs": None if self.refs_ is None else self.refs_.cpu()}

    def _load_extra(self, state: dict[str, Any]) -> None:
        self.refs_ = state.get("refs")


@register_method
class DenseSym(Dense):
    """Symmetric object frames (seed 004 Ch.6; METHODS.md §6.3).

    With probability ``mirror_prob`` x′ is mirrored and the first label coordinate of Φ(x) is
    reflected; the dense loss then uses G composed with the mirror. With ``rot_sym`` = n > 1 the
    loss is the minimum over the n rotations of the first two label coordinates.
    """

    name = "dense-sym"
    option_ranges = {"mirror_prob": UNIT, "rot_sym": AT_LEAST_1}

    def __init__(
        self,
        *,
        mirror_prob: float = 0.5,
        rot_sym: int = 1,
        frame: DenseFrame = DenseFrame(),
        network: FrameNetwork = FrameNetwork(),
        source: PairSource = PairSource(),
        training: Training = DENSE_TRAINING,
        runtime: Runtime = FRAME_RUNTIME,
    ) -> None:
        """Args:
        mirror_prob: probability of mirroring x′ in a pair (½, Ch.6).
        rot_sym: n of an n-fold rotational symmetry handled by the group-min loss (1: none).
        """
        super().__init__(
            frame=frame, network=network, source=source, training=training, runtime=runtime
        )
        self.mirror_prob, self.rot_sym = mirror_prob, rot_sym

    def _warp_inputs(self, images, idx, device):
        xx, pair = super()._warp_inputs(images, idx, device)
        x, x2 = xx.chunk(2)
        flip = torch.rand(len(x), device=x.device) < self.mirror_prob
        x2 = torch.where(flip[:, None, None, None], x2.flip(-1), x2)
        G, wm = pair["G"], pair["map_size"][1]
        pair = {**pair, "G": torch.where(flip[:, None, None], mirror_correspondence(G, wm), G)}
        return torch.cat([x, x2]), {**pair, "flip": flip}

    def pair_loss(
        self, phi: torch.Tensor, phi2: torch.Tensor, pair: dict[str, Any]
    ) -> torch.Tensor:
        flip = pair.get("flip")
        if flip is not None:
            phi = torch.where(flip[:, None, None, None], reflect_labels(phi), phi)
        if self.rot_sym > 1:
            return group_min_dense_loss(
                phi, phi2, pair["G"], self.rot_sym, mask=pair["mask"], loss=self.frame.loss,
                gamma=self.frame.gamma, chunk=self.frame.chunk,
            )  # fmt: skip
        return self._dense(phi, phi2, pair["G"], pair["mask"])


@register_method
class EVC(Dense):
    """Embedding volume compression (seed 004 Ch.7 eq. 3; METHODS.md §6.4).

    Φ̂_u(x) = Σ_v softmax_v⟨Φ_u(x), Φ_v(x_α)⟩ Φ_v(x_α) with x_α the next ``n_aux`` images of the
    batch (other instances), then the dense loss between Φ̂(x) and Φ(x′).
    """

    name = "evc"
    option_ranges = {"n_aux": AT_LEAST_1}

    def __init__(
        self,
        *,
        n_aux: int = 1,
        frame: DenseFrame = DenseFrame(dim=16),
        network: FrameNetwork = FrameNetwork(),
        source: PairSource = PairSource(),
        training: Training = DENSE_TRAINING,
        runtime: Runtime = FRAME_RUNTIME,
    ) -> None:
        """Args:
        n_aux: auxiliary images per pair (1; a set of 5 is the grouped attention of Ch.7 §3.3).
        """
        super().__init__(
            frame=frame, network=network, source=source, training=training, runtime=runtime
        )
        self.n_aux = n_aux

    def pair_loss(
        self, phi: torch.Tensor, phi2: torch.Tensor, pair: dict[str, Any]
    ) -> torch.Tensor:
        b = phi.shape[0]
        s = min(self.n_aux, b - 1)
        if s < 1:
            return self._dense(phi, phi2, pair["G"], pair["mask"])
        aux = torch.stack([phi.roll(-(j + 1), 0) for j in range(s)], 1)
        phi_hat = evc_reconstruct(phi, aux if s > 1 else aux[:, 0], chunk=self.frame.chunk)
        return self._dense(phi_hat, phi2, pair["G"], pair["mask"])
