"""The optimisation and runtime options every method composes (:class:`Training`,
:class:`Runtime`), and the loop's own :class:`TrainConfig` built from them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from labelfree.options import AT_LEAST_1, NON_NEGATIVE, POSITIVE, OptionGroup, Range


@dataclass(frozen=True)
class Training(OptionGroup):
    """How the network is optimised.

    Args:
        epochs: training epochs per round (0: the start alone, not fine-tuned — the benchmarks'
            "start, not fine-tuned" row).
        rounds: structure-step / training rounds (round 0 builds its structure on g(x)).
        batch_size: tuples (or items, or pairs) per training step.
        lr: learning rate; default (none) is the method's: 1e-3 from scratch / feature head,
            3e-4 after distillation (fine-tuning must not wash out the distilled start — chosen
            by measurement on mnist5k, see benchmarks/bench_quality.py).
        weight_decay: L2 weight decay of the optimiser (5e-4).
        optimizer: ``adam`` (AdamW) or ``sgd`` (momentum 0.9, as in seed 002 §4.3).
        lr_step: multiply the learning rate by 0.1 every ``lr_step`` epochs (0: never; seed 002
            uses 10).
        steps: at most this many training steps per epoch (0: every batch the structure step
            gives). On a large collection an epoch of one tuple per anchor is long; a capped
            epoch keeps the first ``steps`` of the epoch's shuffled batches, so it is a prefix of
            the uncapped one (the distillation's epochs are never capped).
        consistency: weight of a term that keeps the embedding of an (augmented) training image
            able to pick out its own *start* embedding among the batch's (InfoNCE, temperature
            0.1, against the network's embedding before fine-tuning): fine-tuning then cannot
            forget what the start knew about images unlike the training classes. 0 turns it off.
    """

    epochs: int = 10
    rounds: int = 1
    batch_size: int = 128
    lr: float | None = None
    weight_decay: float = 5e-4
    optimizer: str = "adam"
    lr_step: int = 0
    steps: int = 0
    consistency: float = 0.0

    option_ranges = {
        "epochs": NON_NEGATIVE,
        "rounds": AT_LEAST_1,
        "batch_size": Range(2),
        "lr": POSITIVE,
        "weight_decay": NON_NEGATIVE,
        "lr_step": NON_NEGATIVE,
        "steps": NON_NEGATIVE,
        "consistency": NON_NEGATIVE,
    }
    option_choices = {"optimizer": ("adam", "sgd")}


@dataclass(frozen=True)
class Runtime(OptionGroup):
    """Where and how a run executes; none of these changes what is learnt on the CPU.

    Args:
        seed: random seed of every draw (CPU runs with the same seed repeat exactly).
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``.
        amp: bf16 autocast on CUDA (ignored on the CPU).
        progress: show progress bars.
        workers: DataLoader processes that read a streamed collection's batches ahead of the
            training step (0: read in the training process; in-memory collections are always
            indexed directly, which is faster).
    """

    seed: int = 0
    device: str = "auto"
    amp: bool = True
    progress: bool = True
    workers: int = 1

    option_ranges = {"seed": NON_NEGATIVE, "workers": NON_NEGATIVE}


@dataclass
class TrainConfig:
    """The training loop's settings for one stage (a method, or the distillation)."""

    epochs: int = 10
    rounds: int = 1
    lr: float = 1e-3
    weight_decay: float = 5e-4
    optimizer: str = "adam"  # adam | sgd
    momentum: float = 0.9
    lr_step: int = 0  # multiply the learning rate by 0.1 every lr_step epochs (0: never)
    steps: int = 0  # at most this many steps per epoch (0: all the epoch's batches)
    seed: int = 0
    device: str = "auto"
    amp: bool = True  # bf16 autocast, on CUDA only
    progress: bool = True
    desc: str = "train"

    @classmethod
    def from_parts(cls, training: Training, runtime: Runtime, **overrides: Any) -> TrainConfig:
        """A stage's config from a method's :class:`Training` and :class:`Runtime`, then
        ``overrides`` (``lr`` must be given when ``training.lr`` is None)."""
        base = {
            "epochs": training.epochs,
            "rounds": training.rounds,
            "lr": training.lr,
            "weight_decay": training.weight_decay,
            "optimizer": training.optimizer,
            "lr_step": training.lr_step,
            "steps": training.steps,
            "seed": runtime.seed,
            "device": runtime.device,
            "amp": runtime.amp,
            "progress": runtime.progress,
        }
        cfg = cls(**{**base, **overrides})
        if cfg.lr is None:
            raise ValueError("TrainConfig.from_parts: no learning rate")
        return cfg
