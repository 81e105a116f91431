"""What a trained judge rewards, beside what people chose: a bias audit over the test pairs it scored.

Every test pair (winner w, loser l, as the annotators decided) has the judge's renormalised P(Yes)
in both orders; the judge's agreement with the annotators on it is
    a = (P(Yes | w, l) + 1 - P(Yes | l, w)) / 2,
and the judge sides with them when a > 0.5 (a tie, a = 0.5, counts half).

Two breakdowns:
- Groups (task, each input tag): the judge's agreement with people in the group beside its
  agreement over all pairs. A group is flagged when the two differ by more than the threshold and
  the overall figure lies outside the group's interval: the judge serves that kind of input worse.
- Generation settings (steps, guidance, true CFG, strength; negative prompt: with one vs none): over
  the pairs whose two candidates differ in the setting, the rate at which the candidate with the
  higher value is preferred, by people (is the winner the higher one?) and by the judge (does it
  side with the higher one?). A setting is flagged when the judge's rate and people's differ by more
  than the threshold and the judge's lies outside people's interval: e.g. the judge prefers high
  guidance where people do not.
Every rate carries a Wilson 95 % interval. Plain Python: no Django, no torch.
"""
from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import asdict, dataclass

from mlcore.stats import wilson_interval

# Setting -> how a candidate's recorded settings give its value (None: not comparable).
NUMERIC_SETTINGS = ("steps", "guidance", "true_cfg", "strength")
NEGATIVE_PROMPT = "negative_prompt"
SETTINGS = (*NUMERIC_SETTINGS, NEGATIVE_PROMPT)
DEFAULT_THRESHOLD = 0.1


@dataclass(frozen=True)
class ScoredPair:
    task: str
    dimension: str
    tags: tuple[str, ...]
    winner_settings: dict
    loser_settings: dict
    p_forward: float  # P(Yes | winner first), renormalised
    p_reversed: float  # P(Yes | loser first), renormalised

    @property
    def agreement(self) -> float:
        return (self.p_forward + 1 - self.p_reversed) / 2


@dataclass(frozen=True)
class Rate:
    successes: float
    total: int
    rate: float | None
    low: float | None
    high: float | None

    @classmethod
    def of(cls, successes: float, total: int) -> "Rate":
        interval = wilson_interval(successes, total)
        return cls(successes, total, successes / total if total else None, *(interval or (None, None)))


@dataclass(frozen=True)
class GroupRow:
    kind: str  # "task" or "tag"
    group: str
    judge_agreement: Rate
    gap: float | None  # group - overall
    flagged: bool


@dataclass(frozen=True)
class SettingRow:
    setting: str
    pairs: int  # pairs whose candidates differ in the setting
    human_prefers_higher: Rate
    judge_prefers_higher: Rate
    gap: float | None  # judge - human
    flagged: bool


def setting_value(settings: dict, setting: str) -> float | None:
    if setting == NEGATIVE_PROMPT:
        return 1.0 if str(settings.get(NEGATIVE_PROMPT) or "").strip() else 0.0
    value = settings.get(setting)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def sides_with_people(agreement: float) -> float:
    return 1.0 if agreement > 0.5 else 0.5 if agreement == 0.5 else 0.0


def audit(pairs: list[ScoredPair], threshold: float = DEFAULT_THRESHOLD) -> dict:
    """The audit as plain data: overall agreement, group rows and setting rows (see the docstring)."""
    if threshold < 0:
        raise ValueError(f"threshold must be 0 or more, got {threshold}")
    overall = Rate.of(sum(sides_with_people(p.agreement) for p in pairs), len(pairs))
    return {
        "pairs": len(pairs),
        "threshold": threshold,
        "overall_agreement": asdict(overall),
        "groups": [asdict(row) for row in group_rows(pairs, overall, threshold)],
        "settings": [asdict(row) for row in setting_rows(pairs, threshold)],
    }


def group_rows(pairs: list[ScoredPair], overall: Rate, threshold: float) -> list[GroupRow]:
    members = defaultdict(list)
    for pair in pairs:
        members[("task", pair.task)].append(pair)
        for tag in sorted(set(pair.tags)):
            members[("tag", tag)].append(pair)
    rows = []
    for (kind, group), chosen in sorted(members.items()):
        rate = Rate.of(sum(sides_with_people(p.agreement) for p in chosen), len(chosen))
        gap = None if overall.rate is None else rate.rate - overall.rate
        flagged = gap is not None and abs(gap) > threshold and not (rate.low <= overall.rate <= rate.high)
        rows.append(GroupRow(kind, group, rate, gap, flagged))
    return rows


def setting_rows(pairs: list[ScoredPair], threshold: float) -> list[SettingRow]:
    rows = []
    for setting in SETTINGS:
        human = judge = 0.0
        count = 0
        for pair in pairs:
            winner, loser = setting_value(pair.winner_settings, setting), setting_value(pair.loser_settings, setting)
            if winner is None or loser is None or winner == loser:
                continue
            count += 1
            winner_higher = winner > loser
            human += 1.0 if winner_higher else 0.0
            # The judge's side, seen from the higher candidate: with the winner when it agrees.
            with_people = sides_with_people(pair.agreement)
            judge += with_people if winner_higher else 1.0 - with_people
        human_rate, judge_rate = Rate.of(human, count), Rate.of(judge, count)
        gap = None if not count else judge_rate.rate - human_rate.rate
        flagged = (gap is not None and abs(gap) > threshold
                   and not (human_rate.low <= judge_rate.rate <= human_rate.high))
        rows.append(SettingRow(setting, count, human_rate, judge_rate, gap, flagged))
    return rows


def scored_pairs(test_rows: list[dict], scores: dict[str, tuple[float, float]], tags_of: dict[int, list[str]]
                 ) -> list[ScoredPair]:
    """Join the dataset's test rows (pair_id, input_id, task, dimension, winner_settings and
    loser_settings as JSON text) with the judge's scores (pair_id -> (p_forward, p_reversed)) and
    the inputs' tags. Rows without a score (not scored by this judge) are left out."""
    pairs = []
    for row in test_rows:
        score = scores.get(row["pair_id"])
        if score is None:
            continue
        pairs.append(ScoredPair(
            task=row["task"], dimension=row["dimension"], tags=tuple(tags_of.get(row["input_id"], ())),
            winner_settings=json.loads(row["winner_settings"] or "{}"),
            loser_settings=json.loads(row["loser_settings"] or "{}"), p_forward=score[0], p_reversed=score[1]))
    return pairs
