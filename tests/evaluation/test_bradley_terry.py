"""Bradley-Terry fit and bootstrap: recovery of known strengths from simulated votes, agreement with
Hunter's MM algorithm, interval coverage, finite estimates without a connected or defeated field."""
import numpy as np
import pytest

from evaluation.core import bradley_terry as bt

TRUE = np.array([-1.0, -0.4, 0.0, 0.5, 0.9])
TRUE = TRUE - TRUE.mean()


def simulate_pairs(strengths, comparisons, rng, votes_per_item=1):
    """Outcomes (item, winner, loser): each item a random pair, judged `votes_per_item` times
    independently under the Bradley-Terry model."""
    players = len(strengths)
    first = rng.integers(0, players, comparisons)
    second = (first + rng.integers(1, players, comparisons)) % players
    outcomes = []
    for item, (i, j) in enumerate(zip(first.tolist(), second.tolist())):
        p = 1 / (1 + np.exp(-(strengths[i] - strengths[j])))
        for won in rng.random(votes_per_item) < p:
            outcomes.append((item, i, j) if won else (item, j, i))
    return outcomes


def win_matrix(outcomes, players):
    wins = np.zeros((players, players))
    for _, winner, loser in outcomes:
        wins[winner, loser] += 1
    return wins


def mm_fit(wins, prior=bt.DEFAULT_PRIOR, iterations=20000):
    """Hunter's (2004) MM updates with the same prior (virtual half-won games against a reference of
    strength 1): an independent check of the Newton fit."""
    games = wins + wins.T
    won = wins.sum(axis=1)
    strength = np.ones(len(wins))
    for _ in range(iterations):
        denominator = (games / (strength[:, None] + strength[None, :])).sum(axis=1) + prior / (strength + 1)
        strength = (won + prior / 2) / denominator
    log_strength = np.log(strength)
    return log_strength - log_strength.mean()


def test_recovers_known_strengths_from_simulated_votes():
    rng = np.random.default_rng(2004)
    outcomes = simulate_pairs(TRUE, 20_000, rng)
    scores = bt.fit(win_matrix(outcomes, len(TRUE)))
    assert scores.shape == (5,)
    assert abs(scores.mean()) < 1e-9
    assert np.abs(scores - TRUE).max() < 0.1
    assert list(np.argsort(scores)) == [0, 1, 2, 3, 4]


def test_newton_agrees_with_mm():
    rng = np.random.default_rng(7)
    wins = rng.integers(0, 12, size=(6, 6)).astype(float)
    wins[2, :] = 0  # a winless player
    wins[:, 4] = 0  # an undefeated player
    np.fill_diagonal(wins, 0)
    assert np.allclose(bt.fit(wins, tol=1e-12), mm_fit(wins), atol=1e-6)


def test_batched_fit_equals_one_at_a_time():
    rng = np.random.default_rng(3)
    batch = rng.integers(0, 30, size=(7, 4, 4)).astype(float)
    together = bt.fit_batch(batch, tol=1e-12)
    apart = np.stack([bt.fit(wins, tol=1e-12) for wins in batch])
    assert np.allclose(together, apart, atol=1e-9)


def test_undefeated_winless_and_disconnected_players_stay_finite():
    undefeated = np.array([[0, 40, 25], [0, 0, 10], [0, 12, 0]], dtype=float)
    scores = bt.fit(undefeated)
    assert np.isfinite(scores).all() and scores[0] == scores.max() and scores[0] < 10
    # Two groups that never met, and a player nobody compared: finite, centred, the unseen one in between.
    disconnected = np.zeros((5, 5))
    disconnected[0, 1], disconnected[2, 3], disconnected[3, 2] = 30, 5, 1
    scores = bt.fit(disconnected)
    assert np.isfinite(scores).all() and abs(scores.sum()) < 1e-9
    assert scores[0] > scores[4] > scores[1] and scores[2] > scores[4] > scores[3]
    # Overwhelming evidence stays finite too, and no data at all means no difference.
    assert np.isfinite(bt.fit(np.array([[0, 1e6], [0, 0]]))).all()
    assert np.array_equal(bt.fit(np.zeros((3, 3))), np.zeros(3))


def test_fit_refuses_bad_input():
    with pytest.raises(ValueError):
        bt.fit(np.zeros((2, 3)))
    with pytest.raises(ValueError):
        bt.fit(np.array([[0, -1], [0, 0]]))
    with pytest.raises(ValueError):
        bt.fit(np.zeros((2, 2)), prior=0)


def test_bootstrap_counts_and_determinism():
    outcomes = [("item1", "a", "b"), ("item1", "a", "c"), ("item1", "b", "c"), ("item2", "c", "a"),
                ("item3", "b", "b")]  # a generator meeting itself is dropped
    first = bt.bootstrap(outcomes, ["a", "b", "c"], n_resamples=200, seed=5)
    again = bt.bootstrap(outcomes, ["a", "b", "c"], n_resamples=200, seed=5)
    assert first == again
    assert [(r.player, r.wins, r.losses, r.comparisons) for r in first] == [
        ("a", 2, 1, 3),
        ("b", 1, 1, 2),
        ("c", 1, 2, 3),
    ]
    for r in first:
        assert r.ci_low <= r.score <= r.ci_high
        assert r.rating == pytest.approx(1000 + 400 / np.log(10) * r.score)
    with pytest.raises(ValueError, match="not in the list"):
        bt.bootstrap([("x", "a", "zz")], ["a", "b"])
    point_only = bt.bootstrap(outcomes, ["a", "b", "c"], n_resamples=0)
    assert np.isnan(point_only[0].ci_low) and point_only[0].score == first[0].score


def test_bootstrap_intervals_cover_the_true_strengths():
    """50 simulated studies (items judged by three people each): the 95% cluster-bootstrap intervals
    hold the true centred log-strengths about 95% of the time."""
    rng = np.random.default_rng(11)
    covered = total = 0
    for _ in range(50):
        outcomes = simulate_pairs(TRUE, 300, rng, votes_per_item=3)
        ratings = bt.bootstrap(outcomes, list(range(5)), n_resamples=400, seed=int(rng.integers(1 << 31)))
        for r in ratings:
            covered += r.ci_low <= TRUE[r.player] <= r.ci_high
            total += 1
    assert covered / total >= 0.85, f"coverage {covered}/{total}"


def test_cluster_bootstrap_is_wider_when_an_items_votes_agree():
    """Three identical votes per item carry the information of one: resampling items sees that,
    resampling single outcomes does not."""
    rng = np.random.default_rng(5)
    single = simulate_pairs(TRUE, 600, rng)
    tripled = [outcome for outcome in single for _ in range(3)]
    by_item = bt.bootstrap(tripled, list(range(5)), n_resamples=300, seed=1, cluster=True)
    by_outcome = bt.bootstrap(tripled, list(range(5)), n_resamples=300, seed=1, cluster=False)
    widths = [(a.ci_high - a.ci_low) / (b.ci_high - b.ci_low) for a, b in zip(by_item, by_outcome)]
    assert min(widths) > 1.3


def test_level_sets_the_interval_width():
    rng = np.random.default_rng(9)
    outcomes = simulate_pairs(TRUE, 500, rng)
    wide = bt.bootstrap(outcomes, list(range(5)), n_resamples=300, level=0.95)
    narrow = bt.bootstrap(outcomes, list(range(5)), n_resamples=300, level=0.5)
    for w, n in zip(wide, narrow):
        assert w.ci_low < n.ci_low <= n.ci_high < w.ci_high
