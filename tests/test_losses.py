"""Losses against hand-written reference formulas."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from cifar_lib.losses import LOSSES, as_soft, make_loss

K = 5


@pytest.fixture
def logits():
    return torch.randn(8, K, generator=torch.Generator().manual_seed(0)) * 2


@pytest.fixture
def labels():
    return torch.tensor([0, 1, 2, 3, 4, 0, 2, 4])


def ref_ce(logits, targets):
    """-(1/N) sum_i sum_k t_ik log softmax(z_i)_k, written out with exp/log."""
    total = 0.0
    for z, t in zip(logits.tolist(), ref_rows(targets)):
        lse = math.log(sum(math.exp(v) for v in z))
        total -= sum(tk * (zk - lse) for zk, tk in zip(z, t))
    return total / len(logits)


def ref_rows(t):
    return t if isinstance(t, list) else t.tolist()


def onehot(y, k=K):
    return [[1.0 if j == c else 0.0 for j in range(k)] for c in y.tolist()]


def smooth(rows, eps, k=K):
    return [[(1 - eps) * v + eps / k for v in r] for r in rows]


def test_cross_entropy_hard_and_soft(logits, labels):
    ce = make_loss("cross_entropy")
    assert ce(logits, labels).item() == pytest.approx(ref_ce(logits, onehot(labels)), rel=1e-5)
    soft = torch.softmax(torch.randn(8, K), 1)
    assert ce(logits, soft).item() == pytest.approx(ref_ce(logits, soft), rel=1e-5)
    # a one-hot float target gives the same loss as the int label
    assert ce(logits, torch.tensor(onehot(labels))).item() == pytest.approx(
        ce(logits, labels).item(), rel=1e-6)


def test_label_smoothing(logits, labels):
    eps = 0.2
    want = ref_ce(logits, smooth(onehot(labels), eps))
    assert make_loss("cross_entropy", eps)(logits, labels).item() == pytest.approx(want, rel=1e-5)
    # the soft-target path smooths the same way
    hard_as_soft = torch.tensor(onehot(labels))
    assert make_loss("cross_entropy", eps)(logits, hard_as_soft).item() == pytest.approx(
        want, rel=1e-5)
    soft = torch.softmax(torch.randn(8, K), 1)
    assert make_loss("cross_entropy", 0.1)(logits, soft).item() == pytest.approx(
        ref_ce(logits, smooth(ref_rows(soft), 0.1)), rel=1e-5)


def test_label_smoothing_is_set_one_way():
    """The field, not a loss name; no committed run used the old name."""
    import json
    with pytest.raises(ValueError, match="label_smoothing=0.1 \\(the field\\)"):
        make_loss("label_smoothing")
    root = Path(__file__).resolve().parent.parent
    for path in [*root.glob("results/*/*.json"), *root.glob("runs/*/results/*/*.json")]:
        rec = json.loads(path.read_text())
        assert not isinstance(rec, dict) or \
            rec.get("config", {}).get("loss") != "label_smoothing", path


def test_cross_entropy_matches_the_explicit_soft_target_sum(logits, labels):
    """F.cross_entropy on probabilities = -sum(t * log_softmax), as before."""
    soft = torch.softmax(torch.randn(8, K), 1)
    for eps in (0.0, 0.2):
        t = soft * (1 - eps) + eps / K
        want = -(t * torch.log_softmax(logits, 1)).sum(1).mean()
        assert torch.allclose(make_loss("cross_entropy", eps)(logits, soft), want, atol=1e-6)


def ref_focal(logits, targets, gamma):
    total = 0.0
    for z, t in zip(logits.tolist(), targets):
        lse = math.log(sum(math.exp(v) for v in z))
        total -= sum(tk * (1 - math.exp(zk - lse)) ** gamma * (zk - lse)
                     for zk, tk in zip(z, t))
    return total / len(logits)


def test_focal(logits, labels):
    assert make_loss("focal", gamma=0.0)(logits, labels).item() == pytest.approx(
        make_loss("cross_entropy")(logits, labels).item(), rel=1e-6)
    for gamma in (1.0, 2.0):
        got = make_loss("focal", gamma=gamma)(logits, labels).item()
        assert got == pytest.approx(ref_focal(logits, onehot(labels), gamma), rel=1e-5)
        assert got < make_loss("cross_entropy")(logits, labels).item()
    assert make_loss("focal")(logits, labels).item() == pytest.approx(
        ref_focal(logits, onehot(labels), 2.0), rel=1e-5)  # default gamma 2
    soft = torch.softmax(torch.randn(8, K), 1)
    assert make_loss("focal", 0.1, gamma=2.0)(logits, soft).item() == pytest.approx(
        ref_focal(logits, smooth(soft.tolist(), 0.1), 2.0), rel=1e-5)


def test_mse(logits, labels):
    t = onehot(labels)
    want = sum((z - v) ** 2 for zr, tr in zip(logits.tolist(), t)
               for z, v in zip(zr, tr)) / (8 * K)
    assert make_loss("mse")(logits, labels).item() == pytest.approx(want, rel=1e-5)
    exact = torch.tensor(t)
    assert make_loss("mse")(exact, labels).item() == 0.0
    ts = smooth(t, 0.1)
    want = sum((z - v) ** 2 for zr, tr in zip(logits.tolist(), ts)
               for z, v in zip(zr, tr)) / (8 * K)
    assert make_loss("mse", 0.1)(logits, labels).item() == pytest.approx(want, rel=1e-5)


def test_as_soft(labels):
    t = as_soft(labels, K, 0.1)
    assert t.shape == (8, K) and torch.allclose(t.sum(1), torch.ones(8))
    assert torch.allclose(t.max(1).values, torch.full((8,), 0.9 + 0.1 / K))
    assert torch.equal(as_soft(labels, K), torch.tensor(onehot(labels)))


def test_losses_have_gradients(logits, labels):
    for name in LOSSES:
        z = logits.clone().requires_grad_()
        make_loss(name)(z, labels).backward()
        assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


def test_unknown_loss_and_option():
    with pytest.raises(ValueError, match="unknown loss 'hinge'; choose one of "
                                         "cross_entropy, focal, mse"):
        make_loss("hinge")
    with pytest.raises(ValueError, match=r"loss 'cross_entropy' has no option\(s\) "
                                         r"\['gamma'\]"):
        make_loss("cross_entropy", gamma=2.0)
