"""What the pretrained-backbone adapters share (:mod:`labelfree.nets.adapters`).

The input pipeline of every adapter (resize to the size the network expects, normalise with its
mean/std), reading size declarations, turning transformer tokens into a spatial map, and
importing an optional library with an install hint.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "tokens_to_map"]

#: Channel statistics of ImageNet, the default normalisation of pretrained backbones.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _import_optional(module: str, extra: str) -> Any:
    """Import ``module`` or raise an ImportError telling how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(f"{module} is not installed: pip install 'labelfree[{extra}]'") from err
    except Exception as err:  # installed but broken (e.g. built against another torch)
        raise ImportError(
            f"{module} is installed but fails to import ({type(err).__name__}: {err}); "
            f"reinstall it to match torch {torch.__version__}: pip install 'labelfree[{extra}]'"
        ) from err


def _resize(x: torch.Tensor, size: tuple[int, int] | None) -> torch.Tensor:
    if size is None or tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


def _as_size(value: Any) -> tuple[int, int] | None:
    """``224``, ``(224, 224)``, ``[3, 224, 224]`` or ``{"height": .., "width": ..}`` → (h, w)."""
    if value is None or value is False or value == 0:
        return None
    if isinstance(value, dict):
        if "height" in value and "width" in value:
            return int(value["height"]), int(value["width"])
        if "shortest_edge" in value:
            s = int(value["shortest_edge"])
            return s, s
        return None
    if isinstance(value, (list, tuple)):
        vals = [int(v) for v in value][-2:]
        return (vals[0], vals[0]) if len(vals) == 1 else (vals[0], vals[1])
    return int(value), int(value)


def tokens_to_map(
    tokens: torch.Tensor, grid: tuple[int, int] | None = None, n_prefix: int | None = None
) -> torch.Tensor:
    """Transformer tokens ``(B, N, C)`` → patch-token grid ``(B, C, h, w)``.

    The first ``n_prefix`` tokens (CLS, distillation, register tokens) are dropped. ``grid`` is
    the patch grid when known; otherwise the largest square ``h = w`` with ``h² ≤ N − n_prefix``
    (or ``≤ N`` when ``n_prefix`` is unknown, the rest being taken as prefix tokens).
    """
    b, n, c = tokens.shape
    if grid is not None and n_prefix is None:
        n_prefix = n - grid[0] * grid[1]
    if grid is None:
        side = math.isqrt(n - (n_prefix or 0))
        grid = (side, side)
        if n_prefix is None:
            n_prefix = n - side * side
    if n_prefix < 0 or n - n_prefix != grid[0] * grid[1]:
        raise ValueError(f"cannot arrange {n} tokens into a {grid[0]}×{grid[1]} patch grid")
    patches = tokens[:, n_prefix:, :]
    return patches.transpose(1, 2).reshape(b, c, grid[0], grid[1])


class _AdapterBase(nn.Module):
    """Resize → normalise → network → feature map."""

    out_channels: int

    def _setup_input(
        self,
        mean: tuple[float, ...] | None,
        std: tuple[float, ...] | None,
        size: tuple[int, int] | None,
    ) -> None:
        mean = tuple(mean) if mean else IMAGENET_MEAN
        std = tuple(std) if std else IMAGENET_STD
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)
        self.input_size = size

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """[0, 1] images → the resized, normalised input the wrapped network expects."""
        return (_resize(x, self.input_size) - self.mean) / self.std

    def _infer_out_channels(self) -> int:
        size = self.input_size or (224, 224)
        was_training = self.training
        self.eval()
        with torch.no_grad():
            out = self(torch.zeros(1, 3, *size, device=self.mean.device))
        self.train(was_training)
        return int(out.shape[1])
