"""Encoders, heads and the SupCon / cross-entropy models."""

import pytest
import torch
from torch import nn
from torchvision.models.resnet import BasicBlock

from pipeline.models import (
    ENCODERS,
    CrossEntropyModel,
    ProjectionHead,
    SupConModel,
    build_ce_model,
    build_encoder,
    build_supcon_model,
)

EXPECTED_OUT_DIM = {
    "resnet18": 512,
    "resnet34": 512,
    "resnet50": 2048,
    "resnet101": 2048,
    "resnet152": 2048,
    "resnet200": 2048,
    "small_resnet": 128,  # default width 32, depth 3 -> 32 * 2**2
}


def test_every_registered_encoder_is_covered():
    assert set(ENCODERS.names()) == set(EXPECTED_OUT_DIM)


@pytest.fixture
def one_thread():
    # Batch-2 forwards through 100-200 tiny layers are bound by OpenMP barriers, which stall for
    # seconds when the 2 CI cores are shared; one thread keeps these tests fast and steady.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("name", sorted(EXPECTED_OUT_DIM))
def test_encoder_builds_for_1_and_3_channels(name, one_thread):
    torch.manual_seed(0)
    for channels in (1, 3):
        encoder = build_encoder(name, in_channels=channels, image_size=16).eval()
        with torch.no_grad():
            r = encoder(torch.randn(2, channels, 16, 16))
        assert encoder.out_dim == EXPECTED_OUT_DIM[name]
        assert r.shape == (2, encoder.out_dim)
        assert torch.isfinite(r).all()


@pytest.mark.parametrize("name", ["small_resnet", "resnet18", "resnet200"])
@pytest.mark.parametrize(("image_size", "cifar"), [(64, True), (65, False)])
def test_stem_follows_image_size(name, image_size, cifar):
    body = build_encoder(name, in_channels=3, image_size=image_size).body
    if cifar:
        assert body.conv1.kernel_size == (3, 3) and body.conv1.stride == (1, 1)
        assert isinstance(body.maxpool, nn.Identity)
    else:
        assert body.conv1.kernel_size == (7, 7) and body.conv1.stride == (2, 2)
        assert isinstance(body.maxpool, nn.MaxPool2d)


def test_standard_stem_runs_on_large_images():
    encoder = build_encoder("small_resnet", in_channels=1, image_size=96).eval()
    with torch.no_grad():
        assert encoder(torch.randn(2, 1, 96, 96)).shape == (2, 128)


def test_small_resnet_param_count_matches_hand_count():
    # width 8, depth 2, 1 block, 1 channel, CIFAR stem; BN has 2 params per channel.
    stem = 1 * 8 * 9 + 2 * 8
    stage1 = 2 * (8 * 8 * 9) + 2 * (2 * 8)
    stage2 = (8 * 16 * 9) + (16 * 16 * 9) + 2 * (2 * 16) + (8 * 16) + 2 * 16  # last: 1x1 shortcut + BN
    encoder = build_encoder("small_resnet", in_channels=1, image_size=28, width=8, depth=2, blocks=1)
    assert sum(p.numel() for p in encoder.parameters()) == stem + stage1 + stage2


@pytest.mark.parametrize(("width", "depth", "blocks"), [(8, 1, 1), (8, 3, 2), (16, 2, 1), (32, 4, 1)])
def test_small_resnet_shape_follows_width_depth_blocks(width, depth, blocks):
    encoder = build_encoder("small_resnet", in_channels=1, image_size=28, width=width, depth=depth, blocks=blocks)
    assert encoder.out_dim == width * 2 ** (depth - 1)
    assert sum(isinstance(m, BasicBlock) for m in encoder.modules()) == depth * blocks
    with torch.no_grad():
        assert encoder.eval()(torch.randn(2, 1, 28, 28)).shape == (2, encoder.out_dim)


def test_small_resnet_params_grow_with_width_depth_blocks():
    def count(**kw):
        encoder = build_encoder("small_resnet", in_channels=1, image_size=28, **kw)
        return sum(p.numel() for p in encoder.parameters())

    base = count(width=16, depth=2, blocks=1)
    assert count(width=32, depth=2, blocks=1) > base
    assert count(width=16, depth=3, blocks=1) > base
    assert count(width=16, depth=2, blocks=2) > base


def test_standard_resnets_ignore_small_resnet_knobs():
    a = build_encoder("resnet18", in_channels=3, image_size=32, width=8, depth=1, blocks=4)
    b = build_encoder("resnet18", in_channels=3, image_size=32)
    assert sum(p.numel() for p in a.parameters()) == sum(p.numel() for p in b.parameters())


def test_unknown_encoder_names_the_registered_ones():
    with pytest.raises(KeyError, match="small_resnet") as info:
        build_encoder("resnet9", in_channels=3, image_size=32)
    assert "resnet50" in str(info.value)


@pytest.mark.parametrize("key", ["in_channels", "width", "depth", "blocks"])
def test_nonpositive_sizes_are_rejected(key):
    kwargs = {"in_channels": 1, "image_size": 28, key: 0}
    with pytest.raises(ValueError, match=key):
        build_encoder("small_resnet", **kwargs)


def test_channels_last_matches_contiguous():
    torch.manual_seed(0)
    encoder = build_encoder("small_resnet", in_channels=3, image_size=32).eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        expected = encoder(x)
        encoder = encoder.to(memory_format=torch.channels_last)
        got = encoder(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", ["mlp", "linear"])
def test_head_output_is_unit_norm(kind):
    torch.manual_seed(0)
    head = ProjectionHead(64, 16, kind=kind)
    z = head(10 * torch.randn(5, 64))
    assert z.shape == (5, 16)
    torch.testing.assert_close(z.norm(dim=-1), torch.ones(5))


def test_mlp_head_hidden_width_is_the_encoder_width():
    linears = [m for m in ProjectionHead(64, 16, kind="mlp").modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(64, 64), (64, 16)]
    linears = [m for m in ProjectionHead(64, 16, kind="linear").modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(64, 16)]


def test_unknown_head_kind_is_rejected():
    with pytest.raises(ValueError, match="mlp, linear"):
        ProjectionHead(64, 16, kind="bn-mlp")


def test_supcon_model_gives_unit_features_and_trains_encoder():
    torch.manual_seed(0)
    model = build_supcon_model(
        "small_resnet", in_channels=1, image_size=28, head="mlp", feat_dim=16, width=8, depth=2, blocks=1
    )
    assert isinstance(model, SupConModel) and model.encoder.out_dim == 16
    z = model(torch.randn(4, 1, 28, 28))
    assert z.shape == (4, 16)
    torch.testing.assert_close(z.norm(dim=-1), torch.ones(4))
    (z[:, 0].sum()).backward()
    assert model.encoder.body.conv1.weight.grad.abs().sum() > 0


def test_ce_model_gives_logits():
    model = build_ce_model("small_resnet", in_channels=3, image_size=32, num_classes=10, width=8, depth=2)
    assert isinstance(model, CrossEntropyModel)
    assert model.eval()(torch.randn(3, 3, 32, 32)).shape == (3, 10)


def test_model_rebuilds_from_its_kwargs():
    # What a checkpoint does: store the kwargs and the state dict, rebuild, load, same outputs.
    kwargs = dict(in_channels=1, image_size=28, head="linear", feat_dim=8, width=8, depth=2, blocks=2)
    torch.manual_seed(0)
    original = build_supcon_model("small_resnet", **kwargs).eval()
    torch.manual_seed(1)
    rebuilt = build_supcon_model("small_resnet", **kwargs).eval()
    rebuilt.load_state_dict(original.state_dict())
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), original(x))
