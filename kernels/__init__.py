"""Bulk array work for weishang, one code path for NumPy and CuPy.

Every kernel is a pure function: arrays and scalars in, new arrays out, the array module passed
as the keyword ``xp``. :mod:`weishang.kernels.backend` is the only module that imports CuPy and the only
place data crosses between host and device.
"""
