"""The notifier's pure core: the fold, what is posted for what, and the records of posts."""

from __future__ import annotations

from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st

from nertz_common import events as ev
from nertz_common.ids import derive_id
from nertz_common.testing.fake_telegram import html_problem
from nertz_notifier.core import render
from nertz_notifier.core.decide import NotifierConfig, Post, decide, posted, refused
from nertz_notifier.core.state import NotifierState, daily_id, evolve, fold, refused_id

CFG = NotifierConfig()


def run(events: list[ev.Event], state: NotifierState | None = None) -> tuple[NotifierState, list[Post]]:
    """Feed ``events`` as the notifier does: decide, evolve, and record each post as Telegram message n."""
    state = state if state is not None else CFG.initial_state()
    out: list[Post] = []
    for e in events:
        posts = decide(state, e, CFG)
        state = evolve(state, e)
        for p in posts:
            out.append(p)
            state = evolve(state, posted(p, e, "-100123", len(out)))
    return state, out


def test_scenario_posts_every_kind_in_order_with_replies_to_the_entry(nk: SimpleNamespace) -> None:
    sc = nk.scenario()
    _, posts = run(sc.events)
    assert [p.kind for p in posts] == sc.kinds
    assert {i + 1: p.reply_to_message_id for i, p in enumerate(posts) if p.reply_to_message_id} == sc.replies
    assert all(p.text.endswith("<i>Not financial advice. Automated message from Nertz.</i>") for p in posts)
    assert all(html_problem(p.text) is None for p in posts)
    assert len({p.source_event_id for p in posts}) == len(posts)


def test_fold_of_records_then_replay_proposes_nothing_again(nk: SimpleNamespace) -> None:
    sc = nk.scenario()
    state, posts = run(sc.events)
    again = [p for e in sc.events for p in decide(state, e, CFG)]
    assert posts and again == []


@settings(max_examples=40, deadline=None)
@given(cut=st.integers(min_value=0, max_value=60))
def test_fold_prefix_then_rest_equals_whole(nk: SimpleNamespace, cut: int) -> None:
    sc = nk.scenario()
    _, posts = run(sc.events)
    log = [*sc.events, *(posted(p, sc.events[0], "-1", i + 1) for i, p in enumerate(posts))]
    cut = min(cut, len(log))
    whole = fold(CFG.initial_state(), log)
    assert fold(fold(CFG.initial_state(), log[:cut]), log[cut:]) == whole


def test_evolve_twice_changes_nothing_a_post_depends_on(nk: SimpleNamespace) -> None:
    sc = nk.scenario()
    once = fold(CFG.initial_state(), sc.events)
    twice = fold(CFG.initial_state(), [x for e in sc.events for x in (e, e)])
    assert twice == once


def test_decide_exit_after_restart_replies_to_entry_message_from_the_log(nk: SimpleNamespace) -> None:
    tr = nk.Trade("BTCUSDT", "long", 100.0, 1.0, nk.t(0))
    entry = tr.opened()
    record = posted(decide(CFG.initial_state(), entry, CFG)[0], entry, "-100123", 41)
    # a restart: only the log is left — the entry, then its record
    state = fold(CFG.initial_state(), [tr.order(), entry, record])
    (post,) = decide(state, tr.closed(nk.t(30), 104.0, "take_profit"), CFG)
    assert post.kind == "exit" and post.reply_to_message_id == 41 and post.correlation_id == tr.cid


def test_decide_refused_source_is_done_and_never_proposed_again(nk: SimpleNamespace) -> None:
    tr = nk.Trade("BTCUSDT", "long", 100.0, 1.0, nk.t(0))
    entry = tr.opened()
    (post,) = decide(CFG.initial_state(), entry, CFG)
    dl = refused(post, entry, "400 Bad Request: chat not found", "exec.position.bybit.linear.BTCUSDT", "{}")
    assert dl.event_id == refused_id(entry.event_id) and dl.service == "notifier"
    state = fold(CFG.initial_state(), [entry, dl])
    assert state.done(entry.event_id) and decide(state, entry, CFG) == []


def test_decide_midnight_posts_daily_statistics_of_the_day_before_the_event(nk: SimpleNamespace) -> None:
    a = nk.Trade("BTCUSDT", "long", 100.0, 1.0, nk.t(0))
    b = nk.Trade("ETHUSDT", "short", 50.0, 2.0, nk.t(5))
    win, loss = a.closed(nk.t(60), 103.0, "take_profit"), b.closed(nk.t(70), 50.5, "stop_loss")
    state = fold(CFG.initial_state(), [a.opened(), b.opened(), win, loss])
    c = nk.Trade("BTCUSDT", "long", 100.0, 1.0, nk.t(121))  # 00:01 UTC the next day
    daily, entry = decide(state, c.opened(), CFG)
    assert (daily.source_event_id, daily.kind, entry.kind) == ("daily:2025-05-30", "daily", "entry")
    net, fees = win.trade_pnl_usdt + loss.trade_pnl_usdt, win.trade_fee_usdt + loss.trade_fee_usdt
    assert "Trades: 2 · Wins: 1 · Losses: 1 · Win rate: 50.0 %" in daily.text
    assert f"Net P&amp;L: <b>{net:+,.2f} USDT</b> · Fees: {fees:,.2f} USDT" in daily.text


def test_decide_operator_commands_do_not_move_the_clock(nk: SimpleNamespace) -> None:
    a = nk.Trade("BTCUSDT", "long", 100.0, 1.0, nk.t(0))
    state = fold(CFG.initial_state(), [a.opened()])
    # a TradingStopped stamped by the API's wall clock a day later crosses no midnight
    stop = nk.stopped(nk.t(2000))
    assert [p.kind for p in decide(state, stop, CFG)] == ["halt"]
    state = evolve(state, stop)
    assert [p.kind for p in decide(state, a.closed(nk.t(60), 101.0, "manual"), CFG)] == ["exit"]


def test_decide_routine_lock_posts_nothing_and_an_adoption_lock_replies_to_its_entry(nk: SimpleNamespace) -> None:
    a = nk.Trade("SOLUSDT", "long", 150.0, 2.0, nk.t(0))
    state, _ = run([a.opened()])
    assert decide(state, a.lock(), CFG) == []
    (lock,) = decide(state, a.lock("position_adopted"), CFG)
    assert lock.kind == "lock" and lock.reply_to_message_id == 1 and "position_adopted" in lock.text


def test_decide_dead_letters_one_alert_per_service_per_window_with_the_count(nk: SimpleNamespace) -> None:
    hour = 60 * nk.MIN_NS
    dls = [nk.dead_letter("market-ingest", nk.t(m), n) for n, m in enumerate((0, 1, 2, 61))]
    dls.insert(1, nk.dead_letter("signal", nk.t(1), 9))
    dls.append(nk.dead_letter("notifier", nk.t(200), 10))  # its own records: never alerted
    _, posts = run(dls, NotifierState(dead_letter_interval_ns=hour))
    assert [p.source_event_id for p in posts] == ["dlq-market-ingest-0", "dlq-signal-9", "dlq-market-ingest-3"]
    assert "(+2 more since the previous alert)" in posts[2].text
    assert "more since" not in posts[0].text


def test_render_escapes_what_comes_from_the_log_and_parses_as_telegram_html(nk: SimpleNamespace) -> None:
    a = nk.Trade("BTCUSDT", "long", 100.0, 1.0, nk.t(0))
    text = render.with_disclaimer(render.lock(a.lock("<b>odd</b> & <script>")), "Not advice <really> & so")
    assert html_problem(text) is None
    assert "&lt;b&gt;odd&lt;/b&gt; &amp; &lt;script&gt;" in text and text.endswith(
        "<i>Not advice &lt;really&gt; &amp; so</i>"
    )
    long = render.esc("x" * 1000)
    assert len(long) == render.MAX_FREE_TEXT and long.endswith("…")


def test_render_exit_shows_round_trip_pnl_return_and_r_multiple(nk: SimpleNamespace) -> None:
    a = nk.Trade("BTCUSDT", "long", 100.0, 2.0, nk.t(0), sl=0.02)  # risk: 2 USDT per unit, 4 USDT in all
    state = fold(CFG.initial_state(), [a.order(), a.opened(), a.reduced(nk.t(10), 103.0, 1.0)])
    closed = a.closed(nk.t(95), 106.0, "take_profit")
    (post,) = decide(state, closed, CFG)
    r = closed.trade_pnl_usdt / 4.0
    assert (
        f"P&amp;L: <b>{closed.trade_pnl_usdt:+,.2f} USDT</b> ({closed.trade_return_fraction * 100:+.2f} %)" in post.text
    )
    assert f"{r:+.2f} R" in post.text and "Qty: 2\n" in post.text and "Held 1 h 35 min" in post.text
    assert post.text.startswith("✅ <b>BTCUSDT</b> long closed: take-profit")
    # without the entry on the log there is no R to measure against
    (bare,) = decide(CFG.initial_state(), closed, CFG)
    assert " R" not in bare.text.split("\n")[2]


def test_render_entry_names_side_prices_and_leverage(nk: SimpleNamespace) -> None:
    a = nk.Trade("ETHUSDT", "short", 2500.0, 0.4, nk.t(0), leverage=3.0)
    state = fold(CFG.initial_state(), [a.order()])
    (post,) = decide(state, a.opened(), CFG)
    assert post.text.startswith("🔴 SHORT <b>ETHUSDT</b> opened\nQty: 0.4 · Entry: 2,500\nTP: 2,425 · SL: 2,525\n")
    assert "Leverage: 3x · Notional: 1,000 USDT" in post.text and "2025-05-30 22:00 UTC" in post.text


def test_records_are_derived_from_the_source_id_and_time(nk: SimpleNamespace) -> None:
    a = nk.Trade("BTCUSDT", "long", 100.0, 1.0, nk.t(0))
    entry = a.opened()
    (post,) = decide(CFG.initial_state(), entry, CFG)
    rec = posted(post, entry, "-100123", 7)
    assert rec.event_id == derive_id("NotificationPosted", entry.event_id)
    assert (rec.ts_event, rec.ts_init) == (entry.ts_event, entry.ts_event)
    assert (rec.scope, rec.kind, rec.correlation_id, rec.message_id) == ("telegram", "entry", a.cid, 7)
    assert ev.decode(ev.encode(rec)) == rec
    assert daily_id(20_238) == "daily:2025-05-30"
