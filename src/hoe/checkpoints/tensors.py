"""Stream a checkpoint's tensors one at a time, so peak memory stays near one tensor pair.

Safetensors files are read with positioned reads (``os.preadv``) into fresh tensors instead of
through a memory map: pages of a map that have been touched count towards the process's RSS
until the map closes, so streaming two 7B checkpoints through ``safe_open`` still shows ~2× the
model size as resident memory. The format is a little-endian u64 header length, a JSON header
(dtype, shape, byte offsets per tensor) and the raw data.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import torch

from hoe.errors import HoEError

_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
}


def read_safetensors_header(path: Path) -> tuple[dict, int]:
    """(header without metadata, byte offset where the data starts)."""
    with open(path, "rb") as handle:
        raw = handle.read(8)
        if len(raw) != 8:
            raise HoEError(f"'{path}' is not a safetensors file (too short)")
        (length,) = struct.unpack("<Q", raw)
        try:
            header = json.loads(handle.read(length))
        except (json.JSONDecodeError, UnicodeDecodeError, MemoryError, OverflowError):
            raise HoEError(f"'{path}' is not a safetensors file (bad header)") from None
    header.pop("__metadata__", None)
    return header, 8 + length


class CheckpointTensors:
    """Lazy access to the weights of a transformers folder (single or sharded safetensors; a
    legacy ``pytorch_model.bin`` is memory-mapped with ``weights_only=True``)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self._entries: dict[str, tuple[Path, dict, int]] = {}
        self._legacy: dict[str, torch.Tensor] | None = None
        files = sorted(self.folder.glob("*.safetensors"))
        if files:
            for file in files:
                header, data_start = read_safetensors_header(file)
                for name, entry in header.items():
                    self._entries[name] = (file, entry, data_start)
        elif (self.folder / "pytorch_model.bin").is_file():
            self._legacy = torch.load(
                self.folder / "pytorch_model.bin", map_location="cpu", weights_only=True, mmap=True
            )
        else:
            raise HoEError(f"no weights in '{self.folder}' (expected *.safetensors or pytorch_model.bin)")

    def names(self) -> list[str]:
        return list(self._legacy) if self._legacy is not None else list(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in (self._legacy if self._legacy is not None else self._entries)

    def shape(self, name: str) -> tuple[int, ...]:
        if self._legacy is not None:
            return tuple(self._legacy[name].shape)
        return tuple(self._entries[name][1]["shape"])

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {name: self.shape(name) for name in self.names()}

    def get(self, name: str) -> torch.Tensor:
        if self._legacy is not None:
            return self._legacy[name]
        file, entry, data_start = self._entries[name]
        if entry["dtype"] not in _DTYPES:
            raise HoEError(f"tensor '{name}' in '{file}' has unsupported dtype {entry['dtype']}")
        begin, end = entry["data_offsets"]
        tensor = torch.empty(entry["shape"], dtype=_DTYPES[entry["dtype"]])
        buffer = memoryview(tensor.view(-1).view(torch.uint8).numpy()) if tensor.numel() else memoryview(b"")
        if len(buffer) != end - begin:
            raise HoEError(f"tensor '{name}' in '{file}' has {end - begin} bytes for shape {entry['shape']}")
        fd = os.open(file, os.O_RDONLY)
        try:
            done = 0
            while done < len(buffer):
                read = os.preadv(fd, [buffer[done:]], data_start + begin + done)
                if read <= 0:
                    raise HoEError(f"'{file}' ends early (tensor '{name}')")
                done += read
        finally:
            os.close(fd)
        return tensor
