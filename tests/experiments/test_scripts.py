"""Smoke runs of the experiment scripts at a tiny size."""

import subprocess
import sys
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[2]


def test_reach_vs_n_writes_parquet(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "experiments" / "reach_vs_n.py"), "3000", "6000"],
                          cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    table = pl.read_parquet(tmp_path / "results" / "reach_vs_n.parquet")
    assert table.height == 18 and set(table["level"]) == {1, 2, 3}
    assert set(table["layout"]) == {"regions", "cross_region", "cities_grow"}
    assert (table["reach_per_reaching_post"] >= table["reach_per_post"]).all()
    assert (tmp_path / "results" / "figures" / "reach_vs_n.png").stat().st_size > 10_000


def load_script(name):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "experiments" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_lever_file_names_its_outcome_and_direction():
    effects = load_script("lever_effects")
    levers = {p.stem for p in (ROOT / "experiments").glob("*.toml")} - {"baseline"}
    assert levers == set(effects.OWN)
    for column, sign, why in effects.OWN.values():
        assert column in effects.OUTCOMES and sign in (-1, 1) and why


def test_lever_summary_says_whether_the_interval_excludes_zero():
    effects = load_script("lever_effects")
    base = [100.0, 110.0, 90.0, 105.0, 95.0]
    rows = [{"scenario": "baseline", "replicate": k, "status": "complete", "exits": v} for k, v in enumerate(base)]
    rows += [{"scenario": "traffic_cost_high", "replicate": k, "status": "complete", "exits": v + 10 + k % 2}
             for k, v in enumerate(base)]
    rows += [{"scenario": "review_strict", "replicate": k, "status": "complete", "exits": v + (-1) ** k}
             for k, v in enumerate(base)]
    runs = pl.DataFrame(rows)
    effects.OWN["review_strict"] = ("exits", +1, "test")  # the noise-only effect: its interval spans zero
    effects.CONTEXT = ("exits",)
    lines = effects.summary(runs, ["review_strict", "traffic_cost_high"])
    assert "| **no** |" in lines[2] and "| yes |" in lines[3]


def test_video_adopters_table_from_a_small_sweep(tmp_path):
    from weishang.model.study.sweep import load_sweep, run_sweep

    sweep_file = tmp_path / "video.toml"
    sweep_file.write_text(f'''[sweep]
name = "v"
scenarios = ["{(ROOT / 'experiments' / 'baseline.toml').as_posix()}"]
replicates = 2

[set]
"population.n_users" = 4000
"population.n_cities" = 2
"run.n_ticks" = 4
"merchants.post_rate" = 0.5
"channels.share_video_account" = 0.3
"channels.share_search" = 0.061202
''')
    run_sweep(load_sweep(sweep_file), tmp_path / "out")
    table = load_script("video_adopters").summary(str(tmp_path / "out"))
    assert set(table["adopters"]) == {True, False}
    assert table.height == 2 and table["share_adopted"][0].endswith("%")


def test_held_out_levers_reads_an_ensemble_sweep(tmp_path):
    """The held-out lever test on a tiny sweep over a two-member ensemble: a row per lever with
    its effect, seed interval, parameter range and members agreeing with the stated sign."""
    from weishang.model.study.sweep import load_sweep, run_sweep

    pl.DataFrame({"member": [0, 1], "param.cascade.p_buy_friend": [0.2, 0.3]}).write_parquet(tmp_path / "e.parquet")
    scenarios = ", ".join(f'"{ROOT / "experiments" / name}.toml"' for name in
                          ("baseline", "no_inducement_ban", "group_downweight_strict", "external_links_open"))
    (tmp_path / "s.toml").write_text(f'[sweep]\nscenarios = [{scenarios}]\nreplicates = 2\n[set]\n'
                                     '"population.n_users" = 3000\n"population.n_cities" = 3\n"run.n_ticks" = 8\n'
                                     '[ensemble]\nfile = "e.parquet"\n')
    run_sweep(load_sweep(tmp_path / "s.toml"), tmp_path / "out", workers=1)
    proc = subprocess.run([sys.executable, str(ROOT / "experiments" / "held_out_levers.py"), str(tmp_path / "out"),
                           "--markdown"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    table = pl.read_parquet(tmp_path / "out" / "held_out_levers.parquet")
    assert set(table["lever"]) == {"no_inducement_ban", "group_downweight_strict", "external_links_open"}
    assert (table["seed_low"] <= table["effect"]).all() and (table["effect"] <= table["seed_high"]).all()
    assert table["members_agreeing"].str.ends_with("of 2").all()


def test_mutants_are_listed_and_each_names_code_that_exists():
    import importlib.util

    spec = importlib.util.spec_from_file_location("mutants_listed", ROOT / "experiments" / "mutants.py")
    mutants = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mutants  # its dataclass looks its module up
    spec.loader.exec_module(mutants)
    proc = subprocess.run([sys.executable, str(ROOT / "experiments" / "mutants.py"), "--list"], capture_output=True,
                          text=True)
    assert proc.returncode == 0 and len(proc.stdout.splitlines()) == len(mutants.MUTANTS) >= 30
    for m in mutants.MUTANTS:  # a mutant whose text moved away would test nothing
        assert (ROOT / m.path).read_text(encoding="utf-8").count(m.old) == 1, m.name
        assert m.old != m.new
    bad = subprocess.run([sys.executable, str(ROOT / "experiments" / "mutants.py"), "--only", "no_such"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown mutant" in bad.stderr
