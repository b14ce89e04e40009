"""Measure a scenario's reference payoffs: each channel's payoff per paid post relative to the
mean, as merchants see it with their mix held at the habit (``channels.share_*``).

    .venv/bin/python experiments/channel_reference.py [SCENARIO.toml] [--seeds 1 2] [--set key=value ...]

Prints the ``channels.reference_payoffs`` line to put in the scenario: with it, the channel
choice (:mod:`weishang.model.mechanisms.channel_choice`) keeps the default's mix at its habit, and a rule
that changes what a channel pays moves effort. Run it again after a calibration moves the
channels' funnels. The estimate pools the category payoff estimates of every adaptation from
tick 30 on (the first month is the merchants' warm-up), weighted by the category's merchants,
over the seeds given.
"""

from __future__ import annotations

import argparse

import numpy as np
from tqdm import tqdm

from weishang.model.mechanisms.channel_choice import relative_payoff
from weishang.model.codes import Channel
from weishang.model.commerce import CommerceModel
from weishang.model.config import load_config

#: adaptations before this tick are the warm-up
FROM_TICK = 30


def reference_payoffs(scenario: str | None, seeds: list[int], overrides: list[str]) -> np.ndarray:
    """(float64[C]) the mean relative payoff of each channel over the seeds' adaptations."""
    total, weight = np.zeros(len(Channel)), 0.0
    for seed in seeds:
        config = load_config(scenario, seed=seed, overrides=[*overrides, "merchants.channel_response=0"])
        model = CommerceModel(config)
        every = config.merchants.adapt_every
        for tick in tqdm(range(config.run.n_ticks), desc=f"seed {seed}", unit="tick", leave=False):
            model.step()
            if (tick + 1) % every or tick < FROM_TICK:
                continue
            channels, merchants = model.adaptation.channels, model.merchants
            rel = relative_payoff(channels.habit, channels.peers[0], channels.peers[1])  # (K, C)
            count = np.bincount(merchants.category[merchants.active], minlength=rel.shape[0]).astype(float)
            total += count @ rel
            weight += count.sum()
    return total / weight


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario", nargs="?", default=None)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    ref = reference_payoffs(args.scenario, args.seeds, args.overrides)
    print("reference_payoffs = [" + ", ".join(f"{x:.4f}" for x in ref) + "]")


if __name__ == "__main__":
    main()
