"""A stand-in for CuPy on the CPU that is as strict as CuPy about host and device.

Why: the GPU path cannot run on a machine without a GPU, yet its two commonest bugs can be
found without one. (1) Code written for NumPy that mixes a host array into a device operation,
or converts a device array to NumPy implicitly: CuPy raises ``TypeError`` for both. (2) Branches
taken only when ``xp is not numpy`` (``repeat_ids``'s search, ``scatter_add``'s cupyx call, one
piece instead of chunks on the thread pool). This module wraps NumPy arrays in
:class:`DeviceArray`, which refuses implicit conversion (``np.asarray(device)``) and operations
with host arrays, and offers a module object, :data:`xp`, that computes with NumPy underneath and
returns device arrays, with CuPy's restrictions where our code could trip on them (``repeat``
takes no array of counts, reductions return 0-d arrays, not scalars).

It checks discipline, not CUDA: bit-identity on a real GPU is what ``pytest -m gpu`` checks.
"""

from __future__ import annotations

import types
from typing import Any

import numpy as np

from weishang.kernels.backend import Backend


class HostDeviceMix(TypeError):
    """A host NumPy array met a device array, or a device array was converted implicitly."""


def _is_host_array(value: Any) -> bool:
    return isinstance(value, np.ndarray) and value.ndim > 0


def _unwrap(value: Any, *, allow_host: bool = False) -> Any:
    """DeviceArray -> its ndarray, recursively through lists and tuples; refuse host arrays."""
    if isinstance(value, DeviceArray):
        return value._a
    if isinstance(value, (list, tuple)):
        return type(value)(_unwrap(v, allow_host=allow_host) for v in value)
    if not allow_host and _is_host_array(value):
        raise HostDeviceMix(f"a host NumPy array (shape {value.shape}) was passed where CuPy takes device arrays")
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
        args = _unwrap(inputs)
        if "out" in kwargs:
            kwargs["out"] = _unwrap(kwargs["out"])
        return _wrap(getattr(ufunc, method)(*args, **kwargs))

    def __array_function__(self, func: Any, types_: Any, args: Any, kwargs: Any) -> Any:
        return _wrap(func(*_unwrap(args), **{k: _unwrap(v) for k, v in kwargs.items()}))

    # -- explicit transfers and scalars ---------------------------------------------------------
    def get(self) -> np.ndarray:
        return self._a.copy()

    def tolist(self) -> Any:
        return self._a.tolist()

    def item(self) -> Any:
        return self._a.item()

    def __int__(self) -> int:
        return int(self._a)

    def __float__(self) -> float:
        return float(self._a)

    def __bool__(self) -> bool:
        return bool(self._a)

    def __index__(self) -> int:
        if self._a.ndim != 0 or self._a.dtype.kind not in "iu":
            raise TypeError("only integer 0-d device arrays can be used as an index")
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
        return _wrap(self._a[_unwrap(key, allow_host=True)])

    def __setitem__(self, key: Any, value: Any) -> None:
        self._a[_unwrap(key, allow_host=True)] = _unwrap(value, allow_host=True)

    def __getattr__(self, name: str) -> Any:
        # methods (astype, sum, any, cumsum, copy, reshape, ...): computed on the wrapped array
        if name.startswith("__") or name == "_a":
            raise AttributeError(name)
        attr = getattr(self._a, name)
        if not callable(attr):
            return _wrap(attr)

        def method(*args: Any, **kwargs: Any) -> Any:
            return _wrap(attr(*_unwrap(args), **{k: _unwrap(v) for k, v in kwargs.items()}))

        return method


def _binary(ufunc: Any, reflected: bool = False):
    def op(self: DeviceArray, other: Any) -> Any:
        other = _unwrap(other)
        return _wrap(ufunc(other, self._a) if reflected else ufunc(self._a, other))
    return op


def _inplace(ufunc: Any):
    def op(self: DeviceArray, other: Any) -> DeviceArray:
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
DeviceArray.__neg__ = lambda self: DeviceArray(-self._a)
DeviceArray.__invert__ = lambda self: DeviceArray(~self._a)
DeviceArray.__abs__ = lambda self: DeviceArray(np.abs(self._a))
DeviceArray.__hash__ = None  # arrays are unhashable, as in NumPy and CuPy

#: functions that take host data by design (they are how data gets onto the device)
_CREATION = {"asarray", "array", "ascontiguousarray"}


def _function(name: str, func: Any) -> Any:
    allow_host = name in _CREATION

    def call(*args: Any, **kwargs: Any) -> Any:
        if name == "repeat" and len(args) > 1 and not np.isscalar(args[1]) and not isinstance(args[1], (list, tuple)):
            raise TypeError("cupy.repeat takes an int or a list of repeats, not an array (use repeat_ids)")
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
        kwargs = {k: _unwrap(v) for k, v in kwargs.items()}
        return _wrap(self._ufunc(*_unwrap(args), **kwargs))

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._ufunc, name)
        return lambda *args, **kwargs: _wrap(method(*_unwrap(args), **{k: _unwrap(v) for k, v in kwargs.items()}))


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


xp = _StrictModule("strict_device_xp")
xp.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(memGetInfo=lambda: (64 << 30, 80 << 30)))


def scatter_add(target: DeviceArray, indices: Any, values: Any) -> None:
    """``cupyx.scatter_add``: target[indices] += values, repeats accumulated."""
    np.add.at(target._a, _unwrap(indices), _unwrap(values))


cupyx = types.SimpleNamespace(scatter_add=scatter_add)


def backend() -> Backend:
    """A backend whose device is :data:`xp` (named "strict": not "cupy", so nothing imports CuPy)."""
    return Backend("strict", xp, "strict host/device stand-in on the CPU", "test stand-in for CuPy")
