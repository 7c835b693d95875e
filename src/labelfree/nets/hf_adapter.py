"""The ``hf:`` adapter: a transformers vision model as a feature-map backbone
(:mod:`labelfree.nets.adapters`)."""

from __future__ import annotations

import json
import os
from typing import Any

import torch

from labelfree.nets.adapter_base import _AdapterBase, _as_size, _import_optional, tokens_to_map

__all__ = ["HFBackbone"]


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
