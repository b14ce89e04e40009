"""The calibration regression's reference: measure the default on the suite's small world and
compare with (or, with --write, replace) ``tests/model/calibration_reference.json``.

    python experiments/calibration_reference.py            # today's figures against the reference
    python experiments/calibration_reference.py --write    # store today's figures as the reference

Write a new reference only for a change meant to move the figures (a mechanism or a refit), and
say in the commit which figures moved and why; ``tests/model/test_calibration_regression.py``
fails until then. Run from the repository root (the measuring code lives in ``tests/``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.calibration_reference import (REFERENCE, SEEDS, WORLD, compare, load_reference, measure,  # noqa: E402
                                         reference_of, tolerance)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="store today's figures as the reference")
    args = parser.parse_args(argv)
    values = measure()
    now = reference_of(values)
    old = load_reference() if REFERENCE.is_file() else {}
    print(f"{'figure':40s} {'reference':>12s} {'now':>12s} {'tolerance':>10s}  guarded")
    for name, entry in now.items():
        ref = old.get(name, {}).get("mean", float("nan"))
        tol = tolerance(old[name]) if name in old else float("nan")
        print(f"{name:40s} {ref:12.5g} {entry['mean']:12.5g} {tol:10.3g}  {'yes' if entry['guarded'] else 'no'}")
    left = compare(values, old) if old else []
    for name, ref, mean, tol in left:
        print(f"LEFT: {name}: {ref:.5g} -> {mean:.5g} (tolerance {tol:.3g})")
    if args.write:
        git = {"cwd": ROOT, "capture_output": True, "text": True}
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], **git).stdout.strip()
        REFERENCE.write_text(json.dumps({"world": WORLD, "seeds": list(SEEDS), "written_on_commit": commit + (" (with changes)" if subprocess.run(["git", "diff", "--quiet", "HEAD"], cwd=ROOT).returncode else ""),
                                         "figures": now}, indent=1) + "\n", encoding="utf-8")
        print(f"written: {REFERENCE}")
        return 0
    return 1 if left else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
