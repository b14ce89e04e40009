"""Would the fit notice a broken mechanism? The 200k validation with a planted fault against without.

    python experiments/identifiability.py                                  # the faults issue 30 planted
    python experiments/identifiability.py --only group_downweight_flipped --out results/identifiability.parquet

For the control (no change) and each mutant of ``experiments/mutants.py`` named (by default the
four a review planted: level 3 with level 2's view probability, level 2 with level 1's buy
probability, the official-account and search shares swapped, the group down-weighting flipped),
a copy of the repository with the fault runs ``experiments/sweeps/validation.toml`` (200k users,
90 days, 5 seeds, 2 workers: about 40 s) and validates it: the fitted outputs within their
bands for the mean and for each seed, and the summed distance outside the bands (in
half-widths, :meth:`weishang.model.study.validation.Target.miss`). A fault the fit can tell from the
right mechanism scores worse than the control.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))
from mutants import MUTANTS, apply, copy_repository  # noqa: E402

PLANTED = ("level3_view_of_level2", "level2_buy_of_level1", "channel_shares_swapped", "group_downweight_flipped")

VALIDATE = """
import json, sys
from pathlib import Path
from weishang.model.study.validation import load_targets, per_replicate_within, share_within, validate
table, _ = validate(Path(sys.argv[1]))
targets = {t.id: t for t in load_targets()}
fitted = table.filter(table["kind"] == "target")
distance = sum(targets[r["target"]].miss(r["simulated"]) for r in fitted.iter_rows(named=True) if r["simulated"] is not None)
within, fitted = share_within(table)
print(json.dumps({"within": within, "fitted": fitted,
                  "per_seed": [h for h, _ in per_replicate_within(table)], "distance": distance,
                  "misses": fitted.filter(~fitted["within"])["target"].to_list()}))
"""


def validate_copy(mutant_name: str | None, workdir: Path) -> dict:
    site = copy_repository(workdir)
    repo = workdir / "repo"
    if mutant_name is not None:
        apply(next(m for m in MUTANTS if m.name == mutant_name), repo)
    env = {**os.environ, "PYTHONPATH": f"{site}{os.pathsep}{repo}", "PYTHONDONTWRITEBYTECODE": "1"}
    out = workdir / "validation"
    sweep = subprocess.run([sys.executable, "-m", "weishang", "sweep", "experiments/sweeps/validation.toml", "--out",
                            str(out), "--workers", "2"], cwd=repo, env=env, capture_output=True, text=True)
    if sweep.returncode != 0:
        last = (sweep.stderr.strip().splitlines() or [f"exit {sweep.returncode}"])[-1]
        return {"mutant": mutant_name or "control", "error": last[:200]}
    result = subprocess.run([sys.executable, "-c", VALIDATE, str(out)], cwd=repo, env=env, capture_output=True,
                            text=True)
    if result.returncode != 0:
        raise SystemExit(f"validating {mutant_name or 'the control'} failed: {result.stderr.strip()[-500:]}")
    return {"mutant": mutant_name or "control", **json.loads(result.stdout.strip().splitlines()[-1])}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", default=list(PLANTED), help="mutant names (default: the four planted)")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "identifiability.parquet")
    args = parser.parse_args(argv)
    unknown = set(args.only) - {m.name for m in MUTANTS}
    if unknown:
        print(f"error: unknown mutant(s) {sorted(unknown)}; experiments/mutants.py --list names them", file=sys.stderr)
        return 2
    import polars as pl  # noqa: PLC0415

    rows = []
    with tempfile.TemporaryDirectory(prefix="weishang-identify-") as tmp:
        for i, name in enumerate([None, *args.only]):
            row = validate_copy(name, Path(tmp) / f"c{i}")
            rows.append(row)
            print(json.dumps(row), flush=True)
    table = pl.DataFrame([{**r, "per_seed": r.get("per_seed"), "misses": r.get("misses")} for r in rows])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = args.out.with_suffix(".tmp")
    table.write_parquet(tmp_out)
    os.replace(tmp_out, args.out)
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
