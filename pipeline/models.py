"""Encoders (by name), the projection head, the linear classifier and the two trained models.

An encoder maps images [B, C, H, W] (float, normalised) to pooled features r [B, out_dim], not
normalised. SupCon puts a projection head on r and L2-normalises its output z [B, feat_dim];
after pretraining the head is dropped and a linear classifier is trained on frozen r. The
cross-entropy baseline is the same encoder with a linear layer on top, trained end to end.

`build_supcon_model` / `build_ce_model` take plain keyword values, so a checkpoint stores those
kwargs and rebuilds the model with nothing else.
"""

from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.models.resnet import BasicBlock

from pipeline.registry import Registry

# Inputs up to this side length get the CIFAR stem: a 7x7/2 conv plus max-pool would shrink
# a 32 px image to 8 px before the first stage and throw away most of its detail.
CIFAR_STEM_MAX_SIZE = 64

HEAD_KINDS = ("mlp", "linear")


class Encoder(nn.Module):
    """A backbone that returns pooled features: images [B, C, H, W] -> r [B, out_dim]."""

    def __init__(self, body: nn.Module, out_dim: int) -> None:
        super().__init__()
        self.body = body
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


EncoderFactory = Callable[..., Encoder]
ENCODERS: Registry[EncoderFactory] = Registry("encoder")


def uses_cifar_stem(image_size: int) -> bool:
    """Small images get a 3x3 stride-1 stem without max-pool; larger ones the ImageNet stem."""
    return image_size <= CIFAR_STEM_MAX_SIZE


def _stem_conv(in_channels: int, out_channels: int, cifar: bool) -> nn.Conv2d:
    """First conv: 3x3 stride 1 (CIFAR) or 7x7 stride 2 (ImageNet), He-initialised like torchvision."""
    if cifar:
        conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1, bias=False)
    else:
        conv = nn.Conv2d(in_channels, out_channels, kernel_size=7, stride=2, padding=3, bias=False)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    return conv


def _fit_stem(net: nn.Module, in_channels: int, image_size: int) -> None:
    """Swap a ResNet's `conv1` (64 filters) for one matching the input; drop the max-pool if CIFAR."""
    cifar = uses_cifar_stem(image_size)
    net.conv1 = _stem_conv(in_channels, net.conv1.out_channels, cifar)
    if cifar:
        net.maxpool = nn.Identity()


def _torchvision_resnet(name: str, *, in_channels: int, image_size: int, **_unused: int) -> Encoder:
    """torchvision ResNet (random init); the classifier `fc` is replaced by the identity."""
    net = getattr(torchvision.models, name)(weights=None)
    _fit_stem(net, in_channels, image_size)
    out_dim = net.fc.in_features
    net.fc = nn.Identity()
    return Encoder(net, out_dim)


for _name in ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152"):
    ENCODERS.register(_name)(partial(_torchvision_resnet, _name))
del _name


@ENCODERS.register("resnet200")
def _resnet200(*, in_channels: int, image_size: int, **_unused: int) -> Encoder:
    """ResNet-200 from timm (torchvision has none); num_classes=0 makes it return pooled features."""
    import timm  # imported here: timm adds most of a second to every `import pipeline.models`

    net = timm.create_model("resnet200", pretrained=False, num_classes=0, in_chans=in_channels)
    _fit_stem(net, in_channels, image_size)
    return Encoder(net, net.num_features)


class SmallResNet(nn.Module):
    """A lean ResNet for CPU runs: stem, `depth` stages of `blocks` BasicBlocks, global pool.

    Stage i has width * 2**i channels; stages after the first halve the resolution.
    images [B, C, H, W] -> features [B, width * 2**(depth - 1)].
    """

    def __init__(self, in_channels: int, image_size: int, width: int, depth: int, blocks: int) -> None:
        super().__init__()
        cifar = uses_cifar_stem(image_size)
        self.conv1 = _stem_conv(in_channels, width, cifar)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.Identity() if cifar else nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        stages, channels = [], width
        for i in range(depth):
            planes = width * 2**i
            stages.append(_stage(channels, planes, blocks, stride=1 if i == 0 else 2))
            channels = planes
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_dim = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return torch.flatten(self.pool(self.stages(x)), 1)


def _stage(in_planes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    """`blocks` BasicBlocks; the first changes width/resolution through a 1x1 projection shortcut."""
    downsample = None
    if stride != 1 or in_planes != planes:
        downsample = nn.Sequential(
            nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(planes)
        )
    stage = nn.Sequential(
        BasicBlock(in_planes, planes, stride=stride, downsample=downsample),
        *(BasicBlock(planes, planes) for _ in range(blocks - 1)),
    )
    for module in stage.modules():
        if isinstance(module, nn.Conv2d):  # He init as torchvision's ResNet; PyTorch's default is weaker
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    return stage


@ENCODERS.register("small_resnet")
def _small_resnet(*, in_channels: int, image_size: int, width: int, depth: int, blocks: int) -> Encoder:
    net = SmallResNet(in_channels, image_size, width, depth, blocks)
    return Encoder(net, net.out_dim)


def build_encoder(
    name: str, *, in_channels: int, image_size: int, width: int = 32, depth: int = 3, blocks: int = 1
) -> Encoder:
    """Build encoder `name` (random init) for [B, in_channels, image_size, image_size] inputs.

    `width` (first-stage channels), `depth` (stages) and `blocks` (BasicBlocks per stage) shape
    only `small_resnet`; the standard ResNets have fixed widths and ignore them. Model and input
    may both be converted to channels_last (the faster layout for convs on CPU and GPU).
    Unknown names raise KeyError listing the registered encoders.
    """
    factory = ENCODERS.get(name)
    for key, value in (("in_channels", in_channels), ("image_size", image_size), ("width", width),
                       ("depth", depth), ("blocks", blocks)):
        if value < 1:
            raise ValueError(f"{key} = {value!r} is not allowed: expected an integer >= 1")
    return factory(in_channels=in_channels, image_size=image_size, width=width, depth=depth, blocks=blocks)


class ProjectionHead(nn.Module):
    """r [B, in_dim] -> z [B, out_dim], L2-normalised.

    "mlp": Linear(in, in) -> ReLU -> Linear(in, out), the hidden width equal to the encoder's as
    in the paper (2048 for ResNet-50); "linear": a single Linear(in, out).
    """

    def __init__(self, in_dim: int, out_dim: int = 128, kind: str = "mlp") -> None:
        super().__init__()
        if kind not in HEAD_KINDS:
            raise ValueError(f"head kind {kind!r} is not allowed: expected one of {', '.join(HEAD_KINDS)}")
        if kind == "mlp":
            self.net = nn.Sequential(nn.Linear(in_dim, in_dim), nn.ReLU(inplace=True), nn.Linear(in_dim, out_dim))
        else:
            self.net = nn.Linear(in_dim, out_dim)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(r), dim=-1)


class LinearClassifier(nn.Module):
    """features [B, in_dim] -> logits [B, num_classes]."""

    def __init__(self, in_dim: int, num_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_dim, num_classes)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        return self.fc(r)


class SupConModel(nn.Module):
    """Encoder + projection head: images [B, C, H, W] -> z [B, feat_dim], unit norm.

    The linear stage uses `.encoder` alone and discards the head.
    """

    def __init__(self, encoder: Encoder, head: ProjectionHead) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


class CrossEntropyModel(nn.Module):
    """Encoder + linear layer trained end to end: images [B, C, H, W] -> logits [B, num_classes]."""

    def __init__(self, encoder: Encoder, num_classes: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.classifier = LinearClassifier(encoder.out_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.encoder(x))


def build_supcon_model(
    encoder_name: str,
    *,
    in_channels: int,
    image_size: int,
    head: str = "mlp",
    feat_dim: int = 128,
    width: int = 32,
    depth: int = 3,
    blocks: int = 1,
) -> SupConModel:
    """SupConModel from plain values (what a checkpoint stores to rebuild it)."""
    encoder = build_encoder(
        encoder_name, in_channels=in_channels, image_size=image_size, width=width, depth=depth, blocks=blocks
    )
    return SupConModel(encoder, ProjectionHead(encoder.out_dim, feat_dim, kind=head))


def build_ce_model(
    encoder_name: str,
    *,
    in_channels: int,
    image_size: int,
    num_classes: int,
    width: int = 32,
    depth: int = 3,
    blocks: int = 1,
) -> CrossEntropyModel:
    """CrossEntropyModel from plain values (what a checkpoint stores to rebuild it)."""
    encoder = build_encoder(
        encoder_name, in_channels=in_channels, image_size=image_size, width=width, depth=depth, blocks=blocks
    )
    return CrossEntropyModel(encoder, num_classes)
