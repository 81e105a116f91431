"""Simulated annotators on human-study items: the oracle's best and worst per dimension and a
usable vote per candidate, through the study page's own code (next_item leases, record_study_judgment
validates and stores). Oracles may say what is usable with `usable(task, source, mask, candidates)`;
without it every candidate is usable."""
import uuid

from annotation.simulation import SimulationReport, load_shown, oracle_picks, take_turns

from .models import StudyCandidate
from .studies import StudyJudgmentRejected, next_item, record_study_judgment


def study_answer(slot, oracle, noise, rng) -> dict:
    item = slot.item.input
    images = dict(StudyCandidate.objects.filter(item_id=slot.item_id).values_list("pk", "candidate__image"))
    names = [images[member] for member in slot.shown_order]  # screen position -> study candidate
    source, mask, shown = load_shown(item, names)
    picks = oracle_picks(item, source, mask, shown, oracle, noise, rng)
    if callable(getattr(oracle, "usable", None)):
        usable = [bool(vote) for vote in oracle.usable(item.task.slug, source, mask, shown)]
    else:
        usable = [True] * len(shown)
    return {"submission_id": str(uuid.uuid4()), "dwell_ms": 0, "usable": usable, "picks": picks}


def simulate_studies(users, study=None, max_items: int | None = None) -> SimulationReport:
    """Let the simulated `users` judge study items (of `study`, or of every active study), round
    robin, until no one gets an item or `max_items` judgments are stored."""

    def turn(user, oracle, noise, rng, report) -> bool:
        slot = next_item(user, study)
        if slot is None:
            return False
        try:
            record_study_judgment(user, slot.pk, study_answer(slot, oracle, noise, rng))
        except StudyJudgmentRejected as exc:
            report.refused.append(f"{user.username}: {exc}")
            return False  # a refused item stays leased to them: do not spin on it
        report.judged += 1
        return True

    return take_turns(users, turn, max_items)
