"""Training throughput: this pipeline against a torchvision DataLoader with PIL.

Both sides train the same model with the same optimizer on the same device
for the same number of images, one after the other in one process:

* ours: ``engine.fit`` over the device-resident loader (batch augmentation
  on the device, no host sync per step); images/s over its training steps;
* naive: the course-report loop, a ``torchvision`` dataset of PIL images with
  RandomCrop(32, 4), RandomHorizontalFlip, ToTensor, Normalize, a DataLoader
  with worker processes, ``.to(device)`` per batch and ``loss.item()`` per step.

Prints images/s of each and their ratio, and writes them as JSON.

    python benchmarks/throughput.py --model cnn3 --images 6000            # CPU
    python benchmarks/throughput.py --model resnet18 --data cifar --workers 16
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cifar_lib.data import load_cifar10, split_data, synthetic_cifar  # noqa: E402
from cifar_lib.engine import TrainConfig, default_device, fit, make_loaders  # noqa: E402
from cifar_lib.experiments import write_json, environment  # noqa: E402
from cifar_lib.models import create_model  # noqa: E402
from cifar_lib.optim import make_optimizer  # noqa: E402


class PILDataset(torch.utils.data.Dataset):
    """uint8 tensors served as PIL images through torchvision transforms."""

    def __init__(self, x, y, transform):
        self.x, self.y, self.transform = x.permute(0, 2, 3, 1).numpy(), y.tolist(), transform

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        from PIL import Image
        return self.transform(Image.fromarray(self.x[i])), self.y[i]


def naive_images_per_s(cfg: TrainConfig, split, device, workers: int, epochs: int) -> float:
    """Images/s of the plain DataLoader + PIL loop (first epoch's first batches skipped)."""
    import torchvision.transforms as T
    tf = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                    T.Normalize(split.mean, split.std)])
    loader = torch.utils.data.DataLoader(
        PILDataset(*split.train, tf), batch_size=cfg.batch_size, shuffle=True,
        num_workers=workers, drop_last=True, pin_memory=device.type == "cuda",
        persistent_workers=workers > 0)
    torch.manual_seed(cfg.seed)
    model = create_model(cfg.model, **cfg.model_kw).to(device)
    if hasattr(model, "data_init"):
        model.data_init((split.train[0][:5000].float() / 255 - torch.tensor(split.mean).view(1, 3, 1, 1))
                        / torch.tensor(split.std).view(1, 3, 1, 1))
    opt = make_optimizer(cfg.optimizer, model, lr=cfg.lr, momentum=cfg.momentum,
                         weight_decay=cfg.weight_decay, nesterov=cfg.nesterov)
    amp = device.type == "cuda"
    model.train()
    images, seconds = 0, 0.0
    for epoch in range(epochs):
        t0 = None
        for step, (x, y) in enumerate(loader):
            if step == 2:  # skip worker start-up
                if device.type == "cuda":
                    torch.cuda.synchronize()
                t0, counted = time.perf_counter(), 0
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss.item()  # the usual per-step logging sync
            if t0 is not None:
                counted += len(x)
        if t0 is not None:
            seconds += time.perf_counter() - t0
            images += counted
    return images / seconds


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="cnn3")
    ap.add_argument("--model-kw", default="{}", help='JSON, e.g. \'{"width": 0.5}\'')
    ap.add_argument("--data", choices=("synthetic", "cifar"), default="synthetic")
    ap.add_argument("--images", type=int, default=6000, help="training images per epoch")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--workers", type=int, default=min(16, os.cpu_count() or 1))
    ap.add_argument("--out", default=None, help="JSON file for the figures")
    args = ap.parse_args(argv)

    device = default_device()
    if args.data == "cifar":
        data = load_cifar10()
    else:
        data = synthetic_cifar(args.images + 500, 500)
    split = split_data(data, val_size=500, train_size=args.images, test_size=500)
    cfg = TrainConfig(model=args.model, model_kw=json.loads(args.model_kw), epochs=args.epochs,
                      batch_size=args.batch, lr=0.05, scheduler="constant",
                      augment="crop_flip", tta_flip=False)
    model = create_model(cfg.model, **cfg.model_kw)
    hist = fit(model, make_loaders(split, cfg, device), cfg)["history"]
    # steady state, as for the naive loop (which skips its start-up steps):
    # the first epoch pays for cudnn's kernel selection; epoch times include
    # the per-epoch validation pass, so this is conservative for us
    later = [h["time"] for h in hist[1:]] or [hist[0]["time"]]
    ours = len(split.train[1]) // cfg.batch_size * cfg.batch_size / (sum(later) / len(later))
    naive = naive_images_per_s(cfg, split, device, args.workers, args.epochs)
    env = environment(device)
    result = {"model": args.model, "model_kw": cfg.model_kw, "batch_size": args.batch,
              "images_per_epoch": args.images, "epochs": args.epochs, "workers": args.workers,
              "device": env["device_name"], "torch": env["torch"], "data": split.source,
              "ours_images_per_s": ours, "naive_images_per_s": naive, "ratio": ours / naive}
    print(f"{args.model} on {env['device_name']} ({device.type}), batch {args.batch}: "
          f"ours {ours:,.0f} img/s, DataLoader+PIL ({args.workers} workers) "
          f"{naive:,.0f} img/s, ratio {ours / naive:.2f}x")
    if args.out:
        write_json(result, Path(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
