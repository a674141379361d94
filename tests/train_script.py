"""Helper run as a subprocess by the DDP and kill-and-resume tests (not a test module).

    python tests/train_script.py OUT.json [--checkpoint DIR] [--ddp] [--batch B] [--epochs E]

Trains joint_nce on toy-1 data with early-stopping bookkeeping and writes the validation
NLL of the returned model, its step at the start (from a checkpoint) and at the end, and a digest
of its weights to OUT.json (with --ddp, the second process writes its own to OUT.rank1.json).
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import torch


def main() -> None:
    from ebreg.config import ModelConfig, TrainConfig
    from ebreg.datasets import Toy1
    from ebreg.engine import fit

    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--ddp", action="store_true")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--log", default=None)
    args = p.parse_args()
    torch.set_num_threads(1)
    train, val = Toy1.sample(640, 0), Toy1.sample(256, 1)
    t = [torch.as_tensor(a, dtype=torch.float32).view(-1, 1) for a in (train.x, train.y, val.x, val.y)]
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch, num_samples=128, patience=100, seed=0)
    extra = dict(strategy="ddp", devices=2, accelerator="cpu") if args.ddp else {}
    last = Path(args.checkpoint or "-") / "last.ckpt"
    start_step = torch.load(last, weights_only=False)["global_step"] if last.exists() else 0
    result = fit(ModelConfig(feature_hidden=(32, 32)), cfg, *t, progress=False, checkpoint_dir=args.checkpoint,
                 resume=args.checkpoint is not None, log_dir=args.log, **extra)
    module = result.module
    with torch.no_grad():
        nll = float(module.validation_nll(t[2], t[3]).mean())
    weights = torch.cat([p.detach().reshape(-1) for p in module.parameters()]).numpy().tobytes()
    out = Path(args.out)
    if module.global_rank:
        out = out.with_suffix(f".rank{module.global_rank}.json")
    out.write_text(json.dumps({"val_nll": nll, "best_val_nll": result.best_val_nll,
                               "best_epoch": result.best_epoch, "global_step": module.global_step,
                               "start_step": start_step, "weights_sha256": hashlib.sha256(weights).hexdigest()}))


if __name__ == "__main__":
    main()
