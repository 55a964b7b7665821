"""Failed runs: a run that never learned (cifar_lib.health), and fit's status."""
import math

from cifar_lib.health import failure, record_failure, window


def epochs(losses, accs):
    return [{"epoch": i + 1, "train_loss": l, "val_acc": a}
            for i, (l, a) in enumerate(zip(losses, accs))]


# full profile, architectures: VGG-A seed 0 sat at chance from epoch 2 to 8
VGG_A = epochs([2.2954, 2.3085, 2.3033, 2.3034, 2.3031, 2.3029, 2.3025, 2.3006],
               [0.1566, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1])
# LeNet seed 0: at chance in epochs 2 and 3, then learning
LENET = epochs([2.1851, 2.3083, 2.3033, 2.2767, 2.1052, 1.9667, 1.898, 1.8718],
               [0.1152, 0.1002, 0.1002, 0.1988, 0.286, 0.3174, 0.3312, 0.341])
LEARNS = epochs([1.742, 1.158, 0.93, 0.81, 0.72, 0.66, 0.61, 0.58],
                [0.431, 0.532, 0.63, 0.69, 0.73, 0.76, 0.78, 0.799])


def test_a_run_at_chance_failed_from_the_epoch_it_got_there():
    assert failure(VGG_A) == "at chance from epoch 2 (val acc 0.100, train loss 2.301)"


def test_a_run_that_recovered_or_learned_did_not_fail():
    assert failure(LENET) is None
    assert failure(LEARNS) is None


def test_window_reads_the_last_half_at_least_two():
    assert [window(n) for n in (1, 2, 3, 4, 8, 9)] == [0, 2, 2, 2, 4, 5]
    # late recovery in the last epoch: not failed
    assert failure(VGG_A[:-1] + [{"epoch": 8, "train_loss": 1.9, "val_acc": 0.3}]) is None
    assert failure(VGG_A[:1]) is None  # one epoch: not judged


def test_loss_alone_or_accuracy_alone_is_enough():
    uniform = math.log(10)
    # val_every=0: no validation but the last epoch's; the loss decides
    lean = [{"epoch": i, "train_loss": uniform * 1.01, "val_acc": None} for i in (1, 2, 3)]
    assert failure(lean) == f"at chance from epoch 1 (train loss {uniform * 1.01:.3f})"
    lean[-1]["train_loss"] = 1.5
    assert failure(lean) is None
    # loss away from ln(C) (e.g. label smoothing, blown up) but accuracy at chance
    stuck = epochs([5.0, 4.0, 3.5], [0.12, 0.1, 0.11])
    assert failure(stuck) == "at chance from epoch 1 (val acc 0.110, train loss 3.500)"
    # the accuracy margin and the number of classes
    assert failure(epochs([1.0, 1.0], [0.13, 0.13])) is None
    assert failure(epochs([4.59, 4.60], [0.02, 0.02]), num_classes=100) is not None


def test_history_as_a_dict_of_lists():
    hist = {"train_loss": [r["train_loss"] for r in VGG_A],
            "val_acc": [r["val_acc"] for r in VGG_A]}
    assert failure(hist) == failure(VGG_A)
    assert failure({}) is None and failure([]) is None


def test_record_failure():
    assert record_failure({"status": "ok", "history": VGG_A}).startswith("at chance")
    assert record_failure({"status": "ok", "history": LEARNS}) is None
    assert record_failure({"status": "diverged", "diverged_at": {"epoch": 3, "step": 7},
                           "history": VGG_A[:3]}) == "diverged at epoch 3"
    assert record_failure({"status": "failed", "failure": "at chance from epoch 1 (x)",
                           "history": []}) == "at chance from epoch 1 (x)"


def test_accuracy_above_chance_means_learned_whatever_the_loss():
    """Label smoothing or a slow rate keeps the loss near ln 10 while the
    accuracy rises: the cpu profile's Adam at 1e-4 with the step schedule."""
    slow = [{"epoch": 1, "train_loss": 2.297, "train_acc": 0.138, "val_acc": None},
            {"epoch": 2, "train_loss": 2.267, "train_acc": 0.193, "val_acc": None},
            {"epoch": 3, "train_loss": 2.252, "train_acc": 0.225, "val_acc": None},
            {"epoch": 4, "train_loss": 2.251, "train_acc": 0.229, "val_acc": 0.227}]
    assert failure(slow) is None
    for e in slow:                                   # the same loss at chance accuracy
        e["train_acc"] = 0.1
    slow[-1]["val_acc"] = 0.1
    assert failure(slow).startswith("at chance from epoch 1")
    slow[-1]["val_acc"] = 0.3                        # validation decides where measured
    slow[-2]["train_acc"] = 0.3
    assert failure(slow) is None


def test_a_record_stored_under_the_old_rule_is_judged_again():
    from cifar_lib.experiments import results_frame
    from cifar_lib.health import learned
    hist = [{"epoch": 1, "train_loss": 2.26, "train_acc": 0.19, "val_acc": None},
            {"epoch": 2, "train_loss": 2.25, "train_acc": 0.23, "val_acc": 0.227}]
    rec = {"experiment": "x", "label": "a", "run": "a-0", "status": "failed",
           "failure": "at chance from epoch 1 (val acc 0.227, train loss 2.251)",
           "history": hist, "config": {"seed": 0}, "metrics": {"test_acc": 0.221}}
    assert record_failure(rec) is None and learned(rec)
    row = results_frame([rec]).iloc[0]
    assert row["status"] == "ok" and row["failure"] is None
    stuck = {**rec, "status": "ok", "failure": None,
             "history": [{**h, "train_acc": 0.1, "val_acc": 0.1} for h in hist]}
    assert results_frame([stuck]).iloc[0]["status"] == "failed" and not learned(stuck)
    assert not learned({**rec, "status": "diverged"})
