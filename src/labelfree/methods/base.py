"""What every image-level method shares: construction, fit, embed, save, load.

A method subclass is a short composition: it names its structure step, the batches of an epoch
and the loss of a batch (the :class:`labelfree.train.loop.Stage` protocol). This class turns that
into the scikit-learn-style API::

    m = get_method("hadsell", start="distill", epochs=8)
    m.fit(load_data("mnist5k:train"))
    z = m.embed(load_data("mnist5k:test"))
    m.save("model.pt"); m2 = load_model("model.pt")

The starting points (scratch, distill, feature-head) and the network are built by
:class:`labelfree.methods.encoder.Encoder`.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from labelfree.data.imageset import DataError, ImageSet
from labelfree.data.loader import inference_batch
from labelfree.evaluate.results import Metrics
from labelfree.evaluate.retrieval_run import INITIAL_FEATURES, evaluate_retrieval
from labelfree.features.base import FeatureExtractor, check_finite, compute_features
from labelfree.features.registry import from_dict
from labelfree.losses.pairs import info_nce
from labelfree.methods.encoder import Encoder
from labelfree.methods.model_file import _cpu_state, instantiate, read_model_file, write_model_file
from labelfree.nets.backbones import is_pretrained
from labelfree.options import KeywordOptions
from labelfree.train import distributed as dist
from labelfree.train.config import Runtime, TrainConfig, Training
from labelfree.train.loop import EpochContext, Structure, train
from labelfree.utils import atomic_write_bytes, choose_device, seed_everything

#: Temperature of the start-consistency InfoNCE (the distillation's, METHODS.md §0).
CONSISTENCY_TEMPERATURE = 0.1


class Method(KeywordOptions):
    """Base class of the label-free methods. Subclasses implement the Stage hooks and list
    their own hyper-parameters, then ``encoder``, ``training`` and ``runtime``, explicitly."""

    name: ClassVar[str] = ""

    def __init__(
        self,
        *,
        encoder: Encoder = Encoder(),
        training: Training = Training(),
        runtime: Runtime = Runtime(),
    ) -> None:
        """The three parts every method composes; their fields are the shared options.

        Args:
            encoder: the start, g(x), network, augmentation and distillation
                (:class:`~labelfree.methods.encoder.Encoder`).
            training: epochs, rounds, batch size, optimiser (:class:`~labelfree.train.config.Training`).
            runtime: seed, device, mixed precision, progress bars (:class:`~labelfree.train.config.Runtime`).
        """
        self.encoder = encoder
        self.training = training
        self.runtime = runtime
        self.net_: nn.Module | None = None
        self.extractor_: FeatureExtractor | None = None
        self.image_size_: tuple[int, int] | None = None
        self.history_: list[dict[str, Any]] = []
        self._labels: np.ndarray | None = None

    def validate_params(self) -> None:
        """Every option's type and range, the device, and g(x) = ``backbone`` only from a
        pretrained backbone."""
        super().validate_params()
        choose_device(self.runtime.device)
        enc = self.encoder
        if enc.features == "backbone" and not is_pretrained(enc.backbone):
            raise DataError(
                f"option features=backbone needs a pretrained backbone (--backbone "
                f"efficientnet-lite0, or hf:<local folder>); backbone {enc.backbone!r} has random "
                "weights, so g(x) would be a random CNN — use features=hog-lda (default), hog or "
                "pixels"
            )

    # ---- the Stage hooks a method implements -------------------------------------------------
    def min_items(self) -> int:
        """Fewest training items the method can work with."""
        return 2

    def structure(
        self, reps: np.ndarray, round_idx: int, ctx: EpochContext | None = None
    ) -> Structure:
        raise NotImplementedError  # abstractmethod: each method defines its structure step

    def batches(
        self, structure: Structure, rng: np.random.Generator, ctx: EpochContext | None = None
    ) -> list[dict[str, Any]]:
        raise NotImplementedError  # abstractmethod

    def batch_loss(
        self, emb: torch.Tensor, batch: dict[str, Any], structure: Structure
    ) -> torch.Tensor:
        raise NotImplementedError  # abstractmethod

    def structure_stats(self, structure: Structure, labels: np.ndarray) -> dict[str, float]:
        """Diagnostics of a structure against evaluation labels (never used for training)."""
        return {}

    def prepare_net(self, net: nn.Module) -> None:
        """Adjust the started network (after distillation) before fine-tuning; default nothing.
        Divide & Conquer turns the output normalisation off, to normalise each slice alone."""

    def extra_module(self) -> nn.Module | None:
        """A second module trained alongside the network (e.g. ROUL's order network), or None.

        It is passed to the training loop as ``extra`` (same optimiser), saved with the model and
        restored by :meth:`load`; it must be buildable from the method's options alone.
        """
        return None

    # ---- parameters ----------------------------------------------------------------------------
    @property
    def resolved_lr(self) -> float:
        """The fine-tuning learning rate: the option, else the encoder's default for its start."""
        return self.training.lr if self.training.lr is not None else self.encoder.default_lr()

    # ---- fit ------------------------------------------------------------------------------------
    def fit(
        self,
        images: ImageSet,
        run_dir: str | Path | None = None,
        resume: bool = False,
        on_epoch_end: Any = None,
    ) -> Method:
        """Train on the unlabeled ``images`` (their labels, if any, feed diagnostics only)."""
        self.validate_params()
        images.require(self.min_items(), f"method {self.name!r} with these options")
        enc, training, runtime = self.encoder, self.training, self.runtime
        seed_everything(runtime.seed)
        device = choose_device(runtime.device)
        dist.init_from_env(device)
        device = dist.local_device(device)
        self.image_size_ = images.image_size
        self._labels = images.labels
        self.extractor_ = enc.extractor(runtime.seed).fit(images)
        g = compute_features(self.extractor_, images, cache=enc.cache)
        check_finite(g, f"g(x) ({enc.features}) of {images.name}")
        self.net_, inputs = enc.build(images, g, device, runtime.workers)
        represent = lambda: self._represent_train(images, inputs)  # noqa: E731
        if enc.start == "distill":
            distill_batch = max(training.batch_size, 64) * 2
            self.history_ += enc.distill(
                self.net_,
                images,
                g,
                inputs,
                represent,
                # distillation keeps its own measured optimiser (AdamW, constant lr)
                TrainConfig.from_parts(
                    training,
                    runtime,
                    epochs=enc.resolved_distill_epochs(len(images), distill_batch),
                    rounds=1,
                    lr=enc.distill_lr,
                    optimizer="adam",
                    lr_step=0,
                    steps=0,
                    desc="distill",
                ),
                batch_size=distill_batch,
                extractor=self.extractor_,
                run_dir=run_dir,
                resume=resume,
                on_epoch_end=on_epoch_end,
            )
        stats = None
        if images.labels is not None:
            labels = images.labels

            def stats(structure: Structure) -> dict[str, float]:
                return self.structure_stats(structure, labels)

        self.prepare_net(self.net_)
        self.history_ += train(
            self.net_,
            self,
            inputs,
            g,
            represent,
            TrainConfig.from_parts(training, runtime, lr=self.resolved_lr, desc=self.name),
            run_dir=run_dir,
            resume=resume,
            on_epoch_end=on_epoch_end,
            structure_stats=stats,
            extra=extra.to(device) if (extra := self.extra_module()) is not None else None,
            regularizer=self._consistency(represent, device),
        )
        self.net_.eval()
        return self

    def _consistency(self, represent: Any, device: torch.device) -> Any:
        """The start-consistency term of ``training.consistency`` (None when 0): the start's
        embedding of every training item is computed once, before fine-tuning."""
        weight = self.training.consistency
        if weight == 0:
            return None
        start = nn.functional.normalize(torch.from_numpy(represent()).to(device), dim=1)

        def term(emb: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
            idx = torch.as_tensor(batch["indices"], device=device)
            z = nn.functional.normalize(emb, dim=1)  # a no-op but for nets with raw outputs
            return weight * info_nce(z, start[idx], CONSISTENCY_TEMPERATURE)

        return term

    @torch.no_grad()
    def _represent_train(self, images: ImageSet, inputs: Any) -> np.ndarray:
        was = self.net_.training
        self.net_.eval()
        step = inference_batch(images.image_size)
        out = [
            self.net_(inputs(np.arange(s, min(s + step, len(images))), False)).float().cpu()
            for s in range(0, len(images), step)
        ]
        self.net_.train(was)
        return torch.cat(out).numpy()

    # ---- embed ----------------------------------------------------------------------------------
    def _require_fitted(self) -> None:
        if self.net_ is None:
            raise RuntimeError(f"method {self.name!r} is not fitted: call fit() or load a model")

    @torch.no_grad()
    def embed(self, images: ImageSet, batch_size: int | None = None) -> np.ndarray:
        """L2-normalised ``(N, dim)`` float32 embeddings of ``images``, ``batch_size`` at a
        time (default: :func:`~labelfree.data.loader.inference_batch` of the image size)."""
        self._require_fitted()
        batch_size = batch_size or inference_batch(tuple(self.image_size_ or images.image_size))
        net = self.net_.eval()
        device = next(net.parameters()).device
        if self.encoder.start == "feature-head":
            g = compute_features(self.extractor_, images, cache=self.encoder.cache)
            chunks = [
                net(torch.from_numpy(g[s : s + batch_size]).to(device)).float().cpu()
                for s in range(0, len(images), batch_size)
            ]
        else:
            chunks = []
            for s in range(0, len(images), batch_size):
                x = images.tensor(slice(s, s + batch_size)).to(device)
                if self.image_size_ is not None and tuple(x.shape[-2:]) != tuple(self.image_size_):
                    x = nn.functional.interpolate(
                        x, size=self.image_size_, mode="bilinear", align_corners=False
                    )
                chunks.append(net(x).float().cpu())
        return torch.cat(chunks).numpy().astype(np.float32)

    def initial_features(self, images: ImageSet) -> np.ndarray:
        """g(x) of ``images`` with the extractor fitted on the training collection."""
        self._require_fitted()
        return compute_features(self.extractor_, images, cache=self.encoder.cache)

    # ---- evaluation ------------------------------------------------------------------------------
    def evaluate(
        self,
        eval_set: ImageSet,
        train: ImageSet | None = None,
        features: tuple[str, ...] = INITIAL_FEATURES,
        seed: int = 0,
    ) -> Metrics:
        """Retrieval metrics of the embedding beside the initial features on labelled held-out
        images (:func:`~labelfree.evaluate.retrieval_run.evaluate_retrieval`)."""
        self._require_fitted()
        return evaluate_retrieval(self, eval_set, train, features, seed)

    def write_evaluation(self, out: Path, eval_set: ImageSet, metrics: Metrics) -> None:
        """Files an evaluation leaves before metrics.json: the embeddings, labels and paths."""
        buf = io.BytesIO()
        paths = np.array(eval_set.paths or [], dtype=str)
        np.savez(buf, embeddings=metrics.arrays["embeddings"], labels=eval_set.labels, paths=paths)
        atomic_write_bytes(Path(out) / "eval_embeddings.npz", buf.getvalue())

    def draw_evaluation(self, out: Path, eval_set: ImageSet, metrics: Metrics) -> None:
        """Pictures of an evaluation for the report: the retrieval grid."""
        from labelfree.report.html import retrieval_grid

        emb = metrics.arrays["embeddings"]
        retrieval_grid(eval_set, emb, Path(out) / "retrieval.png", seed=self.runtime.seed)

    # ---- save / load ----------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write the fitted model (options, network, fitted g(x)) to one file, atomically."""
        self._require_fitted()
        extra = self.extra_module()
        write_model_file(
            path,
            self,
            net=self.net_,
            extractor=self.extractor_.to_dict(),
            **({"extra_state": _cpu_state(extra)} if extra is not None else {}),
        )

    @classmethod
    def load(cls, path: str | Path, device: str = "auto") -> Method:
        """Load a model saved by :meth:`save`; refuses a file written by another method."""
        from labelfree.nets.heads import build_net

        state = read_model_file(path, cls.name)
        m = instantiate(state)
        net = build_net(state["net_config"])
        net.load_state_dict(state["net_state"])
        m.net_ = net.to(choose_device(device)).eval()
        m.extractor_ = from_dict(state["extractor"])
        m.image_size_ = tuple(state["image_size"]) if state["image_size"] else None
        m.history_ = state.get("history", [])
        if (extra := m.extra_module()) is not None and "extra_state" in state:
            extra.load_state_dict(state["extra_state"])
            extra.to(choose_device(device)).eval()
        return m
