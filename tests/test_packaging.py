"""The installed distribution: import names under weishang only, usable beside a user's own
``model.py`` (issue 15)."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_has_only_weishang_and_imports_beside_a_users_model_py(tmp_path):
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
                            "-q", "-w", str(tmp_path / "dist")], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    wheel = next((tmp_path / "dist").glob("weishang-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top == {"weishang"}  # no bare `model` or `kernels` in site-packages
    assert "weishang/model/scenarios/default.toml" in names and "weishang/model/study/targets.toml" in names
    installed = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                                str(tmp_path / "site"), str(wheel)], capture_output=True, text=True)
    assert installed.returncode == 0, installed.stderr
    # a folder laid out like Mesa's examples: its own model.py (and a kernels.py) next to the script
    user = tmp_path / "user"
    user.mkdir()
    for name in ("model.py", "kernels.py"):
        (user / name).write_text("raise ImportError('the user\\'s own module was imported')\n")
    script = ("import importlib, pkgutil, weishang\n"
              "print(weishang.__version__)\n"
              "for package in ('weishang.model', 'weishang.kernels'):\n"
              "    for info in pkgutil.walk_packages(importlib.import_module(package).__path__, package + '.'):\n"
              "        importlib.import_module(info.name)\n"
              "print(weishang.model.__file__)\n"
              "config = weishang.load_config(overrides=['population.n_users=2000'])\n"
              "print(config.population.n_users, weishang.CommerceModel.__name__)\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    ran = subprocess.run([sys.executable, "-c", script], cwd=user, env=env, capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    version, location, loaded = ran.stdout.split("\n")[:3]
    assert version.startswith("0.") and location.startswith(str(tmp_path / "site"))
    assert loaded == "2000 CommerceModel"
    cli = subprocess.run([sys.executable, "-m", "weishang", "--version"], cwd=user, env=env, capture_output=True,
                         text=True)
    assert cli.returncode == 0 and cli.stdout.startswith("weishang 0.")
