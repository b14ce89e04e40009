import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import weishang.kernels.backend as backend_module
from weishang.kernels.backend import resolve_backend
from weishang.model.config import ConfigError, load_config
from weishang.model.graph_io import GraphInputError, csr_from_networkx, read_edge_list
from weishang.model.population import USER_STATE, build_population

from tests import strict_device

NUMPY = resolve_backend("numpy")


@pytest.fixture(scope="module")
def population():
    config = load_config(overrides=["population.n_users=20000", "population.n_cities=5"])
    return config, build_population(config, NUMPY)


def test_state_is_declared_once_and_allocated(population):
    _, pop = population
    assert set(pop.state) == {f.name for f in USER_STATE}
    for f in USER_STATE:
        assert pop.state[f.name].dtype == np.dtype(f.dtype) and pop.state[f.name].shape == (pop.n_users,)


def test_memory_within_bound(population):
    # issue 2: at most about 10 bytes per directed edge plus 200 bytes per user, all state included
    _, pop = population
    assert pop.nbytes() <= 10 * pop.n_edges + 200 * pop.n_users


def test_merchants_are_accounts_with_many_friends(population):
    config, pop = population
    assert pop.merchant_uids.shape == (config.n_merchants,)
    # every merchant owns its own account (the user state no longer mirrors the merchant index)
    assert np.unique(pop.merchant_uids).shape == (config.n_merchants,)
    assert pop.merchant_uids.min() >= 0 and pop.merchant_uids.max() < pop.n_users
    degree = np.diff(pop.indptr)
    assert degree[pop.merchant_uids].mean() > 3 * degree.mean()  # merchant_sociability = 8


def test_population_is_read_only_so_runs_can_share_it(population):
    _, pop = population
    for array in (pop.state["interests"], pop.indices, pop.group_members):
        with pytest.raises(ValueError, match="read-only"):
            array[0] = 1


def test_groups_both_ways_and_mean_size(population):
    _, pop = population
    sizes = np.diff(pop.group_indptr)
    # an input of SPEC section 4: mean 286; the builder corrects its draw to the realised mean
    assert sizes.mean() == pytest.approx(286, rel=0.03)
    assert (sizes > 500).any()  # the down-weighting threshold has groups to act on
    # the user -> groups CSR is the exact transpose of group -> members
    pairs_a = sorted(zip(np.repeat(np.arange(pop.n_groups), sizes).tolist(), pop.group_members.tolist()))
    users = np.repeat(np.arange(pop.n_users), np.diff(pop.member_indptr))
    pairs_b = sorted(zip(pop.member_groups.tolist(), users.tolist()))
    assert pairs_a == pairs_b


def population_arrays(pop, to_host=np.asarray):
    """Every array of a population, on the host, by name."""
    names = [f"state.{name}" for name in pop.state] + ["indptr", "indices", "group_indptr", "group_members",
                                                       "group_owner", "group_size", "member_indptr", "member_groups"]
    return {**dict(zip(names, (to_host(a) for a in pop.arrays()))), "merchant_uids": pop.merchant_uids}


def test_population_built_on_the_stand_in_equals_numpy(population, monkeypatch):
    # the strict stand-in builds everything in one piece on its "device"; NumPy here in chunks
    # of 4096 on the thread pool, and in the fixture in its default chunks: all three the same,
    # bit for bit, dtypes included
    config, default = population
    monkeypatch.setitem(sys.modules, "cupyx", strict_device.cupyx)
    strict = strict_device.backend()
    with strict_device.counting() as tally:
        on_device = build_population(config, strict)
    monkeypatch.setattr(backend_module, "CHUNK", 4096)
    chunked = build_population(config, NUMPY)
    expected = population_arrays(default)
    for other in (population_arrays(on_device, strict.to_host), population_arrays(chunked)):
        assert other.keys() == expected.keys()
        for name, array in expected.items():
            assert other[name].dtype == array.dtype and np.array_equal(other[name], array), name
    # what crosses the bus: sizes, and the merchants' accounts (the Mesa agents' ids)
    assert tally.transfer_bytes < 8 * config.n_merchants + 2048, tally


def test_edge_list_import_parquet_and_csv(tmp_path):
    src = np.array([10, 10, 20, 30, 30, 40, 50, 60] * 20)
    dst = np.array([20, 30, 30, 40, 10, 50, 60, 10] * 20)
    pq.write_table(pa.table({"src": src, "dst": dst}), tmp_path / "g.parquet")
    (tmp_path / "g.csv").write_text("a,b\n" + "\n".join(f"{s},{d}" for s, d in zip(src, dst)))
    for name in ("g.parquet", "g.csv"):
        s, d = read_edge_list(tmp_path / name)
        assert np.array_equal(s, src) and np.array_equal(d, dst)
    scenario = tmp_path / "s.toml"
    scenario.write_text('[population]\nedge_list = "g.parquet"\nn_users = 100\nn_cities = 2\n'
                        '[merchants]\nn_merchants = 2\n')
    pop = build_population(load_config(scenario), NUMPY)
    assert pop.n_users == 6 and pop.n_edges == 2 * 7  # 7 distinct friendships among 6 users


def test_bad_edge_lists(tmp_path):
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 this is not parquet")
    (tmp_path / "text.csv").write_text("src,dst\na,b\n")
    (tmp_path / "one.csv").write_text("src\n1\n")
    (tmp_path / "g.json").write_text("{}")
    for name, message in [("broken.parquet", "cannot be read"), ("text.csv", "integer user ids"),
                          ("one.csv", "two columns"), ("g.json", "unknown format"), ("nope.csv", "does not exist")]:
        with pytest.raises(GraphInputError, match=message):
            read_edge_list(tmp_path / name)


def test_networkx_import():
    import networkx as nx

    indptr, indices, labels = csr_from_networkx(nx.karate_club_graph())
    assert indptr.shape == (35,) and indices.shape == (2 * 78,) and len(labels) == 34


def test_too_many_merchants_is_a_config_error():
    with pytest.raises(ConfigError, match="at most population.n_users"):
        load_config(overrides=["population.n_users=100", "merchants.n_merchants=101"])


def test_an_edge_list_sets_the_users_every_figure_scales_by(tmp_path):
    # issue 16: validation scaled absolute figures by population.n_users, not by the graph's users
    import json

    from weishang.model.run import run_scenario
    from weishang.model.study.validation import load_targets, validate_run

    graph = generate_friend_graph_for_test(3000)
    pq.write_table(pa.table({"src": graph[0], "dst": graph[1]}), tmp_path / "g.parquet")
    results = {}
    for claimed in (2000, 1_000_000):
        config = load_config(overrides=[f'population.edge_list="{tmp_path / "g.parquet"}"',
                                        f"population.n_users={claimed}", "run.n_ticks=3", 'run.backend="numpy"'])
        run = run_scenario(config, tmp_path / f"claimed{claimed}").run_dir
        manifest = json.loads((run / "manifest.json").read_text())
        assert manifest["config"]["population"]["n_users"] == manifest["population"]["users"] == 3000
        daily = next(t for t in load_targets() if t.id == "daily_gmv")
        results[claimed] = validate_run(run, [daily])["simulated"][0]
    assert results[2000] == results[1_000_000]  # the same tables, the same figures


def generate_friend_graph_for_test(n):
    from weishang.kernels.graph import GraphParams, generate_friend_graph

    g = generate_friend_graph(n, GraphParams(n_cities=3, mean_degree=20), seed=3)
    src = np.repeat(np.arange(n), np.diff(g.indptr))
    keep = src < g.indices
    return src[keep], g.indices[keep].astype(np.int64)


class _Reads:
    """A config as :func:`build_population` sees it, recording every "section.key" it reads (a
    derived property, such as ``n_merchants``, is evaluated on the view, so its reads count)."""

    def __init__(self, config, reads, section=None):
        for key, value in (("_config", config), ("_reads", reads), ("_section", section)):
            object.__setattr__(self, key, value)

    def __getattr__(self, name):
        from weishang.model.config import ScenarioConfig

        if self._section is not None:
            self._reads.add(f"{self._section}.{name}")
            return getattr(self._config, name)
        if name in ScenarioConfig.model_fields:
            return _Reads(getattr(self._config, name), self._reads, name)
        derived = getattr(type(self._config), name, None)
        if isinstance(derived, property):
            return derived.fget(self)
        raise AssertionError(f"build_population reads config.{name}, which the test cannot follow")


def test_the_population_key_holds_everything_the_population_is_built_from():
    # runs that share a population (an ensemble's samples, a calibration's trials) reuse it when
    # their keys match: a read outside the key would hand a run another config's population
    from weishang.model.population import POPULATION_KEYS, population_key

    config = load_config(overrides=["population.n_users=3000", "population.n_cities=3"])
    reads: set[str] = set()
    build_population(_Reads(config, reads), NUMPY)
    assert reads, "the view recorded nothing"
    keyed = set(POPULATION_KEYS) | {"run.seed", "run.backend"}
    assert {r for r in reads if not r.startswith("population.")} <= keyed
    # each keyed value changes the key; a key outside them does not
    for change in ("run.seed=3", "merchants.n_merchants=7", "community.group_size_mean=100", "population.n_cities=4"):
        assert population_key(load_config(overrides=["population.n_users=3000", "population.n_cities=3", change])) \
            != population_key(config), change
    assert population_key(load_config(overrides=["population.n_users=3000", "population.n_cities=3",
                                                 "cascade.p_buy_friend=0.4"])) == population_key(config)
