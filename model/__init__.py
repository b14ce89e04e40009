"""The weishang simulation (installed as ``weishang.model``).

Three packages and the core they share:

* :mod:`weishang.model.mechanisms`: the steps of a tick, one module each (posting, traffic,
  cascade, payments, risk, settlement, governance, community, inventory, books, adaptation,
  aggregation);
* :mod:`weishang.model.study`: experiments and their reading (sweeps, sensitivity, calibration,
  ensembles, validation, effects, reports);
* :mod:`weishang.model.apps`: the command line, the dashboard, the benchmarks, the docs generator;
* here: the scenario config, the codes, the population and merchants' tables, the tick plan and
  its state protocol, the Mesa model that runs it (:mod:`.commerce`), the results writer and the
  run (:mod:`.run`). Mesa orchestrates the merchants; consumers are arrays (see
  :mod:`weishang.kernels`).

Modules that moved into the packages keep their old import path for one release (:mod:`._moved`).
"""

from . import _moved

_moved.install()
