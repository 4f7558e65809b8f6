"""The harnet backbone, its heads and the strict checkpoint loader (accelstore.models.harnet)."""

import math

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from accelstore.models.harnet import (
    HARNET_STAGES,
    CheckpointMismatchError,
    HarnetClassifier,
    PretextModel,
    build_backbone,
    load_pretrained,
    pretext_loss,
)
from accelstore.models.variants import BACKBONE_FOR_WINDOW_S

NARROW = 1 / 8  # width for tests where the published size is not the point
PUBLISHED_PARAMETERS = 10_457_408  # harnet10 and harnet30, Yuan et al. 2024


@pytest.fixture(scope="module")
def harnet10() -> nn.Module:
    torch.manual_seed(0)
    return build_backbone("harnet10")


def n_trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def backbone_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items() if k.startswith("feature_extractor.")}


def assert_same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def trained_looking(model: nn.Module, seed: int) -> nn.Module:
    """Perturb every backbone tensor (running stats included) so that a load is detectable."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for value in model.state_dict().values():
            if value.is_floating_point():
                value.add_(torch.rand(value.shape, generator=generator))
    return model


def test_published_parameter_count(harnet10):
    assert n_trainable(harnet10) == PUBLISHED_PARAMETERS
    assert n_trainable(build_backbone("harnet30")) == PUBLISHED_PARAMETERS


@pytest.mark.parametrize("seconds, features", [(10, 1024), (30, 1024), (5, 512)])
def test_window_shrinks_to_one_time_step(seconds, features, harnet10):
    backbone = harnet10 if seconds == 10 else build_backbone(BACKBONE_FOR_WINDOW_S[seconds])
    x = torch.randn(2, 3, 30 * seconds)  # 30 Hz
    with torch.no_grad():
        assert backbone.feature_extractor(x).shape == (2, features, 1)
        assert backbone(x).shape == (2, features)
    assert backbone.feature_dim == features


def test_the_torch_free_window_table_names_every_backbone():
    assert sorted(BACKBONE_FOR_WINDOW_S.values()) == sorted(HARNET_STAGES)  # test_window_shrinks_to_one_time_step: each fits its window


def test_wrong_window_length_is_refused():
    backbone = build_backbone("harnet10", NARROW)
    with pytest.raises(ValueError, match=r"300|time"):
        backbone(torch.randn(1, 3, 900))


def test_narrow_width_scales_features():
    backbone = build_backbone("harnet10", NARROW)
    assert backbone.feature_dim == 1024 // 8
    assert backbone(torch.randn(2, 3, 300)).shape == (2, 128)
    assert build_backbone("harnet5", NARROW)(torch.randn(2, 3, 150)).shape == (2, 64)
    assert n_trainable(backbone) < PUBLISHED_PARAMETERS / 50  # ~ width², not width


def test_state_dict_keys_follow_the_published_names(harnet10):
    keys = harnet10.state_dict().keys()
    for key in ["feature_extractor.layer1.0.weight",  # stage conv
                "feature_extractor.layer1.1.bn1.weight", "feature_extractor.layer1.2.conv2.weight",
                "feature_extractor.layer1.3.running_var", "feature_extractor.layer1.5.kernel",
                "feature_extractor.layer5.1.weight", "feature_extractor.layer5.3.kernel"]:
        assert key in keys
    assert all(m.bias is None for m in harnet10.modules() if isinstance(m, nn.Conv1d))
    parameters = dict(harnet10.named_parameters())
    buffers = dict(harnet10.named_buffers())
    assert "feature_extractor.layer5.3.kernel" in buffers
    assert not any(k.endswith("kernel") for k in parameters)


@pytest.mark.parametrize("name, layer, taps", [
    ("harnet10", "layer1", [1, 3, 3, 1]),  # factor 2, order 2: binomial
    ("harnet10", "layer3", [1, 2, 3, 4, 5, 4, 3, 2, 1]),  # factor 5, order 1: triangle
    ("harnet30", "layer1", [1, 2, 3, 2, 1]),  # factor 3, order 1
    ("harnet30", "layer5", [1, 1, 1, 1]),  # factor 4, order 0: average pooling
])
def test_blur_kernel_is_the_normalised_repeated_box(name, layer, taps):
    stage = getattr(build_backbone(name, NARROW).feature_extractor, layer)
    kernel = stage[-1].kernel
    channels = stage[0].out_channels
    expected = torch.tensor(taps, dtype=torch.float32) / sum(taps)
    assert kernel.shape == (channels, 1, len(taps))
    torch.testing.assert_close(kernel, expected.expand(channels, 1, -1))


def test_kaiming_fan_out_init(harnet10):
    classifier = HarnetClassifier("harnet10", n_classes=4, width=NARROW)
    layers = [m for m in harnet10.modules() if isinstance(m, nn.Conv1d)] + [classifier.classifier.linear1]
    checked = 0
    for layer in layers:
        weight = layer.weight.detach()
        if weight.numel() < 10_000:  # too few samples to estimate a std to 5 %
            continue
        fan_out = weight.shape[0] * math.prod(weight.shape[2:])
        kaiming_std = math.sqrt(2 / fan_out)
        assert weight.std().item() == pytest.approx(kaiming_std, rel=0.05)
        assert abs(weight.mean().item()) < 0.05 * kaiming_std
        checked += 1
    assert checked > 20
    # the stage-entry convs change the width, so fan_out and fan_in differ there
    entry = harnet10.feature_extractor.layer2[0].weight  # (128, 64, 5)
    assert entry.std().item() == pytest.approx(math.sqrt(2 / (128 * 5)), rel=0.05)
    for module in harnet10.modules():
        if isinstance(module, nn.BatchNorm1d):
            assert torch.all(module.weight == 1) and torch.all(module.bias == 0)


def test_circular_padding_makes_the_stage_shift_equivariant():
    torch.manual_seed(0)
    stage = build_backbone("harnet10", NARROW).feature_extractor.layer1
    trained_looking(stage, seed=1)  # non-trivial BN statistics
    before_downsampling = stage[:-1].eval()
    x = torch.randn(2, 3, 300)
    with torch.no_grad():
        for shift in (1, 7, 150):
            shifted = before_downsampling(torch.roll(x, shift, dims=-1))
            torch.testing.assert_close(shifted, torch.roll(before_downsampling(x), shift, dims=-1))


def test_pretext_model_heads_and_loss():
    model = PretextModel("harnet10", NARROW, tasks=("aot", "time_w"))
    keys = model.state_dict().keys()
    assert {"aot_h.linear1.weight", "time_w_h.linear1.weight"} <= keys
    assert "permute_h.linear1.weight" not in keys
    assert model.aot_h.linear1.weight.shape == (2, model.feature_dim)

    x = torch.randn(4, 3, 300)
    labels = {"aot": torch.tensor([0, 1, 1, 0]), "time_w": torch.tensor([1, 1, 0, 0]),
              "permute": torch.tensor([5, 5, 5, 5])}  # not enabled: must be ignored
    logits = model(x)
    assert logits.keys() == {"aot", "time_w"}
    assert all(v.shape == (4, 2) for v in logits.values())
    expected = (F.cross_entropy(logits["aot"], labels["aot"])
                + F.cross_entropy(logits["time_w"], labels["time_w"])) / 2
    torch.testing.assert_close(pretext_loss(logits, labels), expected)
    with pytest.raises(ValueError):
        PretextModel("harnet10", NARROW, tasks=("aot", "rotation"))


def test_classifier_head():
    model = HarnetClassifier("harnet5", n_classes=6, width=NARROW)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items() if k.startswith("classifier.")}
    assert shapes == {"classifier.linear1.weight": (512, 64), "classifier.linear1.bias": (512,),
                      "classifier.linear2.weight": (6, 512), "classifier.linear2.bias": (6,)}
    assert model(torch.randn(3, 3, 150)).shape == (3, 6)


def test_ddp_state_dict_loads_strictly(tmp_path):
    torch.manual_seed(0)
    source = trained_looking(PretextModel("harnet10", NARROW), seed=1)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    try:
        saved = nn.parallel.DistributedDataParallel(source).state_dict()
    finally:
        dist.destroy_process_group()
    assert all(k.startswith("module.") for k in saved)
    torch.save(saved, tmp_path / "mtl_best.mdl")

    target = HarnetClassifier("harnet10", n_classes=4, width=NARROW)
    head_before = target.classifier.linear1.weight.clone()
    report = load_pretrained(target, tmp_path / "mtl_best.mdl")  # torch.load(weights_only=True)

    assert_same_tensors(backbone_tensors(target), backbone_tensors(source))
    assert torch.equal(target.classifier.linear1.weight, head_before)
    assert report.n_tensors == len(backbone_tensors(source))
    assert report.ignored_heads == ("aot_h", "permute_h", "time_w_h")


def test_trainer_checkpoint_and_bare_backbone_load(tmp_path):
    source = trained_looking(build_backbone("harnet5", NARROW), seed=2)
    checkpoint = {"model": source.state_dict(), "optimizer": {"state": {}, "param_groups": []},
                  "epoch": 3}
    torch.save(checkpoint, tmp_path / "last.pt")
    target = build_backbone("harnet5", NARROW)
    report = load_pretrained(target, tmp_path / "last.pt")
    assert_same_tensors(backbone_tensors(target), backbone_tensors(source))
    assert report.ignored_heads == ()

    again = build_backbone("harnet5", NARROW)
    load_pretrained(again, source.state_dict())  # an in-memory state_dict
    assert_same_tensors(backbone_tensors(again), backbone_tensors(source))


def refused(target: nn.Module, state: dict) -> str:
    """Load must raise a one-line error and leave `target` exactly as it was."""
    before = backbone_tensors(target)
    with pytest.raises(CheckpointMismatchError) as error:
        load_pretrained(target, state)
    assert_same_tensors(backbone_tensors(target), before)
    message = str(error.value)
    assert "\n" not in message
    return message


def test_missing_keys_are_refused():
    state = trained_looking(build_backbone("harnet10", NARROW), seed=3).state_dict()
    del state["feature_extractor.layer3.2.bn1.running_var"]
    message = refused(build_backbone("harnet10", NARROW), state)
    assert "missing" in message and "feature_extractor.layer3.2.bn1.running_var (32,)" in message


def test_wrong_shapes_are_refused():
    state = build_backbone("harnet10", NARROW).state_dict()
    message = refused(build_backbone("harnet10", 2 * NARROW), state)  # twice as wide
    assert "wrong shape" in message
    assert "feature_extractor.layer1.0.weight (8, 3, 5) vs model (16, 3, 5)" in message
    # a window of a different length: the same keys but other blur kernels
    message = refused(build_backbone("harnet30", NARROW), build_backbone("harnet10", NARROW).state_dict())
    assert "feature_extractor.layer1.5.kernel (8, 1, 4) vs model (8, 1, 5)" in message


def test_unexpected_keys_are_refused():
    state = build_backbone("harnet10", NARROW).state_dict()
    message = refused(build_backbone("harnet10", NARROW),
                      state | {"feature_extractor.layer6.0.weight": torch.zeros(1)})
    assert "unexpected feature_extractor.layer6.0.weight (1,)" in message
    message = refused(build_backbone("harnet10", NARROW), state | {"projector.weight": torch.zeros(2, 2)})
    assert "projector.weight (2, 2)" in message
