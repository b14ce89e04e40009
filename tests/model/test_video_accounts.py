"""Video accounts (视频号) in the model: the channel's levers move what they should."""

import polars as pl

from weishang.model.codes import Channel
from weishang.model.config import ConfigError, load_config
from weishang.model.run import run_scenario

import pytest

SMALL = ["population.n_users=20000", "population.n_cities=4", "run.n_ticks=35", 'run.backend="numpy"',
         "channels.share_video_account=0.1", "channels.share_moments=0.131318"]


def ticks(tmp_path, name, *overrides):
    run = run_scenario(load_config(overrides=[*SMALL, *overrides]), tmp_path / name)
    return pl.from_arrow(run.table("ticks")), run


def test_the_channel_is_in_every_table(tmp_path):
    table, run = ticks(tmp_path, "on", "run.n_ticks=3")
    assert table["n_posts_video_account"].sum() > 0 and table["visits_video_account"].sum() > 0
    cascades = pl.from_arrow(run.table("cascades"))
    assert "video_account" in set(cascades["channel"])
    merchants = pl.from_arrow(run.table("merchants"))
    assert merchants.filter(pl.col("tick") == 2)["video_adopter"].any()
    assert Channel.label(Channel.VIDEO_ACCOUNT) == "video_account"


def test_more_public_traffic_raises_video_gmv_and_effort(tmp_path):
    # which channels give up the effort is not fixed: at this size it comes mostly from the
    # official account, search and live streams (the larger shares), not always from Moments
    base, _ = ticks(tmp_path, "base")
    more, _ = ticks(tmp_path, "more", "channels.video_traffic_share=4.0")
    assert more["visits_video_account"].sum() > base["visits_video_account"].sum()
    assert more["gmv_video_account"].sum() > base["gmv_video_account"].sum()
    assert more["effort_video_account"][-1] > base["effort_video_account"][-1] + 0.02


def test_a_stronger_social_signal_raises_videos_level_two_reach(tmp_path):
    def level2(name, weight):
        _, run = ticks(tmp_path, name, "run.n_ticks=6", "merchants.post_rate=0.5",
                       f"channels.video_social_weight={weight}")
        cascades = pl.from_arrow(run.table("cascades")).filter(pl.col("channel") == "video_account")
        return cascades["exposures_l2"].sum()

    assert level2("strong", 4.0) > level2("weak", 0.25)


def test_video_orders_are_paid_in_the_video_shop(tmp_path):
    only_video = ["channels.share_video_account=1.0", "channels.share_moments=0.0", "channels.share_official_account=0.0",
                  "channels.share_search=0.0", "channels.share_groups=0.0", "channels.share_live_stream=0.0",
                  "channels.share_external_link=0.0", "community.group_post_rate=0.0", "payments.p_private_transfer=0.0",
                  "run.n_ticks=4"]
    table, _ = ticks(tmp_path, "video", *only_video)
    assert table["gmv_mini_program"].sum() > 0
    assert table["gmv_qr"].sum() == 0 and table["gmv_cross_border"].sum() == 0


def test_pools_and_promotions_must_fit():
    with pytest.raises(ConfigError, match="video_promotion"):
        load_config(overrides=["channels.video_pool_sizes=[100, 200]", "channels.video_promotion=[0.3, 0.4]"])


def test_a_video_shop_commission_is_charged_on_video_sales_only(tmp_path):
    free, _ = ticks(tmp_path, "free", "run.n_ticks=6", "merchants.post_rate=0.5")
    charged, _ = ticks(tmp_path, "charged", "run.n_ticks=6", "merchants.post_rate=0.5", "channels.video_commission=0.05")
    assert charged["fees"].sum() > free["fees"].sum()
    # the same orders: the commission takes from the merchants, it does not change what they sold
    assert charged["gmv"][0] == free["gmv"][0]


def test_links_out_of_videos_move_their_value_outside_wechat(tmp_path):
    kept, _ = ticks(tmp_path, "kept", "run.n_ticks=6", "merchants.post_rate=0.5")
    linked, _ = ticks(tmp_path, "linked", "run.n_ticks=6", "merchants.post_rate=0.5",
                      "channels.video_external_link_share=0.8")
    # about the same video orders (off the platform, the risk engine no longer intercepts any),
    # but most of them now pay outside WeChat
    assert linked["gmv_video_account"].sum() == pytest.approx(kept["gmv_video_account"].sum(), rel=0.05)
    assert linked["gmv_off_platform"].sum() > kept["gmv_off_platform"].sum() + 0.5 * kept["gmv_video_account"].sum()
