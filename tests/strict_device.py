"""A stand-in for CuPy on the CPU that is as strict as CuPy about host and device.

Why: the GPU path cannot run on a machine without a GPU, yet its two commonest bugs can be
found without one. (1) Code written for NumPy that mixes a host array into a device operation,
or converts a device array to NumPy implicitly: CuPy raises ``TypeError`` for both. (2) Branches
taken only when ``xp is not numpy`` (``repeat_ids``'s search, ``scatter_add``'s cupyx call, one
piece instead of chunks on the thread pool). This module wraps NumPy arrays in
:class:`DeviceArray`, which refuses implicit conversion (``np.asarray(device)``) and operations
with host arrays, and offers a module object, :data:`xp`, that computes with NumPy underneath and
returns device arrays, with CuPy's restrictions where our code could trip on them (``repeat``
takes no array of counts, reductions return 0-d arrays, not scalars, and a scalar operand must be
exactly a Python ``int``/``float``/``bool``/``complex`` or a NumPy scalar: CuPy checks
``type(x) in {int, float, bool, complex}``, so an ``IntEnum`` member, a ``Decimal``, a
``Fraction`` or an object with only ``__index__`` is refused, where NumPy accepts them).

Its :class:`ElementwiseKernel` runs each fused kernel's NumPy reference (:mod:`weishang.kernels.fused`)
behind CuPy's argument checks. It also keeps a :class:`Tally` of what a GPU would pay for
(:func:`counting`): array operations (each at least one kernel launch on a GPU), explicit
device-to-host transfers (``.get()``, ``int()``/``float()``/``bool()`` of a device value,
``to_host``) with their bytes, and the implicit synchronisations CuPy makes to learn a size (a
boolean mask, ``nonzero``, ``unique``, ``bincount``).

It checks discipline, not CUDA: bit-identity on a real GPU is what ``pytest -m gpu`` checks.
"""

from __future__ import annotations

import contextlib
import numbers
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from weishang.kernels.backend import Backend


class HostDeviceMix(TypeError):
    """A host NumPy array met a device array, or a device array was converted implicitly."""


class ScalarOperandRefused(TypeError):
    """A Python object CuPy does not take as a scalar operand (an ``IntEnum`` member, ...)."""


#: the scalar types CuPy takes as operands, matched exactly (``type(x) in ...``, no subclasses)
_PYTHON_SCALARS = frozenset({int, float, bool, complex})


def _check_scalar(value: Any) -> None:
    """Refuse a number-like operand whose exact type CuPy does not accept (see module docstring)."""
    kind = type(value)
    if kind in _PYTHON_SCALARS or isinstance(value, (type, np.generic, np.ndarray, np.dtype, DeviceArray)):
        return
    if isinstance(value, numbers.Number) or hasattr(value, "__index__") or hasattr(value, "__float__"):
        raise ScalarOperandRefused(
            f"operand type(s) all returned NotImplemented: CuPy takes no {kind.__module__}.{kind.__qualname__} "
            f"({value!r}) as an operand; pass a plain int or float")


@dataclass
class Tally:
    """What a GPU would pay for, counted on the stand-in.

    Attributes:
        launches: array operations (ufuncs, ``xp`` functions, array methods, gathers and
            scatters); each is at least one kernel launch on a GPU.
        transfers: explicit device-to-host copies (``.get()``, ``tolist``, ``item``, ``int()``,
            ``float()``, ``bool()``, ``operator.index`` of a device value); each synchronises.
        transfer_bytes: the bytes those copies moved.
        size_syncs: implicit synchronisations CuPy makes to learn an output's size (indexing with
            a boolean mask, ``nonzero``, ``flatnonzero``, ``argwhere``, ``unique``, ``compress``;
            ``bincount`` makes two: whether a bin is negative, and the largest bin).
        by_kind: transfers by what made them (``"get"``, ``"int"``, ...).
    """

    launches: int = 0
    transfers: int = 0
    transfer_bytes: int = 0
    size_syncs: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    #: launches by the model's line that made them (``"file.py:123"``), and transfers by kind
    #: and line (``"int at file.py:123"``), when asked for
    sites: dict[str, int] | None = None

    def transfer(self, kind: str, nbytes: int) -> None:
        self.transfers += 1
        self.transfer_bytes += int(nbytes)
        self.by_kind[kind] = self.by_kind.get(kind, 0) + 1
        if self.sites is not None:
            site = f"{kind} at {_caller_site(skip_backend=True)}"
            self.sites[site] = self.sites.get(site, 0) + 1

    def snapshot(self) -> tuple[int, int, int, int]:
        return self.launches, self.transfers, self.transfer_bytes, self.size_syncs


#: the running tally; :func:`counting` resets it
TALLY = Tally()


def _caller_site(skip_backend: bool = False) -> str:
    """``"file.py:123"``: the first caller outside this module (and outside
    kernels/backend.py's helpers with ``skip_backend``)."""
    frame = sys._getframe(1)
    while frame.f_code.co_filename == __file__ or (skip_backend and frame.f_code.co_filename.endswith("backend.py")):
        frame = frame.f_back
    return f"{Path(frame.f_code.co_filename).name}:{frame.f_lineno}"


def _launch() -> None:
    TALLY.launches += 1
    if TALLY.sites is not None:
        site = _caller_site()
        TALLY.sites[site] = TALLY.sites.get(site, 0) + 1


@contextlib.contextmanager
def counting(sites: bool = False) -> Iterator[Tally]:
    """Count from zero inside the block: ``with counting() as tally: ...; tally.launches``;
    ``sites=True`` also counts launches by the line of the caller (slower)."""
    global TALLY
    outer, TALLY = TALLY, Tally(sites={} if sites else None)
    try:
        yield TALLY
    finally:
        TALLY = outer


#: functions whose output size depends on the data: CuPy reads a count back from the device
_SIZE_SYNC_FUNCTIONS = {"nonzero", "flatnonzero", "argwhere", "unique", "compress", "extract"}
#: functions that allocate without computing, or make a view (no kernel)
_NO_KERNEL_FUNCTIONS = {"empty", "empty_like", "shape", "ndim", "size", "result_type", "dtype", "iinfo", "finfo",
                        "can_cast", "promote_types", "broadcast_shapes", "isscalar", "broadcast_to"}
#: array methods that make a view or read metadata (no kernel)
_NO_KERNEL_METHODS = {"reshape", "view", "ravel", "transpose", "squeeze", "swapaxes", "__array_namespace__"}


def _is_mask_key(key: Any) -> bool:
    parts = key if isinstance(key, tuple) else (key,)
    return any(isinstance(p, (DeviceArray, np.ndarray)) and p.dtype == np.bool_ for p in parts)


def _is_array_key(key: Any) -> bool:
    parts = key if isinstance(key, tuple) else (key,)
    return any(isinstance(p, (DeviceArray, np.ndarray, list)) for p in parts)


def _is_host_array(value: Any) -> bool:
    # 0-d included: CuPy takes a NumPy scalar (np.float64), not a 0-d ndarray ("Unsupported type")
    return isinstance(value, np.ndarray)


def _unwrap(value: Any, *, allow_host: bool = False) -> Any:
    """DeviceArray -> its ndarray, recursively through lists and tuples; refuse host arrays."""
    if isinstance(value, DeviceArray):
        return value._a
    if isinstance(value, (list, tuple)):
        return type(value)(_unwrap(v, allow_host=allow_host) for v in value)
    if not allow_host and _is_host_array(value):
        raise HostDeviceMix(f"a host NumPy array (shape {value.shape}) was passed where CuPy takes device arrays")
    _check_scalar(value)
    return value


def _wrap(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return DeviceArray(value)
    if isinstance(value, np.generic):
        return DeviceArray(np.asarray(value))  # CuPy reductions and scalar indexing give 0-d arrays
    if isinstance(value, tuple):
        return tuple(_wrap(v) for v in value)
    if isinstance(value, list):
        return [_wrap(v) for v in value]
    return value


class DeviceArray:
    """A NumPy array posing as device memory. ``.get()`` copies it to the host explicitly."""

    __slots__ = ("_a",)
    __array_priority__ = 1000

    def __init__(self, array: np.ndarray) -> None:
        self._a = array

    # -- the refusals -------------------------------------------------------------------------
    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        raise HostDeviceMix("implicit conversion of a device array to NumPy (use backend.to_host)")

    def __iter__(self):
        raise HostDeviceMix("iterating a device array element by element (a host loop over device data)")

    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        _launch()
        args = _unwrap(inputs)
        if "out" in kwargs:
            kwargs["out"] = _unwrap(kwargs["out"])
        return _wrap(getattr(ufunc, method)(*args, **kwargs))

    def __array_function__(self, func: Any, types_: Any, args: Any, kwargs: Any) -> Any:
        _launch()
        return _wrap(func(*_unwrap(args), **{k: _unwrap(v) for k, v in kwargs.items()}))

    # -- explicit transfers and scalars ---------------------------------------------------------
    def get(self) -> np.ndarray:
        TALLY.transfer("get", self._a.nbytes)
        return self._a.copy()

    def tolist(self) -> Any:
        TALLY.transfer("tolist", self._a.nbytes)
        return self._a.tolist()

    def item(self) -> Any:
        TALLY.transfer("item", self._a.itemsize)
        return self._a.item()

    def __int__(self) -> int:
        TALLY.transfer("int", self._a.itemsize)
        return int(self._a)

    def __float__(self) -> float:
        TALLY.transfer("float", self._a.itemsize)
        return float(self._a)

    def __bool__(self) -> bool:
        TALLY.transfer("bool", self._a.itemsize)
        return bool(self._a)

    def __index__(self) -> int:
        if self._a.ndim != 0 or self._a.dtype.kind not in "iu":
            raise TypeError("only integer 0-d device arrays can be used as an index")
        TALLY.transfer("index", self._a.itemsize)
        return int(self._a)

    def __len__(self) -> int:
        return len(self._a)

    def __repr__(self) -> str:
        return f"DeviceArray({self._a!r})"

    # -- array attributes and methods -----------------------------------------------------------
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    nbytes = property(lambda self: self._a.nbytes)
    T = property(lambda self: DeviceArray(self._a.T))

    def __getitem__(self, key: Any) -> Any:
        if _is_array_key(key):  # a gather (a view otherwise)
            _launch()
            TALLY.size_syncs += _is_mask_key(key)
        return _wrap(self._a[_unwrap(key, allow_host=True)])

    def __setitem__(self, key: Any, value: Any) -> None:
        _launch()  # a scatter or a fill
        self._a[_unwrap(key, allow_host=True)] = _unwrap(value, allow_host=True)

    def __getattr__(self, name: str) -> Any:
        # methods (astype, sum, any, cumsum, copy, reshape, ...): computed on the wrapped array
        if name.startswith("__") or name == "_a":
            raise AttributeError(name)
        attr = getattr(self._a, name)
        if not callable(attr):
            return _wrap(attr)

        def method(*args: Any, **kwargs: Any) -> Any:
            same_type = name == "astype" and np.dtype(args[0] if args else kwargs["dtype"]) == self._a.dtype
            if name not in _NO_KERNEL_METHODS and not (same_type and not kwargs.get("copy", True)):
                _launch()
            TALLY.size_syncs += name in _SIZE_SYNC_FUNCTIONS
            return _wrap(attr(*_unwrap(args), **{k: _unwrap(v) for k, v in kwargs.items()}))

        return method


def _binary(ufunc: Any, reflected: bool = False):
    def op(self: DeviceArray, other: Any) -> Any:
        _launch()
        other = _unwrap(other)
        return _wrap(ufunc(other, self._a) if reflected else ufunc(self._a, other))
    return op


def _inplace(ufunc: Any):
    def op(self: DeviceArray, other: Any) -> DeviceArray:
        _launch()
        ufunc(self._a, _unwrap(other), out=self._a)
        return self
    return op


for _name, _ufunc in {"add": np.add, "sub": np.subtract, "mul": np.multiply, "truediv": np.true_divide,
                      "floordiv": np.floor_divide, "mod": np.remainder, "pow": np.power, "and": np.bitwise_and,
                      "or": np.bitwise_or, "xor": np.bitwise_xor, "lshift": np.left_shift,
                      "rshift": np.right_shift}.items():
    setattr(DeviceArray, f"__{_name}__", _binary(_ufunc))
    setattr(DeviceArray, f"__r{_name}__", _binary(_ufunc, reflected=True))
    setattr(DeviceArray, f"__i{_name}__", _inplace(_ufunc))
for _name, _ufunc in {"lt": np.less, "le": np.less_equal, "gt": np.greater, "ge": np.greater_equal,
                      "eq": np.equal, "ne": np.not_equal}.items():
    setattr(DeviceArray, f"__{_name}__", _binary(_ufunc))
for _name, _ufunc in {"neg": np.negative, "invert": np.invert, "abs": np.absolute}.items():
    setattr(DeviceArray, f"__{_name}__", lambda self, _ufunc=_ufunc: _unary(_ufunc, self))


def _unary(ufunc: Any, array: DeviceArray) -> DeviceArray:
    _launch()
    return DeviceArray(ufunc(array._a))



DeviceArray.__hash__ = None  # arrays are unhashable, as in NumPy and CuPy

#: functions that take host data by design (they are how data gets onto the device)
_CREATION = {"asarray", "array", "ascontiguousarray"}


def _function(name: str, func: Any) -> Any:
    allow_host = name in _CREATION

    def call(*args: Any, **kwargs: Any) -> Any:
        if name == "repeat" and len(args) > 1 and not np.isscalar(args[1]) and not isinstance(args[1], (list, tuple)):
            raise TypeError("cupy.repeat takes an int or a list of repeats, not an array (use repeat_ids)")
        same = (name == "asarray" and args and isinstance(args[0], DeviceArray)
                and kwargs.get("dtype", args[1] if len(args) > 1 else None) in (None, args[0].dtype))
        if name not in _NO_KERNEL_FUNCTIONS and not same:  # asarray of a device array: itself
            _launch()
        TALLY.size_syncs += name in _SIZE_SYNC_FUNCTIONS
        if name == "bincount":  # CuPy: (x < 0).any(), then int(x.max()) unless x is empty
            TALLY.size_syncs += 1 + (args[0].size > 0)
        args = _unwrap(args, allow_host=allow_host)
        kwargs = {k: _unwrap(v, allow_host=allow_host) for k, v in kwargs.items()}
        if allow_host and args and isinstance(args[0], np.ndarray):
            args = (np.array(args[0], copy=True),) + args[1:]  # a host-to-device copy is a copy
        return _wrap(func(*args, **kwargs))

    call.__name__ = name
    return call


class _UfuncProxy:
    """``xp.add``, ``xp.less`` ...: called, or with ``.at``/``.reduce``, on device arrays."""

    def __init__(self, ufunc: Any) -> None:
        self._ufunc = ufunc

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        _launch()
        kwargs = {k: _unwrap(v) for k, v in kwargs.items()}
        return _wrap(self._ufunc(*_unwrap(args), **kwargs))

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._ufunc, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            _launch()
            return _wrap(method(*_unwrap(args), **{k: _unwrap(v) for k, v in kwargs.items()}))

        return call


class _StrictModule(types.ModuleType):
    """The ``xp`` module: NumPy's namespace returning device arrays. Types (``xp.int64``) and
    constants are NumPy's own, as CuPy re-exports them."""

    def __getattr__(self, name: str) -> Any:
        attr = getattr(np, name)
        if isinstance(attr, np.ufunc):
            return _UfuncProxy(attr)
        if isinstance(attr, type) or not callable(attr):
            return attr
        return _function(name, attr)

    @staticmethod
    def asnumpy(array: Any) -> np.ndarray:
        return array.get() if isinstance(array, DeviceArray) else np.asarray(array)


class ElementwiseKernel:
    """``cupy.ElementwiseKernel`` on the stand-in: runs the NumPy reference registered under the
    kernel's name in :mod:`weishang.kernels.fused` (the CUDA body cannot run here), as one launch,
    with CuPy's checks: device arrays or CuPy's scalars only; an array's dtype exactly the
    parameter's type ("Type is mismatched"); a non-raw array to size the loop ("Loop size is
    undecided") and non-raw arrays that broadcast; no parameter named ``i``; and the outputs of
    the declared types (CuPy allocates them so, whatever the reference returns)."""

    def __init__(self, in_params: str, out_params: str, operation: str, name: str, **kwargs: Any) -> None:
        from weishang.kernels.fused import KERNELS

        self.name, self.reference = name, KERNELS[name].reference
        params = [param.split() for param in in_params.split(",")]
        outs = [param.split() for param in out_params.split(",")]
        if "i" in [words[-1] for words in params + outs]:
            raise ValueError("Can not use 'i' as a parameter name")
        # a one-letter type is a type variable: the array's own (one dtype per letter)
        self.in_types = [words[-2] if len(words[-2]) == 1 else np.dtype(words[-2]) for words in params]
        self.raw = [words[0] == "raw" for words in params]
        self.out_types = [np.dtype(words[-2]) for words in outs]

    def __call__(self, *args: Any) -> Any:
        if len(args) != len(self.in_types):
            raise TypeError(f"Wrong number of arguments for {self.name!r}")
        bound: dict[str, Any] = {}
        for arg, dtype, raw in zip(args, self.in_types, self.raw):
            _unwrap(arg)  # a host array or a scalar CuPy refuses raises here
            if raw and not isinstance(arg, DeviceArray):
                raise TypeError(f"{self.name}: a raw parameter takes a device array, got {type(arg).__name__}")
            if isinstance(dtype, str):
                dtype = bound.setdefault(dtype, getattr(arg, "dtype", None))
            if isinstance(arg, DeviceArray) and arg.dtype != dtype:
                raise TypeError(f"Type is mismatched: {self.name} takes {dtype}, got an array of {arg.dtype}")
        sized = [arg.shape for arg, raw in zip(args, self.raw) if isinstance(arg, DeviceArray) and not raw]
        if not sized:
            raise ValueError(f"{self.name}: Loop size is undecided (no array among the non-raw arguments)")
        np.broadcast_shapes(*sized)
        _launch()
        result = self.reference(*_unwrap(args))
        for out, dtype in zip(result if isinstance(result, tuple) else (result,), self.out_types):
            if np.asarray(out).dtype != dtype:
                raise TypeError(f"{self.name}: the reference gives {np.asarray(out).dtype} where CuPy gives {dtype}")
        return _wrap(result)


xp = _StrictModule("strict_device_xp")
xp.ElementwiseKernel = ElementwiseKernel
xp.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(memGetInfo=lambda: (64 << 30, 80 << 30)))


def scatter_add(target: DeviceArray, indices: Any, values: Any) -> None:
    """``cupyx.scatter_add``: target[indices] += values, repeats accumulated; a scalar value is
    broadcast, an array of another dtype is cast to the target's first (a launch of its own)."""
    _launch()
    if isinstance(values, DeviceArray) and values.dtype != target.dtype:
        _launch()
    np.add.at(target._a, _unwrap(indices), _unwrap(values))


cupyx = types.SimpleNamespace(scatter_add=scatter_add)


def backend() -> Backend:
    """A backend whose device is :data:`xp` (named "strict": not "cupy", so nothing imports CuPy)."""
    return Backend("strict", xp, "strict host/device stand-in on the CPU", "test stand-in for CuPy")
