"""Counter-based random draws: every draw is a pure function of (seed, stream, tick, index).

Why counter-based: the NumPy and CuPy paths must give bit-identical results, and two scenarios
that differ in one rule must share every other random draw (common random numbers), so a draw
can depend only on *which* draw it is, never on how many draws came before it.

The generator is SplitMix64 (Steele, Lea & Flood 2014, the seeding generator of
``java.util.SplittableRandom`` and of xoshiro): draw ``i`` of a stream is
``mix64(key + (i + 1) * GAMMA)``, where ``key`` hashes (seed, stream name, tick) with the same
finaliser. It uses only 64-bit wrapping integer multiply, xor and shift, which NumPy and CuPy
compute identically; floats are made from the top 53 bits, which is exact. A pure-Python
reference (:func:`reference_bits`) computes the same bits for the tests.

Stream names are fixed strings per mechanism ("graph.circle", "cascade.view", ...), so a new
mechanism with a new name never shifts the draws of an existing one.

On NumPy each draw is vectorised code run chunk by chunk on the thread pool; on CuPy each is one
fused kernel (:mod:`weishang.kernels.fused`: the hash, the conversion and the comparison or the
whole binomial inversion in one launch), whose CUDA body does the same integer and IEEE float
operations in the same order, so both give the same bits.
"""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any

import numpy as np

from . import fused
from .backend import map_chunks

MASK64 = (1 << 64) - 1
GAMMA = 0x9E3779B97F4A7C15  # 2^64 / golden ratio, odd: SplitMix64's increment
_MIX1 = 0xBF58476D1CE4E5B9
_MIX2 = 0x94D049BB133111EB
_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3
_TWO_POW_MINUS_53 = 2.0**-53


def _mix64_int(z: int) -> int:
    """SplitMix64's finaliser on a Python int (the reference for :func:`_mix64`)."""
    z &= MASK64
    z = ((z ^ (z >> 30)) * _MIX1) & MASK64
    z = ((z ^ (z >> 27)) * _MIX2) & MASK64
    return z ^ (z >> 31)


def _fnv1a64(text: str) -> int:
    """FNV-1a hash of a stream name: stable across processes, unlike ``hash(str)``."""
    h = _FNV_OFFSET
    for byte in text.encode("utf-8"):
        h = ((h ^ byte) * _FNV_PRIME) & MASK64
    return h


def stream_key(seed: int, stream: str, tick: int = 0) -> int:
    """The 64-bit key of one (seed, stream, tick); computed on the host, a Python int."""
    if seed < 0 or tick < 0:
        raise ValueError(f"seed and tick must be non-negative, got seed={seed}, tick={tick}")
    key = _mix64_int(seed + GAMMA)
    key = _mix64_int(key ^ _fnv1a64(stream))
    return _mix64_int(key ^ ((tick + 1) * GAMMA & MASK64))


def reference_bits(seed: int, stream: str, tick: int, index: int) -> int:
    """Pure-Python reference of one draw's 64 bits (for tests; slow)."""
    key = stream_key(seed, stream, tick)
    return _mix64_int(key + (index + 1) * GAMMA)


def _mix64(z: Any, xp: ModuleType) -> Any:
    """SplitMix64's finaliser on a uint64 array, wrapping arithmetic, in place where possible."""
    z ^= z >> xp.uint64(30)
    z *= xp.uint64(_MIX1)
    z ^= z >> xp.uint64(27)
    z *= xp.uint64(_MIX2)
    z ^= z >> xp.uint64(31)
    return z


def _length(index: Any) -> int:
    return int(index) if isinstance(index, (int, np.integer)) else int(index.shape[0])


def _hashed(key: int, index: Any, start: int, stop: int, xp: ModuleType) -> Any:
    """(uint64[stop-start]) the raw draws for positions start..stop of ``index``."""
    if isinstance(index, (int, np.integer)):
        z = xp.arange(start + 1, stop + 1, dtype=xp.uint64)
    else:
        z = index[start:stop].astype(xp.uint64)
        z += xp.uint64(1)
    z *= xp.uint64(GAMMA)
    z += key[start:stop] if getattr(key, "ndim", 0) else xp.uint64(key)
    return _mix64(z, xp)


def bits(key: int, index: Any, *, xp: ModuleType = np) -> Any:
    """(uint64[n]) the raw 64-bit draws of a stream key at the given indices.

    Args:
        key: from :func:`stream_key`.
        index: (int[n]) draw indices (non-negative), or an int n meaning ``arange(n)``.
    """
    if xp is not np:
        return fused.launch(_BITS, _index_array(index, xp), np.uint64(key), xp=xp)
    n = _length(index)
    out = xp.empty(n, dtype=xp.uint64)

    def work(start: int, stop: int) -> None:
        out[start:stop] = _hashed(key, index, start, stop, xp)

    map_chunks(n, work, xp=xp)
    return out


def uniform(key: int, index: Any, *, xp: ModuleType = np) -> Any:
    """(float64[n]) uniform draws in [0, 1) from the top 53 bits; exact on both backends."""
    if xp is not np:
        return fused.launch(_UNIFORM, _index_array(index, xp), np.uint64(key), xp=xp)
    n = _length(index)
    out = xp.empty(n, dtype=xp.float64)

    def work(start: int, stop: int) -> None:
        z = _hashed(key, index, start, stop, xp)
        z >>= xp.uint64(11)
        xp.multiply(z.astype(xp.float64), _TWO_POW_MINUS_53, out=out[start:stop])

    map_chunks(n, work, xp=xp)
    return out


def bernoulli(key: Any, index: Any, p: Any, *, xp: ModuleType = np) -> Any:
    """(bool[n]) ``uniform(key, index) < p``; ``p`` is a scalar or a float64[n] array, ``key`` a
    stream key or (uint64[n]) one per draw (draws of several streams in one pass).

    For a scalar p the comparison is made on the raw bits: with m the top 53 bits,
    ``m * 2^-53 < p`` exactly when ``bits < ceil(p * 2^53) * 2^11``, so the result is the same
    as through :func:`uniform` without making a single float.
    """
    if xp is not np:
        return fused.launch(_BERNOULLI, _index_array(index, xp), _key_operand(key), _float_operand(p), xp=xp)
    n = _length(index)
    out = xp.empty(n, dtype=xp.bool_)
    if getattr(p, "ndim", 0) == 0:
        p = float(p)
        if p <= 0.0 or p >= 1.0:
            out[...] = p >= 1.0
            return out
        threshold = xp.uint64(math.ceil(p * 2.0**53) << 11)

        def work(start: int, stop: int) -> None:
            xp.less(_hashed(key, index, start, stop, xp), threshold, out=out[start:stop])
    else:
        def work(start: int, stop: int) -> None:
            z = _hashed(key, index, start, stop, xp)
            z >>= xp.uint64(11)
            u = z.astype(xp.float64)
            u *= _TWO_POW_MINUS_53
            xp.less(u, p[start:stop], out=out[start:stop])

    map_chunks(n, work, xp=xp)
    return out


def integers(key: int, index: Any, high: Any, *, xp: ModuleType = np) -> Any:
    """(int64[n]) draws in ``[0, high)``; ``high`` is a positive scalar or int64[n] array.

    Uses ``floor(u * high)`` on the 53-bit uniform: bias below 2^-53 * high, nothing at our sizes.
    Computed chunk by chunk like :func:`uniform` (one pass over memory, not four).
    """
    if xp is not np:
        high = high.astype(xp.int64, copy=False) if hasattr(high, "ndim") else int(high)
        return fused.launch(_INTEGERS, _index_array(index, xp), np.uint64(key), high, xp=xp)
    n = _length(index)
    out = xp.empty(n, dtype=xp.int64)
    per_element = getattr(high, "ndim", 0) > 0

    def work(start: int, stop: int) -> None:
        z = _hashed(key, index, start, stop, xp)
        z >>= xp.uint64(11)
        u = z.astype(xp.float64)
        u *= _TWO_POW_MINUS_53
        bound = high[start:stop] if per_element else high
        u *= bound
        # u * high can round up to high itself when high > 2^53 * (1 - u); clamp keeps it in range
        xp.minimum(u.astype(xp.int64), bound - 1, out=out[start:stop])

    map_chunks(n, work, xp=xp)
    return out


def normal(key: int, index: Any, *, xp: ModuleType = np) -> Any:
    """(float64[n]) standard normal draws by Box-Muller on two sub-streams of the key.

    Elementwise log, sqrt and cos are correctly rounded to within an ulp on both libraries but
    not guaranteed bit-identical; use normals only where an ulp cannot change a decision.
    """
    u1 = uniform(_mix64_int(key ^ 0x1), index, xp=xp)
    u2 = uniform(_mix64_int(key ^ 0x2), index, xp=xp)
    return xp.sqrt(-2.0 * xp.log1p(-u1)) * xp.cos(2.0 * np.pi * u2)


def binomial(key: int, index: Any, n: int, p: Any, *, xp: ModuleType = np) -> Any:
    """(int64[m]) Binomial(n, p) draws by inversion of one uniform each.

    Why inversion and not a library sampler: a counter-based draw must be one pure function of
    its index, and the same bits on NumPy and CuPy. The CDF is built by the recurrence
    ``pmf(k+1) = pmf(k) * (n-k)/(k+1) * p/(1-p)`` from ``pmf(0) = (1-p)^n`` (by repeated
    squaring), one elementwise multiply or add per step: IEEE-exact operations that both
    libraries round identically (``pow``, ``log`` and ``exp`` are not guaranteed to). For
    ``p > 1/2`` it draws the failures with ``1-p`` instead, so ``pmf(0) >= 2^-n`` never underflows
    for ``n`` up to about 1000. Work is ``O(m * (mean + a few sd))``: meant for small ``n``.

    Args:
        key: from :func:`stream_key`.
        index: (int[m]) draw indices, or an int m meaning ``arange(m)``.
        n: number of trials, 0 <= n <= 1000.
        p: success probability in [0, 1], a scalar or float64[m].
    """
    if not 0 <= n <= 1000:
        raise ValueError(f"binomial: n={n} is outside 0..1000 (inversion is meant for small n)")
    if xp is not np:
        return fused.launch(_BINOMIAL, _index_array(index, xp), np.uint64(key), int(n), _float_operand(p), xp=xp)
    u = uniform(key, index, xp=xp)
    p = xp.broadcast_to(xp.asarray(p, dtype=xp.float64), u.shape)
    flip = p > 0.5
    q = xp.where(flip, 1.0 - p, p)
    one_minus_q = 1.0 - q
    pmf = xp.ones(u.shape, dtype=xp.float64)
    power, exponent = one_minus_q, n
    while exponent:
        if exponent & 1:
            pmf = pmf * power
        power = power * power
        exponent >>= 1
    odds = q / one_minus_q
    cdf = pmf.copy()
    count = xp.zeros(u.shape, dtype=xp.int64)
    for k in range(n):
        beyond = u >= cdf  # the draw lies past P(X <= k): X >= k+1
        # stop when no draw lies further out; checked every 8 steps (a host sync on CuPy);
        # stopping never changes a result, since every later step would add nothing
        if k % 8 == 0 and not bool(beyond.any()):
            break
        count += beyond
        pmf = pmf * ((n - k) / (k + 1))
        pmf = pmf * odds
        cdf = cdf + pmf
    return xp.where(flip, n - count, count)


# -- the fused kernels (one launch each on CuPy; see weishang.kernels.fused) ----------------------

def _index_array(index: Any, xp: ModuleType) -> Any:
    """(int64[n]) ``index`` as a device array (``arange(n)`` for an int n)."""
    if isinstance(index, (int, np.integer)):
        return xp.arange(int(index), dtype=xp.int64)
    return index if index.dtype == xp.int64 else index.astype(xp.int64)


def _key_operand(key: Any) -> Any:
    """A stream key as a kernel operand: (uint64[n]) per draw as it is, one key as a uint64."""
    return key if getattr(key, "ndim", 0) else np.uint64(key)


def _key_value(key: Any) -> Any:
    """The reference's view of a key operand: an array as it is, a scalar as an int."""
    return key if getattr(key, "ndim", 0) else int(key)


def _float_operand(p: Any) -> Any:
    """A probability as a kernel operand: an array (0-d included) as float64, a number as float."""
    return p.astype(np.float64, copy=False) if hasattr(p, "ndim") else float(p)


#: CUDA helpers for fused kernels that draw: SplitMix64's draw i, mix64(key + (i + 1) * GAMMA),
#: all in wrapping uint64; a uniform from its top 53 bits times 2^-53 (both exact)
DRAW_PREAMBLE = f"""
__device__ unsigned long long weishang_draw(long long index, unsigned long long key) {{
    unsigned long long z = (unsigned long long)index + 1ULL;
    z *= {GAMMA:#x}ULL;
    z += key;
    z ^= z >> 30;
    z *= {_MIX1:#x}ULL;
    z ^= z >> 27;
    z *= {_MIX2:#x}ULL;
    z ^= z >> 31;
    return z;
}}
__device__ double weishang_unit(unsigned long long z) {{
    return (double)(z >> 11) * 1.1102230246251565404236316680908203125e-16;
}}
"""

_BITS = fused.register(fused.FusedKernel(
    "weishang_rng_bits", "int64 index, uint64 key", "uint64 z", "z = weishang_draw(index, key);",
    lambda index, key: bits(int(key), index), DRAW_PREAMBLE))
_UNIFORM = fused.register(fused.FusedKernel(
    "weishang_rng_uniform", "int64 index, uint64 key", "float64 u", "u = weishang_unit(weishang_draw(index, key));",
    lambda index, key: uniform(int(key), index), DRAW_PREAMBLE))
# u < p equals the NumPy path's comparison of the raw bits with ceil(p 2^53) 2^11 (see bernoulli)
_BERNOULLI = fused.register(fused.FusedKernel(
    "weishang_rng_bernoulli", "int64 index, uint64 key, float64 p", "bool hit",
    "hit = weishang_unit(weishang_draw(index, key)) < p;",
    lambda index, key, p: bernoulli(_key_value(key), index, p), DRAW_PREAMBLE))
_INTEGERS = fused.register(fused.FusedKernel(
    "weishang_rng_integers", "int64 index, uint64 key, int64 high", "int64 draw",
    """double v = weishang_unit(weishang_draw(index, key)) * (double)high;
       long long whole = (long long)v;
       draw = whole < high - 1 ? whole : high - 1;""",
    lambda index, key, high: integers(int(key), index, high), DRAW_PREAMBLE))
# the inversion of binomial(), element by element: a thread stops where the NumPy loop would
# stop adding for its element (the CDF only grows), so the count is the same
_BINOMIAL = fused.register(fused.FusedKernel(
    "weishang_rng_binomial", "int64 index, uint64 key, int64 n, float64 p", "int64 count",
    """double u = weishang_unit(weishang_draw(index, key));
       bool flip = p > 0.5;
       double q = flip ? 1.0 - p : p;
       double one_minus_q = 1.0 - q;
       double pmf = 1.0, power = one_minus_q;
       for (long long e = n; e; e >>= 1) {
           if (e & 1) pmf = pmf * power;
           power = power * power;
       }
       double odds = q / one_minus_q;
       double cdf = pmf;
       long long k = 0;
       while (k < n && u >= cdf) {
           pmf = pmf * ((double)(n - k) / (double)(k + 1));
           pmf = pmf * odds;
           cdf = cdf + pmf;
           k += 1;
       }
       count = flip ? n - k : k;""",
    lambda index, key, n, p: binomial(int(key), index, int(n), p), DRAW_PREAMBLE))
