"""The model zoo: every registered model trains a step and matches its size."""
import pytest
import torch
import torch.nn as nn

from cifar_lib.models import count_params, create_model, list_models, model_options
from cifar_lib.models.summary import count_flops, model_table, summary
from cifar_lib.models.wideresnet import wide_resnet

# parameter counts for 10 classes (the zoo's spec, checked to within 1%)
EXPECTED = {
    "cnn3": 114e3, "vgg_a": 9_750_922, "resnet18": 11.17e6,
    "resnet34": 21.28e6, "resnet50": 23.52e6, "fastnet": 1.97e6,
    "resnet_s2": 0.69e6, "resnet_s3": 1.08e6, "preactresnet18": 11.17e6,
    "wrn28_10": 36.49e6, "wrn16_8": 10.96e6,
    "resnext29_2x32d": 2.30e6, "resnext29_2x64d": 9.13e6,
    "resnext29_32x4d": 4.77e6, "resnext29_8x64d": 89.6e6,
    # ResNeXt-50 at the widths course report D ablates (17.30 / 20.86 / 22.98M)
    "resnext50_2x40d": 17.30e6, "resnext50_8x14d": 20.86e6, "resnext50_32x4d": 22.98e6,
    "densenet121": 6.96e6, "dpn26": 11.57e6, "dla": 16.29e6,
    "mobilenetv2": 2.24e6, "shufflenetv2": 1.26e6, "shufflenetv2_0_5": 0.352e6,
    "lenet": 62.0e3, "vgg16_bn": 14.7e6,
}
# CANet sizes are "roughly" 0.4M / 1.6M / 6.3M / 25M: within 3%
ROUGH = {"canet_tiny": 0.4e6, "canet_light": 1.6e6, "canet_base": 6.3e6,
         "canet": 6.3e6, "canet_pro": 25e6}
# too slow for a second (eval) forward on 2 CPU cores
HUGE = {"resnext29_8x64d", "wrn28_10"}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: on small batches and shared cores it is faster."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _x(n=2):
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def _meta(name, **kw):
    with torch.device("meta"):
        return create_model(name, **kw)


@pytest.mark.parametrize("name", list_models())
def test_model_size(name):
    n = count_params(_meta(name))
    if name in EXPECTED:
        assert n == pytest.approx(EXPECTED[name], rel=0.01)
    if name in ROUGH:
        assert n == pytest.approx(ROUGH[name], rel=0.03)


@pytest.mark.parametrize("name", list_models())
def test_model_trains_and_evaluates(name):
    torch.manual_seed(0)
    model = create_model(name)
    y_hat = model(_x())
    assert y_hat.shape == (2, 10)
    y_hat.logsumexp(1).sum().backward()
    no_grad = [n for n, p in model.named_parameters()
               if p.requires_grad and (p.grad is None or not p.grad.isfinite().all())]
    assert not no_grad, f"parameters without a finite gradient: {no_grad[:5]}"
    if name in HUGE:
        return
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(_x()), model(_x()))


def _ablation_cases():
    for name in list_models():
        if not {"act", "norm"} <= set(model_options(name)):
            continue
        yield pytest.param(name, "none", id=f"{name}-none")
        yield pytest.param(name, "gn", id=f"{name}-gn")


@pytest.mark.parametrize("name,norm", list(_ablation_cases()))
def test_activation_and_norm_options(name, norm):
    """The ablations' options build and run (shapes only, on meta tensors)."""
    model = _meta(name, act="gelu", norm=norm)
    kinds = {type(m) for m in model.modules()}
    assert nn.GELU in kinds and nn.ReLU not in kinds
    assert nn.BatchNorm2d not in kinds
    assert (nn.GroupNorm in kinds) == (norm == "gn")
    assert model(torch.empty(2, 3, 32, 32, device="meta")).shape == (2, 10)


def test_unknown_model_lists_choices():
    with pytest.raises(ValueError, match="registered models: .*resnext29_32x4d"):
        create_model("resnet19")


def test_bad_options_raise():
    with pytest.raises(ValueError, match=r"no option\(s\) \['widht'\].*valid"):
        create_model("resnet_s2", widht=2)
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        create_model("resnet_s2", act="swish")
    with pytest.raises(ValueError, match="unknown norm"):
        create_model("canet_tiny", norm="ln")
    with pytest.raises(ValueError, match="6n"):
        wide_resnet(27, 10)


def test_resnext_cardinality_must_divide_width():
    with pytest.raises(ValueError, match="cardinality 3 must divide .* 128"):
        create_model("resnext29_32x4d", cardinality=3)
    model = _meta("resnext29_32x4d", cardinality=16)  # 16 groups of 8 channels
    assert count_params(model) > count_params(_meta("resnext29_32x4d"))


def test_wrn_dropout_option():
    model = _meta("wrn16_8", dropout=0.3)
    assert sum(isinstance(m, nn.Dropout) for m in model.modules()) == 6


def test_canet_attention_maps():
    model = create_model("canet_tiny")
    assert all(m["spatial"] is None for m in model.attention_maps())
    with torch.no_grad():
        model.eval()(_x())
    maps = model.attention_maps()
    assert len(maps) == 3 + 2 + 3
    for m, (hw, c) in zip(maps, [(32, 16)] * 3 + [(16, 32)] * 2 + [(8, 64)] * 3):
        assert m["spatial"].shape == (2, 1, hw, hw)
        assert m["channel"].shape == (2, c)
        assert 0 < m["spatial"].min() and m["spatial"].max() < 1
        assert 0 < m["channel"].min() and m["channel"].max() < 1
    assert maps[0]["block"] == "layers.0.0"


def test_count_flops_by_hand():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.ReLU(),
                        nn.Flatten(), nn.Linear(8 * 32 * 32, 10))
    conv = 8 * 32 * 32 * 3 * 3 * 3          # multiply-adds: out pixels x kernel
    fc = 8 * 32 * 32 * 10
    assert count_flops(net) == 2 * (conv + fc)
    assert count_flops(net, (4, 3, 32, 32)) == 8 * (conv + fc)


def test_summary_resnet18():
    model = create_model("resnet18").train()
    s = summary(model)
    assert model.training                     # mode restored
    assert s.params == s.trainable == 11_173_962
    assert s.macs == pytest.approx(0.556e9, rel=0.01)   # the usual "0.56 GFLOPs"
    assert s.flops == 2 * s.macs
    text = str(s)
    assert "Total params:     11,173,962" in text and "Conv2d" in text
    assert "1.111 G" in text


def test_model_table():
    df = model_table()
    assert list(df.columns) == ["name", "family", "params", "MFLOPs", "MMACs"]
    assert list(df["name"]) == list_models()
    assert (df["MFLOPs"] > 0).all()
    row = df.set_index("name").loc["resnet18"]
    assert row["family"] == "resnet" and row["params"] == 11_173_962
    assert row["MMACs"] == pytest.approx(556, rel=0.01)
    small = model_table(["lenet", "cnn3"])
    assert list(small["name"]) == ["lenet", "cnn3"]


def test_aliases_create_the_same_net_but_are_listed_once():
    from cifar_lib.models import model_aliases
    assert model_aliases() == {"canet": "canet_base"}
    assert "canet" not in list_models() and "canet" in list_models(aliases=True)
    assert count_params(_meta("canet")) == count_params(_meta("canet_base"))


def test_imagenet_stem_resnet18_matches_report_e():
    """Course report E's ResNet-18 (7x7 stride-2 stem + max-pool): 11,181,642."""
    assert count_params(_meta("resnet18", stem="imagenet")) == 11_181_642
    assert count_params(_meta("resnet18")) == 11_173_962
    stem = create_model("resnet18", stem="imagenet").stem
    assert stem[0].kernel_size == (7, 7) and stem[0].stride == (2, 2)
    assert isinstance(stem[-1], nn.MaxPool2d) and stem[-1].stride == 2
    assert stem(_x()).shape == (2, 64, 8, 8)  # 32 -> 16 (conv) -> 8 (pool)


@pytest.mark.parametrize("name", ["resnet18", "resnet_s2", "resnext29_2x32d", "resnext50_2x40d"])
def test_stem_option_keeps_parameter_names(name):
    """Both stems name their parameters alike; the default is the CIFAR stem,
    so checkpoints saved before the option existed load into the default."""
    default, cifar, imagenet = (_meta(name).state_dict(), _meta(name, stem="cifar").state_dict(),
                                _meta(name, stem="imagenet").state_dict())
    assert list(default) == list(cifar) == list(imagenet)
    assert all(default[k].shape == cifar[k].shape for k in default)
    assert default["stem.0.weight"].shape[-2:] == (3, 3)
    assert imagenet["stem.0.weight"].shape[-2:] == (7, 7)
    assert [k for k in default if default[k].shape != imagenet[k].shape] == ["stem.0.weight"]
    assert create_model(name, stem="imagenet")(_x()).shape == (2, 10)


def test_stem_option_in_configs_and_bad_values():
    from cifar_lib.engine import TrainConfig
    cfg = TrainConfig(model="resnet18", model_kw={"stem": "imagenet"})
    assert cfg.to_dict()["model_kw"] == {"stem": "imagenet"}
    assert "stem" not in TrainConfig(model="resnet18").to_dict()["model_kw"]
    with pytest.raises(ValueError, match="unknown stem 'imagenett'; choose one of cifar, imagenet"):
        create_model("resnet34", stem="imagenett")
    with pytest.raises(ValueError, match="no option"):
        TrainConfig(model="vgg_a", model_kw={"stem": "imagenet"})  # not a ResNet


def test_resnext50_is_the_paper_layout():
    """(3, 4, 6, 3) blocks; 32x4d ends with 2048 channels like ResNeXt-50."""
    model = _meta("resnext50_32x4d")
    assert [len(stage) for stage in model.layers] == [3, 4, 6, 3]
    assert model.fc.in_features == 2048
    groups = {m.groups for m in model.modules() if isinstance(m, nn.Conv2d) and m.groups > 1}
    assert groups == {32}
    assert {m.groups for m in _meta("resnext50_8x14d").modules()
            if isinstance(m, nn.Conv2d) and m.groups > 1} == {8}
