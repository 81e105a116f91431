"""Simulated annotators: oracle-driven accounts that judge through the browser's own code path
(next_slot hands out and leases, record_judgment validates and stores, QC scores gold answers),
for dry runs, load tests and tests against ground truth. Nothing is written to the judgment
tables directly.
"""
import random
import uuid
from dataclasses import dataclass, field

import numpy as np
from django.contrib.auth import get_user_model
from django.core.files.storage import default_storage
from django.db import transaction
from PIL import Image

from onereward.roles import assign_role

from .assignment import next_slot
from .core.oracles import load_oracle, pick
from .judging import JudgmentRejected, record_judgment, skip
from .models import SimulatedAnnotator


@dataclass
class SimulationReport:
    judged: int = 0
    skipped: int = 0
    refused: list[str] = field(default_factory=list)
    per_annotator: dict[str, int] = field(default_factory=dict)


def simulated_annotators(oracle: str, count: int, noise: float, seed: int = 0) -> list:
    """`count` annotator accounts judged by `oracle` with `noise`, made once and reused: named
    sim-ORACLE-nNOISE-I, so another oracle or noise gets accounts of its own."""
    if not 0 <= noise <= 1:
        raise ValueError(f"noise is a share of answers in [0, 1], got {noise}")
    if count < 1:
        raise ValueError(f"at least one annotator, got {count}")
    load_oracle(oracle)  # refuse an unknown oracle before any account is made
    users = []
    label = oracle.replace(":", "-").replace(".", "-")[:60]
    with transaction.atomic():
        for index in range(count):
            user, created = get_user_model().objects.get_or_create(username=f"sim-{label}-n{noise:g}-{index + 1}")
            if created:
                user.set_unusable_password()  # nobody signs in as an oracle
                user.save()
            assign_role(user, "annotator")
            SimulatedAnnotator.objects.update_or_create(
                user=user, defaults={"oracle": oracle, "noise": noise, "seed": seed * 1000 + index})
            users.append(user)
    return users


def image_array(name: str) -> np.ndarray:
    with default_storage.open(name, "rb") as handle:
        return np.asarray(Image.open(handle).convert("RGB"), dtype=np.float32) / 255


def mask_array(name: str) -> np.ndarray:
    with default_storage.open(name, "rb") as handle:
        return np.asarray(Image.open(handle).convert("L")) >= 128


def load_shown(item, candidate_images: list[str]) -> tuple:
    """(source, mask, candidates) as an oracle reads them, the candidates in screen order."""
    return image_array(item.source.name), mask_array(item.mask.name), [image_array(name) for name in candidate_images]


def oracle_picks(item, source, mask, shown, oracle, noise: float, rng: random.Random) -> dict:
    """The page's picks for an input's candidates (`shown`, in screen order; see load_shown): per
    judged dimension, the screen positions of the oracle's best and worst (or discarded when it
    sees no difference)."""
    picks = {}
    for dimension in item.judged_dimensions():
        chosen = pick(oracle.scores(item.task.slug, dimension.slug, source, mask, shown), noise, rng)
        picks[dimension.slug] = {"discarded": True} if chosen is None else {"best": chosen[0], "worst": chosen[1]}
    return picks


def answer(slot, oracle, noise: float, rng: random.Random) -> dict:
    """The page's payload for a leased annotation slot."""
    candidate_set = slot.task.candidate_set
    images = {c.index: c.image.name for c in candidate_set.candidates.all()}
    names = [images[index] for index in slot.shown_order]  # screen position -> candidate index
    picks = oracle_picks(candidate_set.input, *load_shown(candidate_set.input, names), oracle, noise, rng)
    return {"submission_id": str(uuid.uuid4()), "dwell_ms": 0, "picks": picks}


def oracle_of(user) -> tuple:
    """(oracle, noise, random source) of a simulated annotator."""
    simulated = user.simulated_annotator
    return load_oracle(simulated.oracle), simulated.noise, random.Random(simulated.seed)


def take_turns(users, turn, limit: int | None = None) -> SimulationReport:
    """The simulated `users` judge in turns until none has work left or `limit` judgments are
    stored. `turn(user, oracle, noise, rng, report)` judges one thing and returns True, or returns
    False when the user got nothing (they then leave the round)."""
    report = SimulationReport()
    states = {user.pk: (user, *oracle_of(user)) for user in users}
    active = list(states)
    while active and (limit is None or report.judged < limit):
        for user_id in list(active):
            if limit is not None and report.judged >= limit:
                break
            user = states[user_id][0]
            judged_before = report.judged
            if not turn(*states[user_id], report):
                active.remove(user_id)
            elif report.judged > judged_before:
                report.per_annotator[user.username] = report.per_annotator.get(user.username, 0) + 1
    return report


def simulate(users, batch=None, max_tasks: int | None = None) -> SimulationReport:
    """Let the simulated `users` judge annotation tasks, round robin, until no one gets a task or
    `max_tasks` judgments are stored. With `batch`, tasks of other batches are skipped (a skip is
    the page's own way to pass: the task stays with the others)."""

    def turn(user, oracle, noise, rng, report) -> bool:
        slot = next_slot(user)
        while slot is not None and batch is not None and slot.task.candidate_set.batch_id != batch.pk:
            skip(user, slot.pk)
            report.skipped += 1
            slot = next_slot(user)
        if slot is None:
            return False
        try:
            payload = answer(slot, oracle, noise, rng)
        except OSError as exc:
            # An image the oracle cannot read: pass on the task, as a person would on a broken page.
            skip(user, slot.pk)
            report.skipped += 1
            report.refused.append(f"{user.username}: task {slot.task_id} skipped, unreadable images ({exc})")
            return True
        try:
            record_judgment(user, slot.pk, payload)
        except JudgmentRejected as exc:
            # Refused like a person's answer would be (e.g. the lease went to someone else).
            report.refused.append(f"{user.username}: {exc}")
            return True
        report.judged += 1
        return True

    return take_turns(users, turn, max_tasks)
