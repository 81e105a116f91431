"""Reading what a judging page posts: the envelope (submission id, time on the item) and the best
and worst per dimension, for annotation tasks and study items alike.

Picks: {dimension_slug: {"best": position, "worst": position} | {"discarded": true}}, positions
counted on screen from 0 (leftmost). They are mapped to what was shown through the slot's shown
order, so candidate identities never reach the page. Every refusal is a JudgmentRejected whose
message names the dimension and what to do, for the page to show as it is.
"""
import uuid
from dataclasses import dataclass

from .models import SlotState

DONE = SlotState.DONE.value


class JudgmentRejected(Exception):
    """The submission is invalid; nothing was stored. The message says what is wrong."""


@dataclass(frozen=True)
class Pick:
    """One dimension's answer: screen positions and the members shown there (what shown_order
    holds: candidate indices for a task, study candidate ids for a study item)."""

    dimension: object
    discarded: bool = False
    best_position: int | None = None
    worst_position: int | None = None
    best: object = None
    worst: object = None


# A day: more is no measurement of work on one task, and the column is a 32-bit integer.
MAX_DWELL_MS = 24 * 3600 * 1000


def parse_envelope(payload) -> tuple[uuid.UUID, int]:
    """The submission id and dwell_ms of a posted judgment."""
    if not isinstance(payload, dict):
        raise JudgmentRejected("the submission must be a JSON object")
    try:
        submission_id = uuid.UUID(str(payload.get("submission_id")))
    except ValueError:
        raise JudgmentRejected("submission_id is missing or not a UUID") from None
    dwell = payload.get("dwell_ms", 0)
    if not _whole(dwell) or not 0 <= dwell <= MAX_DWELL_MS:
        raise JudgmentRejected(f"dwell_ms must be a whole number of milliseconds from 0 to {MAX_DWELL_MS} (a day)")
    return submission_id, dwell


def stored_submission(judgments, submission_id: uuid.UUID, user, slot_id: int):
    """The judgment of `judgments` (a queryset) stored under this submission id, when it is this
    annotator's on this slot: a retry, or a double click, gets the stored one. None when there is
    none; JudgmentRejected when the id is another judgment's."""
    existing = judgments.filter(submission_id=submission_id).first()
    if existing is not None and (existing.annotator_id != user.pk or existing.slot_id != slot_id):
        raise JudgmentRejected("this submission id belongs to another judgment")
    return existing


def check_held(slot, user, noun: str) -> None:
    """Refuse a judgment on a slot (locked by the caller) that is missing, leased to someone else
    or done; `noun` ("task", "item") names what is judged."""
    if slot is None:
        raise JudgmentRejected(f"no such {noun}")
    if slot.annotator_id != user.pk:
        raise JudgmentRejected(
            f"this {noun} is not assigned to you (its lease may have run out and gone to someone else)"
        )
    if slot.state == DONE:
        raise JudgmentRejected(f"you have already judged this {noun}")


def parse_picks(picks, dimensions, shown_order: list, noun: str) -> list[Pick]:
    """One Pick per judged dimension, in `dimensions`' order; `noun` ("task", "item") names what
    is judged in the messages."""
    if not isinstance(picks, dict):
        raise JudgmentRejected("picks must map each dimension to its best and worst (or discarded)")
    by_slug = {dimension.slug: dimension for dimension in dimensions}
    unknown = sorted(set(picks) - set(by_slug))
    if unknown:
        raise JudgmentRejected(
            f"{', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} not judged for this {noun}"
        )
    missing = [dimension.name for slug, dimension in by_slug.items() if slug not in picks]
    if missing:
        raise JudgmentRejected(f"every dimension needs an answer; missing: {', '.join(missing)}")
    n = len(shown_order)
    return [_one(dimension, picks[slug], shown_order, n, noun) for slug, dimension in by_slug.items()]


def _one(dimension, pick, shown_order: list, n: int, noun: str) -> Pick:
    if not isinstance(pick, dict):
        raise JudgmentRejected(f"{dimension.name}: give best and worst, or discarded")
    best, worst = pick.get("best"), pick.get("worst")
    if pick.get("discarded") is True:
        if best is not None or worst is not None:
            raise JudgmentRejected(f"{dimension.name}: discarded cannot also name a best or a worst")
        return Pick(dimension, discarded=True)
    if best is None or worst is None:
        raise JudgmentRejected(f"{dimension.name}: pick both the best and the worst, or mark no clear difference")
    for label, position in (("best", best), ("worst", worst)):
        if not _whole(position) or not 0 <= position < n:
            raise JudgmentRejected(f"{dimension.name}: {label} must be one of this {noun}'s candidates (1-{n})")
    if best == worst:
        raise JudgmentRejected(f"{dimension.name}: the best and the worst must be different candidates")
    return Pick(dimension, best_position=best, worst_position=worst, best=shown_order[best], worst=shown_order[worst])


def _whole(value) -> bool:
    # JSON true is an int to Python; it is not a position nor a duration.
    return isinstance(value, int) and not isinstance(value, bool)
