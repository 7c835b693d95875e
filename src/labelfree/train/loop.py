"""The training loop, written once for every method: rounds × epochs × steps.

A *stage* (a method, or the distillation that gives a pretrained-style start) names three things:
its structure step (pure numeric work on the current representation of all training items), the
batches of an epoch drawn from that structure, and the loss of one batch. The loop does the rest:
device choice, mixed precision on GPU, deterministic seeding, per-epoch atomic checkpoints and
resume after a kill, progress bars, a JSON-lines metrics log, and DDP when launched by torchrun.

Determinism: the numpy generator of an epoch is seeded with ``(seed, round, epoch)`` and torch is
re-seeded at every epoch start, so a resumed run repeats the uninterrupted one exactly on CPU.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from labelfree.train import distributed as dist
from labelfree.train.config import TrainConfig
from labelfree.utils import atomic_torch_save, atomic_write_bytes, kill_point_for_tests

CHECKPOINT_FORMAT = "labelfree-checkpoint"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used for this run (another method, a damaged file)."""


class EpochContext:
    """What a stage may ask of the state of training, computed at most once per epoch:
    :meth:`embedding` — every training item embedded by the network as it is now (eval mode, no
    augmentation), e.g. for hard negatives (MoM) or a memory bank (ROUL). The structure step of
    a round and the first epoch after it share one context (the network has not changed)."""

    def __init__(self, represent: Callable[[], np.ndarray], round_idx: int, epoch: int) -> None:
        self.round, self.epoch = round_idx, epoch
        self._represent = represent
        self._embedding: np.ndarray | None = None
        self.embed_seconds = 0.0  # what computing the embedding took (0 until asked)

    def embedding(self) -> np.ndarray:
        if self._embedding is None:
            t0 = time.perf_counter()
            self._embedding = self._represent()
            self.embed_seconds = time.perf_counter() - t0
        return self._embedding


@dataclass(kw_only=True)
class Structure:
    """What a stage's structure step returns: each method subclasses it with the typed parts of
    its training signal (mined pairs, cliques, cores, ...). The loop fills :attr:`stats` with the
    round's diagnostics (``structure_stats`` and the step's time) and logs them with epoch 0.
    The structure is pickled into checkpoints: device-side caches belong outside the fields."""

    stats: dict[str, float] = field(default_factory=dict)


class Stage(Protocol):
    """What the loop needs from a method.

    Optional: ``restore_structure(structure)``, called when a run resumes inside a round with
    that round's saved structure, so a method that carries state from round to round (Posets'
    assignments) continues from it instead of starting over at the next round. And
    ``embeds_lazily = True``: every round's structure step gets the initial representation, and
    asks ``ctx.embedding()`` itself only when it needs the current one (Divide & Conquer, which
    can recluster on embeddings kept from training instead of a pass over the data).
    """

    name: str

    def structure(self, reps: np.ndarray, round_idx: int, ctx: EpochContext) -> Structure:
        """Build the training signal from the representation of all training items."""

    def batches(
        self, structure: Structure, rng: np.random.Generator, ctx: EpochContext | None = None
    ) -> list[dict[str, Any]]:
        """The batches of one epoch; each holds ``indices``: the items to embed."""

    def batch_loss(
        self, emb: torch.Tensor, batch: dict[str, Any], structure: Structure
    ) -> torch.Tensor:
        """Loss of one batch from the embeddings of ``batch['indices']`` (in that order)."""


def _optimizer(params: list[nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}; choose 'adam' or 'sgd'")


def _duration(seconds: float) -> str:
    """``1h02m`` / ``3m05s`` / ``42s``: the whole run's time left, shown on the progress bar
    (the bar's own estimate covers only the epoch; structure steps between rounds not counted)."""
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def _progress(total: int, desc: str, enabled: bool):
    import sys

    from tqdm.auto import tqdm

    # Bars only on a terminal: in logs and CI they would print a line per update.
    show = enabled and sys.stderr.isatty()
    return tqdm(total=total, desc=desc, leave=False, disable=not show, dynamic_ncols=True)


def train(
    net: nn.Module,
    stage: Stage,
    inputs: Callable[[np.ndarray, bool], torch.Tensor],
    initial_reps: np.ndarray,
    represent: Callable[[], np.ndarray],
    cfg: TrainConfig,
    run_dir: str | Path | None = None,
    checkpoint_name: str = "checkpoint.pt",
    resume: bool = False,
    extra: nn.Module | None = None,
    on_epoch_end: Callable[[dict[str, Any]], None] | None = None,
    structure_stats: Callable[[Structure], dict[str, float]] | None = None,
    regularizer: Callable[[torch.Tensor, dict[str, Any]], torch.Tensor] | None = None,
) -> list[dict[str, Any]]:
    """Train ``net`` (and the stage's ``extra`` module, e.g. a projector) in place.

    Args:
        inputs: ``inputs(indices, augment)`` → the network input for those training items, on
            the training device; or ``(input, aux)``, and the loss then finds ``aux`` in the
            batch as ``batch["aux"]`` (e.g. the warp field of a pixel-level pair). With a
            ``stream(list_of_indices, augment)`` method, an epoch's inputs come from it instead,
            in order (a DataLoader reading ahead, :mod:`labelfree.data.loader`).
        initial_reps: the representation of all training items used by round 0's structure step
            (the initial features g(x)).
        represent: computes the representation of all items with the current network; used by
            the structure step of later rounds.
        run_dir: where the checkpoint and ``log.jsonl`` go (None: no checkpoint, no log).
        resume: continue from ``run_dir/checkpoint_name`` when it exists.
        on_epoch_end: called with each epoch's log record after its checkpoint is written.
        structure_stats: diagnostics of a structure (e.g. true-positive rate of the mined pairs,
            when evaluation labels exist); logged with the round.
        regularizer: ``regularizer(emb, batch)`` added to every batch's loss (e.g. the
            consistency with the start, :class:`~labelfree.train.config.Training`).

    Returns the per-epoch log records (also appended to ``run_dir/log.jsonl``).
    """
    device = next(net.parameters()).device
    rank, world = dist.rank(), dist.world_size()
    modules = nn.ModuleList([net] + ([extra] if extra is not None else []))
    model = dist.wrap(net) if world > 1 else net
    opt = _optimizer([p for p in modules.parameters() if p.requires_grad], cfg)
    sched = (
        torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.lr_step, gamma=0.1)
        if cfg.lr_step
        else None
    )
    ckpt_path = Path(run_dir) / checkpoint_name if run_dir is not None else None
    log_path = Path(run_dir) / "log.jsonl" if run_dir is not None else None
    history: list[dict[str, Any]] = []
    start_round, start_epoch, structure = 0, 0, None
    if resume and ckpt_path is not None and ckpt_path.exists():
        state = load_checkpoint(ckpt_path, stage.name)
        modules.load_state_dict(state["modules"])
        opt.load_state_dict(state["optimizer"])
        if sched is not None and state.get("scheduler") is not None:
            sched.load_state_dict(state["scheduler"])
        history = state["history"]
        start_round, start_epoch = state["round"], state["epoch"] + 1
        structure = state["structure"]
        if structure is not None and not isinstance(structure, Structure):
            raise CheckpointError(
                f"{ckpt_path}: written by an older labelfree (untyped structure); "
                "start the run again with --overwrite"
            )
        if structure is not None and (restore := getattr(stage, "restore_structure", None)):
            restore(structure)
        if start_epoch >= cfg.epochs:
            start_round, start_epoch, structure = start_round + 1, 0, None
        if rank == 0 and log_path is not None:
            _rewrite_log(log_path, stage.name, history)

    use_amp = cfg.amp and device.type == "cuda"
    run_t0, run_steps = time.perf_counter(), 0  # for the bar's estimate of the whole run's time
    for r in range(start_round, cfg.rounds):
        ctx = EpochContext(represent, r, start_epoch)
        if structure is None:
            lazy = getattr(stage, "embeds_lazily", False)
            reps = initial_reps if r == 0 or lazy else ctx.embedding()
            t0 = time.perf_counter()
            structure = stage.structure(reps, r, ctx)
            kill_point_for_tests(f"{stage.name}:structure")
            stats = structure_stats(structure) if structure_stats else {}
            stats["structure_seconds"] = time.perf_counter() - t0
            stats["embed_seconds"] = ctx.embed_seconds
            structure.stats = stats
        for e in range(start_epoch, cfg.epochs):
            g_epoch = r * cfg.epochs + e
            rng = np.random.default_rng([cfg.seed, r, e])
            torch.manual_seed(cfg.seed * 1_000_003 + g_epoch)
            if ctx.epoch != e:  # the network has trained since ctx was made
                ctx = EpochContext(represent, r, e)
            batches = stage.batches(structure, rng, ctx)
            if cfg.steps:
                batches = batches[: cfg.steps * world]
            if world > 1:
                n = (len(batches) // world) * world
                batches = batches[rank:n:world]
            modules.train()
            t0, total, count = time.perf_counter(), 0.0, 0
            bar = _progress(
                len(batches), f"{cfg.desc} r{r} e{e + 1}/{cfg.epochs}", cfg.progress and rank == 0
            )
            stream = getattr(inputs, "stream", None)  # reads ahead (data/loader.py)
            xs = (
                stream([b["indices"] for b in batches], True)
                if stream is not None
                else (inputs(b["indices"], True) for b in batches)
            )
            for step, (batch, x) in enumerate(zip(batches, xs, strict=True)):
                if isinstance(x, tuple):  # (x, aux): what the loss needs beside the input
                    x, aux = x
                    batch = {**batch, "aux": aux}
                with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=use_amp):
                    emb = model(x)
                    loss = stage.batch_loss(emb.float(), batch, structure)
                    if regularizer is not None:
                        loss = loss + regularizer(emb.float(), batch)
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"{stage.name}: loss became {loss.item()} at round {r} epoch {e}; "
                        "lower the learning rate (--lr)"
                    )
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if extra is not None and world > 1:
                    dist.average_gradients(extra)
                opt.step()
                if step == 0:
                    kill_point_for_tests(stage.name)
                total += float(loss.detach()) * len(batch["indices"])
                count += len(batch["indices"])
                bar.update(1)
                run_steps += 1
                left = (len(batches) - step - 1) + len(batches) * (
                    (cfg.epochs - e - 1) + cfg.epochs * (cfg.rounds - r - 1)
                )
                per_step = (time.perf_counter() - run_t0) / run_steps
                bar.set_postfix(
                    loss=f"{total / max(count, 1):.4f}", run_left=_duration(left * per_step)
                )
            bar.close()
            if sched is not None:
                sched.step()
            dist.sync_buffers(modules)
            mean_loss = dist.mean_scalar(total / max(count, 1))
            record = {
                "stage": stage.name,
                "round": r,
                "epoch": e,
                "loss": mean_loss,
                "lr": opt.param_groups[0]["lr"],
                "seconds": time.perf_counter() - t0,
                "steps": len(batches),
            }
            if e == 0:
                record.update({f"structure/{k}": v for k, v in structure.stats.items()})
            history.append(record)
            if rank == 0 and run_dir is not None:
                save_checkpoint(
                    ckpt_path,
                    {
                        "format": CHECKPOINT_FORMAT,
                        "stage": stage.name,
                        "round": r,
                        "epoch": e,
                        "modules": modules.state_dict(),
                        "optimizer": opt.state_dict(),
                        "scheduler": sched.state_dict() if sched is not None else None,
                        "structure": structure,
                        "history": history,
                        "config": asdict(cfg),
                    },
                )
                with open(log_path, "a") as fh:
                    fh.write(json.dumps(_jsonable(record)) + "\n")
            dist.barrier()
            if on_epoch_end is not None:
                on_epoch_end(record)
        structure, start_epoch = None, 0
    return history


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Atomic: a kill while writing leaves the previous checkpoint intact."""
    atomic_torch_save(state, path)


def load_checkpoint(path: str | Path, expected_stage: str | None = None) -> dict[str, Any]:
    """Read a checkpoint, refusing one written by another method."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a damaged file
        raise CheckpointError(f"{path}: cannot read checkpoint ({exc})") from exc
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a labelfree training checkpoint")
    if expected_stage is not None and state["stage"] != expected_stage:
        raise CheckpointError(
            f"{path}: checkpoint was written by {state['stage']!r}, not {expected_stage!r}; "
            "use another output directory or the matching --method"
        )
    return state


def _rewrite_log(path: Path, stage_name: str, history: list[dict[str, Any]]) -> None:
    """On resume: the log becomes the other stages' records followed by this stage's history from
    its checkpoint, so that a kill between a checkpoint and its log line, or in the middle of a
    line, leaves no missing, repeated or broken record. Written atomically."""
    others = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a kill
            if isinstance(rec, dict) and rec.get("stage") != stage_name:
                others.append(line)
    lines = others + [json.dumps(_jsonable(r)) for r in history]
    atomic_write_bytes(path, "".join(f"{line}\n" for line in lines).encode())


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, (np.floating, np.integer)):
            v = v.item()
        if isinstance(v, float) and not math.isfinite(v):
            v = None
        out[k] = v
    return out
