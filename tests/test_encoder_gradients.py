"""Encoder gradients in the layout and precision the pipeline trains with, against float64.

On AVX2-only CPUs oneDNN's channels_last kernels once crashed or returned gradients off by up
to 150% (issue 7); "it runs" proved nothing. Here every registered encoder takes one backward
pass the way the engine runs it on this machine (`place_model`, `to_input`, `autocast`), and its
parameter gradients are compared with a float64 copy. The bar is plain float32 (contiguous,
oneDNN off) on the same input: the pipeline's error must stay within 10x of it. CI runs this
file natively and again with ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2.

ReLUs are swapped for SiLU in all three copies: a ReLU turns a 1e-7 rounding difference at a
pre-activation near zero into a whole flipped gradient term, so with ReLU the float32-vs-float64
error measures where the kinks fall (1e-3 to 0.3 from input to input), not kernel accuracy.
The convolutions, batch norms and pools, the kernels under test, are unchanged.
"""

import copy
import statistics

import pytest
import torch
from torch import nn

from pipeline.device import autocast, place_model, to_input
from pipeline.models import ENCODERS, build_encoder

CPU = torch.device("cpu")
SEEDS = (0, 1, 2)
TOLERANCE = 10  # x plain float32's error, as issue 7 asks
NEGLIGIBLE = 1e-6

# (encoder, in_channels, image_size, width, batch): tiny widths, 1 and 3 channels, CIFAR and
# ImageNet stems (<= 64 px gets the CIFAR stem), the default model (width 16, 28 px, batch 64).
SMALL = [
    ("small_resnet", 1, 28, 16, 64),
    ("small_resnet", 1, 28, 4, 32),
    ("small_resnet", 1, 28, 2, 32),
    ("small_resnet", 3, 32, 8, 16),
    ("small_resnet", 1, 72, 4, 8),
    ("small_resnet", 3, 72, 8, 4),
    ("resnet18", 1, 32, 0, 4),
    ("resnet18", 3, 72, 0, 4),
    ("resnet50", 3, 72, 0, 2),
]
# Every other registered encoder once: CIFAR stem at 16 px (2x2 in the last stage) keeps the
# float64 pass of ResNet-152/200 to seconds.
OTHERS = [(name, 3, 16, 0, 4) for name in ENCODERS.names() if name not in {c[0] for c in SMALL}]


def _smooth(module: nn.Module) -> nn.Module:
    for name, child in module.named_children():
        if isinstance(child, nn.ReLU):
            setattr(module, name, nn.SiLU())
        else:
            _smooth(child)
    return module


def _relative_error(model: nn.Module, reference: nn.Module) -> float:
    """max over parameter tensors of max|g - g64| / max|g64|.

    Tensors whose float64 gradient is nil next to the model's largest (below NEGLIGIBLE of it)
    carry no signal and are skipped: timm zero-initialises each block's last BN, so the branch
    before it gets exactly zero, and the biases of those BNs get sums that cancel to 1e-11.
    """
    pairs = list(zip(model.named_parameters(), reference.named_parameters(), strict=True))
    largest = max(q.grad.abs().max().item() for _, (_, q) in pairs)
    worst = 0.0
    for (name, p), (_, q) in pairs:
        scale = q.grad.abs().max().item()
        if scale <= NEGLIGIBLE * largest:
            continue
        worst = max(worst, (p.grad.double() - q.grad).abs().max().item() / scale)
    return worst


def _backward(model: nn.Module, images: torch.Tensor, weights: torch.Tensor) -> None:
    (model(images).double() * weights).sum().backward()


def gradient_errors(name: str, channels: int, size: int, width: int, batch: int, seed: int) -> tuple[float, float]:
    """(pipeline's error, plain float32's error) against float64 for one input."""
    torch.manual_seed(seed)
    encoder = _smooth(build_encoder(name, in_channels=channels, image_size=size, width=max(width, 1)))
    images = torch.randn(batch, channels, size, size)
    reference, plain = copy.deepcopy(encoder).double(), copy.deepcopy(encoder)
    out_dim = encoder.out_dim
    weights = torch.randn(batch, out_dim, generator=torch.Generator().manual_seed(seed + 100), dtype=torch.float64)
    _backward(reference, images.double(), weights)
    with torch.backends.mkldnn.flags(enabled=False):
        _backward(plain, images, weights)
    placed = place_model(encoder, CPU)
    with autocast(CPU):
        _backward(placed, to_input(images, CPU), weights)
    return _relative_error(encoder, reference), _relative_error(plain, reference)


@pytest.mark.parametrize("config", SMALL + OTHERS, ids=lambda c: "-".join(map(str, c)))
def test_encoder_gradients_are_as_accurate_as_plain_float32(config):
    errors = [gradient_errors(*config, seed=seed) for seed in SEEDS]
    ours = statistics.median(e[0] for e in errors)
    plain = statistics.median(e[1] for e in errors)
    # A well-conditioned comparison first: otherwise the ratio below would mean nothing.
    assert plain < 1e-3, f"plain float32 is already off by {plain:.1e}; the check is ill-conditioned"
    assert ours <= TOLERANCE * plain, f"pipeline gradients off by {ours:.1e}, plain float32 by {plain:.1e}"
