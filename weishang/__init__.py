"""weishang: an agent-based model of WeChat's micro-commerce (微商) ecosystem.

The public API. The code lives in the repository's ``model/`` and ``kernels/`` folders, installed
as :mod:`weishang.model` (the simulation: config, population, mechanisms, the Mesa model, results)
and :mod:`weishang.kernels` (array kernels, one code path for NumPy and CuPy); nothing named bare
``model`` or ``kernels`` is installed.

    import weishang

    config = weishang.load_config("my.toml", ["population.n_users=50000"], seed=3)
    result = weishang.run_scenario(config, "results/my-run")
    model = weishang.CommerceModel(config, seed=7)     # or drive it the Mesa way
    model.run_model()

Heavy modules load on first use, so ``import weishang`` and ``weishang --version`` stay fast.
"""

from __future__ import annotations

from importlib import import_module, metadata
from pathlib import Path
from typing import Any

# A source checkout used without installing it (its root on PYTHONPATH): the repository's
# model/ and kernels/ folders serve as weishang.model and weishang.kernels. An installed wheel
# has them inside this package, and this does nothing.
_HERE = Path(__file__).resolve().parent
if not (_HERE / "model").is_dir() and (_HERE.parent / "model" / "commerce.py").is_file():
    __path__.append(str(_HERE.parent))

try:
    __version__ = metadata.version("weishang")
except metadata.PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

#: public name -> module that defines it
_API = {
    "load_config": "weishang.model.config",
    "ScenarioConfig": "weishang.model.config",
    "run_scenario": "weishang.model.run",
    "RunResult": "weishang.model.run",
    "CommerceModel": "weishang.model.commerce",
    "load_sweep": "weishang.model.study.sweep",
    "run_sweep": "weishang.model.study.sweep",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'weishang' has no attribute {name!r}")
    value = getattr(import_module(_API[name]), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
