"""The whole model on a strict CPU stand-in for CuPy (``tests/strict_device.py``): no host array
meets a device array, nothing is converted to NumPy implicitly, the CuPy-only branches run, and
the tables equal the NumPy run's. (A real GPU's bit-identity is ``pytest -m gpu``'s job.)"""

import sys

import numpy as np
import pyarrow.dataset as ds
import pytest

from weishang.model import run as model_run
from weishang.kernels.graph import GraphParams, generate_friend_graph
from weishang.model.config import load_config
from tests import strict_device
from tests.kernels.test_cascade import OUTCOME_ARRAYS, propagate_host_and_device
from tests.model.test_run import table_digest


@pytest.fixture
def strict(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupyx", strict_device.cupyx)
    return strict_device.backend()


def test_stand_in_refuses_what_cupy_refuses(strict):
    xp = strict.xp
    device = xp.arange(5)
    with pytest.raises(TypeError):
        np.asarray(device)
    with pytest.raises(TypeError):
        device + np.arange(5)
    with pytest.raises(TypeError):
        xp.concatenate([device, np.arange(3)])
    with pytest.raises(TypeError):
        xp.repeat(device, device)
    assert int(device.sum()) == 10 and strict.to_host(device[device > 2]).tolist() == [3, 4]


def test_stand_in_refuses_scalars_cupy_refuses(strict):
    # CuPy takes a scalar operand only if type(x) is int, float, bool, complex or a NumPy scalar
    # type: the first H200 run died at tick 1 on `channel == Channel.MOMENTS` (an IntEnum member)
    import enum
    from decimal import Decimal
    from fractions import Fraction

    class Colour(enum.IntEnum):
        RED = 0

    class OnlyIndex:
        def __index__(self):
            return 1

    xp = strict.xp
    device = xp.zeros(3, dtype=xp.int8)
    for refused in (Colour.RED, Decimal(1), Fraction(1, 2), OnlyIndex()):
        with pytest.raises(strict_device.ScalarOperandRefused, match="operand"):
            device == refused  # noqa: B015
        with pytest.raises(strict_device.ScalarOperandRefused):
            xp.where(device > 0, device, refused)
        with pytest.raises(strict_device.ScalarOperandRefused):
            device[device == 0] = refused
    for accepted in (0, 0.0, np.int8(0), np.float32(0)):
        assert bool((device == accepted).all())
    assert not bool((device == True).any())  # noqa: E712


def test_the_old_traffic_comparison_fails_on_the_stand_in(strict):
    # the line that crashed on the H200 (model/mechanisms/traffic.py, commit 56dfe1a), with the IntEnum the
    # codes were then: refused here as on CuPy; the codes are plain ints now, and pass
    import enum

    from weishang.model.codes import Channel

    OldChannel = enum.IntEnum("OldChannel", {name: code for code, name in enumerate(Channel.names())})
    xp = strict.xp
    local, channel = xp.arange(4), xp.asarray(np.array([3, 0, 0, 6], dtype=np.int8))
    with pytest.raises(TypeError, match="NotImplemented"):
        local[channel == OldChannel.MOMENTS]
    assert strict.to_host(local[channel == Channel.MOMENTS]).tolist() == [1, 2]


def test_the_tally_counts_launches_transfers_and_size_syncs(strict):
    xp = strict.xp
    with strict_device.counting() as tally:
        a = xp.arange(10)            # 1 launch
        b = a * 2 + 1                # 2 launches
        picked = b[b > 5]            # 2 launches (compare, masked gather), 1 size sync
        total = int(picked.sum())    # 1 launch, 1 transfer of 8 bytes
        host = picked.get()          # 1 transfer of the array's bytes
        view = b[2:5]                # a view: nothing
    assert (tally.launches, tally.transfers, tally.size_syncs) == (6, 2, 1), tally
    assert tally.transfer_bytes == 8 + host.nbytes and total == int(host.sum()) and view.shape == (3,)


def test_cascade_kernel_on_the_stand_in_equals_numpy(strict):
    g = generate_friend_graph(2000, GraphParams(n_cities=3, mean_degree=12, circle_size=10), seed=4)
    host, on_device = propagate_host_and_device(g, strict, n_strangers=40)
    assert host.exposures[:, 2].sum() > 0
    for name in OUTCOME_ARRAYS:
        assert np.array_equal(getattr(host, name), strict.to_host(getattr(on_device, name))), name


def test_a_run_on_the_stand_in_equals_numpy_through_a_checkpoint(tmp_path, strict, monkeypatch):
    # checkpointing, resuming, the transaction log and merchant adaptation all cross the bus
    config = load_config(overrides=["population.n_users=5000", "population.n_cities=10", "run.n_ticks=9",
                                    'run.backend="numpy"', "output.checkpoint_every=3",
                                    'output.transactions="full"', "merchants.adapt_every=2"])
    on_numpy = model_run.run_scenario(config, tmp_path / "numpy").run_dir
    monkeypatch.setattr(model_run, "resolve_backend", lambda name: strict)

    def stop_after_seven(done, total):
        if done == 7:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        model_run.run_scenario(config, tmp_path / "strict", on_tick=stop_after_seven)
    resumed = model_run.run_scenario(config, tmp_path / "strict", resume=True)
    assert resumed.manifest["backend"]["name"] == "strict" and resumed.manifest["resumed_from_tick"] == 5
    assert table_digest(resumed.run_dir) == table_digest(on_numpy)
    a = ds.dataset(on_numpy / "transactions").to_table().sort_by("key")
    b = ds.dataset(resumed.run_dir / "transactions").to_table().sort_by("key")
    assert a.equals(b)


def test_video_accounts_on_the_stand_in_equal_numpy(tmp_path, strict, monkeypatch):
    import polars as pl

    config = load_config(overrides=["population.n_users=5000", "population.n_cities=10", "run.n_ticks=4",
                                    'run.backend="numpy"', "merchants.post_rate=0.5",
                                    "channels.share_video_account=0.3", "channels.share_search=0.061202"])
    on_numpy = model_run.run_scenario(config, tmp_path / "numpy").run_dir
    assert pl.read_parquet(on_numpy / "ticks.parquet")["visits_video_account"].sum() > 0
    monkeypatch.setattr(model_run, "resolve_backend", lambda name: strict)
    on_strict = model_run.run_scenario(config, tmp_path / "strict").run_dir
    assert table_digest(on_strict) == table_digest(on_numpy)


def test_per_tick_copies_to_the_host_are_aggregates(strict):
    # issue 8: the tick stays on the device, only aggregates come back. Every device-to-host
    # copy made during a tick must be per merchant (M, M+1, or rows of M: up to two per channel,
    # the books' sales and fees), per cascade (C, or a few columns per level: the cascades
    # table's four counts and GMV in one copy), or a short fixed table (scenarios, typologies,
    # 28 currencies): never per user, order, exposure or payment.
    from dataclasses import dataclass

    from weishang.kernels.backend import Backend
    from weishang.model.codes import Channel
    from weishang.model.commerce import CommerceModel
    from weishang.model.mechanisms.risk.engine import CURVE_CLASSES, FPR_GRID

    copied: list[int] = []

    @dataclass(frozen=True)
    class Recording(Backend):
        def to_host(self, array):
            copied.append(int(array.size))
            return super().to_host(array)

    config = load_config(overrides=["population.n_users=20000", "run.n_ticks=6", 'run.backend="numpy"'])
    model = CommerceModel(config, backend=Recording(strict.name, strict.xp, strict.device, strict.reason))
    m, levels = model.n_merchants, len(model.cascade.levels)
    discriminating = 0
    for _ in range(config.run.n_ticks):
        copied.clear()
        model.step()
        c = model.record.traffic.posts.n
        curve = len(CURVE_CLASSES) * (len(FPR_GRID) + 1)
        allowed = ({m, m + 1, curve} | {k * m for k in range(2, 2 * len(Channel) + 1)}
                   | {k * c for k in range(1, 4 * levels + 2)})
        assert copied and all(size <= 32 or size in allowed for size in copied), (sorted(set(copied)), allowed)
        n_orders = int(model.record.aggregation.buys.sum())
        discriminating += n_orders > 32 and n_orders not in allowed and n_orders < m * 8
    assert discriminating > 0  # a per-order copy would have been caught on some tick
