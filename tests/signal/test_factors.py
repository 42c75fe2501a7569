"""Factor kernels: hand-computed values, unavailable cases (None) and properties (ARCHITECTURE.md §3)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nertz_signal.core import factors as fx
from nertz_signal.core.config import FactorWeights

W = FactorWeights().as_dict()


def arr(*xs: float) -> np.ndarray:
    return np.asarray(xs, dtype=np.float64)


def book(*rows: tuple[float, float]) -> np.ndarray:
    return fx.levels(list(rows))


# --- EGM --------------------------------------------------------------------------------------------


def test_egm_four_closes_matches_hand_value():
    # closes 1,2,3,4: mean 2.5; population var (2.25+0.25+0.25+2.25)/4 = 1.25; z = 1.5/sqrt(1.25) = 1.3416
    # EGM = tanh(0.6708) = 0.58552 (with ddof=1, std = sqrt(5/3), EGM would be 0.52335)
    assert fx.egm(arr(1, 2, 3, 4), n=4) == pytest.approx(0.5855192773762563, rel=1e-12)


def test_egm_uses_only_last_n_closes():
    assert fx.egm(arr(1000, -5, 1, 2, 3, 4), n=4) == pytest.approx(0.5855192773762563, rel=1e-12)


def test_egm_falling_close_is_negative_mirror():
    assert fx.egm(arr(4, 3, 2, 1), n=4) == pytest.approx(-0.5855192773762563, rel=1e-12)


def test_egm_flat_window_zero_std_gives_zero():
    assert fx.egm(arr(*[0.1] * 20)) == 0.0


def test_egm_too_few_closes_is_none():
    assert fx.egm(arr(*range(1, 20))) is None


def test_egm_nan_close_is_none():
    assert fx.egm(arr(1, 2, math.nan, 4), n=4) is None


def test_egm_window_below_two_raises():
    with pytest.raises(ValueError, match="expected n >= 2"):
        fx.egm(arr(1, 2), n=1)


# --- PIO --------------------------------------------------------------------------------------------


def test_pio_volume_double_mean_up_bar_is_plus_one():
    # volumes 1,1,1,3: mean 1.5, ratio 2, clip(2 - 1, 0, 1) = 1; close > open → +1
    assert fx.pio(10.0, 11.0, arr(1, 1, 1, 3), n=4) == 1.0


def test_pio_modest_volume_down_bar_matches_hand_value():
    # volumes 2,2,2,2.5: mean 2.125, ratio 1.17647, minus 1 = 0.17647; close < open → -0.17647
    assert fx.pio(11.0, 10.0, arr(2, 2, 2, 2.5), n=4) == pytest.approx(-0.17647058823529416, rel=1e-12)


def test_pio_volume_below_mean_is_zero():
    assert fx.pio(10.0, 11.0, arr(3, 3, 3, 1), n=4) == 0.0


def test_pio_doji_is_zero():
    assert fx.pio(10.0, 10.0, arr(1, 1, 1, 3), n=4) == 0.0


def test_pio_zero_volume_window_is_zero():
    assert fx.pio(10.0, 11.0, arr(0, 0, 0, 0), n=4) == 0.0


def test_pio_too_few_bars_is_none():
    assert fx.pio(10.0, 11.0, arr(1, 2, 3), n=4) is None


def test_pio_nan_volume_is_none():
    assert fx.pio(10.0, 11.0, arr(1, math.nan, 1, 3), n=4) is None


# --- ILD --------------------------------------------------------------------------------------------


def test_ild_more_bid_qty_matches_hand_value():
    # bid qty 3 + 1 = 4, ask qty 1: (4 - 1) / (4 + 1) = 0.6
    assert fx.ild(book((100, 3), (99, 1)), book((101, 1))) == pytest.approx(0.6)


def test_ild_counts_only_top_k_levels():
    # k = 1: bid 3, ask 1 → (3 - 1) / 4 = 0.5
    assert fx.ild(book((100, 3), (99, 1)), book((101, 1), (102, 100)), k=1) == pytest.approx(0.5)


def test_ild_balanced_book_is_zero():
    assert fx.ild(book((100, 1), (99, 2)), book((101, 3))) == 0.0


def test_ild_empty_side_is_none():
    assert fx.ild(book((100, 1)), book()) is None
    assert fx.ild(book(), book()) is None


def test_ild_zero_quantity_is_none():
    assert fx.ild(book((100, 0)), book((101, 0))) is None


def test_ild_nan_quantity_is_none():
    assert fx.ild(book((100, math.nan)), book((101, 1))) is None


# --- ROL --------------------------------------------------------------------------------------------


def test_rol_counts_notional_inside_band_only():
    # mid = (99.9 + 100.1) / 2 = 100; band ±0.5 % = [99.5, 100.5]; bid 99.0 and ask 101 are outside
    # bids 99.9 × 2 = 199.8; asks 100.1 × 1 + 100.4 × 1 = 200.5; (199.8 - 200.5) / 400.3 = -0.0017487
    bids = book((99.9, 2), (99.0, 10))
    asks = book((100.1, 1), (100.4, 1), (101.0, 5))
    assert fx.rol(bids, asks) == pytest.approx(-0.001748688483637272, rel=1e-9)


def test_rol_wide_band_counts_every_level():
    # band 5 %: bids 199.8 + 990 = 1189.8; asks 200.5 + 505 = 705.5; (1189.8 - 705.5) / 1895.3
    bids = book((99.9, 2), (99.0, 10))
    asks = book((100.1, 1), (100.4, 1), (101.0, 5))
    assert fx.rol(bids, asks, band=0.05) == pytest.approx(484.3 / 1895.3, rel=1e-9)


def test_rol_empty_book_is_none():
    assert fx.rol(book(), book((101, 1))) is None


def test_rol_nothing_inside_band_is_none():
    # mid 100 but a 4 % spread: both best levels outside ±0.5 %
    assert fx.rol(book((98, 1)), book((102, 1))) is None


# --- OGM --------------------------------------------------------------------------------------------


def test_ogm_microprice_leaning_to_ask_matches_hand_value():
    # bid 99.9 × 3, ask 100.1 × 1: mid 100, spread 0.2, microprice (99.9×1 + 100.1×3)/4 = 100.05
    # position (100.05 - 100) / 0.1 = 0.5; spread 20 bps, max 40 bps → tightness 0.5; OGM = 0.25
    assert fx.ogm(book((99.9, 3)), book((100.1, 1)), max_spread_bps=40) == pytest.approx(0.25, rel=1e-9)


def test_ogm_spread_at_max_has_zero_tightness():
    assert fx.ogm(book((99.9, 3)), book((100.1, 1)), max_spread_bps=20) == pytest.approx(0.0, abs=1e-12)


def test_ogm_locked_or_crossed_book_is_none():
    assert fx.ogm(book((100, 1)), book((100, 1))) is None
    assert fx.ogm(book((100.1, 1)), book((100, 1))) is None


def test_ogm_empty_book_or_zero_depth_is_none():
    assert fx.ogm(book(), book((100, 1))) is None
    assert fx.ogm(book((99.9, 0)), book((100.1, 0))) is None


def test_ogm_nan_price_is_none():
    assert fx.ogm(book((math.nan, 1)), book((100.1, 1))) is None


# --- combined ---------------------------------------------------------------------------------------


def test_combined_bars_only_renormalises_egm_and_pio():
    # weights 0.2 and 0.1 renormalise to 2/3 and 1/3 (sum 1): (2/3 × 0.6 + 1/3 × 0.3) × 10 = 5.0
    score, used = fx.combined({"egm": 0.6, "ild": None, "rol": None, "pio": 0.3, "ogm": None}, W)
    assert used == ["egm", "pio"]
    assert sum(W[n] for n in used) / sum(W[n] for n in used) == 1.0
    assert score == pytest.approx(5.0)


def test_combined_all_factors_uses_design_weights():
    fs = {"egm": 1.0, "ild": -1.0, "rol": 0.5, "pio": 0.0, "ogm": 1.0}
    # (0.2 - 0.3 + 0.15 + 0 + 0.1) × 10 = 1.5
    assert fx.combined(fs, W) == (pytest.approx(1.5), ["egm", "ild", "rol", "pio", "ogm"])


def test_combined_none_available_is_zero_and_empty():
    assert fx.combined({n: None for n in fx.FACTOR_NAMES}, W) == (0.0, [])
    assert fx.combined({}, W) == (0.0, [])


def test_combined_zero_weight_factor_is_not_used():
    score, used = fx.combined({"egm": 0.5, "ild": 1.0}, {**W, "ild": 0.0})
    assert used == ["egm"] and score == pytest.approx(5.0)


def test_combined_all_plus_one_is_ten():
    assert fx.combined(dict.fromkeys(fx.FACTOR_NAMES, 1.0), W)[0] == pytest.approx(10.0)


def test_combined_nan_factor_raises():
    with pytest.raises(ValueError, match="NaN"):
        fx.combined({"egm": math.nan}, W)


# --- properties -------------------------------------------------------------------------------------

prices = st.floats(min_value=1e-3, max_value=1e6, allow_nan=False)
qtys = st.floats(min_value=0.0, max_value=1e6, allow_nan=False)
factor_values = st.one_of(st.none(), st.floats(min_value=-1.0, max_value=1.0))


@st.composite
def books(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    mid = draw(st.floats(min_value=0.01, max_value=1e5))
    half = mid * draw(st.floats(min_value=1e-6, max_value=0.05))
    n_b = draw(st.integers(0, 15))
    n_a = draw(st.integers(0, 15))
    steps_b = draw(st.lists(st.floats(min_value=0, max_value=mid * 0.01), min_size=n_b, max_size=n_b))
    steps_a = draw(st.lists(st.floats(min_value=0, max_value=mid * 0.01), min_size=n_a, max_size=n_a))
    bids = [(mid - half - sum(steps_b[: i + 1]), draw(qtys)) for i in range(n_b)]
    asks = [(mid + half + sum(steps_a[: i + 1]), draw(qtys)) for i in range(n_a)]
    return fx.levels([b for b in bids if b[0] > 0]), fx.levels(asks)


def _in_unit(x: float | None) -> bool:
    return x is None or (-1.0 <= x <= 1.0 and not math.isnan(x))


@given(st.lists(prices, min_size=20, max_size=40))
def test_egm_any_closes_in_unit_interval(closes):
    assert _in_unit(fx.egm(np.asarray(closes)))


@given(prices, prices, st.lists(qtys, min_size=20, max_size=40))
def test_pio_any_bar_in_unit_interval(o, c, volumes):
    assert _in_unit(fx.pio(o, c, np.asarray(volumes)))


@given(books())
def test_book_factors_any_book_in_unit_interval(b):
    bids, asks = b
    assert _in_unit(fx.ild(bids, asks))
    assert _in_unit(fx.rol(bids, asks))
    assert _in_unit(fx.ogm(bids, asks))


@given(books())
def test_ild_swapped_sides_is_exact_negation(b):
    bids, asks = b
    x, y = fx.ild(bids, asks), fx.ild(asks, bids)
    assert (x is None and y is None) or x == -y  # type: ignore[operator]


weight_values = st.floats(min_value=0.0, max_value=10.0)


@given(
    st.fixed_dictionaries({n: factor_values for n in fx.FACTOR_NAMES}),
    st.fixed_dictionaries({n: weight_values for n in fx.FACTOR_NAMES}),
)
def test_combined_any_factors_and_weights_in_score_range(fs, weights):
    score, used = fx.combined(fs, weights)
    assert -10.0 <= score <= 10.0
    assert set(used) <= {n for n, v in fs.items() if v is not None}
