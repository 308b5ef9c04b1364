"""What crosses between the app and its worker: JSON, never pickle.

A pickle names any importable callable and calls it when it is loaded; this codec decodes data
only. A job is a module-level function named by its module and name; the module must be allowed
(attn and its modules, or one registered with `allow_module`, as the tests register theirs), and
the name must lead to a plain Python function defined in that very module. Arguments, partial
items and results are JSON, with a tagged object (``{"__attn__": kind, ...}``) for what JSON
lacks:

- tuples, sets, bytes, and dicts whose keys are not all strings;
- numpy arrays and scalars, and torch tensors: dtype (numbers and bools only), shape and the raw
  bytes in base64; decoding copies the bytes into a new array or a CPU tensor, and runs nothing;
- dataclasses and named tuples of allowed modules, by class name: a class with both `to_dict`
  and `from_dict` (AttentionSpec, whose __init__ takes variant parameters as keywords) travels
  as its dict, any other as its fields. Decoding imports only allowed modules and builds only a
  dataclass or named tuple found there.

NaN and infinities travel as JSON's common extension (NaN, Infinity), as Python's json writes
them. A subclass of str, int or float (torch's TorchVersion, an IntEnum) arrives as the plain
type, equal to what was sent. Anything else (a lambda, an open file, an object array) cannot be encoded: `dumps` raises
TypeError, and the worker fails that job with the reason.

numpy and torch are imported only when a message holds one of their values.
"""
from __future__ import annotations

import base64
import dataclasses
import importlib
import inspect
import json
import math
import sys
from typing import Any, Callable

TAG = "__attn__"
_PACKAGES = ("attn",)  # a module of these packages is always allowed
_extra_modules: set[str] = set()
# element types an array or a tensor may have: numbers and bools, never objects or records
_NUMPY_KINDS = frozenset("biufc")
_TORCH_DTYPES = frozenset({"bool", "uint8", "int8", "int16", "int32", "int64", "float16", "bfloat16",
                           "float32", "float64", "complex64", "complex128"})


def allow_module(name: str) -> None:
    """Let jobs and classes of module `name` cross too (the tests register tests.jobfns).

    A worker started before the call does not know it; the runner restarts its worker when the
    allowed modules have changed since it started."""
    if not name or not all(part.isidentifier() for part in name.split(".")):
        raise ValueError(f"not a module name: {name!r}")
    _extra_modules.add(name)


def allowed_modules() -> tuple[str, ...]:
    """The modules allowed with `allow_module`, beyond attn's own."""
    return tuple(sorted(_extra_modules))


def is_allowed(module: str) -> bool:
    return module in _extra_modules or any(module == p or module.startswith(p + ".") for p in _PACKAGES)


# -- jobs ----------------------------------------------------------------------------------------

def job_payload(fn: Callable[..., Any], args: tuple, kwargs: dict) -> bytes:
    """A job as bytes: the function's module and name, and its arguments. TypeError when the
    function is not a module-level function of an allowed module or an argument cannot cross."""
    module, name = getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)
    if not (isinstance(module, str) and isinstance(name, str)) or "." in name or "<" in name:
        raise TypeError(f"{getattr(fn, '__qualname__', fn)!r} is not defined at module level")
    if not is_allowed(module):
        raise TypeError(f"jobs come from attn's modules; {module} is not one (a test registers "
                        "its own with attn.jobs.codec.allow_module)")
    if getattr(sys.modules.get(module), name, None) is not fn:
        raise TypeError(f"{module}.{name} is not that function: define it at module level")
    return dumps({"module": module, "name": name, "args": tuple(args), "kwargs": dict(kwargs)})


def load_job(payload: bytes) -> tuple[Callable[..., Any], tuple, dict]:
    """(fn, args, kwargs) from `job_payload`'s bytes. ValueError when the function is not
    allowed or not there."""
    job = loads(payload)
    if not isinstance(job, dict) or set(job) != {"module", "name", "args", "kwargs"}:
        raise ValueError("not a job")
    module, name = job["module"], job["name"]
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"not a function name: {name!r}")
    fn = getattr(_allowed_module(module), name, None)
    if not inspect.isfunction(fn) or fn.__module__ != module or fn.__qualname__ != name:
        raise ValueError(f"{module} has no job function {name}")
    if not isinstance(job["args"], tuple) or not isinstance(job["kwargs"], dict):
        raise ValueError("a job's arguments must be a tuple and a dict")
    return fn, job["args"], job["kwargs"]


def _allowed_module(module: Any) -> Any:
    if not isinstance(module, str) or not is_allowed(module):
        raise ValueError(f"module {module!r} is not allowed to send jobs or objects")
    return importlib.import_module(module)


# -- values --------------------------------------------------------------------------------------

def dumps(obj: Any) -> bytes:
    """`obj` as JSON bytes (see the module's note); TypeError when a part of it cannot cross."""
    return json.dumps(_encode(obj), separators=(",", ":")).encode()


def loads(data: bytes) -> Any:
    """What `dumps` wrote, rebuilt; ValueError on anything it would not have written."""
    return _decode(json.loads(data))


def _tagged(kind: str, **fields: Any) -> dict:
    return {TAG: kind, **fields}


def _encode(obj: Any) -> Any:
    if obj is None or type(obj) in (bool, int, float, str):
        return obj
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(obj, (numpy.ndarray, numpy.generic)):
        return _encode_array(numpy, obj)
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(obj, torch.Tensor):
        return _encode_tensor(torch, obj)
    if isinstance(obj, tuple) and hasattr(type(obj), "_fields"):  # a named tuple
        return _tagged("namedtuple", cls=_class_path(type(obj)), items=[_encode(x) for x in obj])
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _encode_dataclass(obj)
    if isinstance(obj, bool):
        return bool(obj)
    if isinstance(obj, int):  # IntEnum and friends: their value
        return int(obj)
    if isinstance(obj, float):
        return float(obj)
    if isinstance(obj, str):
        return str(obj)
    if isinstance(obj, (list, tuple, set, frozenset)):
        items = [_encode(x) for x in obj]
        if isinstance(obj, list):
            return items
        return _tagged("tuple" if isinstance(obj, tuple) else type(obj).__name__, items=items)
    if isinstance(obj, dict):
        if all(type(k) is str for k in obj) and TAG not in obj:
            return {k: _encode(v) for k, v in obj.items()}
        return _tagged("dict", items=[[_encode(k), _encode(v)] for k, v in obj.items()])
    if isinstance(obj, (bytes, bytearray)):
        return _tagged("bytes", b64=base64.b64encode(obj).decode("ascii"))
    raise TypeError(f"cannot send a {type(obj).__module__}.{type(obj).__qualname__} between the "
                    "app and its worker (JSON, arrays, tensors and attn's dataclasses only)")


def _class_path(cls: type) -> str:
    if not is_allowed(cls.__module__) or not cls.__qualname__.isidentifier():
        raise TypeError(f"cannot send a {cls.__module__}.{cls.__qualname__}: only module-level classes "
                        "of attn's modules cross between the app and its worker")
    return f"{cls.__module__}:{cls.__qualname__}"


def _encode_dataclass(obj: Any) -> dict:
    cls = type(obj)
    path = _class_path(cls)
    if callable(getattr(cls, "from_dict", None)) and callable(getattr(obj, "to_dict", None)):
        return _tagged("dataclass", cls=path, dict=_encode(obj.to_dict()))
    return _tagged("dataclass", cls=path,
                   fields={f.name: _encode(getattr(obj, f.name)) for f in dataclasses.fields(obj)})


def _encode_array(numpy: Any, obj: Any) -> dict:
    array = numpy.asarray(obj, order="C")  # ascontiguousarray would make a 0-d array 1-d
    if array.dtype.kind not in _NUMPY_KINDS:
        raise TypeError(f"cannot send a numpy array of {array.dtype} (numbers and bools only)")
    return _tagged("ndarray" if isinstance(obj, numpy.ndarray) else "npscalar", dtype=array.dtype.str,
                   shape=list(array.shape), b64=base64.b64encode(array.tobytes()).decode("ascii"))


def _encode_tensor(torch: Any, obj: Any) -> dict:
    if obj.layout != torch.strided:
        raise TypeError(f"cannot send a {obj.layout} tensor (dense tensors only)")
    name = str(obj.dtype).removeprefix("torch.")
    if name not in _TORCH_DTYPES:
        raise TypeError(f"cannot send a tensor of {obj.dtype}")
    flat = obj.detach().to("cpu").contiguous().reshape(-1)
    raw = flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b""
    return _tagged("tensor", dtype=name, shape=list(obj.shape), b64=base64.b64encode(raw).decode("ascii"))


def _decode(obj: Any) -> Any:
    if isinstance(obj, list):
        return [_decode(x) for x in obj]
    if not isinstance(obj, dict):
        return obj
    if TAG not in obj:
        return {k: _decode(v) for k, v in obj.items()}
    kind = obj[TAG]
    if kind in ("tuple", "set", "frozenset"):
        items = [_decode(x) for x in _field(obj, "items", list)]
        return {"tuple": tuple, "set": set, "frozenset": frozenset}[kind](items)
    if kind == "dict":
        pairs = _field(obj, "items", list)
        if not all(isinstance(p, list) and len(p) == 2 for p in pairs):
            raise ValueError("a dict's items must be [key, value] pairs")
        return {_decode(k): _decode(v) for k, v in pairs}
    if kind == "bytes":
        return _b64(obj)
    if kind in ("ndarray", "npscalar"):
        return _decode_array(obj, kind)
    if kind == "tensor":
        return _decode_tensor(obj)
    if kind == "namedtuple":
        cls = _decoded_class(obj)
        if not (isinstance(cls, type) and issubclass(cls, tuple) and hasattr(cls, "_fields")):
            raise ValueError(f"{obj['cls']} is not a named tuple")
        return cls(*(_decode(x) for x in _field(obj, "items", list)))
    if kind == "dataclass":
        return _decode_dataclass(obj)
    raise ValueError(f"unknown tag {kind!r}")


def _field(obj: dict, name: str, kind: type) -> Any:
    value = obj.get(name)
    if not isinstance(value, kind):
        raise ValueError(f"a {obj[TAG]} needs {name} as {kind.__name__}")
    return value


def _b64(obj: dict) -> bytes:
    return base64.b64decode(_field(obj, "b64", str), validate=True)


def _shape(obj: dict) -> tuple[int, ...]:
    shape = _field(obj, "shape", list)
    if not all(type(n) is int and n >= 0 for n in shape):
        raise ValueError(f"bad shape {shape}")
    return tuple(shape)


def _decode_array(obj: dict, kind: str) -> Any:
    import numpy

    dtype = numpy.dtype(_field(obj, "dtype", str))  # parses a type string; runs nothing
    if dtype.kind not in _NUMPY_KINDS:
        raise ValueError(f"arrays of {dtype} are not accepted")
    shape, raw = _shape(obj), _b64(obj)
    if len(raw) != math.prod(shape) * dtype.itemsize:
        raise ValueError(f"{len(raw)} bytes cannot hold a {dtype} array of shape {shape}")
    array = numpy.frombuffer(raw, dtype=dtype).reshape(shape).copy()  # a copy: writable, as sent
    return array[()] if kind == "npscalar" else array


def _decode_tensor(obj: dict) -> Any:
    import torch

    name = _field(obj, "dtype", str)
    if name not in _TORCH_DTYPES:
        raise ValueError(f"tensors of {name} are not accepted")
    dtype, shape, raw = getattr(torch, name), _shape(obj), _b64(obj)
    if len(raw) != math.prod(shape) * dtype.itemsize:
        raise ValueError(f"{len(raw)} bytes cannot hold a {name} tensor of shape {list(shape)}")
    if not raw:
        return torch.empty(shape, dtype=dtype)
    return torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(dtype).reshape(shape)


def _decoded_class(obj: dict) -> Any:
    module, _, name = _field(obj, "cls", str).partition(":")
    if not name.isidentifier():
        raise ValueError(f"not a class name: {name!r}")
    return getattr(_allowed_module(module), name, None)


def _decode_dataclass(obj: dict) -> Any:
    cls = _decoded_class(obj)
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise ValueError(f"{obj['cls']} is not a dataclass")
    if "dict" in obj:
        if not callable(getattr(cls, "from_dict", None)):
            raise ValueError(f"{obj['cls']} has no from_dict")
        return cls.from_dict(_decode(_field(obj, "dict", dict)))
    values = {k: _decode(v) for k, v in _field(obj, "fields", dict).items()}
    known = {f.name: f for f in dataclasses.fields(cls)}
    if set(values) != set(known):
        raise ValueError(f"{obj['cls']}'s fields do not match: {sorted(set(values) ^ set(known))}")
    made = cls(**{k: v for k, v in values.items() if known[k].init})
    for k, v in values.items():
        if not known[k].init:
            object.__setattr__(made, k, v)
    return made
