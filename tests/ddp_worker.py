"""One rank of the DDP check in test_train.py (run by torchrun): trains one epoch with the
trainer's own pieces and writes this rank's weights and the images its batches held."""
import sys
from pathlib import Path

import numpy as np
import torch

from nsa_fast import train
from nsa_fast.data import train_files


def main(root: str, out: str, *args: str) -> None:
    cfg, preset, _, _, _ = train.parse_args(["--data", root, "--category", "demo", "--out", out, *args])
    rank, world, local = train.setup_distributed(cfg)
    device = torch.device("cpu")
    files = train_files(root, "demo")
    pipeline = train.build_pipeline(cfg, preset, files, device, rank, world)
    model, opt, sched = train.build_model(cfg, preset, device)
    model = train.distribute(model, device, local, world)
    from nsa_fast.progress import Logger

    logger = Logger(Path(out), 1, 1, 0, 0, enabled=False)
    train.train_epoch(model, opt, pipeline, 0, cfg, preset, device, None, logger, 0)
    torch.save({"weights": model.module.state_dict(), "indices": np.concatenate(pipeline.batches(0)).tolist()},
               Path(out) / f"rank{rank}.pt")
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:])
