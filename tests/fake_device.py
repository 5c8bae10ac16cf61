"""A stand-in accelerator for CPU-only tests: tensors that live "on the device" and count crossings.

Under ``FakeDevice()``, tensors on the device ``DEVICE`` ("meta" as far as the code under test can
tell) hold real CPU data inside, and every aten op on them runs on that data. The mode enforces
the rules a GPU enforces and counts what a GPU makes expensive:

- a host tensor with elements mixed into an op with device tensors is an error, as on CUDA
  (0-d tensors and Python numbers are scalars and allowed, as on CUDA);
- a device tensor built straight from a Python list (``torch.tensor(list, device=...)``), which
  skips the dispatcher, is an error when used: on CUDA it is an uncounted synchronous copy;
- host -> device copies (``.to(device)``, ``torch.as_tensor(array, device=...)``, ``copy_``)
  count in ``h2d``; device -> host copies (``.cpu()``) and reads of a value (``.item()``,
  ``bool(t)``, ``torch.equal``) count in ``d2h``;
- ops whose output size depends on the data (``nonzero``, boolean-mask indexing, ``unique``...)
  make a GPU wait for the device and count in ``syncs``;
- every other op that computes on the device (not a view, not an allocation, not a copy between
  host and device) would be at least one kernel launch on a GPU: it counts in ``kernels``, and
  those that make a float64 tensor on the device are named in ``float64``, with the nsa_fast
  function that made it.
``.numpy()`` of a device tensor fails, as it does for a CUDA tensor.
"""
from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map

DEVICE = torch.device("meta")
_SYNCING = {"nonzero", "nonzero_static", "masked_select", "unique", "_unique", "_unique2",
            "unique_consecutive", "unique_dim", "repeat_interleave", "masked_scatter"}
# ops that allocate or alias without computing: no kernel on a GPU
_NO_KERNEL = {"empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided", "_local_scalar_dense",
              "lift_fresh", "detach", "alias", "set_", "resize_", "_unsafe_view", "_reshape_alias"}


class DeviceTensor(torch.Tensor):
    """A tensor "on the device": its data is ``elem``, a CPU tensor."""

    @staticmethod
    def __new__(cls, elem: torch.Tensor):
        t = torch.Tensor._make_wrapper_subclass(cls, elem.shape, strides=elem.stride(),
                                                storage_offset=elem.storage_offset(), dtype=elem.dtype,
                                                device=DEVICE, requires_grad=elem.requires_grad)
        t.elem = elem
        return t

    def __repr__(self) -> str:
        return f"DeviceTensor({self.elem!r})"

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        raise RuntimeError(f"{func}: device tensors are only usable inside FakeDevice()")


def _where() -> str:
    """``module.py:function`` of the innermost nsa_fast frame of the caller's stack."""
    frame = sys._getframe(2)
    while frame is not None:
        path = Path(frame.f_code.co_filename)
        if "nsa_fast" in path.parts[:-1]:
            return f"{path.name}:{frame.f_code.co_name}"
        frame = frame.f_back
    return "outside nsa_fast"


def _wrap(out):
    return tree_map(lambda t: DeviceTensor(t) if isinstance(t, torch.Tensor) else t, out)


def host_data(t: torch.Tensor) -> torch.Tensor:
    """The CPU data of a device tensor, without counting a copy (for assertions in tests)."""
    return t.elem if isinstance(t, DeviceTensor) else t


def kernel(fn):
    """A host function run as if it were a device kernel: device tensors in and out, no copies.
    Stands in for CUDA kernels the harness cannot run (e.g. the disk median)."""
    def run(*args):
        return _wrap(fn(*tree_map(host_data, args)))
    return run


class FakeDevice(TorchDispatchMode):
    """Counts host-device crossings and refuses what a GPU refuses (see the module docstring)."""

    def __init__(self):
        super().__init__()
        self.h2d = self.d2h = self.syncs = self.kernels = 0
        self.events: list[str] = []
        self.float64: list[str] = []
        self.kernel_ops: Counter[str] = Counter()  # the kernel-like ops by name

    def reset(self) -> None:
        self.h2d = self.d2h = self.syncs = self.kernels = 0
        self.events.clear()
        self.float64.clear()
        self.kernel_ops.clear()

    def _count(self, kind: str, what: str) -> None:
        setattr(self, kind, getattr(self, kind) + 1)
        self.events.append(f"{kind}: {what}")

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        name = func._overloadpacket.__name__
        on_device, host = [], []

        def unwrap(x):
            if isinstance(x, DeviceTensor):
                on_device.append(x)
                return x.elem
            if isinstance(x, torch.Tensor):
                if x.device == DEVICE:
                    raise RuntimeError(f"{name}: a device tensor made from host data by a direct "
                                       "constructor (torch.tensor(list, device=...)): an uncounted copy")
                host.append(x)
            return x

        a, k = tree_map(unwrap, args), tree_map(unwrap, kwargs)
        target = k.get("device")
        to_device = target is not None and torch.device(target) == DEVICE
        if to_device:
            k["device"] = torch.device("cpu")
        if name == "_to_copy" and target is not None:
            if on_device and not to_device:
                self._count("d2h", f"{tuple(a[0].shape)} to the host")
                return func(*a, **k)
            if not on_device and to_device:
                self._count("h2d", f"{tuple(a[0].shape)} to the device")
                out = func(*a, **k)
                if out.dtype == torch.float64:
                    self.float64.append(f"{name} (a copy to the device) in {_where()}")
                return _wrap(out)
        if name == "copy_" and len(args) > 1:
            dst_dev, src_dev = isinstance(args[0], DeviceTensor), isinstance(args[1], DeviceTensor)
            if dst_dev != src_dev and args[1].dim() > 0:
                self._count("h2d" if dst_dev else "d2h", f"copy_ of {tuple(args[1].shape)}")
                func(*a, **k)
                return args[0]
        if on_device:
            mixed = [t for t in host if t.dim() > 0]
            if mixed:
                raise RuntimeError(f"{name}: a host tensor of shape {tuple(mixed[0].shape)} mixed with "
                                   "device tensors (CUDA refuses this; copy it to the device first)")
            if name in _SYNCING or (name in ("index", "index_put", "index_put_") and any(
                    isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in (a[1] or []))):
                self._count("syncs", f"{name} waits for the device (data-dependent size)")
        out = func(*a, **k)
        if on_device and not isinstance(out, (torch.Tensor, tuple, list)):
            self._count("d2h", f"{name} reads a value")
            return out
        if on_device or to_device:
            if not func.is_view and name not in _NO_KERNEL:
                self.kernels += 1
                self.kernel_ops[name] += 1
            made = [t for t in (out if isinstance(out, (tuple, list)) else [out]) if isinstance(t, torch.Tensor)]
            if any(t.dtype == torch.float64 for t in made):
                self.float64.append(f"{name} in {_where()}")
            return _wrap(out)
        return out
