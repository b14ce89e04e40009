"""Merchants choose where to post: each merchant's channel mix follows what a paid post earns on
each channel under the platform's rules (SPEC sections 1, 2, 4, 9).

A merchant's **mix** (float64[M, C], in :data:`~weishang.model.mechanisms.traffic.CHANNELS` order) is the
share of its paid posts it puts on each channel; :func:`~weishang.model.mechanisms.traffic.plan_posts`
draws each post's channel from it. Everyone starts from the **habit**, the config's channel
shares (``channels.share_*``, fitted to the source's visits): the mix merchants run at the
calibrated operating point before any rule changes. Every ``merchants.adapt_every`` ticks, with
the other adaptations, each merchant in business moves its mix:

* **payoff seen** (imitation): a paid post's contribution on channel ``c`` (its orders' margin
  less fees, less the post's traffic cost ``traffic_cost_per_post x traffic_cost_weights[c]``)
  as the merchant sees it: its own posts there, shrunk toward what its category's peers earn
  per post there, weighted as ``channel_imitation`` posts of its own::

      seen[i, c] = (own_contribution[i, c] + k * peers[cat(i), c]) / (own_posts[i, c] + k)

  ``peers`` is itself a running estimate: each period's posts update it with the same weight
  ``k`` for what it held before, so a channel nobody used this period keeps its last payoff.
* **target** (a multinomial logit around the habit): ``target[i] ∝ habit * exp(response *
  (rel[i] - reference))``, where ``rel = (seen - mean) / gross`` is the channel's payoff less
  the habit-weighted mean of the merchant's channels, in units of their mean gross contribution
  per post (before traffic: a cost all channels pay alike moves budgets, not the mix; clipped
  to [-3, 3]),
  ``response`` is ``merchants.channel_response``, and ``reference`` (``channels.reference_payoffs``)
  is the relative payoff of each channel at the calibrated default. Channels differ in what
  the model does not price (search and groups bring new and repeat customers later; live
  streams and official accounts build a following), so the habitual mix is not the one that
  equalises this period's payoffs; as in discrete-choice models calibrated to base-year shares,
  the reference plays the alternative-specific constants: at the default the target is the
  habit, and a rule that moves a channel's payoff away from what merchants are used to moves
  effort. ``python experiments/channel_reference.py`` measures the reference of a scenario.
* **inertia**: ``mix <- (1 - rate) * mix + rate * target`` with ``rate =
  merchants.channel_adapt_rate``: effort moves a share of the way each period (switching
  suppliers' links, learning a live-stream set-up and growing an official account's followers
  take weeks).

So a rule that cuts a channel's reach (stricter external-link tiers, harsher group
down-weighting) or adds to its cost (``channels.traffic_cost_weights``) lowers what a post there
earns, and effort moves to the other channels; lifting it draws effort in.
"""

from __future__ import annotations

import numpy as np

from ..state import Stateful

#: relative payoffs are clipped to this many times the mean (one outlier period cannot send a
#: merchant's whole mix to one channel)
REL_CLIP = 3.0


def shrunk_payoff(contribution: np.ndarray, posts: np.ndarray, prior: np.ndarray, weight: float) -> np.ndarray:
    """Per-post payoff of observed posts shrunk toward a prior worth ``weight`` posts.

    Args:
        contribution: (float64[..., C]) CNY the posts earned; posts: (int64[..., C]) how many.
        prior: (float64[..., C], broadcastable) payoff per post believed before; NaN where none.
        weight: how many posts' worth the prior counts for.

    Returns:
        (float64[..., C]) ``(contribution + weight * prior) / (posts + weight)``; the observed mean
        alone where there is no prior, the prior alone where there are no posts, NaN where neither.
    """
    known = ~np.isnan(prior)
    k = np.where(known, weight, 0.0)
    total = contribution + k * np.where(known, prior, 0.0)
    count = posts + k
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.where(count > 0, count, 1.0), np.nan)


def relative_payoff(habit: np.ndarray, seen: np.ndarray, gross: np.ndarray) -> np.ndarray:
    """(float64[..., C]) each channel's payoff per post less the habit-weighted mean of the known
    channels' payoffs, in units of their mean gross contribution per post (margin less fees,
    before traffic); clipped to [-3, 3]; 0 where the payoff is unknown (NaN).

    Scaling by the gross, not the net, payoff keeps a cost every channel pays alike out of the
    choice of channel (it moves budgets, not the mix), and stays meaningful when net payoffs
    turn negative.

    Args:
        habit: (float64[C]) the habitual mix; seen, gross: (float64[..., C]) net and gross
            contribution per post.
    """
    known = ~np.isnan(seen) & ~np.isnan(gross)
    weight = np.where(known, habit, 0.0)
    total = weight.sum(axis=-1, keepdims=True)
    total = np.where(total > 0, total, 1.0)
    payoff = np.where(known, seen, 0.0)
    mean = (weight * payoff).sum(axis=-1, keepdims=True) / total
    scale = np.abs((weight * np.where(known, gross, 0.0)).sum(axis=-1, keepdims=True) / total)
    rel = np.where(known & (scale > 0), (payoff - mean) / np.where(scale > 0, scale, 1.0), 0.0)
    return np.clip(rel, -REL_CLIP, REL_CLIP)


def target_mix(habit: np.ndarray, seen: np.ndarray, gross: np.ndarray, response: float,
               reference: np.ndarray) -> np.ndarray:
    """(float64[M, C]) the mix each merchant would choose given the payoffs it sees.

    Args:
        habit: (float64[C]) the habitual mix (sums to 1).
        seen, gross: (float64[M, C]) net and gross contribution per post a merchant sees on each
            channel; NaN where it has no idea (the channel then keeps its habitual weight).
        response: ``merchants.channel_response``; 0 returns the habit.
        reference: (float64[C]) the relative payoffs (:func:`relative_payoff`) the habit was
            formed under (``channels.reference_payoffs``): what merchants are used to.
    """
    known = ~np.isnan(seen)
    shift = np.where(known, relative_payoff(habit, seen, gross) - reference, 0.0)
    target = habit * np.exp(response * shift)
    return target / target.sum(axis=1, keepdims=True)


class ChannelMix(Stateful):
    """Every merchant's channel mix and its category's running payoff estimates.

    Attributes:
        habit: (float64[C]) the config's channel shares; reference: (float64[C]) the relative
            payoffs the habit was formed under.
        mix: (float64[M, C]) each merchant's shares of paid posts by channel (rows sum to 1).
        peers: (float64[2, K, C]) net and gross contribution per paid post on each channel in
            each category, as the category's merchants see it (NaN until someone posts there).
    """

    STATE = ("mix", "peers")

    def __init__(self, n_merchants: int, n_categories: int, habit: tuple[float, ...],
                 reference: list[float] | tuple[float, ...]) -> None:
        self.habit = np.asarray(habit, dtype=np.float64) / float(np.sum(habit))
        self.reference = np.asarray(reference, dtype=np.float64)
        self.mix = np.tile(self.habit, (n_merchants, 1))
        self.peers = np.full((2, n_categories, self.habit.shape[0]), np.nan)

    def adapt(self, active: np.ndarray, category: np.ndarray, posts: np.ndarray, gross: np.ndarray,
              traffic: np.ndarray, *, response: float, imitation: float, rate: float) -> None:
        """One adaptation of every merchant in business (see the module docstring).

        Args:
            active: (bool[M]); category: (int[M]) each merchant's category.
            posts: (int64[M, C]) paid posts this period; gross: (float64[M, C]) what their
                orders earned (margin less fees); traffic: (float64[M, C]) what their reach
                cost, by merchant and channel.
        """
        n_categories = self.peers.shape[1]
        earned = np.stack([gross - traffic, gross])  # (2, M, C): net, gross
        by_category = np.zeros_like(self.peers)
        posted = np.zeros(self.peers.shape[1:])
        np.add.at(by_category, (slice(None), category[active]), earned[:, active])
        np.add.at(posted, category[active], posts[active])
        self.peers = shrunk_payoff(by_category, posted, self.peers, imitation)
        mine = self.peers[:, np.clip(category, 0, n_categories - 1)]
        seen = shrunk_payoff(earned, posts, mine, imitation)
        target = target_mix(self.habit, seen[0], seen[1], response, self.reference)
        self.mix[active] = (1.0 - rate) * self.mix[active] + rate * target[active]
