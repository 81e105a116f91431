"""The strategies' orders and the schedules' due times on hand-worked numbers (no database).

Each figure below is worked out by hand from the definitions in rl/core/strategies.py; the sets are
chosen so that the usual slips give another order: ranking lowest first, reading certainty for
uncertainty, |f - r| for order disagreement (forgetting that the reversed question is answered
"No" by a consistent judge), or crediting the judge with the loser's side of a human pair.
"""
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from rl.core import schedules, strategies
from rl.core.strategies import HumanPick, PairScore

# One pair per set (candidates 0 and 1, one dimension): (forward, reversed).
ONE_PAIR = {
    1: (0.52, 0.47),  # near 0.5 both ways; orders agree within 0.01
    2: (0.80, 0.25),  # fairly sure, orders agree within 0.05
    3: (0.95, 0.03),  # sure, orders agree within 0.02
    4: (0.65, 0.60),  # mildly sure of both "first is better" answers: the orders disagree by 0.25
}


def scores(forward, reversed_, dimension="aesthetics", first=0, second=1):
    return PairScore(dimension, first, second, forward, reversed_)


def one_pair_figures(strategy):
    return {key: strategies.figure(strategy, [scores(*values)]) for key, values in ONE_PAIR.items()}


def test_uncertainty_puts_the_sets_nearest_one_half_first():
    figures = one_pair_figures(strategies.UNCERTAINTY)
    # 1 - (|f - .5| + |r - .5|): set 1: 1 - (.02 + .03); set 2: 1 - (.30 + .25); set 3: 1 - (.45 + .47);
    # set 4: 1 - (.15 + .10).
    assert figures == pytest.approx({1: 0.95, 2: 0.45, 3: 0.08, 4: 0.75})
    assert strategies.order_sets(strategies.UNCERTAINTY, ONE_PAIR, figures=figures) == [1, 4, 2, 3]


def test_order_disagreement_puts_the_sets_whose_orders_disagree_most_first():
    figures = one_pair_figures(strategies.ORDER_DISAGREEMENT)
    # |f + r - 1|: .01, .05, .02, .25. With |f - r| instead the order would be 3, 2, 1, 4.
    assert figures == pytest.approx({1: 0.01, 2: 0.05, 3: 0.02, 4: 0.25})
    assert strategies.order_sets(strategies.ORDER_DISAGREEMENT, ONE_PAIR, figures=figures) == [4, 2, 3, 1]


def test_a_set_figure_is_the_mean_over_its_pairs_and_dimensions():
    pairs = [scores(0.5, 0.5), scores(0.9, 0.1, first=0, second=2), scores(0.7, 0.7, dimension="structure")]
    # uncertainty: 1 - mean(0 + 0, .4 + .4, .2 + .2) = 1 - .4; order disagreement: mean(0, 0, .4).
    assert strategies.uncertainty(pairs) == pytest.approx(0.6)
    assert strategies.order_disagreement(pairs) == pytest.approx(0.4 / 3)


def test_human_disagreement_reads_each_human_pair_from_both_orders():
    # Three candidates; the annotator picked 0 best and 2 worst: 0 > 1, 0 > 2, 1 > 2.
    against = [scores(0.9, 0.2, first=0, second=1),   # win(0, 1) = (.9 + .8) / 2 = .85 -> disagreement .15
               scores(0.3, 0.6, first=0, second=2),   # win(0, 2) = (.3 + .4) / 2 = .35 -> .65
               scores(0.5, 0.5, first=1, second=2)]   # win(1, 2) = .5 -> .5
    backing = [scores(0.9, 0.1, first=0, second=1), scores(0.95, 0.05, first=0, second=2),
               scores(0.8, 0.2, first=1, second=2)]   # disagreements .1, .05, .2
    picks = [HumanPick("aesthetics", best=0, worst=2)]
    figures = {7: strategies.figure(strategies.HUMAN_DISAGREEMENT, against, picks, 3),
               8: strategies.figure(strategies.HUMAN_DISAGREEMENT, backing, picks, 3),
               9: strategies.figure(strategies.HUMAN_DISAGREEMENT, backing, [], 3)}
    assert figures[7] == pytest.approx((0.15 + 0.65 + 0.5) / 3)
    assert figures[8] == pytest.approx((0.1 + 0.05 + 0.2) / 3)
    assert figures[9] is None  # never judged: left out of the order
    assert strategies.order_sets(strategies.HUMAN_DISAGREEMENT, figures, figures=figures) == [7, 8]


def test_human_disagreement_counts_each_annotator_and_skips_unscored_dimensions():
    pairs = [scores(0.9, 0.1)]  # the judge backs 0 > 1: win .9
    picks = [HumanPick("aesthetics", best=0, worst=1), HumanPick("aesthetics", best=1, worst=0),
             HumanPick("aesthetics", best=1, worst=0), HumanPick("structure", best=1, worst=0)]
    # Votes on aesthetics: 0 > 1 once (.1), 1 > 0 twice (.9 each); structure was not scored.
    assert strategies.human_disagreement(pairs, picks, 2) == pytest.approx((0.1 + 0.9 + 0.9) / 3)


def test_ties_go_to_the_lower_set_and_random_is_a_seeded_shuffle():
    assert strategies.rank({5: 0.5, 3: 0.5, 4: 0.9}) == [4, 3, 5]
    ids = list(range(1, 21))
    first = strategies.order_sets(strategies.RANDOM, ids, seed=3)
    assert sorted(first) == ids and first != ids
    assert strategies.order_sets(strategies.RANDOM, reversed(ids), seed=3) == first  # reading order is irrelevant
    assert strategies.order_sets(strategies.RANDOM, ids, seed=4) != first
    with pytest.raises(strategies.StrategyError, match="none were given"):
        strategies.order_sets(strategies.UNCERTAINTY, ids)
    with pytest.raises(strategies.StrategyError, match="unknown strategy"):
        strategies.order_sets("loudest", ids)


def test_inputs_least_annotated_first_ties_seeded():
    annotated = {10: 2, 11: 0, 12: 1, 13: 0, 14: 0, 15: 5}
    chosen = strategies.pick_inputs(annotated, None, seed=1)
    assert set(chosen[:3]) == {11, 13, 14} and chosen[3:] == [12, 10, 15]
    assert strategies.pick_inputs(annotated, 2, seed=1) == chosen[:2]
    assert strategies.pick_inputs(annotated, None, seed=1) == chosen
    orders = {tuple(strategies.pick_inputs(annotated, 3, seed=seed)) for seed in range(12)}
    assert len(orders) > 1  # the seed decides among the never-annotated


def test_a_pair_score_knows_its_winner_from_either_side():
    pair = scores(0.8, 0.4)  # win(0, 1) = (.8 + .6) / 2 = .7
    assert pair.win(0, 1) == pytest.approx(0.7) and pair.win(1, 0) == pytest.approx(0.3)
    assert PairScore.from_list(pair.as_list()) == pair
    with pytest.raises(strategies.StrategyError):
        pair.win(0, 2)


# --- due times ---------------------------------------------------------------------------------------

NOW = datetime(2025, 3, 29, 10, 17, tzinfo=UTC)


def test_an_interval_schedule_is_due_at_once_then_every_interval_skipping_missed_slots():
    assert schedules.next_due(NOW, every_hours=6) == NOW
    assert schedules.next_due(NOW, every_hours=6, previous=NOW) == NOW + timedelta(hours=6)
    # Ticked a minute late: the next one keeps the slot, not the late minute.
    assert schedules.next_due(NOW + timedelta(minutes=1), every_hours=6, previous=NOW) == NOW + timedelta(hours=6)
    # Beat stopped for 20 hours: the slots at +6 and +12 and +18 are skipped, the next is +24.
    assert schedules.next_due(NOW + timedelta(hours=20), every_hours=6, previous=NOW) == NOW + timedelta(hours=24)


def test_a_daily_schedule_is_due_at_its_local_time_across_a_clock_change():
    paris = ZoneInfo("Europe/Paris")
    before = datetime(2025, 3, 29, 10, 0, tzinfo=paris)  # the clocks go forward the night after
    due = schedules.next_due(before, daily_at=time(9, 30), tz=paris)
    assert due == datetime(2025, 3, 30, 9, 30, tzinfo=paris)
    assert due.utcoffset() == timedelta(hours=2)  # summer time on the 30th
    assert schedules.next_due(datetime(2025, 3, 29, 9, 0, tzinfo=paris), daily_at=time(9, 30),
                              tz=paris) == datetime(2025, 3, 29, 9, 30, tzinfo=paris)
    # At the due minute itself the next one is tomorrow's: a due time is never handed out twice.
    assert schedules.next_due(datetime(2025, 3, 29, 9, 30, tzinfo=paris), daily_at=time(9, 30),
                              tz=paris).date().day == 30


@pytest.mark.parametrize("timing", [{}, {"every_hours": 2, "daily_at": time(1, 0)}, {"every_hours": 0}])
def test_a_schedule_needs_exactly_one_timing(timing):
    with pytest.raises(schedules.ScheduleError):
        schedules.next_due(NOW, **timing)
