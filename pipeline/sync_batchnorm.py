"""BatchNorm over the global batch under torchrun (model.sync_batchnorm).

SupCon puts both views of an image on one process, so per-process BatchNorm statistics see one
process's images only; the ImageNet presets normalise over every process's batch instead. On
GPUs that is torch's SyncBatchNorm; on the CPU (gloo) torch's layer raises and DDP refuses it, so
CpuSyncBatchNorm computes the same statistics with an autograd-aware gather (pipeline/dist.py).
"""

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from pipeline.dist import gather_with_grad, is_distributed, world_size


def sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """The model with BatchNorm over the global batch (every rank's share) when distributed;
    itself in one process. Call before DDP wraps the model (and before torch.compile).

    On an accelerator: torch.nn.SyncBatchNorm.convert_sync_batchnorm (layers replaced in place,
    so references to submodules such as an encoder see them). On the CPU (gloo) torch's layer
    raises, and DDP refuses it: every BatchNorm becomes a CpuSyncBatchNorm instead, in place.
    """
    if not is_distributed():
        return model
    if device.type != "cpu":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for module in model.modules():
        if isinstance(module, _BatchNorm):
            module.__class__ = CpuSyncBatchNorm  # the same state and checkpoint keys; only forward differs
    return model


class CpuSyncBatchNorm(_BatchNorm):
    """BatchNorm over every rank's batch, for CPU tensors under gloo (what nn.SyncBatchNorm does on GPUs).

    Evaluation, and training in one process, are plain batch norm. input: [B, C, *].
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not self.training or world_size() == 1:
            return super().forward(input)
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.track_running_stats:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # cumulative average, as nn.BatchNorm does
                momentum = 1.0 / float(self.num_batches_tracked)
        return global_batch_norm(input, self.weight, self.bias, self.running_mean, self.running_var, eps=self.eps, momentum=momentum)


def global_batch_norm(
    x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, running_mean: torch.Tensor | None, running_var: torch.Tensor | None,
    *, eps: float, momentum: float,
) -> torch.Tensor:  # fmt: skip
    """F.batch_norm in training mode over every rank's x together. x: [B, C, *], B this rank's share.

    Each rank's per-channel (count, mean, M2) is gathered with gradient (so the statistics pass
    every rank's gradient back to the inputs that made them) and combined with Chan et al.'s
    parallel variance, which stays accurate where a sum of squares would cancel.
    """
    dims = [0, *range(2, x.ndim)]
    mean = x.mean(dims)  # [C]
    m2 = (x - _per_channel(mean, x)).square().sum(dims)  # [C]
    count = x.new_full((1,), x.numel() / x.shape[1])
    stats = gather_with_grad(torch.cat([count, mean, m2]).unsqueeze(0))  # [W, 1 + 2C]
    counts, means, m2s = stats[:, :1].detach(), *stats[:, 1:].chunk(2, dim=1)  # [W, 1], [W, C], [W, C]
    total = counts.sum()
    global_mean = (counts * means).sum(0) / total
    var = (m2s + counts * (means - global_mean).square()).sum(0) / total  # biased, as batch norm normalises
    if running_mean is not None and running_var is not None:
        with torch.no_grad():  # the running variance is unbiased, as in nn.BatchNorm
            running_mean.lerp_(global_mean, momentum)
            running_var.lerp_(var * total / (total - 1), momentum)
    out = (x - _per_channel(global_mean, x)) * _per_channel(torch.rsqrt(var + eps), x)
    if weight is not None:
        out = out * _per_channel(weight, x)
    return out if bias is None else out + _per_channel(bias, x)


def _per_channel(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """[C] -> [1, C, 1, ...], broadcastable against like [B, C, *]."""
    return values.view(1, -1, *[1] * (like.ndim - 2))
