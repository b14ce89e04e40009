import pytest

from weishang.model.config import ConfigError, ScenarioConfig, load_config, parse_override


def test_default_loads_with_public_keys():
    c = load_config()
    assert c.run.n_ticks == 90 and c.run.seed == 1 and c.run.backend == "auto"
    assert c.population.n_users == 200_000
    # merchants scale with N: 23M practitioners per 1.289B users
    assert c.n_merchants == round(200_000 * 23e6 / 1.289e9)
    assert c.resolved()["merchants"]["n_merchants"] == c.n_merchants


def test_scenario_file_then_overrides_then_shortcuts(tmp_path):
    f = tmp_path / "s.toml"
    f.write_text('[run]\nn_ticks = 7\nname = "mine"\n[population]\nn_users = 1000\n')
    c = load_config(f, ["population.n_users=2000", "merchants.n_merchants=12"], seed=9, backend="numpy")
    assert (c.run.n_ticks, c.run.name, c.population.n_users, c.n_merchants) == (7, "mine", 2000, 12)
    assert (c.run.seed, c.run.backend) == (9, "numpy")
    assert c.population.mean_degree == 175.0  # untouched keys keep the default


@pytest.mark.parametrize("override,pieces", [
    ("population.n_users=-5", ["population.n_users", "-5", "greater than or equal to 100"]),
    ("population.n_users=1.5", ["population.n_users", "1.5", "valid integer"]),
    ("population.n_users=abc", ["population.n_users", "abc", "valid integer"]),
    ("run.backend=gpu", ["run.backend", "gpu", "'auto', 'numpy' or 'cupy'"]),
    ("run.seed=true", ["run.seed", "true", "valid integer"]),
    ("population.colour=1", ["population.colour", "unknown key", "n_users"]),
    ("weather.rain=1", ["weather", "unknown section", "population"]),
    ("cascade.p_buy_friend=1.5", ["cascade.p_buy_friend", "1.5", "less than or equal to 1"]),
    ("payments.mix_qr=0.9", ["must sum to 1"]),
    ("merchants.n_merchants=999999", ["merchants.n_merchants", "at most population.n_users"]),
    ("n_users=5", ["section.key"]),
    # the bound is what the binomial draw can do (issue 32: 1001 passed, then failed mid-run)
    ("cascade.n_stranger_views=1001", ["cascade.n_stranger_views", "1001", "less than or equal to 1000"]),
    ("novalue", ["section.key=value"]),
])
def test_bad_values_name_key_value_and_allowed(override, pieces):
    with pytest.raises(ConfigError) as info:
        load_config(overrides=[override])
    message = str(info.value)
    assert "\n" not in message
    for piece in pieces:
        assert piece in message


def test_bad_scenario_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[run\nn_ticks = ")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    wrong = tmp_path / "wrong.toml"
    wrong.write_text("run = 5\n")
    with pytest.raises(ConfigError, match="run = 5"):
        load_config(wrong)


def test_override_values_are_read_as_toml():
    assert parse_override("run.name=abc") == (["run", "name"], "abc")
    assert parse_override("run.n_ticks = 12") == (["run", "n_ticks"], 12)
    assert parse_override('population.edge_list="a b.csv"') == (["population", "edge_list"], "a b.csv")


def test_schema_lists_every_section():
    schema = ScenarioConfig.model_json_schema()
    for section in ("run", "population", "merchants", "channels", "cascade", "payments", "risk",
                    "community", "governance", "platform", "output"):
        assert section in schema["properties"]


def test_field_defaults_equal_the_shipped_default_scenario():
    # the schema shows the fields' defaults; they must be the values the default scenario uses
    from weishang.model.config import default_document

    bare = ScenarioConfig().model_dump()
    for section, values in default_document().items():
        for key, value in values.items():
            assert bare[section][key] == value, f"{section}.{key}"


def test_preflight_estimate_grows_with_users_and_degree():
    from weishang.model.preflight import BASELINE_BYTES, estimate

    small = estimate(load_config(), "numpy").host_bytes
    big = estimate(load_config(overrides=["population.n_users=1000000"]), "numpy").host_bytes
    dense = estimate(load_config(overrides=["population.mean_degree=350"]), "numpy").host_bytes
    assert big - BASELINE_BYTES > 4 * (small - BASELINE_BYTES) and dense > small
    # the measured 1M-user build peaked at 1.85 GiB; the estimate must cover it
    assert big >= 1.85 * 2**30


def test_the_whole_allowed_range_of_stranger_views_and_prices_runs(tmp_path):
    # issue 32: valid configs that crashed mid-run (n_stranger_views=1001 was allowed; a tiny
    # price median rounded some prices to zero and divided by them)
    import numpy as np

    from weishang.model.run import run_scenario

    for extra in (["cascade.n_stranger_views=1000"], ["merchants.price_median=0.01"]):
        config = load_config(overrides=["population.n_users=3000", "population.n_cities=3", "run.n_ticks=3",
                                        'run.backend="numpy"', "merchants.post_rate=0.5", *extra])
        result = run_scenario(config, tmp_path / extra[0].split("=")[0])
        assert result.manifest["status"] == "complete"
    from weishang.model.commerce import CommerceModel

    model = CommerceModel(load_config(overrides=["population.n_users=3000", "population.n_cities=3",
                                                 'run.backend="numpy"', "merchants.price_median=0.01"]))
    assert (model.merchants.price >= 0.01).all() and np.isfinite(model.traffic.appeal.rel_price).all()
