"""Pooled maps in the store: arrays in one compressed blob, with a JSON header for the rest.

A blob may come from another machine (`attn runs import`), so reading one is bounded: the header
is read first and its arrays' dtypes and shapes checked, their bytes added up and held to
MAX_MAPS_BYTES before anything is allocated, and then exactly the bytes the header declares are
decompressed, in chunks; a blob that holds more (a zip bomb: 2 GiB of zeros compress to 2 MiB)
or less is refused in one line at the first byte past its declaration.
"""
from __future__ import annotations

import json
import math
import struct
import zlib
from dataclasses import fields, is_dataclass
from typing import Any

from attn.readable import nbytes
from attn.runs.records import RunStoreError

MAPS_FORMAT = "attn-maps-1"
# The largest maps attn writes are a model's every layer and head at 64 x 64 cells, twice: a
# plan's before and after (attn.models.plan_maps, 64 tokens) and the Models page's view (64 cells
# a side). For the largest released model (126 layers of 128 heads) that is 2 x 126 x 128 x 64 x 64
# x 4 bytes = 528 MB; 1 GiB leaves room above it. encode_maps refuses more, so every blob attn
# writes reads back, and decode_maps never allocates more for a blob it did not write.
MAX_MAPS_BYTES = 2**30
# the structure (a few names and lists) and one {dtype, shape} per array: kilobytes in practice
MAX_HEADER_BYTES = 16 * 2**20
MAX_DIMS = 32  # numpy's own limit is 64; a pooled map has 2 to 4
# what encode_maps writes: numeric arrays, little-endian, floats as float32 or float16
DTYPES = ("|b1", "|i1", "<i2", "<i4", "<i8", "|u1", "<u2", "<u4", "<u8", "<f2", "<f4")
_CHUNK = 2**24  # bytes decompressed at a time, so a bomb's output never piles up


class MapsTooLarge(ValueError):
    """Maps past what a run may hold (MAX_MAPS_BYTES)."""


def encode_maps(maps: dict[str, Any]) -> bytes:
    """Maps to bytes: zlib of (header length, JSON header, raw array bytes).

    The header is the maps' structure with each array replaced by {"$array": i}, and the dtype
    and shape of array i. Dataclasses (a PooledMap) are saved as dicts of their fields. Float arrays are stored as float32 (float16 ones as float16): maps
    feed pictures, and float32 keeps the tiny weights a log colour scale shows.
    MapsTooLarge when the header or the whole would be past what decode_maps reads back.
    """
    arrays: list[Any] = []
    tree = _tree(maps, arrays)
    chunks, described = [], []
    for array in arrays:
        described.append({"dtype": array.dtype.str, "shape": list(array.shape)})
        chunks.append(array.tobytes(order="C"))
    header = json.dumps({"tree": tree, "arrays": described}).encode()
    total = 4 + len(header) + sum(len(c) for c in chunks)
    if len(header) > MAX_HEADER_BYTES or total > MAX_MAPS_BYTES:
        raise MapsTooLarge(f"maps of {nbytes(total)} are more than a run keeps ({nbytes(MAX_MAPS_BYTES)}, "
                           f"structure at most {nbytes(MAX_HEADER_BYTES)}): save fewer layers, heads or cells")
    # level 1: float mantissas hardly compress at any level, and level 6 is half as fast again
    return zlib.compress(struct.pack("<I", len(header)) + header + b"".join(chunks), 1)


def decode_maps(data: bytes, fmt: str = MAPS_FORMAT, what: str = "the saved maps") -> dict[str, Any]:
    """The inverse of `encode_maps`: arrays come back as writable numpy arrays. RunStoreError, in
    one line that starts with `what`, for a blob that is damaged or past the bounds."""
    import numpy as np  # lazy: a store that lists and saves plain runs never needs it

    if fmt != MAPS_FORMAT:
        raise RunStoreError(f"{what} were saved as {fmt!r}, which this attn cannot read: upgrade attn")
    try:
        return _decoded(data, np)
    # a blob damaged on disk or written by another program: whichever step it fails at
    except (zlib.error, struct.error, ValueError, TypeError, KeyError, IndexError, OverflowError,
            RecursionError) as error:
        reason = str(error) if isinstance(error, _Refused) else f"{type(error).__name__}: {error}"
        raise RunStoreError(f"{what} are damaged ({' '.join(reason.split())[:300]}): "
                            "delete the run or restore the file") from None


class _Refused(ValueError):
    """A blob past the bounds or unlike what encode_maps writes; the message says how."""


class _Inflater:
    """A zlib stream read exactly as far as asked, never further: a bomb cannot run ahead."""

    def __init__(self, data: bytes) -> None:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise _Refused(f"a {type(data).__name__} where a blob should be")
        self.stream, self.tail = zlib.decompressobj(), bytes(data)

    def read(self, size: int) -> bytearray:
        out = bytearray()
        while len(out) < size:
            before = len(self.tail)
            chunk = self.stream.decompress(self.tail, min(size - len(out), _CHUNK))
            self.tail = self.stream.unconsumed_tail
            out += chunk
            if not chunk and len(self.tail) == before:  # no output, no input taken: the data ends
                raise _Refused(f"truncated: {size - len(out):,} bytes short of what its header declares")
        return out

    def check_end(self) -> None:
        if self.stream.decompress(self.tail, 1):
            raise _Refused("they decompress to more bytes than their header declares")
        if not self.stream.eof:
            raise _Refused("truncated: the compressed stream does not end")


def _described(described: Any) -> tuple[str, list[int], int]:
    """(dtype, shape, bytes) of one array of the header, or _Refused."""
    if not isinstance(described, dict):
        raise _Refused("an array described by something other than an object")
    dtype, shape = described.get("dtype"), described.get("shape")
    if dtype not in DTYPES:
        raise _Refused(f"an array of dtype {str(dtype)[:20]!r}; maps hold {', '.join(DTYPES)}")
    if (not isinstance(shape, list) or len(shape) > MAX_DIMS
            or any(isinstance(n, bool) or not isinstance(n, int) or n < 0 for n in shape)):
        raise _Refused(f"an array of shape {str(shape)[:40]}; a shape is at most {MAX_DIMS} "
                       "whole numbers >= 0")
    return dtype, shape, math.prod(shape) * int(dtype[2:])


def _decoded(data: bytes, np: Any) -> dict[str, Any]:
    blob = _Inflater(data)
    (size,) = struct.unpack("<I", blob.read(4))
    if size > MAX_HEADER_BYTES:
        raise _Refused(f"a header of {nbytes(size)}, past the {nbytes(MAX_HEADER_BYTES)} attn writes")
    header = json.loads(blob.read(size))
    if not isinstance(header, dict) or not isinstance(header.get("arrays"), list):
        raise ValueError("no list of arrays in the header")
    described = [_described(d) for d in header["arrays"]]
    total = 4 + size + sum(n for _, _, n in described)
    if total > MAX_MAPS_BYTES:  # checked before any array is allocated
        raise _Refused(f"their header declares {nbytes(total)}, past the {nbytes(MAX_MAPS_BYTES)} "
                       "a run's maps may hold")
    arrays = []
    for dtype, shape, count in described:
        # a bytearray is writable, so the array is the decompressed bytes themselves, no copy
        array = np.frombuffer(blob.read(count), dtype=np.dtype(dtype)).reshape(shape)
        arrays.append(array.astype(array.dtype.newbyteorder("="), copy=False))
    blob.check_end()
    return _untree(header["tree"], arrays)


def _tree(value: Any, arrays: list[Any]) -> Any:
    if isinstance(value, dict):
        return {str(key): _tree(item, arrays) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_tree(item, arrays) for item in value]
    if isinstance(value, (str, bool, int, float)) or value is None:
        return value
    if is_dataclass(value) and not isinstance(value, type):
        # a PooledMap and the like: walked field by field, so its arrays stay binary
        return _tree({f.name: getattr(value, f.name) for f in fields(value)}, arrays)
    if hasattr(value, "detach"):  # a torch tensor, without importing torch here
        value = value.detach().cpu().numpy()
    import numpy as np  # lazy: see decode_maps

    if isinstance(value, np.generic):
        return value.item()
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        raise ValueError(f"maps can hold numeric arrays only, not {array.dtype} ones")
    if array.dtype.kind == "f" and array.dtype != np.float16:
        array = array.astype(np.float32)
    arrays.append(np.ascontiguousarray(array.astype(array.dtype.newbyteorder("<"))))
    return {"$array": len(arrays) - 1}


def _untree(value: Any, arrays: list[Any]) -> Any:
    if isinstance(value, dict):
        if set(value) == {"$array"}:
            index = value["$array"]
            if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(arrays):
                raise _Refused(f"a reference to array {str(index)[:20]} of {len(arrays)}")
            return arrays[index]
        return {key: _untree(item, arrays) for key, item in value.items()}
    if isinstance(value, list):
        return [_untree(item, arrays) for item in value]
    return value
