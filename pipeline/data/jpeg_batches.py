"""Training batches of random resized crops taken from the full decoded images of an ImageFiles split.

Two decoders give the same crops for the same seed:
- "workers": DataLoader workers read, decode (libjpeg-turbo), crop and resize; the batch arrives as
  uint8 [B, V, C, S, S] on the CPU.
- "device": workers only read the bytes and the header size and draw the boxes; this process decodes
  the whole batch on `device` (nvjpeg on CUDA) and crops there, so the CPUs never decode.
Flip and colour jitter are not applied here: the training loop applies them batched on the device.
"""

from collections.abc import Iterator
from typing import Literal, NamedTuple

import numpy as np
import torch
from torch import Tensor

from pipeline.batches import batch_indices, steps_per_epoch
from pipeline.data.image_files import ImageFiles, worker_batches
from pipeline.data.jpeg_decode import (
    crop_boxes,
    decode_batch,
    decode_file,
    read_encoded,
    resized_crop,
    size_of_encoded,
)
from pipeline.errors import UserError

Decoder = Literal["workers", "device"]
_CPU = torch.device("cpu")


def default_decoder(device: torch.device) -> str:
    """nvjpeg on CUDA frees the CPUs (often 2 per GPU) from decoding; elsewhere DataLoader workers decode."""
    return "device" if torch.device(device).type == "cuda" else "workers"


def crop_generator(seed: int, epoch: int, rank: int, step: int) -> torch.Generator:
    """The generator of one batch's crop boxes, a function of (seed, epoch, rank, step) alone.

    Whichever worker loads a step, and in a resumed epoch too, the boxes are the same. torch keeps
    only 32 bits of a seed, so the four numbers are hashed into them (numpy's SeedSequence) rather
    than combined linearly, which would make distant steps alias.
    """
    state = np.random.SeedSequence([seed % 2**64, epoch, rank, step]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


def crop_views(image: Tensor, boxes: Tensor, size: int) -> Tensor:
    """uint8 [C, H, W] and boxes [V, 4] -> uint8 [V, C, size, size], on the image's device."""
    return torch.stack([resized_crop(image, box.tolist(), size) for box in boxes])


class _Encoded(NamedTuple):
    """One batch as the "device" decoder's workers hand it over: bytes and boxes, no pixels."""

    data: list[Tensor]  # encoded file bytes, uint8 [n_i] each
    sizes: Tensor  # int64 [B, 2] (H, W) from the headers
    boxes: Tensor  # int64 [B, V, 4] (top, left, h, w)
    paths: list[str]  # for errors
    labels: Tensor  # int64 [B]


class _CropLoad:
    """Step -> that step's batch, in a worker; module-level so worker processes can unpickle it."""

    def __init__(self, source: "JpegBatches", steps: list[Tensor], epoch: int, rank: int) -> None:
        self.files, self.labels, self.steps = source.files, source.labels, steps
        self.seed, self.epoch, self.rank = source.seed, epoch, rank
        self.views, self.crop_scale, self.decoded = source.views or 1, source.crop_scale, source.decoder == "workers"

    def __call__(self, step: int) -> tuple[Tensor, Tensor] | _Encoded:
        rows = self.steps[step].tolist()
        generator = crop_generator(self.seed, self.epoch, self.rank, step)
        return self._crops(rows, generator) if self.decoded else self._encoded(rows, generator)

    def _boxes(self, generator: torch.Generator, height: int, width: int) -> Tensor:
        return crop_boxes(generator, height, width, self.views, self.crop_scale)

    def _crops(self, rows: list[int], generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """uint8 [B, V, C, S, S] and labels [B]: decode, draw boxes from the image's size, crop."""
        crops = []
        for row in rows:
            image = decode_file(self.files.file(row), self.files.channels)
            boxes = self._boxes(generator, image.shape[-2], image.shape[-1])
            crops.append(crop_views(image, boxes, self.files.image_size))
        return torch.stack(crops), self.labels[rows]

    def _encoded(self, rows: list[int], generator: torch.Generator) -> _Encoded:
        """Bytes, header sizes and boxes, drawn in the same order as `_crops` draws them."""
        paths = [self.files.file(row) for row in rows]
        data = [read_encoded(path) for path in paths]
        sizes = torch.tensor([size_of_encoded(d, path) for d, path in zip(data, paths)], dtype=torch.int64)
        boxes = torch.stack([self._boxes(generator, h, w) for h, w in sizes.tolist()])
        return _Encoded(data, sizes, boxes, [str(p) for p in paths], self.labels[rows])


def _device_crops(batch: _Encoded, channels: int, size: int, device: torch.device) -> Tensor:
    """Decode and crop on `device`: uint8 [B, V, C, S, S]."""
    images = decode_batch(batch.data, batch.paths, channels, device)
    crops = []
    for image, (h, w), boxes, path in zip(images, batch.sizes.tolist(), batch.boxes, batch.paths):
        if tuple(image.shape[-2:]) != (h, w):  # the boxes were drawn for the header's size
            raise UserError(f"{path}: cannot decode image (header says {h}x{w}, pixels {tuple(image.shape[-2:])})")
        crops.append(crop_views(image, boxes, size))
    return torch.stack(crops)


class JpegBatches:
    """Implements pipeline.batches.BatchSource (read its docstring) for ImageFiles.

    Yields (images, labels): images uint8 [B, V, C, S, S] (V independent random resized crops of the
    full image) when `views` is an int, [B, C, S, S] when it is None; labels int64 [B] on the CPU.
    Images are on the CPU for the "workers" decoder, on `device` for "device".
    """

    def __init__(
        self,
        files: ImageFiles,
        labels: Tensor,
        *,
        batch_size: int,
        seed: int,
        views: int | None,
        crop_scale: tuple[float, float],
        workers: int = 0,
        prefetch: int = 2,
        pin_memory: bool = False,
        decoder: Decoder = "workers",
        device: torch.device = _CPU,
    ) -> None:
        if len(labels) != len(files):
            raise ValueError(f"{len(labels)} labels for {len(files)} images")
        if decoder not in ("workers", "device"):
            raise ValueError(f"decoder must be 'workers' or 'device', got {decoder!r}")
        if views is not None and views < 1:
            raise ValueError(f"views must be None or at least 1, got {views}")
        self.files, self.labels, self.batch_size, self.seed = files, labels, batch_size, seed
        self.views, self.crop_scale, self.decoder, self.device = views, crop_scale, decoder, torch.device(device)
        self.workers, self.prefetch, self.pin_memory = workers, prefetch, pin_memory

    def __len__(self) -> int:
        return len(self.files)

    def steps_per_epoch(self, world_size: int) -> int:
        return steps_per_epoch(len(self), self.batch_size, world_size)

    def epoch(self, epoch: int, *, rank: int, world_size: int) -> Iterator[tuple[Tensor, Tensor]]:
        order = batch_indices(len(self), self.batch_size, seed=self.seed, epoch=epoch, rank=rank, world_size=world_size)
        steps = list(order)
        load = _CropLoad(self, steps, epoch, rank)
        batches = worker_batches(
            load, len(steps), workers=self.workers, prefetch=self.prefetch, pin_memory=self.pin_memory
        )
        for batch in batches:
            if self.decoder == "device":
                batch = _device_crops(batch, self.files.channels, self.files.image_size, self.device), batch.labels
            images, labels = batch
            yield (images if self.views is not None else images[:, 0]), labels
