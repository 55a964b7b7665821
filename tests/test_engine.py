"""The training engine: config, checkpoints, fit, divergence, resume."""
from __future__ import annotations

import math
import time

import pytest
import torch
import torch.nn as nn

from cifar_lib.engine import (CheckpointError, TrainConfig, atomic_save,
                              evaluate, fit, l1_penalty, load_checkpoint,
                              make_loaders, predict, read_checkpoint,
                              save_checkpoint)
from cifar_lib.models import create_model
from conftest import TINY_MODEL, tiny_config


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return create_model(TINY_MODEL["model"], **TINY_MODEL["model_kw"])


def train(split, cfg, model=None, **kw):
    model = model if model is not None else tiny_model()
    return model, fit(model, make_loaders(split, cfg, "cpu"), cfg, **kw)


def same_params(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ---------------------------------------------------------------- config


@pytest.mark.parametrize("kw, match", [
    ({"model": "resnet9000"}, "unknown model 'resnet9000'.*registered models: .*cnn3"),
    ({"model": "cnn3", "model_kw": {"depth": 3}},
     r"model 'cnn3' has no option\(s\) \['depth'\]; valid: filters"),
    ({"optimizer": "lion"}, "unknown optimizer 'lion'; choose one of .*adamw"),
    ({"scheduler": "cyclic"}, "unknown scheduler 'cyclic'; choose one of .*cosine"),
    ({"sched_kw": {"gamma": 0.5}}, r"scheduler 'cosine' takes no option\(s\)"),
    ({"loss": "hinge"}, "unknown loss 'hinge'; choose one of .*focal"),
    ({"loss_kw": {"gamma": 2.0}}, r"loss 'cross_entropy' has no option\(s\) \['gamma'\]"),
    ({"loss_kw": {"label_smoothing": 0.1}}, "with the field label_smoothing"),
    ({"augment": "rotate"}, "unknown augmentation preset 'rotate'"),
    ({"augment": {"crop": 40}}, "bad augmentation value crop=40"),
    ({"epochs": 0}, "bad config value epochs=0"),
    ({"batch_size": -1}, "bad config value batch_size=-1"),
    ({"lr": 0.0}, "bad config value lr=0.0"),
    ({"lr": "fast"}, "bad config value lr='fast'; expected float"),
    ({"epochs": 2.5}, "bad config value epochs=2.5; expected int"),
    ({"nesterov": "yes"}, "bad config value nesterov='yes'; expected bool"),
    ({"label_smoothing": 1.0}, "bad config value label_smoothing=1.0"),
    ({"ema": 1.0}, "bad config value ema=1.0"),
    ({"swa_start": 1.0}, "bad config value swa_start=1.0"),
    ({"swa_lr": 0.0}, "bad config value swa_lr=0.0"),
    ({"grad_clip": -1.0}, "bad config value grad_clip=-1.0"),
    ({"l1": -1e-5}, "bad config value l1=-1e-05"),
    ({"weight_decay": -0.1}, "bad config value weight_decay=-0.1"),
    ({"momentum": 1.5}, "bad config value momentum=1.5"),
    ({"warmup_epochs": 5.0, "epochs": 2}, "bad config value warmup_epochs=5.0"),
])
def test_config_validation(kw, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kw)


def test_config_dict_round_trip():
    cfg = TrainConfig(model="cnn3", model_kw={"filters": (8, 16, 16)}, lr=1,
                      augment="crop_flip_erase", sched_kw=None)
    d = cfg.to_dict()
    assert d["model_kw"] == {"filters": [8, 16, 16]}  # JSON-safe
    assert d["augment"]["erase"] == 0.5 and d["sched_kw"] == {}
    assert d["lr"] == 1.0 and isinstance(d["lr"], float)  # lr=1 and 1.0 are one run
    assert TrainConfig.from_dict(d).to_dict() == d
    with pytest.raises(ValueError, match=r"unknown config field 'learning_rate'; "
                                         r"valid: .*lr"):
        TrainConfig.from_dict({**d, "learning_rate": 0.1})
    assert cfg.replace(lr=0.5).lr == 0.5 and cfg.lr == 1.0
    with pytest.raises(ValueError, match="bad config value lr"):
        cfg.replace(lr=-1.0)


def test_unknown_config_field_is_a_clear_error():
    with pytest.raises(ValueError, match=r"^unknown config field 'epoch' \(did you mean "
                                         r"'epochs'\?\); valid: amp, augment, .*epochs") as e:
        TrainConfig(epoch=3)
    assert isinstance(e.value, TypeError)  # also what an unexpected keyword raises
    with pytest.raises(ValueError, match=r"fields 'epoch' \(did you mean 'epochs'\?\), "
                                         r"'learning_rate'; valid"):
        TrainConfig.from_dict({"learning_rate": 0.1, "epoch": 3})
    with pytest.raises(ValueError, match="did you mean 'batch_size'"):
        TrainConfig().replace(batchsize=64)
    # valid fields, positional ones and from_dict work as before
    cfg = TrainConfig(model="cnn3", epochs=3, model_kw={"filters": [8, 16, 16]})
    assert cfg.epochs == 3 and TrainConfig("cnn3").model == "cnn3"
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    assert TrainConfig().to_dict() == TrainConfig.from_dict(TrainConfig().to_dict()).to_dict()
    import dataclasses
    import inspect
    assert dataclasses.is_dataclass(TrainConfig)
    assert list(inspect.signature(TrainConfig).parameters)[:2] == ["model", "model_kw"]


def test_make_loaders(split):
    cfg = tiny_config(batch_size=100, augment="crop_flip_mixup")
    ld = make_loaders(split, cfg, "cpu")
    assert len(ld.train) == 10 and ld.train.train and ld.train.augment.mixup == 1.0
    assert ld.val.augment is None and len(ld.val.y) == 200 and ld.val.batch_size == 500
    assert torch.allclose(ld.train.mean.flatten(), torch.tensor(split.mean, dtype=torch.float32))
    assert make_loaders(split, cfg.replace(normalize=False), "cpu").train.mean is None


# ---------------------------------------------------------------- checkpoints


def test_checkpoint_round_trip(tmp_path):
    model, cfg = tiny_model(1), tiny_config()
    path = tmp_path / "ck" / "m.pt"
    save_checkpoint(path, model, cfg, epoch=3)
    assert [p.name for p in path.parent.iterdir()] == ["m.pt"]  # no .tmp left
    ck = torch.load(path, weights_only=True)  # loads with weights_only
    assert ck["model_name"] == "cnn3" and ck["epoch"] == 3 and ck["config"] == cfg.to_dict()
    rebuilt = load_checkpoint(path)  # rebuilt from the names in the file
    assert same_params(rebuilt, model)
    other = tiny_model(2)
    assert not same_params(other, model)
    assert load_checkpoint(path, other) is other and same_params(other, model)
    bare = tmp_path / "bare.pt"
    save_checkpoint(bare, model)
    with pytest.raises(CheckpointError, match="does not name its model"):
        load_checkpoint(bare)
    assert same_params(load_checkpoint(bare, tiny_model(3)), model)


def test_checkpoint_mismatch_names_keys_and_shapes(tmp_path):
    path = tmp_path / "m.pt"
    save_checkpoint(path, tiny_model(), tiny_config())
    wider = create_model("cnn3", filters=(8, 16, 32))
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(path, wider)
    msg = str(e.value)
    assert str(path) in msg and "shape mismatch" in msg
    assert "features.8.weight: checkpoint (16, 16, 3, 3) vs model (32, 16, 3, 3)" in msg
    with pytest.raises(CheckpointError, match=r"missing \['classifier.3.bias'.*"
                                              r"unexpected \['features.1.bias'"):
        load_checkpoint(path, create_model("lenet"))


def test_checkpoint_unreadable_or_missing(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint at .*train the run first"):
        read_checkpoint(tmp_path / "none.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="(?s)unreadable.*delete it"):
        read_checkpoint(bad)
    # a pickle that is not plain tensors/containers is refused (weights_only),
    # and the message never suggests loading it unsafely
    evil = tmp_path / "evil.pt"
    torch.save({"model": {}, "obj": time.struct_time((2000,) + (0,) * 8)}, evil)
    with pytest.raises(CheckpointError, match="unreadable.*struct_time") as e:
        read_checkpoint(evil)
    assert "weights_only" not in str(e.value)


def test_atomic_save_leaves_no_temp_file(tmp_path, monkeypatch):
    path = tmp_path / "m.pt"
    atomic_save({"a": torch.ones(2)}, path)
    real = torch.save

    def broken(obj, f, *a, **kw):
        real({"partial": 1}, f)
        raise OSError("disk full")
    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises(OSError, match="disk full"):
        atomic_save({"a": torch.zeros(2)}, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.ones(2))


# ---------------------------------------------------------------- evaluation


def test_predict_evaluate_and_tta(small_split):
    model = tiny_model().eval()
    ld = make_loaders(small_split, tiny_config(), "cpu")
    logits, y = predict(model, ld.val)
    x = ld.val.prepare(ld.val.x)
    with torch.no_grad():
        direct = model(x)
        both = (model(x) + model(x.flip(3))) / 2
    assert torch.allclose(logits, direct, atol=1e-5) and torch.equal(y, small_split.val[1])
    assert torch.allclose(predict(model, ld.val, tta_flip=True)[0], both, atol=1e-5)
    m = evaluate(model, ld.val)
    assert m["acc"] == pytest.approx((direct.argmax(1) == y).float().mean().item())
    assert m["loss"] == pytest.approx(nn.functional.cross_entropy(direct, y).item(), rel=1e-5)


def test_l1_penalty():
    model = nn.Sequential(nn.Conv2d(1, 1, 1, bias=False), nn.BatchNorm2d(1), nn.Linear(2, 1))
    for p in model.parameters():
        nn.init.constant_(p, -2.0)
    # conv weight (1) + linear weight (2) count, BN and biases do not
    assert l1_penalty(model).item() == 6.0


# ---------------------------------------------------------------- fit


def test_fit_reaches_high_accuracy_quickly(split):
    """The integration test: defaults (crop/flip, nesterov SGD, cosine, wd)."""
    cfg = TrainConfig(**TINY_MODEL, lr=0.05, batch_size=64, epochs=3, amp=False)
    t0 = time.perf_counter()
    model, out = train(split, cfg)
    assert time.perf_counter() - t0 < 30
    assert out["status"] == "ok" and out["diverged_at"] is None
    h = out["history"]
    assert [r["epoch"] for r in h] == [1, 2, 3]
    assert h[-1]["train_loss"] < h[0]["train_loss"]
    m = out["metrics"]
    assert m["best_val_acc"] >= 0.9 and m["test_acc"] >= 0.9
    assert m["best_val_acc"] == max(r["val_acc"] for r in h)
    assert m["best_epoch"] == 1 + [r["val_acc"] for r in h].index(m["best_val_acc"])
    assert m["epochs_run"] == 3 and m["params"] == sum(p.numel() for p in model.parameters())
    assert m["images_per_s"] > 0 and m["train_time"] > 0
    # each record holds the rate its epoch started with: cosine at 0, 1/3, 2/3
    assert [r["lr"] for r in h] == pytest.approx([0.05, 0.0375, 0.0125])
    # the model ends with its best weights: its test accuracy is the reported one
    assert evaluate(model, make_loaders(split, cfg, "cpu").test)["acc"] == m["test_acc"]


def test_fit_is_deterministic_and_callbacks_add_fields(small_split):
    seen = []

    def cb(epoch, model, optimizer, record):
        seen.append(epoch)
        return {"extra": epoch * 10}
    cfg = tiny_config(epochs=2, augment="crop_flip")
    _, a = train(small_split, cfg, callbacks=(cb,))
    _, b = train(small_split, cfg)
    assert seen == [0, 1] and [r["extra"] for r in a["history"]] == [0, 10]
    for ra, rb in zip(a["history"], b["history"]):
        assert ra["train_loss"] == rb["train_loss"] and ra["val_acc"] == rb["val_acc"]


def test_fit_writes_best_checkpoint(tmp_path, small_split):
    ck = tmp_path / "w" / "run.pt"
    model, out = train(small_split, tiny_config(epochs=2), ckpt_path=ck)
    assert sorted(p.name for p in ck.parent.iterdir()) == ["run.pt"]  # no .last/.tmp
    saved = read_checkpoint(ck)
    assert saved["val_acc"] == out["metrics"]["best_val_acc"]
    assert saved["epoch"] == out["metrics"]["best_epoch"]
    assert same_params(load_checkpoint(ck), model)


class Sabotaged(nn.Module):
    """Wraps a model; while ``broken``, its evaluation logits are negated."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net, self.broken = net, False

    def forward(self, x):
        out = self.net(x)
        return -out if self.broken and not self.training else out


def test_fit_keeps_the_best_epoch_not_the_last(tmp_path, small_split):
    model, first = Sabotaged(tiny_model()), {}

    def break_after_first(epoch, model, **_):
        if epoch == 0:
            first.update({k: v.clone() for k, v in model.state_dict().items()})
            model.broken = True  # later epochs evaluate badly
    cfg = tiny_config(epochs=3)
    ck = tmp_path / "run.pt"
    out = fit(model, make_loaders(small_split, cfg, "cpu"), cfg, ckpt_path=ck,
              callbacks=(break_after_first,))
    accs = [r["val_acc"] for r in out["history"]]
    assert accs[0] > max(accs[1:])
    assert out["metrics"]["best_epoch"] == 1 and out["metrics"]["best_val_acc"] == accs[0]
    assert all(torch.equal(first[k], v) for k, v in model.state_dict().items())
    assert read_checkpoint(ck)["epoch"] == 1


class NaNAfter(nn.Module):
    """Wraps a model; its training outputs turn NaN after ``n`` forward passes."""

    def __init__(self, net: nn.Module, n: int):
        super().__init__()
        self.net, self.n, self.calls = net, n, 0

    def forward(self, x):
        out = self.net(x)
        if self.training:
            self.calls += 1
            if self.calls > self.n:
                out = out * float("nan")
        return out


def test_divergence_is_recorded_not_raised(tmp_path, small_split):
    # 4 steps an epoch: the NaN appears in the second epoch
    model = NaNAfter(tiny_model(), 6)
    logs = []
    ck = tmp_path / "run.pt"
    out = fit(model, make_loaders(small_split, tiny_config(epochs=4), "cpu"),
              tiny_config(epochs=4), ckpt_path=ck, log=logs.append)
    assert out["status"] == "diverged"
    assert out["diverged_at"] == {"epoch": 1, "step": 3}
    assert len(out["history"]) == 1 and out["history"][0]["epoch"] == 1
    assert any("diverged" in line for line in logs)
    m = out["metrics"]
    assert m["epochs_run"] == 1 and m["best_epoch"] == 1
    # the model is back at its best (finite) weights, tested with them
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert m["test_acc"] is not None and math.isfinite(m["test_loss"])
    assert ck.is_file() and not ck.with_suffix(".last.pt").exists()


def test_divergence_mid_epoch_stops_at_the_check(small_split):
    model = NaNAfter(tiny_model(), 1)
    cfg = tiny_config(epochs=3)
    out = fit(model, make_loaders(small_split, cfg, "cpu"), cfg, check_every=2)
    assert out["status"] == "diverged" and out["history"] == []
    assert out["diverged_at"] == {"epoch": 0, "step": 1}  # stopped at the first check
    assert out["metrics"]["best_val_acc"] is None and out["metrics"]["test_acc"] is None


def test_huge_learning_rate_diverges(small_split):
    # BN keeps this loss finite, but it blows up far past max_loss
    _, out = train(small_split, tiny_config(lr=1e6, epochs=2))
    assert out["status"] == "diverged" and out["diverged_at"]["epoch"] == 0
    assert out["history"] == [] and out["metrics"]["best_val_acc"] is None
    # with the guard lifted the same run goes on, at chance level: failed
    _, out = train(small_split, tiny_config(lr=1e6, epochs=2), max_loss=math.inf)
    assert out["status"] == "failed" and out["history"][0]["train_loss"] > 1e4
    assert out["failure"].startswith("at chance from epoch")


def test_resume_after_interrupt(tmp_path, small_split):
    cfg = tiny_config(epochs=4, augment="crop_flip", scheduler="cosine", ema=0.5)
    ck = tmp_path / "run.pt"
    last = ck.with_suffix(".last.pt")

    def stop_at_2(epoch, **_):
        if epoch == 2:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        train(small_split, cfg, ckpt_path=ck, callbacks=(stop_at_2,), save_every=0)
    # an interrupted run leaves its resume state, never weights that look final
    assert last.is_file() and not ck.exists()
    state = read_checkpoint(last)
    assert state["state"]["epoch"] == 2 and state["kept"]["epoch"] in (1, 2)
    assert not list(tmp_path.glob("*.tmp"))
    before = state["state"]["train_time"]

    ran = []
    _, resumed = train(small_split, cfg, model=tiny_model(5), ckpt_path=ck,
                       callbacks=(lambda epoch, **_: ran.append(epoch),), save_every=0)
    assert ran == [2, 3]  # only the missing epochs ran
    assert [r["epoch"] for r in resumed["history"]] == [1, 2, 3, 4]
    assert resumed["metrics"]["epochs_run"] == 4 and not last.exists() and ck.is_file()
    # times cover the whole run, the part before the interrupt included
    m = resumed["metrics"]
    assert m["train_time"] > before and m["wall_time"] >= m["train_time"]
    # the same history as a run that was never interrupted
    _, whole = train(small_split, cfg)
    for a, b in zip(resumed["history"], whole["history"]):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["val_acc"] == pytest.approx(b["val_acc"], abs=1e-6)
        assert a["lr"] == pytest.approx(b["lr"])
    assert resumed["metrics"]["test_acc"] == pytest.approx(whole["metrics"]["test_acc"])


def test_resume_refuses_another_config(tmp_path, small_split):
    cfg = tiny_config(epochs=3)
    ck = tmp_path / "run.pt"

    def stop(epoch, **_):
        if epoch == 1:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        train(small_split, cfg, ckpt_path=ck, callbacks=(stop,), save_every=0)
    with pytest.raises(CheckpointError, match="another config.*resume=False"):
        train(small_split, cfg.replace(lr=0.01), ckpt_path=ck)
    _, out = train(small_split, cfg.replace(lr=0.01), ckpt_path=ck, resume=False)
    assert len(out["history"]) == 3


@pytest.mark.parametrize("kw", [
    {"ema": 0.9},
    {"swa_start": 0.5, "swa_lr": 0.01},
    {"tta_flip": True},
    {"l1": 1e-4},
    {"grad_clip": 0.5},
    {"augment": "crop_flip_mixup"},
    {"augment": "crop_flip_cutmix", "label_smoothing": 0.1},
    {"augment": "crop_flip_erase", "loss": "focal"},
    {"loss": "mse", "scheduler": "onecycle"},
    {"optimizer": "adamw_sgd", "lr": 0.005, "scheduler": "step", "warmup_epochs": 1.0},
    {"optimizer": "signsgd", "lr": 0.005, "scheduler": "plateau"},
])
def test_fit_options_run(kw, small_split):
    cfg = tiny_config(epochs=2, **kw)
    model, out = train(small_split, cfg)
    assert out["status"] == "ok" and len(out["history"]) == 2
    for r in out["history"]:
        assert math.isfinite(r["train_loss"]) and 0 <= r["val_acc"] <= 1
    assert out["metrics"]["test_acc"] > 0.15  # better than chance (0.1)
    if "swa_start" in kw:
        assert out["metrics"]["swa_val_acc"] is not None
        assert out["history"][-1]["lr"] == pytest.approx(0.01)  # SWA holds its lr


@pytest.mark.parametrize("kw", [
    {"scheduler": "plateau", "sched_kw": {"patience": 0, "factor": 0.5}, "warmup_epochs": 1.0},
    {"optimizer": "adamw_sgd", "lr": 0.005, "scheduler": "step", "warmup_epochs": 1.0,
     "optim_kw": {"switch_at": 0.5, "sgd_lr_scale": 20.0}, "sched_kw": {"step_size": 1}},
    {"scheduler": "cosine", "swa_start": 0.5, "swa_lr": 0.01},
    {"scheduler": "onecycle", "ema": 0.9},
    {"scheduler": "exponential", "sched_kw": {"gamma": 0.5}, "warmup_epochs": 0.5},
    {"scheduler": "linear", "optimizer": "adam", "lr": 0.005},
])
def test_history_is_the_one_of_the_function_schedule(kw, small_split, monkeypatch):
    """fit with the schedule driven by LambdaLR records what the earlier
    function path recorded: each step's lr, and so the same losses,
    accuracies and epoch lrs, float for float."""
    from cifar_lib import engine
    from cifar_lib.optim import LRSchedule
    from test_optim import FunctionSchedule

    def recorded(kind):
        seen = []

        class Recorded(kind):
            def step(self):
                super().step()
                seen.append([g["lr"] for g in self.optimizer.param_groups])
        monkeypatch.setattr(engine, "LRSchedule", Recorded)
        _, out = train(small_split, tiny_config(epochs=4, **kw))
        drop = ("time", "train_time", "wall_time", "images_per_s")
        return (seen, [{k: v for k, v in r.items() if k not in drop} for r in out["history"]],
                {k: v for k, v in out["metrics"].items() if k not in drop})
    old = recorded(FunctionSchedule)
    new = recorded(LRSchedule)
    assert new == old and len(old[0]) == 4 * 4  # 4 epochs of 4 steps
    assert len({r["lr"] for r in old[1]}) > 1  # the schedule moved


def test_ema_weights_are_the_ones_evaluated(tmp_path, small_split):
    ck = tmp_path / "run.pt"
    cfg = tiny_config(epochs=2, ema=0.5)
    model, out = train(small_split, cfg, ckpt_path=ck)
    saved = read_checkpoint(ck)["model"]
    # the best checkpoint is the EMA copy, and the model ends with it
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items())
    raw_model, raw = train(small_split, cfg.replace(ema=0.0))
    assert not same_params(model, raw_model)


def test_l1_shrinks_weights(small_split):
    plain, _ = train(small_split, tiny_config(epochs=2))
    sparse, _ = train(small_split, tiny_config(epochs=2, l1=0.02))
    assert l1_penalty(sparse).item() < 0.8 * l1_penalty(plain).item()


def test_grad_clip_limits_the_step(small_split):
    base = tiny_model()
    clipped, _ = train(small_split, tiny_config(epochs=1, grad_clip=1e-3,
                                                 momentum=0.0, nesterov=False),
                       model=tiny_model())
    free, _ = train(small_split, tiny_config(epochs=1, momentum=0.0, nesterov=False),
                    model=tiny_model())
    moved = lambda m: sum((p - q).norm() ** 2 for p, q in  # noqa: E731
                          zip(m.parameters(), base.parameters())).sqrt()
    # 4 steps of lr 0.05 with gradient norm <= 1e-3
    assert moved(clipped) <= 4 * 0.05 * 1e-3 + 1e-6 < moved(free)


def test_training_set_smaller_than_a_batch(small_split):
    cfg = tiny_config(batch_size=1000)
    _, out = train(small_split, cfg)  # one partial batch rather than none
    assert out["status"] == "ok" and out["metrics"]["images_per_s"] > 0


def test_keep_last_tests_the_final_weights(small_split, tmp_path):
    cfg = tiny_config(epochs=3, keep="last", lr=0.05)
    ck = tmp_path / "run.pt"
    model, out = train(small_split, cfg, ckpt_path=ck)
    m = out["metrics"]
    assert m["kept"] == "last" and m["kept_epoch"] == 3
    assert m["kept_val_acc"] == out["history"][-1]["val_acc"]
    assert m["best_val_acc"] == max(r["val_acc"] for r in out["history"])
    saved = read_checkpoint(ck)
    assert saved["epoch"] == 3
    for k, v in model.state_dict().items():
        assert torch.equal(saved["model"][k], v.cpu())
    with pytest.raises(ValueError, match="keep"):
        tiny_config(keep="first")


def test_hooks_see_each_step_before_forward_and_after_backward(small_split):
    cfg = tiny_config(epochs=2)
    seen = {"before": [], "after": []}

    class Hook:
        def before_step(self, model, x, y, step):
            assert all(p.grad is None for p in model.parameters()) or step > 0
            seen["before"].append((step, len(x)))

        def after_backward(self, model, loss, step):
            assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
            assert loss.requires_grad
            seen["after"].append(step)

    model = create_model(cfg.model, **cfg.model_kw)
    loaders = make_loaders(small_split, cfg, "cpu")
    fit(model, loaders, cfg, hooks=(Hook(),))
    steps = len(loaders.train)
    assert [s for s, _ in seen["before"]] == list(range(2 * steps)) == seen["after"]
    assert all(n == cfg.batch_size for _, n in seen["before"])


def test_optimizer_epoch_end_adds_to_the_record(small_split, monkeypatch):
    import cifar_lib.engine as engine
    cfg = tiny_config(epochs=2)
    calls, real = [], engine.make_optimizer

    def with_epoch_end(*a, **kw):
        opt = real(*a, **kw)

        def epoch_end(epoch, last):
            calls.append((epoch, last))
            return {"extra": epoch * 10}
        opt.epoch_end = epoch_end
        return opt

    monkeypatch.setattr(engine, "make_optimizer", with_epoch_end)
    _, out = train(small_split, cfg)
    assert calls == [(0, False), (1, True)]
    assert [r["extra"] for r in out["history"]] == [0, 10]


def test_resume_state_is_written_at_most_every_save_every(tmp_path, small_split):
    cfg = tiny_config(epochs=3)
    ck = tmp_path / "run.pt"

    def stop(epoch, **_):
        if epoch == 1:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):  # an hour between saves: none yet
        train(small_split, cfg, ckpt_path=ck, callbacks=(stop,), save_every=3600)
    assert not ck.with_suffix(".last.pt").exists() and not ck.exists()
    _, out = train(small_split, cfg, ckpt_path=ck, save_every=3600)
    assert out["metrics"]["epochs_run"] == 3 and ck.is_file()
    assert read_checkpoint(ck)["epoch"] == out["metrics"]["kept_epoch"]


# ------------------------------------------------- lean step, acted metrics


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("n", [64, 37])
def test_smoothed_cross_entropy_is_torchs_bit_for_bit(dtype, n):
    """The training loss's label-smoothed cross-entropy: torch's loss and
    gradients, to the bit, in fewer operations."""
    import torch.nn.functional as F
    from cifar_lib.engine import train_loss
    torch.manual_seed(n)
    logits = (3 * torch.randn(n, 10)).to(dtype).requires_grad_()
    y = torch.randint(0, 10, (n,))
    fn = train_loss(TrainConfig(label_smoothing=0.2))
    for autocast in (False, True):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            ref = F.cross_entropy(logits, y, label_smoothing=0.2)
            mine = fn(logits, y)
        g_ref, = torch.autograd.grad(ref, logits)
        g_mine, = torch.autograd.grad(mine, logits)
        assert torch.equal(ref, mine) and torch.equal(g_ref, g_mine)
    from cifar_lib.losses import make_loss
    soft = torch.softmax(torch.randn(n, 10), 1)  # mixup targets: the loss of make_loss
    assert torch.equal(fn(logits, soft), make_loss("cross_entropy", 0.2)(logits, soft))


def test_backward_gives_the_gradients_of_loss_backward():
    from cifar_lib.engine import _backward
    from cifar_lib.optim import trainable
    torch.manual_seed(0)
    model = create_model("fastnet", width=0.125)
    model.data_init(torch.randn(32, 3, 32, 32))
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    params = trainable(model)
    nn.functional.cross_entropy(model(x), y).backward()
    ref = [p.grad.clone() for p in params]
    for p in params:
        p.grad = None
    _backward(nn.functional.cross_entropy(model(x), y), params)
    assert all(torch.equal(p.grad, g) for p, g in zip(params, ref))


def test_acted_metrics_are_recorded(small_split):
    _, out = train(small_split, tiny_config(epochs=1))
    m = out["metrics"]
    assert m["clip_frac"] is None and m["lr_cuts"] is None and m["switch_step"] is None
    _, out = train(small_split, tiny_config(epochs=1, grad_clip=1e-3))
    assert out["metrics"]["clip_frac"] == 1.0  # every step clipped
    _, out = train(small_split, tiny_config(epochs=1, grad_clip=1e6))
    assert out["metrics"]["clip_frac"] == 0.0  # the clip never acted
    # the plateau schedule: lr cut when the val loss stops improving
    _, out = train(small_split, tiny_config(epochs=4, lr=1e-5, scheduler="plateau",
                                            sched_kw={"patience": 0, "threshold": 0.5}))
    lrs = [r["lr"] for r in out["history"]]  # (the third cut: after the last epoch)
    assert out["metrics"]["lr_cuts"] == 3 and len(set(lrs)) - 1 == 2
    # adamw_sgd: switched at half of the 8 steps
    _, out = train(small_split, tiny_config(epochs=2, optimizer="adamw_sgd", lr=0.005,
                                            optim_kw={"switch_at": 0.5}))
    assert out["metrics"]["switch_step"] == 4


def test_adaptive_clip_acts_at_its_quantile(small_split):
    """AutoClip at the median clips about half of the steps (each step's
    norm against the median of the norms so far, its own included)."""
    cfg = tiny_config(epochs=6, batch_size=16, grad_clip_quantile=0.5)
    _, out = train(small_split, cfg)
    steps = 6 * (300 // 16)
    assert 0.25 <= out["metrics"]["clip_frac"] <= 0.75, out["metrics"]["clip_frac"]
    assert out["metrics"]["clip_frac"] * steps == round(out["metrics"]["clip_frac"] * steps)
    assert "grad_clip_quantile" not in tiny_config().to_dict()  # run names kept
    assert cfg.to_dict()["grad_clip_quantile"] == 0.5
    with pytest.raises(ValueError, match="grad_clip_quantile=1.5"):
        tiny_config(grad_clip_quantile=1.5)
    with pytest.raises(ValueError, match="one clipping rule at a time"):
        tiny_config(grad_clip_quantile=0.5, grad_clip=1.0)
