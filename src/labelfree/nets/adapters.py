"""Pretrained backbones from transformers, timm and torchvision, as feature-map modules.

Each adapter maps images ``(B, 3, H, W)`` in [0, 1] to a feature map ``(B, C, h, w)`` and has
``out_channels``, like the built-in backbones. Inside, it resizes the input to the size the
network expects (when it declares one), normalises it with the network's mean/std (ImageNet's
when it declares none) and, for transformers, turns patch tokens into a spatial grid.

Weights come from local files. Nothing is downloaded unless ``allow_download=True`` is passed
(off by default: the project's machines are offline at run time).

``hf:<dir or hub id>``
    ``transformers.AutoModel`` (``local_files_only`` unless ``allow_download``). Conv models
    (ResNet, ConvNeXt, RegNet, ...) return their ``last_hidden_state`` map; ViT-like models
    (ViT, DeiT, DINOv2, CLIP/SigLIP vision towers, ...) drop their prefix tokens (CLS,
    distillation, registers) and reshape the patch tokens into ``(B, C, h, w)``.
``timm:<model>``
    ``timm.create_model(model, pretrained=False, num_classes=0)`` with ``weights=<file>``;
    ``forward_features`` gives the map (tokens are reshaped as above).
``torchvision:<model>``
    ``torchvision.models.get_model(model, weights=None)`` with ``weights=<file>``; the global
    pooling and classifier are dropped.

timm and torchvision are imported only when used; a missing one raises an :class:`ImportError`
saying how to install it.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

#: Channel statistics of ImageNet, the default normalisation of pretrained backbones.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

__all__ = [
    "HFBackbone",
    "TimmBackbone",
    "TorchvisionBackbone",
    "build_adapter",
    "load_matching_state",
    "load_weights_file",
    "tokens_to_map",
]


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


def load_weights_file(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """A state dict from a ``.pt`` / ``.pth`` / ``.bin`` / ``.safetensors`` file.

    Checkpoints that wrap the state dict (``{"state_dict": ...}`` or ``{"model": ...}``) are
    unwrapped. Loading uses ``weights_only=True``: no code in the file is executed.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"weights file not found: {p}")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(p))
    obj = torch.load(p, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "model_state_dict", "net"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict):
        raise ValueError(f"{p}: expected a state dict, got {type(obj).__name__}")
    return obj


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


def _read_preprocessor_config(
    source: str, allow_download: bool, revision: str | None
) -> dict[str, Any]:
    """The ``preprocessor_config.json`` of a local folder or hub id, or ``{}`` when absent."""
    fname = "preprocessor_config.json"
    if os.path.isdir(source):
        path = os.path.join(source, fname)
        if not os.path.isfile(path):
            return {}
    else:
        try:
            from huggingface_hub import hf_hub_download

            path = hf_hub_download(
                source, fname, revision=revision, local_files_only=not allow_download
            )
        except Exception:  # absent from the repo or from the local cache
            return {}
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


class HFBackbone(_AdapterBase):
    """A transformers vision model as a feature-map backbone.

    Args:
        source: a local folder written by ``save_pretrained`` or a hub id.
        allow_download: let transformers fetch from the hub (off: local files / cache only).
        input_size: resize target in pixels. ``None``: the size the model expects (its
            preprocessor's ``crop_size`` / ``size``, else ``config.image_size``; no resize when
            neither exists). ``0``: never resize.
        revision: hub revision, when downloading.
        image_size: the caller's image side; unused (``input_size`` decides the resize).

    The input is normalised with the preprocessor's ``image_mean`` / ``image_std`` when present,
    else ImageNet's. Models load in float32.
    """

    def __init__(
        self,
        source: str,
        allow_download: bool = False,
        input_size: int | tuple[int, int] | None = None,
        revision: str | None = None,
        image_size: int | None = None,
    ) -> None:
        super().__init__()
        transformers = _import_optional("transformers", "transformers")
        self.source = source
        kwargs: dict[str, Any] = {"local_files_only": not allow_download}
        if revision is not None:
            kwargs["revision"] = revision
        dtype_kw = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
        kwargs[dtype_kw] = torch.float32
        looks_local = source.startswith((".", "~", os.sep)) or os.path.exists(source)
        if looks_local and not os.path.isdir(os.path.expanduser(source)):
            raise OSError(f"hf: model folder not found: {source}")
        source = os.path.expanduser(source)
        try:
            model = transformers.AutoModel.from_pretrained(source, **kwargs)
        except OSError as err:
            hint = "" if allow_download else " (downloads are off: pass allow_download=True)"
            raise OSError(f"cannot load transformers model {source!r}{hint}: {err}") from err
        config = model.config
        # Two-tower models (CLIP, SigLIP): keep the vision tower.
        if hasattr(model, "vision_model") and hasattr(config, "vision_config"):
            model, config = model.vision_model, config.vision_config
        self.model = model
        self.patch_size = _as_size(getattr(config, "patch_size", None))
        pre = _read_preprocessor_config(source, allow_download, revision)
        if input_size is None:
            size = _as_size(pre.get("crop_size")) if pre.get("do_center_crop", True) else None
            size = (
                size or _as_size(pre.get("size")) or _as_size(getattr(config, "image_size", None))
            )
        else:
            size = _as_size(input_size)
        self._setup_input(pre.get("image_mean"), pre.get("image_std"), size)
        self.out_channels = self._infer_out_channels()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.prepare(x)
        out = self.model(pixel_values=x)
        feats = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
        if feats.ndim == 4:
            return feats
        grid = None
        if self.patch_size is not None:
            grid = (x.shape[-2] // self.patch_size[0], x.shape[-1] // self.patch_size[1])
            if grid[0] * grid[1] > feats.shape[1]:
                grid = None  # hierarchical models (Swin): the patch size is the first stage's
        return tokens_to_map(feats, grid)


class TimmBackbone(_AdapterBase):
    """A timm model (``forward_features``) as a feature-map backbone.

    Args:
        name: the timm model name.
        weights: a local state-dict file; classifier entries are dropped. ``None``: random
            weights, or timm's pretrained ones when ``allow_download=True``.
        allow_download: let timm fetch its pretrained weights.
        input_size: resize target; ``None``: the model's ``pretrained_cfg["input_size"]``;
            ``0``: never resize.
        image_size: the caller's image side; unused (``input_size`` decides the resize).
    """

    def __init__(
        self,
        name: str,
        weights: str | os.PathLike[str] | None = None,
        allow_download: bool = False,
        input_size: int | tuple[int, int] | None = None,
        image_size: int | None = None,
    ) -> None:
        super().__init__()
        timm = _import_optional("timm", "timm")
        pretrained = weights is None and allow_download
        self.model = timm.create_model(name, pretrained=pretrained, num_classes=0)
        if weights is not None:
            load_matching_state(self.model, load_weights_file(weights), f"timm:{name}")
        elif not pretrained:
            warnings.warn(f"timm:{name} has random weights (no weights file given)", stacklevel=2)
        cfg = dict(getattr(self.model, "pretrained_cfg", None) or {})
        size = _as_size(cfg.get("input_size")) if input_size is None else _as_size(input_size)
        self._setup_input(cfg.get("mean"), cfg.get("std"), size)
        self.n_prefix = int(getattr(self.model, "num_prefix_tokens", 0))
        self.out_channels = int(getattr(self.model, "num_features", 0)) or (
            self._infer_out_channels()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.model.forward_features(self.prepare(x))
        if feats.ndim == 3:
            return tokens_to_map(feats, None, self.n_prefix)
        if feats.shape[1] != self.out_channels and feats.shape[-1] == self.out_channels:
            feats = feats.permute(0, 3, 1, 2)  # channels-last maps (Swin)
        return feats


class TorchvisionBackbone(_AdapterBase):
    """A torchvision classification network, minus pooling and classifier.

    Args:
        name: the ``torchvision.models`` builder name (``resnet50``, ``vgg16``, ...).
        weights: a local state-dict file. ``None``: random weights, or torchvision's default
            weights when ``allow_download=True``.
        allow_download: let torchvision fetch its default weights.
        input_size: resize target; ``None`` (torchvision models declare none) / ``0``: no
            resize. Pass 224 to match ImageNet training.
        image_size: the caller's image side; unused (``input_size`` decides the resize).

    ResNet-like models keep every child before ``avgpool``; models with a ``features`` module
    (VGG, DenseNet, MobileNet, EfficientNet, ConvNeXt) keep it.
    """

    def __init__(
        self,
        name: str,
        weights: str | os.PathLike[str] | None = None,
        allow_download: bool = False,
        input_size: int | tuple[int, int] | None = None,
        image_size: int | None = None,
    ) -> None:
        super().__init__()
        tv = _import_optional("torchvision", "torchvision")
        download = weights is None and allow_download
        model = tv.models.get_model(name, weights="DEFAULT" if download else None)
        if weights is not None:
            load_matching_state(model, load_weights_file(weights), f"torchvision:{name}")
        elif not download:
            warnings.warn(
                f"torchvision:{name} has random weights (no weights file given)", stacklevel=2
            )
        children = dict(model.named_children())
        if "avgpool" in children and "fc" in children:
            keep = []
            for child_name, child in children.items():
                if child_name == "avgpool":
                    break
                keep.append(child)
            self.model: nn.Module = nn.Sequential(*keep)
        elif "features" in children:
            self.model = children["features"]
        else:
            raise ValueError(
                f"torchvision:{name}: no convolutional trunk found (supported: ResNet-like "
                f"models with avgpool/fc, or models with a `features` module)"
            )
        self._setup_input(None, None, _as_size(input_size))
        self.out_channels = self._infer_out_channels()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self.prepare(x))


def load_matching_state(model: nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """Load ``state`` into ``model``, dropping entries the model lacks (classifier heads).

    A ``module.`` prefix (DataParallel/DDP) is removed; when no key matches as is, a
    ``backbone.`` prefix is removed too, so the backbone of a saved
    :class:`~labelfree.nets.heads.EmbeddingNet` loads directly. Raises when a parameter or buffer
    the model has is missing from the file or has another shape, so a wrong file never
    silently leaves random weights.
    """
    own = model.state_dict()
    state = {_strip_prefix(k, "module."): v for k, v in state.items()}
    if not any(k in own for k in state):
        state = {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
    kept = {k: v for k, v in state.items() if k in own}
    missing = [k for k in own if k not in kept]
    wrong = [k for k in kept if tuple(kept[k].shape) != tuple(own[k].shape)]
    if missing or wrong:
        raise ValueError(
            f"{what}: weights file does not match the architecture "
            f"(missing: {missing[:5]}{'...' if len(missing) > 5 else ''}; "
            f"wrong shape: {wrong[:5]}{'...' if len(wrong) > 5 else ''})"
        )
    model.load_state_dict(kept)


def _strip_prefix(key: str, prefix: str) -> str:
    return key[len(prefix) :] if key.startswith(prefix) else key


def build_adapter(name: str, **kw: Any) -> nn.Module:
    """An adapter backbone from ``"hf:<dir or id>"``, ``"timm:<model>"`` or ``"torchvision:<model>"``.

    Keyword arguments go to :class:`HFBackbone`, :class:`TimmBackbone` or
    :class:`TorchvisionBackbone`. ``weights`` is not accepted for ``hf:`` (the folder holds
    the weights).
    """
    prefix, _, rest = name.partition(":")
    if not rest:
        raise ValueError(f"backbone {name!r}: nothing after {prefix + ':'!r}")
    if prefix == "hf":
        if kw.pop("weights", None) is not None:
            raise ValueError("hf: backbones take their weights from the folder/hub id in the name")
        return HFBackbone(rest, **kw)
    if prefix == "timm":
        return TimmBackbone(rest, **kw)
    if prefix == "torchvision":
        return TorchvisionBackbone(rest, **kw)
    raise ValueError(f"unknown adapter prefix {prefix!r}; choose one of hf:, timm:, torchvision:")
