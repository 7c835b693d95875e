"""What a training step reads: the pixels of a batch's items, as a tensor on the device.

:class:`ImageInputs` is the ``inputs(indices, augment)`` callable the training loop uses for
image-level methods. Reading is split in two so that it can run ahead of the step:
:meth:`ImageInputs.fetch` gathers the uint8 pixels of some items (CPU work: a copy from memory,
or reads from the on-disk store of a streamed collection) and :meth:`ImageInputs.finish`
converts them on the device and augments them. For a streamed collection
(:attr:`ImageSet.streaming`) :meth:`ImageInputs.stream` serves an epoch's batches through a torch
``DataLoader`` (a ``Dataset`` of batches — the epoch's sampler is the method's own ``batches``
—, ``workers`` processes prefetching two batches each, pinned memory on CUDA); an in-memory
collection is indexed directly, which is faster than any copy through a worker.

Augmentation stays in the training process, on torch's generator that the loop re-seeds every
epoch, so a streamed run and an in-memory run see the same pixels and draw the same
augmentations: they train to the same weights.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from labelfree.data.imageset import ImageSet

#: Pixels per inference chunk (512 images of 64 × 64): embedding a collection goes through it
#: in chunks of :func:`inference_batch` images, so that one layer's activations stay near
#: 0.5 GB whatever the image size (at 128 px, 512 images would need over 2 GB per layer).
INFERENCE_PIXELS = 512 * 64 * 64


def inference_batch(image_size: tuple[int, int], cap: int = 512) -> int:
    """Images per no-grad forward chunk at ``image_size``: 512 up to 64 px, fewer above."""
    return max(8, min(cap, INFERENCE_PIXELS // max(1, image_size[0] * image_size[1])))


def _pixels(images: ImageSet, idx: np.ndarray) -> torch.Tensor:
    """The uint8 ``(B, H, W, 3)`` pixels of items ``idx`` of ``images``, on the CPU."""
    return torch.from_numpy(np.ascontiguousarray(images.images[np.asarray(idx)]))


class _Batches(Dataset):
    """Item ``i`` is the uint8 pixels of the ``i``-th batch of indices."""

    def __init__(self, images: ImageSet, batches: Sequence[np.ndarray]) -> None:
        self.images, self.batches = images, batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> torch.Tensor:
        return _pixels(self.images, self.batches[i])


class ImageInputs:
    """``inputs(indices, augment)`` over ``images`` for a network on ``device``."""

    def __init__(
        self,
        images: ImageSet,
        device: torch.device,
        augment: torch.nn.Module | None = None,
        workers: int = 1,
    ) -> None:
        self.images, self.device, self.augment, self.workers = images, device, augment, workers

    def fetch(self, idx: np.ndarray) -> torch.Tensor:
        """The uint8 ``(B, H, W, 3)`` pixels of items ``idx``, on the CPU."""
        return _pixels(self.images, idx)

    def finish(self, pixels: torch.Tensor, augment: bool) -> torch.Tensor:
        """Float ``(B, 3, H, W)`` in [0, 1] on the device, augmented if asked."""
        x = pixels.to(self.device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255.0)
        return self.augment(x) if (augment and self.augment is not None) else x

    def __call__(self, idx: np.ndarray, augment: bool) -> torch.Tensor:
        return self.finish(self.fetch(idx), augment)

    def stream(self, batches: Sequence[np.ndarray], augment: bool) -> Iterator[torch.Tensor]:
        """The inputs of ``batches`` in order; read ahead by a ``DataLoader`` when streaming."""
        if not self.images.streaming or self.workers <= 0:
            for idx in batches:
                yield self(idx, augment)
            return
        loader = DataLoader(
            _Batches(self.images, batches),
            batch_size=None,  # each item already is a batch
            shuffle=False,  # the method's sampler decided the order
            num_workers=self.workers,
            prefetch_factor=2,
            pin_memory=self.device.type == "cuda",
            # its own generator: seeding the workers must not draw from torch's global one,
            # which the augmentation uses (the streamed run would diverge from the in-RAM run)
            generator=torch.Generator().manual_seed(0),
        )
        for pixels in loader:
            yield self.finish(pixels, augment)
