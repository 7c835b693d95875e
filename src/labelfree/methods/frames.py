"""The base of the pixel-level object-frame methods (seed 004 Ch.4–7; METHODS.md §6): fit, maps,
save and load on the one training loop; the methods are in fse.py and dense.py.

- ``fse``: factorized spatial embeddings — K landmark heatmaps, alignment + diversity (Ch.4).
- ``dense``: dense equivariant labelling — a per-pixel label Φ_u(x) ∈ ℝᴰ, L_log / L_dist (Ch.5).
- ``dense-sym``: the same with mirror equivariance (reflected first coordinate) and optionally
  n-fold rotational symmetry by a group-min loss (Ch.6).
- ``evc``: embedding volume compression — Φ(x) is reconstructed from an auxiliary image of
  another instance before the dense loss (Ch.7).

A frame method is a :class:`labelfree.train.loop.Stage` whose structure step only lists the
training items; every batch draws fresh warp pairs ``(x, x′, G)`` (``labelfree.frames.warps``)
from torch's generator, which the loop re-seeds at every epoch, so runs repeat and resume exactly
on CPU. On data with exact optical flow (``meta["flow"]``, e.g. ``synthetic-arm``) the pairs are
consecutive frames instead and G = u + flow(u). The network outputs maps, not a vector, so this
module has its own fit / save / load next to :class:`labelfree.methods.base.Method`.

Coordinates: probes receive PIXEL coordinates (x = column, y = row, pixel centres at integers);
cell (i, j) of the stride-2 map is centred on pixel (2j + ½, 2i + ½).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from labelfree.data.imageset import DataError, ImageSet
from labelfree.evaluate.results import Metrics
from labelfree.frames.nets import STRIDE, FrameNet, build_frame_net
from labelfree.frames.options import FrameNetwork, PairSource
from labelfree.frames.warps import WarpParams, make_pair
from labelfree.methods.model_file import instantiate, read_model_file, write_model_file
from labelfree.options import KeywordOptions
from labelfree.train.config import Runtime, TrainConfig, Training
from labelfree.train.loop import EpochContext, Structure, train
from labelfree.utils import choose_device, seed_everything


@dataclass
class FrameStructure(Structure):
    """A frame method's structure (seed 004 Ch.4–7): ``items``, the items that can start a
    pair (all images, or frames with a successor in flow mode)."""

    items: np.ndarray


#: Frame methods' defaults: 16 pairs a step at lr 1e-3, no autocast (as they have always been
#: trained; their losses have not been checked under bf16), and at most 64 steps (1,024 pairs)
#: an epoch, so that every frame method finishes on the bundled synthetic data in under 10
#: minutes on 2 CPU cores (10 epochs of all 5,000 synthetic faces took fse ~30 min, evc ~2.4 h).
#: Train longer with ``-o steps=0`` (every image once an epoch) and more ``--epochs``.
FRAME_TRAINING = Training(batch_size=16, lr=1e-3, steps=64)
#: The dense methods' matching loss costs ~4× fse's per pair: fewer epochs of the same size.
DENSE_TRAINING = Training(batch_size=16, lr=1e-3, steps=64, epochs=3)
FRAME_RUNTIME = Runtime(amp=False)


def cells_to_pixels(c: torch.Tensor | np.ndarray, stride: int = STRIDE):
    return c * stride + (stride - 1) / 2


def pixels_to_cells(p: torch.Tensor | np.ndarray, stride: int = STRIDE):
    return (p - (stride - 1) / 2) / stride


class FrameMethod(KeywordOptions):
    """Shared fit / points / save / load of the object-frame methods."""

    name: ClassVar[str] = ""
    #: What the method trains on: ``images`` (warp pairs of any images; flow pairs when the
    #: data has flow) or ``flow`` (frames with exact optical flow, e.g. ``cpfs``).
    data_kind: ClassVar[str] = "images"
    start = "scratch"  # frame networks are learnt from scratch (seed 004 throughout)

    def __init__(
        self,
        *,
        network: FrameNetwork = FrameNetwork(),
        source: PairSource = PairSource(),
        training: Training = FRAME_TRAINING,
        runtime: Runtime = FRAME_RUNTIME,
    ) -> None:
        """The parts every frame method composes; their fields are the shared options.

        Args:
            network: the fully convolutional network (arch, width).
            source: where training pairs come from (warp strength, warp or flow pairs).
            training: epochs, batch size, optimiser. Here the default lr is 1e-3: the thesis
                uses 1e-4 for long runs; 1e-3 converges within the few epochs a CPU run affords
                (measured in benchmarks/bench_frames.py); one epoch is one warp pair per image.
            runtime: seed of the warps and the initialisation, device, amp (off by default for
                frame methods), progress bars.
        """
        self.network, self.source, self.training, self.runtime = network, source, training, runtime
        self.net_: FrameNet | None = None
        self.image_size_: tuple[int, int] | None = None
        self.history_: list[dict[str, Any]] = []

    # ---- what a method defines -----------------------------------------------------------------
    def out_channels(self) -> int:
        raise NotImplementedError  # abstractmethod

    def pair_loss(
        self, phi: torch.Tensor, phi2: torch.Tensor, pair: dict[str, Any]
    ) -> torch.Tensor:
        raise NotImplementedError  # abstractmethod

    def points(self, images: ImageSet) -> np.ndarray:
        """(N, P, 2) points in pixel coordinates that the landmark probe regresses from."""
        raise NotImplementedError  # abstractmethod

    def _finalize(self, images: ImageSet) -> None:
        """Label-free post-processing after training (dense: the reference label vectors)."""

    def min_items(self) -> int:
        return 2

    def build_net(self) -> torch.nn.Module:
        """The network to train (a :class:`FrameNet` unless a method needs another, e.g. CPFS's
        hypercolumn); its ``config()`` rebuilds it on load (``frames.nets.build_frame_net``)."""
        return FrameNet(self.network.arch, self.out_channels(), self.network.width)

    # ---- the Stage hooks -----------------------------------------------------------------------
    def structure(
        self, reps: np.ndarray, round_idx: int, ctx: EpochContext | None = None
    ) -> FrameStructure:
        """Nothing to mine: the items that can start a pair (all images, or frames with a
        successor in flow mode). The warps themselves are drawn per batch."""
        return FrameStructure(items=self._items)

    def batches(
        self, structure: FrameStructure, rng: np.random.Generator, ctx: EpochContext | None = None
    ) -> list[dict[str, Any]]:
        items = rng.permutation(structure.items)
        bs = self.training.batch_size
        out = [{"indices": items[s : s + bs]} for s in range(0, len(items), bs)]
        if len(out) > 1 and len(out[-1]["indices"]) < 2:
            out.pop()  # batch norm needs two items
        return out

    def batch_loss(
        self, emb: torch.Tensor, batch: dict[str, Any], structure: FrameStructure
    ) -> torch.Tensor:
        phi, phi2 = emb.chunk(2)
        return self.pair_loss(phi, phi2, batch["aux"])

    # ---- pairs ---------------------------------------------------------------------------------
    def _use_flow(self, images: ImageSet) -> bool:
        mode = self.source.pairs
        if mode == "flow" and "flow" not in images.meta:
            raise DataError(f"{images.name}: pairs=flow needs meta['flow'] (e.g. synthetic-arm)")
        return mode == "flow" or (mode == "auto" and "flow" in images.meta)

    def _flow_successors(self, images: ImageSet) -> np.ndarray:
        """Index of frame t+1 of the same video for each frame (−1: none)."""
        video = np.asarray(images.meta["video"])
        frame = np.asarray(images.meta["frame"])
        lookup = {(int(v), int(f)): i for i, (v, f) in enumerate(zip(video, frame, strict=True))}
        return np.array(
            [lookup.get((int(v), int(f) + 1), -1) for v, f in zip(video, frame, strict=True)]
        )

    def _warp_inputs(
        self, images: ImageSet, idx: np.ndarray, device
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """The pairs (x, x′) stacked, and their correspondence field G with its valid mask."""
        src = images.tensor(np.asarray(idx)).to(device)
        pair = make_pair(src, WarpParams(strength=self.source.strength))
        h, w = src.shape[-2:]
        G = pixels_to_cells(pair.field(STRIDE))  # (B, hw, 2) in cells of x′'s map
        hm, wm = h // STRIDE, w // STRIDE
        inside = (
            (G[..., 0] >= -0.5)
            & (G[..., 0] <= wm - 0.5)
            & (G[..., 1] >= -0.5)
            & (G[..., 1] <= hm - 0.5)
        )
        valid = pair.valid[:, ::STRIDE, ::STRIDE].reshape(len(idx), -1) & inside
        return torch.cat([pair.x, pair.x2]), {"G": G, "mask": valid, "map_size": (hm, wm)}

    def _flow_inputs(
        self, images: ImageSet, idx: np.ndarray, device
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """Consecutive frames stacked, with G = u + flow(u) and the valid mask."""
        idx = np.asarray(idx)
        nxt = self._succ[idx]
        x = images.tensor(idx).to(device)
        x2 = images.tensor(nxt).to(device)
        h, w = x.shape[-2:]
        hm, wm = h // STRIDE, w // STRIDE
        flow = torch.from_numpy(np.asarray(images.meta["flow"][idx], dtype=np.float32)).to(device)
        sub = flow[:, ::STRIDE, ::STRIDE].reshape(len(idx), -1, 2)  # flow at cell corner pixels
        ys, xs = torch.meshgrid(
            torch.arange(hm, device=device), torch.arange(wm, device=device), indexing="ij"
        )
        corner = torch.stack([xs.reshape(-1), ys.reshape(-1)], -1).float() * STRIDE
        # G(centre) ≈ centre + flow(corner): exact for the locally constant flow of rigid parts
        G = pixels_to_cells(corner + (STRIDE - 1) / 2 + sub)
        mask = torch.isfinite(sub).all(-1)
        if "mask" in images.meta:
            fg = torch.from_numpy(np.asarray(images.meta["mask"][idx])).to(device)
            mask &= fg[:, ::STRIDE, ::STRIDE].reshape(len(idx), -1)
        G = torch.nan_to_num(G, nan=0.0)
        return torch.cat([x, x2]), {"G": G, "mask": mask, "map_size": (hm, wm)}

    # ---- fit -----------------------------------------------------------------------------------
    def _build(self, images: ImageSet) -> torch.device:
        seed_everything(self.runtime.seed)
        device = choose_device(self.runtime.device)
        self.image_size_ = images.image_size
        self.net_ = self.build_net().to(device)
        return device

    def init_untrained(self, images: ImageSet) -> FrameMethod:
        """A randomly initialised network with the same options (the probes' baseline)."""
        self._build(images)
        self.net_.eval()
        self._finalize(images)
        return self

    def validate_params(self) -> None:
        """Every option's type and range, and the device."""
        super().validate_params()
        choose_device(self.runtime.device)

    def fit(
        self,
        images: ImageSet,
        run_dir: str | Path | None = None,
        resume: bool = False,
        on_epoch_end: Any = None,
    ) -> FrameMethod:
        """Train on the unlabeled ``images`` from warp (or flow) pairs."""
        self.validate_params()
        images.require(self.min_items(), f"method {self.name!r}")
        device = self._build(images)
        inputs = self.make_inputs(images, device)
        lr = self.training.lr if self.training.lr is not None else 1e-3
        cfg = TrainConfig.from_parts(self.training, self.runtime, lr=lr, desc=self.name)
        self.history_ += train(
            self.net_,
            self,
            inputs,
            np.zeros((len(images), 1), np.float32),
            lambda: np.zeros((len(images), 1), np.float32),
            cfg,
            run_dir=run_dir,
            resume=resume,
            on_epoch_end=on_epoch_end,
        )
        self.net_.eval()
        self._finalize(images)
        return self

    def make_inputs(self, images: ImageSet, device: torch.device) -> Any:
        """Set ``self._items`` (the items that can start a batch) and return the loop's
        ``inputs(indices, augment) -> (x, aux)``: warp pairs, or consecutive frames with flow."""
        if self._use_flow(images):
            self._succ = self._flow_successors(images)
            self._items = np.flatnonzero(self._succ >= 0)
            if len(self._items) < 2:
                raise DataError(f"{images.name}: fewer than two frames with a successor")

            def inputs(idx: np.ndarray, augment: bool) -> tuple[torch.Tensor, dict]:
                return self._flow_inputs(images, idx, device)

        else:
            self._items = np.arange(len(images))

            def inputs(idx: np.ndarray, augment: bool) -> tuple[torch.Tensor, dict]:
                return self._warp_inputs(images, idx, device)

        return inputs

    # ---- inference -----------------------------------------------------------------------------
    def _require_fitted(self) -> None:
        if self.net_ is None:
            raise RuntimeError(f"method {self.name!r} is not fitted: call fit() or load a model")

    @torch.no_grad()
    def maps(self, images: ImageSet, batch_size: int = 64) -> torch.Tensor:
        """Raw network output (N, C, H/2, W/2) on the CPU."""
        self._require_fitted()
        self.net_.eval()
        device = next(self.net_.parameters()).device
        out = []
        for s in range(0, len(images), batch_size):
            x = images.tensor(slice(s, s + batch_size)).to(device)
            if self.image_size_ is not None and tuple(x.shape[-2:]) != tuple(self.image_size_):
                raise DataError(
                    f"{images.name}: images are {tuple(x.shape[-2:])}, the model was trained on "
                    f"{tuple(self.image_size_)}; pass --image-size {self.image_size_[0]}"
                )
            out.append(self.net_(x).float().cpu())
        return torch.cat(out)

    def dense_map(self, images: ImageSet) -> np.ndarray:
        """(N, C, H, W) per-pixel descriptors at the input resolution (bilinear upsampling of the
        stride-2 map, whose cell centres sit on pixel (2j + ½, 2i + ½)), for matching probes."""
        m = self.maps(images)
        return F.interpolate(m, scale_factor=STRIDE, mode="bilinear", align_corners=False).numpy()

    # ---- evaluation ----------------------------------------------------------------------------
    def evaluate(self, eval_set: ImageSet, train: ImageSet | None = None, **_: Any) -> Metrics:
        """Landmark / flow probe errors beside the random network and the mean shape (lower is
        better; :func:`labelfree.frames.pipeline.evaluate_frames`). Image-level options such
        as ``features`` do not apply and are ignored."""
        from labelfree.frames.pipeline import evaluate_frames

        self._require_fitted()
        return evaluate_frames(self, eval_set, train, seed=self.runtime.seed)

    def write_evaluation(self, out: Path, eval_set: ImageSet, metrics: Metrics) -> None:
        """Nothing beside metrics.json: the probes keep no arrays."""

    def draw_evaluation(self, out: Path, eval_set: ImageSet, metrics: Metrics) -> None:
        """``landmarks.png`` (and ``embedding.png``) for the report."""
        from labelfree.frames.pipeline import draw_frames

        draw_frames(self, eval_set, out)

    # ---- save / load ---------------------------------------------------------------------------
    def _extra_state(self) -> dict[str, Any]:
        return {}

    def _load_extra(self, state: dict[str, Any]) -> None:
        pass

    def save(self, path: str | Path) -> None:
        self._require_fitted()
        write_model_file(path, self, net=self.net_, kind="frames", extra=self._extra_state())

    @classmethod
    def load(cls, path: str | Path, device: str = "auto") -> FrameMethod:
        state = read_model_file(path, cls.name)
        m = instantiate(state)
        net = build_frame_net(state["net_config"])
        net.load_state_dict(state["net_state"])
        m.net_ = net.to(choose_device(device)).eval()
        m.image_size_ = tuple(state["image_size"]) if state["image_size"] else None
        m.history_ = state.get("history", [])
        m._load_extra(state.get("extra", {}))
        return m
