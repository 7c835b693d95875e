"""``cpfs``: cross-pixel optical-flow similarity (seed 004 Ch.8; METHODS.md §6.5).

A hypercolumn network (:class:`labelfree.frames.nets.HypercolumnNet`) maps a single frame to a
D-dim (16) embedding per pixel; on 512 random pixels of each frame, the embedding kernel
¼·cos(φ_p, φ_q) is matched to the kernel of the frame's (normalised) optical flow
exp(−‖f_p − f_q‖² / 2σ²) by cross-entropy (``objective=ce``, eq. 4), reversed cross-entropy
(``ce-rev``, eq. 6) or kernel-target alignment (``kta``, eq. 3) — things that move together get
similar embeddings, without predicting the motion itself. ``objective=classify`` is the chapter's
baseline: per-axis classification of the normalised flow into 16 bins from the same network.

Data: frames with exact forward flow in ``meta["flow"]`` (``synthetic-sprites``,
``synthetic-arm``). Evaluation (:meth:`CPFS.evaluate`): frozen probes on held-out frames with
object masks — a linear probe of the hypercolumn and nearest-neighbour label transfer of the
embedding, mIoU — beside the same network with random weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from labelfree.data.imageset import DataError, ImageSet
from labelfree.evaluate.results import Metrics
from labelfree.frames.nets import HypercolumnNet
from labelfree.frames.options import FrameNetwork, PairSource
from labelfree.losses.cpfs import (
    OBJECTIVES,
    cell_flow,
    cpfs_loss,
    flow_classification_loss,
    gather_cells,
    normalise_flow,
)
from labelfree.methods.frames import FRAME_RUNTIME, FrameMethod
from labelfree.methods.registry import register_method
from labelfree.options import AT_LEAST_1, POSITIVE
from labelfree.train.config import Runtime, Training

#: The frame methods' step budget, without weight decay (§4.3: "no weight decay is used because
#: it resulted in our model reaching a worse local minima").
CPFS_TRAINING = Training(batch_size=16, lr=1e-3, steps=64, weight_decay=0.0)


@register_method
class CPFS(FrameMethod):
    """Cross-pixel optical-flow similarity (seed 004 Ch.8 eqs. 2–7)."""

    name = "cpfs"
    data_kind = "flow"
    option_ranges = {
        "dim": AT_LEAST_1,
        "pixels": AT_LEAST_1,
        "sigma2": POSITIVE,
        "flow_max": POSITIVE,
        "bins": AT_LEAST_1,
        "hidden": AT_LEAST_1,
    }
    option_choices = {"objective": OBJECTIVES}

    def __init__(
        self,
        *,
        objective: str = "ce",
        dim: int = 16,
        pixels: int = 512,
        sigma2: float = 0.0036,
        learn_sigma: bool = False,
        flow_max: float = 56.0,
        bins: int = 16,
        hidden: int = 64,
        network: FrameNetwork = FrameNetwork(),
        source: PairSource = PairSource(pairs="flow"),
        training: Training = CPFS_TRAINING,
        runtime: Runtime = FRAME_RUNTIME,
    ) -> None:
        """Args:
        objective: ``ce`` (eq. 4), ``ce-rev`` (eq. 6), ``kta`` (eq. 3), or ``classify`` (the
            chapter's baseline: per-axis flow classification into ``bins`` bins).
        dim: embedding dimension D (16, §4.1).
        pixels: pixels sampled per frame for the loss (512, §4.3), among those with a flow.
        sigma2: σ² of the flow kernel on normalised flow (0.0036, §3.1 fig. 2).
        learn_sigma: learn σ² with the network (the chapter does in some runs).
        flow_max: M of the flow normalisation, eq. 7 (56).
        bins: bins per axis of ``objective=classify`` (16, §4.5).
        hidden: width of the MLP's hidden layer (not given in the chapter).

        The network is :class:`labelfree.frames.nets.HypercolumnNet` (``arch`` is not used);
        training defaults are the frame methods' (16 frames a step, Adam lr 1e-3, 10 epochs of
        at most 64 steps) rather than the chapter's 96 frames at 1e-4, so a CPU run converges
        in a minute; ``recipes/cpfs-paper.toml`` has the chapter's setting.
        """
        super().__init__(network=network, source=source, training=training, runtime=runtime)
        self.objective, self.dim, self.pixels = objective, dim, pixels
        self.sigma2, self.learn_sigma, self.flow_max = sigma2, learn_sigma, flow_max
        self.bins, self.hidden = bins, hidden

    def out_channels(self) -> int:
        return 2 * self.bins if self.objective == "classify" else self.dim

    def build_net(self) -> torch.nn.Module:
        sigma2 = self.sigma2 if self.learn_sigma and self.objective != "classify" else None
        return HypercolumnNet(self.out_channels(), self.network.width, self.hidden, sigma2)

    # ---- training --------------------------------------------------------------------------------
    def make_inputs(self, images: ImageSet, device: torch.device) -> Any:
        """Frames that have a successor; each batch carries ``pixels`` sampled cells per frame
        with their normalised flow (the mean flow of the cell's 2×2 pixels, all finite)."""
        if "flow" not in images.meta:
            raise DataError(
                f"{images.name}: method 'cpfs' needs optical flow in meta['flow'] (e.g. "
                "synthetic-sprites:train or synthetic-arm:train)"
            )
        cf = cell_flow(np.asarray(images.meta["flow"]))
        valid = np.isfinite(cf).all(-1).reshape(len(images), -1)
        self._items = np.flatnonzero(valid.any(1))
        if len(self._items) < 2:
            raise DataError(f"{images.name}: fewer than two frames with a finite optical flow")
        flow_t = torch.from_numpy(np.nan_to_num(cf).reshape(len(images), -1, 2))
        valid_t = torch.from_numpy(valid)

        def inputs(idx: np.ndarray, augment: bool) -> tuple[torch.Tensor, dict]:
            idx = np.asarray(idx)
            w = valid_t[idx].float()
            cells = torch.multinomial(w, self.pixels, replacement=True)  # torch RNG: per epoch
            f = torch.gather(flow_t[idx], 1, cells[..., None].expand(-1, -1, 2))
            aux = {"cells": cells.to(device), "flow": normalise_flow(f, self.flow_max).to(device)}
            return images.tensor(idx).to(device), aux

        return inputs

    def batch_loss(self, emb: torch.Tensor, batch: dict[str, Any], structure: Any) -> torch.Tensor:
        aux = batch["aux"]
        phi = gather_cells(emb, aux["cells"])
        if self.objective == "classify":
            return flow_classification_loss(phi, aux["flow"], self.bins)
        return cpfs_loss(phi, aux["flow"], self.objective, self.flow_sigma2())

    def flow_sigma2(self) -> float | torch.Tensor:
        net = self.net_
        if getattr(net, "sigma2", None) is not None:
            return net.log_sigma2.exp()
        return self.sigma2

    # ---- evaluation ------------------------------------------------------------------------------
    @torch.no_grad()
    def features(self, images: ImageSet, batch_size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
        """(hypercolumn, embedding) maps at stride 2 on the CPU; the embedding is L2-normalised
        (the classify baseline: its logits, normalised)."""
        self._require_fitted()
        self.net_.eval()
        device = next(self.net_.parameters()).device
        hyper, emb = [], []
        for s in range(0, len(images), batch_size):
            x = images.tensor(slice(s, s + batch_size)).to(device)
            h = self.net_.hypercolumn(x)
            hyper.append(h.float().cpu())
            emb.append(F.normalize(self.net_.mlp(h), dim=1).float().cpu())
        return torch.cat(hyper), torch.cat(emb)

    def evaluate(self, eval_set: ImageSet, train: ImageSet | None = None, **_: Any) -> Metrics:
        """Frozen segmentation probes on ``eval_set`` beside a random network (higher is
        better): the probes are fitted on ``train`` when it has ``meta["segmentation"]``, else
        on half of ``eval_set``'s videos and scored on the other half."""
        from labelfree.frames.cpfs_probe import evaluate_cpfs

        self._require_fitted()
        return evaluate_cpfs(self, eval_set, train, seed=self.runtime.seed)

    def draw_evaluation(self, out: Path, eval_set: ImageSet, metrics: Metrics) -> None:
        """``flow.png``: frames, their exact flow, object masks and the learned embedding."""
        from labelfree.frames.cpfs_probe import draw_cpfs

        draw_cpfs(self, eval_set, Path(out) / "flow.png")
