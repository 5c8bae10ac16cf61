"""Host metadata sent to a device in one copy.

The batched pipeline decides everything about a batch on the host (plans, boxes, sizes, modes)
and the device needs all of it. Sending each array with ``torch.as_tensor(..., device=...)`` costs
one synchronous copy from pageable memory apiece; packing them into one pinned buffer costs one
asynchronous copy. Values travel as float64, which holds every integer below 2^53 and every
float32 exactly; ``DevicePack.get`` casts them back on the device.
"""
from __future__ import annotations

import numpy as np
import torch

_EXACT = 2.0**53


class HostPack:
    """Named host arrays to be sent together (``send``)."""

    def __init__(self) -> None:
        self._parts: list[np.ndarray] = []
        self._fields: dict[str, tuple[int, tuple[int, ...]]] = {}
        self._size = 0

    def add(self, name: str, array) -> None:
        a = np.asarray(array)
        if name in self._fields:
            raise KeyError(f"field {name!r} was added twice")
        if a.dtype.kind not in "biuf":
            raise TypeError(f"field {name!r}: numbers only, got {a.dtype}")
        flat = a.astype(np.float64).ravel()
        if a.dtype.kind in "iu" and flat.size and np.abs(flat).max() >= _EXACT:
            raise ValueError(f"field {name!r}: integers beyond 2^53 do not survive the float64 buffer")
        self._fields[name] = (self._size, a.shape)
        self._parts.append(flat)
        self._size += flat.size

    def send(self, device: torch.device) -> "DevicePack":
        """One host-to-device copy: from pinned memory and asynchronous on CUDA."""
        host = torch.from_numpy(np.concatenate(self._parts) if self._parts else np.zeros(0))
        if device.type == "cuda":
            buf = host.pin_memory().to(device, non_blocking=True)
        else:
            buf = host.to(device)
        return DevicePack(buf, dict(self._fields))


class DevicePack:
    """Views of one device buffer by field name."""

    def __init__(self, buf: torch.Tensor, fields: dict[str, tuple[int, tuple[int, ...]]]):
        self.buf, self.fields = buf, fields

    def get(self, name: str, dtype: torch.dtype) -> torch.Tensor:
        """The field as a contiguous device tensor of ``dtype`` (a cast on the device, no copy back)."""
        start, shape = self.fields[name]
        size = int(np.prod(shape, dtype=np.int64))
        return self.buf[start:start + size].reshape(shape).to(dtype).contiguous()
