"""Pooled maps in the store: arrays in one compressed blob, with a JSON header for the rest."""
from __future__ import annotations

import json
import math
import struct
import zlib
from dataclasses import fields, is_dataclass
from typing import Any

from attn.runs.records import RunStoreError

MAPS_FORMAT = "attn-maps-1"


def encode_maps(maps: dict[str, Any]) -> bytes:
    """Maps to bytes: zlib of (header length, JSON header, raw array bytes).

    The header is the maps' structure with each array replaced by {"$array": i}, and the dtype
    and shape of array i. Dataclasses (a PooledMap) are saved as dicts of their fields. Float arrays are stored as float32 (float16 ones as float16): maps
    feed pictures, and float32 keeps the tiny weights a log colour scale shows.
    """
    arrays: list[Any] = []
    tree = _tree(maps, arrays)
    chunks, described = [], []
    for array in arrays:
        described.append({"dtype": array.dtype.str, "shape": list(array.shape)})
        chunks.append(array.tobytes(order="C"))
    header = json.dumps({"tree": tree, "arrays": described}).encode()
    # level 1: float mantissas hardly compress at any level, and level 6 is half as fast again
    return zlib.compress(struct.pack("<I", len(header)) + header + b"".join(chunks), 1)


def decode_maps(data: bytes, fmt: str = MAPS_FORMAT) -> dict[str, Any]:
    """The inverse of `encode_maps`: arrays come back as writable numpy arrays."""
    import numpy as np  # lazy: a store that lists and saves plain runs never needs it

    if fmt != MAPS_FORMAT:
        raise RunStoreError(f"maps saved as {fmt!r}, which this attn cannot read: upgrade attn")
    try:
        return _decoded(data, np)
    # a blob damaged on disk or written by another program: whichever step it fails at
    except (zlib.error, struct.error, ValueError, TypeError, KeyError, IndexError, OverflowError) as error:
        raise RunStoreError(f"the saved maps are damaged ({type(error).__name__}: {error}): "
                            "delete the run or restore the file") from None


def _decoded(data: bytes, np: Any) -> dict[str, Any]:
    raw = zlib.decompress(data)
    (size,) = struct.unpack_from("<I", raw)
    header = json.loads(raw[4:4 + size])
    arrays, offset = [], 4 + size
    if not isinstance(header, dict) or not isinstance(header.get("arrays"), list):
        raise ValueError("no list of arrays in the header")
    for described in header["arrays"]:
        dtype = np.dtype(described["dtype"])
        count = math.prod(described["shape"])
        array = np.frombuffer(raw, dtype=dtype, count=count, offset=offset)
        arrays.append(array.reshape(described["shape"]).astype(dtype.newbyteorder("="), copy=True))
        offset += count * dtype.itemsize
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
            return arrays[value["$array"]]
        return {key: _untree(item, arrays) for key, item in value.items()}
    if isinstance(value, list):
        return [_untree(item, arrays) for item in value]
    return value
