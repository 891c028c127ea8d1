"""Models: our CIFAR / MNIST ones with Distiller's names, torchvision's zoo by name, a user's own
``module:function``, and ``--pretrained`` state_dicts with their head replaced when classes differ."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest
import torch
from torch import nn

from compress.errors import CompressError
from compress.models import MODELS, all_models, build_model
from compress.models.pretrained import load_pretrained
from tests.tiny_data import no_cifar_checksums, write_cifar, write_image_folder  # noqa: F401


def _build(name: str, classes: int = 10, channels: int = 3, size: int = 32) -> nn.Module:
    return build_model(name, num_classes=classes, in_channels=channels, input_size=size)


def _names(model: nn.Module) -> list[str]:
    return [name for name, _ in model.named_parameters()]


# --- our own models -----------------------------------------------------------------------------


def test_resnet20_cifar_has_distillers_parameter_names():
    block = ("conv1.weight", "bn1.weight", "bn1.bias", "conv2.weight", "bn2.weight", "bn2.bias")
    expected = ["conv1.weight", "bn1.weight", "bn1.bias"]
    for stage in (1, 2, 3):
        for i in range(3):
            expected += [f"layer{stage}.{i}.{p}" for p in block]
            if stage > 1 and i == 0:
                expected += [f"layer{stage}.0.downsample.{p}" for p in ("0.weight", "1.weight", "1.bias")]
    expected += ["fc.weight", "fc.bias"]
    model = _build("resnet20_cifar")
    assert _names(model) == expected
    assert tuple(model.get_parameter("layer2.0.downsample.0.weight").shape) == (32, 16, 1, 1)
    assert sum(p.numel() for p in model.parameters()) == 272_474  # ResNet-20: 0.27M
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize(("depth", "convs"), [(20, 19), (32, 31), (44, 43), (56, 55)])
def test_cifar_resnets_have_6n_plus_2_layers(depth, convs):
    model = _build(f"resnet{depth}_cifar", classes=100)
    names = _names(model)
    assert sum(n.endswith("conv1.weight") or n.endswith("conv2.weight") for n in names) == convs
    assert sum("downsample.0" in n for n in names) == 2
    assert model.fc.out_features == 100


def test_vgg16_cifar_and_simplenet_mnist():
    vgg = _build("vgg16_cifar")
    convs = [n for n in _names(vgg) if n.endswith(".weight") and n.startswith("features.")]
    assert convs[:3] == ["features.0.weight", "features.2.weight", "features.5.weight"] and len(convs) == 13
    assert vgg(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    simple = _build("simplenet_mnist", channels=1, size=28)
    assert _names(simple) == [f"{layer}.{p}" for layer in ("conv1", "conv2", "fc1", "fc2") for p in ("weight", "bias")]
    assert simple(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_the_distiller_resnet20_schedule_checks_against_resnet20_cifar(cli, repo):
    result = cli("check", "--schedule", repo / "schedules/resnet20-cifar10-distiller.yaml", "--arch", "resnet20_cifar")
    assert result.exit_code == 0, result.output
    assert "model resnet20_cifar, dataset cifar10, 180 epochs" in result.output
    assert "OK: 2 rule(s) on 18 parameter(s), 1 lr scheduler(s)" in result.output


# --- torchvision's zoo ----------------------------------------------------------------------------


def test_every_torchvision_classification_model_is_registered():
    import torchvision.models

    names = torchvision.models.list_models(module=torchvision.models)
    assert {"resnet18", "mobilenet_v2", "efficientnet_b0", "vit_b_16"} <= set(names) <= set(all_models())
    assert not any(name.startswith(("fasterrcnn", "deeplab", "raft", "r3d")) for name in all_models())


@pytest.mark.parametrize(
    ("name", "channels"),
    [("resnet18", 1), ("mobilenet_v2", 3), ("efficientnet_b0", 3), ("squeezenet1_1", 1), ("googlenet", 3)],
)
def test_torchvision_models_build_for_the_dataset(name, channels):
    model = _build(name, classes=7, channels=channels).eval()  # 1 channel (MNIST): the stem conv takes 1
    assert model(torch.randn(2, channels, 32, 32)).shape == (2, 7)


def test_torchvision_size_limits_are_errors_before_training():
    with pytest.raises(
        CompressError, match="--arch: torchvision's inception_v3 takes images of at least 75x75, not 32"
    ):
        _build("inception_v3")


def test_an_unknown_arch_suggests_and_lists():
    with pytest.raises(CompressError) as err:
        _build("resnet20cifar")
    message = str(err.value)
    assert message.startswith("--arch: unknown model 'resnet20cifar' (did you mean 'resnet20_cifar'?); valid: ")
    assert "compress models lists them all" in message and "package.module:function" in message


def test_compress_models_lists_one_line_per_model(cli):
    lines = cli("models").output.strip().splitlines()
    listed = [line.split()[0] for line in lines]
    assert set(listed[:-1]) == set(MODELS) and len(listed) - 1 == len(MODELS)
    assert listed[-1] == "package.module:function"
    assert any(line.startswith("resnet18 ") and "11.7M parameters" in line for line in lines)


# --- a user's own model ---------------------------------------------------------------------------

USER_MODULE = """
from torch import nn

def build_net(num_classes, in_channels=3):
    return nn.Sequential(nn.Conv2d(in_channels, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, num_classes))

class Net(nn.Sequential):
    def __init__(self, **kwargs):
        super().__init__(nn.Flatten(), nn.LazyLinear(kwargs["num_classes"]))

not_a_model = lambda: 3
"""


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """``my_models_<test>.py`` in tmp_path, importable; the name is unique so no test sees another's."""
    name = f"my_models_{abs(hash(str(tmp_path)))}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(USER_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_a_user_model_is_built_from_module_and_function(user_module):
    model = _build(f"{user_module}:build_net", classes=5, channels=1)
    assert model[-1].out_features == 5 and model[0].in_channels == 1
    assert isinstance(_build(f"{user_module}:Net", classes=4), nn.Sequential)  # a class; **kwargs gets all three


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("{m}:buid_net", r"--arch: {m} has no attribute 'buid_net' \(did you mean 'build_net'\?\)"),
        ("{m}:not_a_model", "--arch: {m}:not_a_model returned a int, not a torch.nn.Module"),
        ("no_such_module_xyz:f", r"--arch: cannot import 'no_such_module_xyz' \(ModuleNotFoundError"),
        (":f", "--arch: ':f': a model of your own is written package.module:function"),
    ],
)
def test_user_model_mistakes(user_module, spec, message):
    with pytest.raises(CompressError, match=message.format(m=user_module)):
        _build(spec.format(m=user_module))


# --- --pretrained ---------------------------------------------------------------------------------


def test_pretrained_loads_and_replaces_a_head_of_another_class_count(tmp_path):
    source = _build("resnet20_cifar", classes=100)
    torch.save({f"module.{k}": v for k, v in source.state_dict().items()}, tmp_path / "r20.pth")  # DataParallel names
    target = _build("resnet20_cifar", classes=10)
    fresh_fc = target.fc.weight.detach().clone()
    notes = load_pretrained(target, tmp_path / "r20.pth")
    assert notes == [
        "--pretrained: classifier head fc replaced: r20.pth has 100 classes, the dataset 10; "
        "it starts from random weights"
    ]
    assert torch.equal(target.conv1.weight, source.conv1.weight)
    assert torch.equal(target.layer3[2].bn2.running_mean, source.layer3[2].bn2.running_mean)
    assert torch.equal(target.fc.weight, fresh_fc)


def test_pretrained_reads_our_checkpoints_and_sums_rgb_stems_for_gray_images(tmp_path):
    source = _build("resnet18", classes=10)
    torch.save({"format": "compress-checkpoint", "state_dict": source.state_dict(), "epoch": 3}, tmp_path / "c.pt")
    gray = _build("resnet18", classes=10, channels=1, size=28)
    notes = load_pretrained(gray, tmp_path / "c.pt")
    assert notes == ["--pretrained: conv1.weight: summed the 3 RGB input channels into 1 for 1-channel images"]
    assert torch.allclose(gray.conv1.weight, source.conv1.weight.sum(1, keepdim=True))


def test_pretrained_mistakes_are_clear_errors(tmp_path):
    model = _build("resnet20_cifar")
    with pytest.raises(CompressError, match="--pretrained: file not found: .*missing.pth"):
        load_pretrained(model, tmp_path / "missing.pth")
    with pytest.raises(CompressError, match="--pretrained: is a directory"):
        load_pretrained(model, tmp_path)
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    with pytest.raises(CompressError, match="--pretrained: .*junk.pth is not a readable state_dict"):
        load_pretrained(model, tmp_path / "junk.pth")
    torch.save(_build("resnet32_cifar").state_dict(), tmp_path / "r32.pth")
    with pytest.raises(
        CompressError, match=r"does not fit this model: 72 tensors the model lacks \(layer1.3.conv1.weight"
    ):
        load_pretrained(model, tmp_path / "r32.pth")
    torch.save(_build("vgg16_cifar").state_dict(), tmp_path / "vgg.pth")
    with pytest.raises(CompressError, match="Is it for another --arch"):
        load_pretrained(model, tmp_path / "vgg.pth")


# --- the CLI, end to end ----------------------------------------------------------------------------

QUICK = ("--epochs", "1", "--limit-batches", "1", "--batch-size", "4", "--workers", "0", "--no-plots")


def _train(cli, tmp_path, schedule, *args):
    return cli("train", "--schedule", schedule, *QUICK, "--out-dir", tmp_path / "runs", "--name", "run", *args)


def _weights(tmp_path) -> dict[str, torch.Tensor]:
    return torch.load(tmp_path / "runs/run/checkpoint.pt", weights_only=True)["state_dict"]


@pytest.mark.slow
@pytest.mark.usefixtures("no_cifar_checksums")
def test_resnet20_trains_on_cifar10_under_the_distiller_schedule(cli, repo, tmp_path):
    write_cifar(tmp_path / "cifar")
    result = _train(cli, tmp_path, repo / "schedules/resnet20-cifar10-distiller.yaml", "--data-dir", tmp_path / "cifar")
    assert result.exit_code == 0, result.output
    assert "block_filters" in result.output  # the config says test: true
    assert "test (the last epoch's weights)" in result.output
    assert "layer2.0.downsample.0.weight" in _weights(tmp_path)
    summary = json.loads((tmp_path / "runs/run/summary.json").read_text())
    assert {"layer1.0.conv1.weight", "layer3.2.conv2.weight"} <= {layer["name"] for layer in summary["layers"]}


@pytest.mark.slow
@pytest.mark.usefixtures("no_cifar_checksums")
def test_vgg16_cifar_and_a_pretrained_head_swap_end_to_end(cli, repo, tmp_path):
    write_cifar(tmp_path / "cifar", hundred=True)
    torch.save(_build("vgg16_cifar", classes=10).state_dict(), tmp_path / "vgg10.pth")
    data = ("--dataset", "cifar100", "--data-dir", tmp_path / "cifar")
    schedule = repo / "schedules/lenet5-baseline.yaml"
    result = _train(cli, tmp_path, schedule, "--arch", "vgg16_cifar", *data, "--pretrained", tmp_path / "vgg10.pth")
    assert result.exit_code == 0, result.output
    assert (
        "--pretrained: classifier head classifier replaced: vgg10.pth has 10 classes, the dataset 100" in result.output
    )
    assert _weights(tmp_path)["classifier.weight"].shape == (100, 512)


@pytest.mark.slow
def test_simplenet_mnist_on_the_embedded_digits(cli, repo, tmp_path):
    result = _train(cli, tmp_path, repo / "schedules/lenet5-filters.yaml", "--arch", "simplenet_mnist")
    assert result.exit_code == 0, result.output
    assert _weights(tmp_path)["fc2.weight"].shape == (10, 500)


@pytest.mark.slow
def test_torchvision_resnet18_on_a_tiny_image_folder(cli, repo, tmp_path):
    write_image_folder(tmp_path / "images", classes=3, per_class=4)
    result = _train(cli, tmp_path, repo / "schedules/lenet5-baseline.yaml", "--arch", "resnet18",
                    "--dataset", "imagefolder", "--data-dir", tmp_path / "images", "--input-size", "32")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert _weights(tmp_path)["fc.weight"].shape == (3, 512)


@pytest.mark.slow
def test_a_user_model_from_the_current_directory(cli, repo, tmp_path, monkeypatch):
    (tmp_path / "my_cwd_models.py").write_text(textwrap.dedent(USER_MODULE))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.delitem(sys.modules, "my_cwd_models", raising=False)
    result = _train(cli, tmp_path, repo / "schedules/lenet5-baseline.yaml", "--arch", "my_cwd_models:build_net")
    assert result.exit_code == 0, result.output
    state = torch.load(tmp_path / "runs/run/checkpoint.pt", weights_only=True)
    assert state["arch"] == "my_cwd_models:build_net" and state["state_dict"]["0.weight"].shape == (4, 1, 3, 3)
    sys.modules.pop("my_cwd_models", None)
