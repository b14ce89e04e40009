"""The weishang simulation (installed as ``weishang.model``): scenario config, population,
merchant agents, the mechanisms of a tick, the Mesa model that runs them, and the results
writer. Mesa orchestrates the merchants; consumers are arrays (see :mod:`weishang.kernels`).
"""
