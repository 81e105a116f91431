"""Simulated annotators on human-study items: the oracle's best and worst per dimension and a
usable vote per candidate, through the study page's own code (next_item leases, record_study_judgment
validates and stores). Oracles may say what is usable with `usable(task, source, mask, candidates)`;
without it every candidate is usable."""
import uuid

from annotation.simulation import SimulationReport, image_array, mask_array, oracle_of, oracle_picks

from .models import StudyCandidate
from .studies import StudyJudgmentRejected, next_item, record_study_judgment


def study_answer(slot, oracle, noise, rng) -> dict:
    item = slot.item.input
    images = dict(StudyCandidate.objects.filter(item_id=slot.item_id).values_list("pk", "candidate__image"))
    shown = [images[member] for member in slot.shown_order]  # screen position -> study candidate
    picks = oracle_picks(item, shown, oracle, noise, rng)
    if callable(getattr(oracle, "usable", None)):
        votes = oracle.usable(item.task.slug, image_array(item.source.name), mask_array(item.mask.name),
                              [image_array(name) for name in shown])
        usable = [bool(vote) for vote in votes]
    else:
        usable = [True] * len(shown)
    return {"submission_id": str(uuid.uuid4()), "dwell_ms": 0, "usable": usable, "picks": picks}


def simulate_studies(users, study=None, max_items: int | None = None) -> SimulationReport:
    """Let the simulated `users` judge study items (of `study`, or of every active study), round
    robin, until no one gets an item or `max_items` judgments are stored."""
    report = SimulationReport()
    states = {user.pk: (user, *oracle_of(user)) for user in users}
    active = list(states)
    while active and (max_items is None or report.judged < max_items):
        for user_id in list(active):
            if max_items is not None and report.judged >= max_items:
                break
            user, oracle, noise, rng = states[user_id]
            slot = next_item(user, study)
            if slot is None:
                active.remove(user_id)
                continue
            try:
                record_study_judgment(user, slot.pk, study_answer(slot, oracle, noise, rng))
            except StudyJudgmentRejected as exc:
                report.refused.append(f"{user.username}: {exc}")
                active.remove(user_id)  # a refused item stays leased to them: do not spin on it
                continue
            report.judged += 1
            report.per_annotator[user.username] = report.per_annotator.get(user.username, 0) + 1
    return report
