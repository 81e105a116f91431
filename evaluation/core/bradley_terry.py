"""Bradley-Terry strengths from pairwise outcomes, with cluster-bootstrap confidence intervals.

The model: player i beats player j with probability p_i / (p_i + p_j) = sigmoid(s_i - s_j), where
s = log p is the log-strength (natural log units; a gap of 1 means e:1 odds, a gap of ln 3 = 1.10
means 3:1). Strengths are identified only up to a common shift, so they are reported centred to
mean 0 over the players fitted.

The fit maximises the log-likelihood plus a tiny symmetric prior: every player plays `prior`
virtual games against a fixed reference of log-strength 0, half won and half lost. That keeps an
undefeated (or winless) player finite and ties disconnected groups of players to a common level
(their relative order is then a guess the intervals do not cover), while with real data it moves
estimates by about prior / comparisons. Newton's method on the penalised log-likelihood, batched
so that a thousand bootstrap resamples are fitted in one go.

Plain numpy: no Django, so it runs anywhere a list of outcomes can be read.
"""
import math
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

ELO_SCALE = 400 / math.log(10)  # rating points per unit of log-strength (Elo: 400 points = 10:1 odds)
ELO_BASE = 1000.0
DEFAULT_PRIOR = 1.0
# Newton steps larger than this (in log-strength) are shortened: a guard for near-separated data.
MAX_STEP = 4.0
# Resamples fitted together; bounds the (chunk, clusters) and (chunk, outcomes) work arrays.
WORK_ELEMENTS = 4_000_000


def rating(score: float) -> float:
    """Elo-like rating of a log-strength: 1000 at the mean, +400 per tenfold odds."""
    return ELO_BASE + ELO_SCALE * score


@dataclass(frozen=True)
class PlayerRating:
    """One player's estimate. score, ci_low, ci_high: centred log-strengths (natural log units);
    rating: the score on the Elo-like scale; wins, losses: outcomes won and lost;
    comparisons: outcomes the player took part in (wins + losses)."""

    player: Hashable
    score: float
    ci_low: float
    ci_high: float
    rating: float
    wins: int
    losses: int
    comparisons: int

    @property
    def rating_low(self) -> float:
        return rating(self.ci_low)

    @property
    def rating_high(self) -> float:
        return rating(self.ci_high)


# --- the fit -----------------------------------------------------------------------------------


def _objective(wins: np.ndarray, scores: np.ndarray, prior: float) -> np.ndarray:
    """Penalised log-likelihood per batch row. wins (B, P, P), scores (B, P) -> (B,)."""
    diff = scores[:, :, None] - scores[:, None, :]
    log_likelihood = -(wins * np.logaddexp(0.0, -diff)).sum(axis=(1, 2))
    log_prior = -0.5 * prior * (np.logaddexp(0.0, -scores) + np.logaddexp(0.0, scores)).sum(axis=1)
    return log_likelihood + log_prior


def fit_batch(wins: np.ndarray, prior: float = DEFAULT_PRIOR, tol: float = 1e-8, max_iter: int = 100) -> np.ndarray:
    """Fit many independent win matrices at once.

    wins: float array (B, P, P), wins[b, i, j] = times i beat j in problem b (non-negative; the
    diagonal is ignored). Returns centred log-strengths, float array (B, P).
    """
    wins = np.array(wins, dtype=np.float64)
    if wins.ndim != 3 or wins.shape[1] != wins.shape[2]:
        raise ValueError(f"wins must have shape (B, P, P), not {wins.shape}")
    if (wins < 0).any():
        raise ValueError("wins must be non-negative")
    if prior <= 0:
        raise ValueError("the prior must be positive (it keeps undefeated players finite)")
    batch, players = wins.shape[0], wins.shape[1]
    if players == 0:
        return np.zeros((batch, 0))
    diagonal = np.arange(players)
    wins[:, diagonal, diagonal] = 0.0
    games = wins + wins.transpose(0, 2, 1)
    won = wins.sum(axis=2)
    scores = np.zeros((batch, players))
    objective = _objective(wins, scores, prior)
    active = np.ones(batch, dtype=bool)
    for _ in range(max_iter):
        rows = np.flatnonzero(active)
        if rows.size == 0:
            break
        s, n = scores[rows], games[rows]
        p = 1.0 / (1.0 + np.exp(-(s[:, :, None] - s[:, None, :])))  # P(i beats j)
        q = 1.0 / (1.0 + np.exp(-s))  # P(beating the reference)
        gradient = won[rows] - (n * p).sum(axis=2) + prior * (0.5 - q)
        curvature = n * p * (1.0 - p)
        # Negative Hessian: a weighted graph Laplacian plus the prior's diagonal, so positive definite.
        hessian = -curvature
        hessian[:, diagonal, diagonal] = curvature.sum(axis=2) + prior * q * (1.0 - q)
        step = np.linalg.solve(hessian, gradient[:, :, None])[:, :, 0]
        largest = np.abs(step).max(axis=1)
        step *= np.minimum(1.0, MAX_STEP / np.maximum(largest, 1e-300))[:, None]
        # Backtrack where a full step would lower the objective (the objective is concave, so a
        # short enough Newton step always raises it).
        trial = s + step
        trial_objective = _objective(wins[rows], trial, prior)
        for _ in range(30):
            worse = trial_objective < objective[rows] - 1e-12 * np.abs(objective[rows])
            if not worse.any():
                break
            step[worse] *= 0.5
            trial[worse] = s[worse] + step[worse]
            trial_objective[worse] = _objective(wins[rows[worse]], trial[worse], prior)
        scores[rows] = trial
        objective[rows] = trial_objective
        active[rows] = np.abs(step).max(axis=1) > tol
    return scores - scores.mean(axis=1, keepdims=True)


def fit(wins: np.ndarray, prior: float = DEFAULT_PRIOR, tol: float = 1e-8, max_iter: int = 100) -> np.ndarray:
    """Bradley-Terry log-strengths from a win matrix.

    wins: array (P, P), wins[i, j] = times player i beat player j (counts, possibly fractional
    weights; the diagonal is ignored). prior: virtual games per player against a reference of
    log-strength 0, half won, half lost. tol: stop when no log-strength moves more than this in a
    Newton step; max_iter: most Newton steps. Returns log-strengths, float array (P,), natural
    log units, centred to mean 0.
    """
    wins = np.asarray(wins, dtype=np.float64)
    if wins.ndim != 2:
        raise ValueError(f"wins must have shape (P, P), not {wins.shape}")
    return fit_batch(wins[None], prior=prior, tol=tol, max_iter=max_iter)[0]


# --- outcomes and the bootstrap ----------------------------------------------------------------


@dataclass(frozen=True)
class EncodedOutcomes:
    """Outcomes as arrays, aggregated per cluster and ordered pair: T distinct (cluster, winner,
    loser) triples. cluster, winner, loser: int arrays (T,) of cluster and player indices;
    count: float array (T,), how often the triple occurred. clusters: the number of clusters C."""

    cluster: np.ndarray
    winner: np.ndarray
    loser: np.ndarray
    count: np.ndarray
    clusters: int
    players: int

    def wins(self, weights: np.ndarray | None = None) -> np.ndarray:
        """Win matrix (P, P); weights: optional float array (C,), a multiplicity per cluster."""
        count = self.count if weights is None else self.count * weights[self.cluster]
        flat = np.bincount(self.winner * self.players + self.loser, weights=count, minlength=self.players ** 2)
        return flat.reshape(self.players, self.players)


def encode(outcomes: Iterable[tuple[Hashable, Hashable, Hashable]], players: Sequence[Hashable]) -> EncodedOutcomes:
    """outcomes: (cluster, winner, loser) triples, winner and loser among `players`; a cluster is
    whatever makes outcomes dependent (one comparison item, judged by several people on several
    dimensions). A player meeting itself says nothing about strengths and is dropped."""
    index = {player: i for i, player in enumerate(players)}
    if len(index) != len(players):
        raise ValueError("players must be distinct")
    cluster_index: dict[Hashable, int] = {}
    clusters, winners, losers = [], [], []
    for cluster, winner, loser in outcomes:
        try:
            w, lo = index[winner], index[loser]
        except KeyError as exc:
            raise ValueError(f"outcome names a player not in the list: {exc.args[0]!r}") from None
        if w == lo:
            continue
        clusters.append(cluster_index.setdefault(cluster, len(cluster_index)))
        winners.append(w)
        losers.append(lo)
    size = len(players)
    if not clusters:
        empty = np.zeros(0, dtype=np.int64)
        return EncodedOutcomes(empty, empty, empty, np.zeros(0), len(cluster_index), size)
    key = (np.asarray(clusters, dtype=np.int64) * size + np.asarray(winners)) * size + np.asarray(losers)
    unique, count = np.unique(key, return_counts=True)
    return EncodedOutcomes(cluster=unique // (size * size), winner=(unique // size) % size, loser=unique % size,
                           count=count.astype(np.float64), clusters=len(cluster_index), players=size)


def resampled_wins(encoded: EncodedOutcomes, n_resamples: int, rng: np.random.Generator,
                   cluster: bool = True) -> Iterable[np.ndarray]:
    """Win matrices of bootstrap resamples, in chunks: yields float arrays (chunk, P, P).

    cluster=True draws C clusters with replacement (each keeps all its outcomes); cluster=False
    treats every single outcome as its own cluster (narrower intervals when outcomes of one item
    agree, as they usually do)."""
    if not cluster:
        counts = encoded.count.astype(np.int64)
        encoded = EncodedOutcomes(
            cluster=np.arange(counts.sum()), winner=np.repeat(encoded.winner, counts),
            loser=np.repeat(encoded.loser, counts), count=np.ones(counts.sum()), clusters=int(counts.sum()),
            players=encoded.players)
    size, clusters, triples = encoded.players, encoded.clusters, encoded.cluster.size
    pair = encoded.winner * size + encoded.loser
    chunk = max(1, WORK_ELEMENTS // max(clusters, triples, 1))
    done = 0
    while done < n_resamples:
        rows = min(chunk, n_resamples - done)
        if clusters == 0:
            yield np.zeros((rows, size, size))
        else:
            drawn = rng.integers(0, clusters, size=(rows, clusters))
            drawn += (np.arange(rows) * clusters)[:, None]
            multiplicity = np.bincount(drawn.ravel(), minlength=rows * clusters).reshape(rows, clusters)
            weights = multiplicity[:, encoded.cluster] * encoded.count  # (rows, T)
            flat_index = (np.arange(rows) * size * size)[:, None] + pair
            wins = np.bincount(flat_index.ravel(), weights=weights.ravel(), minlength=rows * size * size)
            yield wins.reshape(rows, size, size)
        done += rows


def bootstrap(outcomes: Iterable[tuple[Hashable, Hashable, Hashable]], players: Sequence[Hashable],
              n_resamples: int = 1000, seed: int = 0, cluster: bool = True, level: float = 0.95,
              prior: float = DEFAULT_PRIOR, tol: float = 1e-6, max_iter: int = 100) -> list[PlayerRating]:
    """Bradley-Terry estimates with percentile bootstrap intervals, one per player, in the order
    of `players`.

    outcomes: (cluster, winner, loser) triples (see `encode`), or what `encode` made of them, in
    the order of `players`. n_resamples: bootstrap resamples,
    drawn with numpy's Generator seeded by `seed` (same inputs and seed, same intervals).
    cluster: resample whole clusters (True) or single outcomes. level: the intervals' coverage
    (0.95: the 2.5th and 97.5th percentiles of the resampled centred log-strengths). The score is
    the fit to all the outcomes, not the resamples' mean; prior, tol, max_iter go to `fit`.
    """
    if not 0 < level < 1:
        raise ValueError("level must be between 0 and 1")
    encoded = outcomes if isinstance(outcomes, EncodedOutcomes) else encode(outcomes, players)
    wins = encoded.wins()
    scores = fit(wins, prior=prior, tol=tol, max_iter=max_iter)
    if n_resamples > 0:
        rng = np.random.default_rng(seed)
        samples = np.concatenate([fit_batch(chunk, prior=prior, tol=tol, max_iter=max_iter)
                                  for chunk in resampled_wins(encoded, n_resamples, rng, cluster=cluster)])
        tail = 100 * (1 - level) / 2
        low, high = np.percentile(samples, [tail, 100 - tail], axis=0)
    else:
        low = high = np.full(len(players), np.nan)
    won, lost = wins.sum(axis=1), wins.sum(axis=0)
    return [
        PlayerRating(player=player, score=float(scores[i]), ci_low=float(low[i]), ci_high=float(high[i]),
                     rating=rating(float(scores[i])), wins=int(round(won[i])), losses=int(round(lost[i])),
                     comparisons=int(round(won[i] + lost[i])))
        for i, player in enumerate(players)
    ]
