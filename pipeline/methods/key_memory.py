"""The momentum-key queue in SupCon training (`supcon.memory`, issue 21).

One module holds the two pieces of state the queue adds (pipeline/memory_queue.py): the FIFO of
earlier keys and the momentum copy of encoder + head that embeds them. Being one nn.Module, its
state_dict is what the checkpoint stores beside the model, so a resume is bit-exact.

A training step with the queue on, in order:
1. the loss contrasts the batch's online embeddings (with gradient) with the batch and with the
   queue as it stood before this step (`pipeline.memory_loss`);
2. the key encoder embeds the same augmented views, with no gradient; under torchrun every
   rank's keys are gathered in rank order, so every rank enqueues the same keys and holds the
   same queue; they are enqueued after the loss, so an anchor never meets its own key;
3. after the optimizer step the key encoder moves towards the online model (`after_step`).
"""

import torch
from torch import nn

from pipeline import dist
from pipeline.memory_loss import supcon_loss_with_memory
from pipeline.memory_queue import KeyQueue, MomentumEncoder


class KeyMemory(nn.Module):
    def __init__(self, online: nn.Module, *, size: int, momentum: float, dim: int) -> None:
        super().__init__()
        self.queue = KeyQueue(size, dim)
        self.key_encoder = MomentumEncoder(online, momentum)

    def loss(self, features: torch.Tensor, labels: torch.Tensor | None, inputs: torch.Tensor, **options) -> torch.Tensor:
        """The SupCon loss of features [B, V, D] (the online embeddings of `inputs`, [B*V, ...]
        image-major) against batch and queue; then the batch's keys are enqueued. labels None: SimCLR."""
        keys, key_labels = self.queue.contents()
        loss = supcon_loss_with_memory(features, labels, keys, None if labels is None else key_labels, **options)
        self._enqueue(self.key_encoder.keys(inputs), labels, views=features.shape[1])
        return loss

    def after_step(self, online: nn.Module) -> None:
        """The EMA update of the key encoder, after the optimizer stepped the online model."""
        self.key_encoder.update(online)

    def _enqueue(self, keys: torch.Tensor, labels: torch.Tensor | None, *, views: int) -> None:
        # SimCLR's keys are negatives of every anchor: their stored labels are never read.
        key_labels = torch.zeros(len(keys), dtype=torch.long, device=keys.device) if labels is None else labels.repeat_interleave(views)
        if dist.world_size() > 1:
            keys, key_labels = dist.gather_no_grad(keys.float()), dist.gather_no_grad(key_labels)
        self.queue.enqueue(keys.to(self.queue.stored_keys.device), key_labels.to(self.queue.stored_keys.device))


def queue_size(requested: int, num_items: int) -> int:
    """The queue's size: the requested one, capped at the training images (a 1% cell has fewer
    images than a queue sized for the whole split: more keys would repeat images at older weights)."""
    return min(requested, num_items)
