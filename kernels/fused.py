"""Elementwise kernels fused into one launch on the GPU, with their NumPy reference.

Why: a tick's random draws were a dozen array operations each (SplitMix64 is a chain of shifts,
xors and multiplies, and NumPy runs each as a pass over memory); a binomial draw by inversion
was five operations per step of its loop. On a GPU every operation is a kernel launch and the
first H200 run spent 95% of its time launching and waiting. A :class:`FusedKernel` is the same
computation written twice: a CUDA C body that CuPy compiles once into one
``cupy.ElementwiseKernel`` (one launch, every element in its own thread), and the NumPy code it
must equal bit for bit (the vectorised reference, which the CPU path keeps running).

Bit identity holds by construction where it matters: the bodies use only 64-bit wrapping
integer arithmetic and IEEE-754 float64 ``+ - * /`` and comparisons, in the reference's order,
compiled with ``--fmad=false`` so that no multiply and add are contracted into one rounding.
Two checks run without a GPU: ``tests/kernels/test_fused.py`` compiles every body with the
host's C++ compiler (``-ffp-contract=off``) and compares it with the reference, and the strict
stand-in runs the reference through the same call as CuPy, with the argument checks of CuPy's
that our code could trip on (dtypes, scalars, raw arrays, loop size). On a GPU, ``pytest -m gpu``
compares CuPy's result with NumPy's. The two logistic-fit kernels use exp and log1p, which are
not correctly rounded by contract: they agree with NumPy to an ulp, not bit for bit.

Call a kernel through :func:`launch` with the array module: NumPy runs the reference; CuPy (and
the stand-in) run ``xp.ElementwiseKernel``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

#: NVRTC options: keep every float rounding of the reference (no fused multiply-add)
NVRTC_OPTIONS = ("--fmad=false",)


@dataclass(frozen=True)
class FusedKernel:
    """One elementwise computation, as CUDA C and as its NumPy reference.

    Attributes:
        name: the kernel's name (a C identifier; profilers show it).
        in_params: CuPy's parameter list, e.g. ``"int64 index, uint64 key"``; each may be an
            array or a scalar, and arrays broadcast; ``raw`` marks an array the body indexes
            itself, and a one-letter type (``"raw I indices"``) takes its type from the array.
        out_params: e.g. ``"float64 u"``.
        body: the CUDA C statement(s) run for element ``i``, reading the inputs and writing the
            outputs by name (CuPy binds array parameters to their element).
        reference: the NumPy function of the inputs (NumPy arrays or scalars, in order) that
            returns the output (or a tuple of outputs) the body must equal bit for bit.
        preamble: CUDA C helpers (``__device__`` functions) the body calls.
    """

    name: str
    in_params: str
    out_params: str
    body: str
    reference: Callable[..., Any]
    preamble: str = ""


#: every fused kernel by name (the stand-in looks a kernel's reference up here)
KERNELS: dict[str, FusedKernel] = {}
_COMPILED: dict[tuple[int, str], Any] = {}


def register(kernel: FusedKernel) -> FusedKernel:
    """Add ``kernel`` to :data:`KERNELS` (names are unique) and return it."""
    if kernel.name in KERNELS:
        raise ValueError(f"a fused kernel named {kernel.name!r} exists already")
    KERNELS[kernel.name] = kernel
    return kernel


def launch(kernel: FusedKernel, *args: Any, xp: ModuleType) -> Any:
    """Run ``kernel`` on ``args``: its NumPy reference on NumPy, one ``ElementwiseKernel``
    launch on CuPy (compiled on first use, cached per array module)."""
    if xp is np:
        return kernel.reference(*args)
    compiled = _COMPILED.get((id(xp), kernel.name))
    if compiled is None:
        compiled = xp.ElementwiseKernel(kernel.in_params, kernel.out_params, kernel.body, kernel.name,
                                        preamble=kernel.preamble, options=NVRTC_OPTIONS)
        _COMPILED[(id(xp), kernel.name)] = compiled
    return compiled(*args)
