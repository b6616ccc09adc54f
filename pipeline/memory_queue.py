"""The two pieces of state a momentum-key memory adds to SupCon training (issue 21): a FIFO queue of
past keys with their labels, and the momentum (EMA) copy of encoder + head that embeds them.

Order within a step, as `pipeline.memory_loss.supcon_loss_with_memory` expects: the loss contrasts
the batch with the queue as it stood before the step; then the batch's keys (embedded by the
momentum copy, no gradient) are enqueued, so an anchor never meets its own key; after the
optimizer step the momentum copy moves towards the online model. Both are nn.Modules whose
buffers hold all their state, so a checkpoint's state_dict resumes them exactly.
"""

import copy

import torch
from torch import nn


class KeyQueue(nn.Module):
    """The newest `size` keys [D] and labels, oldest first; size 0 holds nothing (the queue off)."""

    def __init__(self, size: int, dim: int) -> None:
        super().__init__()
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ValueError(f"queue size must be an int >= 0, got {size!r}")
        self.size = size
        self.register_buffer("stored_keys", torch.zeros(size, dim))
        self.register_buffer("stored_labels", torch.zeros(size, dtype=torch.long))
        self.register_buffer("filled", torch.zeros((), dtype=torch.long))  # entries held, <= size
        self.register_buffer("next_slot", torch.zeros((), dtype=torch.long))  # where the next key goes

    def contents(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(keys [M, D], labels [M]), oldest first; M = min(keys enqueued so far, size)."""
        filled, start = int(self.filled), int(self.next_slot)
        order = (torch.arange(filled, device=self.stored_keys.device) + (start if filled == self.size else 0)) % max(self.size, 1)
        return self.stored_keys[order], self.stored_labels[order]

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor, labels: torch.Tensor) -> None:
        """Append a batch's keys [n, D] and labels [n]; the oldest go when full (of a batch larger
        than the queue, only its last `size` stay)."""
        if self.size == 0:
            return
        keys, labels = keys.detach()[-self.size :], labels.detach()[-self.size :]
        slots = (int(self.next_slot) + torch.arange(len(keys), device=keys.device)) % self.size
        self.stored_keys[slots] = keys.to(self.stored_keys.dtype)
        self.stored_labels[slots] = labels.to(torch.long)
        self.next_slot.fill_((int(self.next_slot) + len(keys)) % self.size)
        self.filled.fill_(min(self.size, int(self.filled) + len(keys)))


class MomentumEncoder(nn.Module):
    """A copy of the online model (encoder + head) that follows it by EMA and embeds the keys.

    update(): each parameter p_k <- m * p_k + (1 - m) * p_q after the optimizer step; buffers
    (BatchNorm's running statistics) are copied from the online model. keys(): the copy in train
    mode, so its BatchNorm normalises the batch by the batch's own statistics exactly as the
    online forward of the same step does (the running statistics it updates are overwritten by
    the next update()); no gradient. momentum 0: the keys are the online model's embeddings,
    detached.
    """

    def __init__(self, online: nn.Module, momentum: float) -> None:
        super().__init__()
        if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) or not 0 <= momentum < 1:
            raise ValueError(f"momentum must be a number in [0, 1), got {momentum!r}")
        self.momentum = float(momentum)
        self.model = copy.deepcopy(online)
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)

    @torch.no_grad()
    def update(self, online: nn.Module) -> None:
        for key_param, online_param in zip(self.model.parameters(), online.parameters(), strict=True):
            key_param.mul_(self.momentum).add_(online_param.detach(), alpha=1 - self.momentum)
        for key_buffer, online_buffer in zip(self.model.buffers(), online.buffers(), strict=True):
            key_buffer.copy_(online_buffer)

    @torch.no_grad()
    def keys(self, inputs: torch.Tensor) -> torch.Tensor:
        self.model.train()
        return self.model(inputs).detach()
