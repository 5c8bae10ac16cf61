"""Where the network trains and with what numerics: the device, the precision, determinism.

Chosen once, at the start of a run (``nsa_fast.train``), from the command line's settings.
"""
from __future__ import annotations

import contextlib
import os

import torch

from .errors import NsaError, warn
from .sampler import Stats

CUBLAS_ENV = "CUBLAS_WORKSPACE_CONFIG"
CUBLAS_DETERMINISTIC = (":4096:8", ":16:8")  # the settings under which cuBLAS is deterministic


def pick_device(cfg, local_rank: int) -> torch.device:
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise NsaError("--device cuda: no CUDA GPU is visible; use --device cpu (or auto).")
    if cfg.device == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", local_rank)


def autocast_dtype(cfg, device: torch.device) -> torch.dtype | None:
    """bf16 only where the GPU computes it fast (sm_80 and newer); fp32 on Pascal and the CPU."""
    if cfg.amp == "bf16" and device.type != "cuda":
        warn("--amp bf16 applies on a GPU; training on the CPU runs in fp32")
    if cfg.amp == "off" or device.type != "cuda":
        return None
    fast_bf16 = torch.cuda.get_device_capability(device)[0] >= 8
    if cfg.amp == "bf16" or fast_bf16:
        return torch.bfloat16
    return None


@contextlib.contextmanager
def determinism(deterministic: bool, device: torch.device):
    """The process-wide settings of ``--deterministic`` while the run lasts (restored after, for
    programs that call ``main`` more than once).

    With it: deterministic algorithms only (an operation without one raises), cuDNN's
    deterministic algorithms without autotuning, and cuBLAS's fixed workspace (set before cuBLAS
    creates its first handle). Without it, on CUDA: cuDNN autotunes, since the shapes are fixed.
    """
    saved = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    saved_env = os.environ.get(CUBLAS_ENV)
    if deterministic:
        if saved_env not in (None, *CUBLAS_DETERMINISTIC):
            raise NsaError(f"--deterministic needs {CUBLAS_ENV} to be one of {', '.join(CUBLAS_DETERMINISTIC)}, "
                             f"found {saved_env!r} in the environment; unset it or set one of those.")
        os.environ[CUBLAS_ENV] = saved_env or CUBLAS_DETERMINISTIC[0]
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[2:]
        if saved_env is None:
            os.environ.pop(CUBLAS_ENV, None)


def precision(device: torch.device, amp_dtype: torch.dtype | None):
    """bf16 autocast where ``autocast_dtype`` chose it; nothing otherwise."""
    return torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None else contextlib.nullcontext()


def setup_distributed(cfg) -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; initialises the process group
    (NCCL for GPU training, gloo for CPU training, also on a machine with GPUs)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, 0
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    gpu = torch.cuda.is_available() and cfg.device != "cpu"
    backend = "nccl" if gpu else "gloo"
    if gpu:
        torch.cuda.set_device(local)
    torch.distributed.init_process_group(backend)
    return rank, world, local


def distribute(model, device: torch.device, local: int, world: int):
    """The model as DDP sees it in a run of ``world`` processes (gradients averaged over the ranks
    at every step); the model itself in a single-process run."""
    if world == 1:
        return model
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=[local] if device.type == "cuda" else None)


def all_ranks(stats: Stats, device: torch.device, world: int) -> Stats:
    """The epoch's counts summed over the ranks of a DDP run (each made its own samples)."""
    if world == 1:
        return stats
    t = torch.as_tensor(stats.to_array(), device=device)
    torch.distributed.all_reduce(t)
    return Stats.from_array(t.cpu().numpy())  # sync: once an epoch
