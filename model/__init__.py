"""The weishang simulation: scenario config, population, merchant agents, the tick plan and the
results writer. Mesa orchestrates the merchants; consumers are arrays (see :mod:`kernels`).
"""

__version__ = "0.1.0"
