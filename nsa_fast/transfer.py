"""Host metadata sent to a device in one copy.

The batched pipeline decides everything about a batch on the host (plans, boxes, sizes, modes)
and the device needs all of it. Sending each array with ``torch.as_tensor(..., device=...)`` costs
one synchronous copy from pageable memory apiece; packing them into one pinned buffer costs one
asynchronous copy. Each field travels as the bytes of its own dtype (aligned to 8 bytes), so a
field is read on the device as a view of the buffer, with no cast and no wider type than the
host array had: a float32 field never passes through float64 on the device, which a GTX 1080
computes at 1/32 of its float32 rate.
"""
from __future__ import annotations

import numpy as np
import torch

_ALIGN = 8
# numpy dtypes a field may have, and the torch dtype of the same bytes
_DTYPES = {np.dtype(np.bool_): torch.bool, np.dtype(np.uint8): torch.uint8, np.dtype(np.int8): torch.int8,
           np.dtype(np.int16): torch.int16, np.dtype(np.int32): torch.int32, np.dtype(np.int64): torch.int64,
           np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}


class HostPack:
    """Named host arrays to be sent together (``send``)."""

    def __init__(self) -> None:
        self._parts: list[tuple[int, np.ndarray]] = []
        self._fields: dict[str, tuple[int, tuple[int, ...], torch.dtype]] = {}
        self._size = 0

    def add(self, name: str, array) -> None:
        """Add ``array`` as it is (its dtype is the one the device reads first: store a field in
        the dtype the device computes with, float32 rather than float64)."""
        a = np.ascontiguousarray(array)
        if name in self._fields:
            raise KeyError(f"field {name!r} was added twice")
        if a.dtype not in _DTYPES:
            raise TypeError(f"field {name!r}: expected one of {sorted(str(d) for d in _DTYPES)}, got {a.dtype}")
        self._fields[name] = (self._size, a.shape, _DTYPES[a.dtype])
        self._parts.append((self._size, a))
        self._size += -(-a.nbytes // _ALIGN) * _ALIGN

    def send(self, device: torch.device) -> "DevicePack":
        """One host-to-device copy: from pinned memory and asynchronous on CUDA."""
        cuda = device.type == "cuda"
        # Filled in place where the copy starts from (pinned memory on CUDA): one pass over the bytes.
        host = torch.zeros(self._size, dtype=torch.uint8, pin_memory=cuda)
        raw = host.numpy()
        for start, a in self._parts:
            raw[start:start + a.nbytes] = a.reshape(-1).view(np.uint8)
        return DevicePack(host.to(device, non_blocking=cuda), dict(self._fields))


class DevicePack:
    """Views of one device buffer by field name."""

    def __init__(self, buf: torch.Tensor, fields: dict[str, tuple[int, tuple[int, ...], torch.dtype]]):
        self.buf, self.fields = buf, fields

    def get(self, name: str, dtype: torch.dtype) -> torch.Tensor:
        """The field as a contiguous device tensor of ``dtype``: a view of the buffer when the field
        was added in that dtype (read-only by convention: other fields share the buffer), else a
        cast on the device. No copy back to the host either way."""
        start, shape, stored = self.fields[name]
        size = int(np.prod(shape, dtype=np.int64)) * stored.itemsize
        if size == 0:  # an empty byte slice has no stride to reinterpret
            return torch.empty(shape, dtype=dtype, device=self.buf.device)
        field = self.buf[start:start + size].view(stored).reshape(shape)
        return field if dtype == stored else field.to(dtype)
