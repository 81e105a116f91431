"""Closing the loop on data: candidate sets where a trained judge disagrees most with the
annotators, or is least certain, go back to annotation for more judgments.

The trainer scores every test pair in both orders (test_scores.parquet: p_forward = P(Yes | winner,
loser), p_reversed = P(Yes | loser, winner), both Yes/No-renormalised). Per pair:
- agreement with the annotators = (p_forward + 1 - p_reversed) / 2, in [0, 1];
- certainty = |agreement - 0.5| * 2, in [0, 1].
A candidate set takes the mean over its pairs; the `count` sets with the lowest agreement (or
certainty) get `extra_judgments` more regular slots (annotation.extra_judgments), so they come back
into the annotation pool for annotators who have not judged them yet.
"""
from collections import defaultdict

import pyarrow.parquet as pq
from django.core.exceptions import ValidationError
from django.db import transaction

from annotation.extra_judgments import ask_more_judgments
from annotation.models import AnnotationTask

from .models import ReannotationRequest, RewardModelVersion


def ranked_sets(version: RewardModelVersion, reason: str) -> list[tuple[int, float]]:
    """(candidate set id, mean agreement or certainty), lowest first."""
    path = version.scores_path
    if not path.exists():
        raise ValidationError(f"{version} has no test scores ({path.name} is missing on this host)")
    table = pq.read_table(path, columns=["candidate_set_id", "p_forward", "p_reversed"])
    sums, counts = defaultdict(float), defaultdict(int)
    for set_id, forward, reversed_ in zip(*(table.column(name).to_pylist() for name in table.column_names)):
        agreement = (forward + 1 - reversed_) / 2
        value = agreement if reason == ReannotationRequest.Reason.DISAGREEMENT else abs(agreement - 0.5) * 2
        sums[set_id] += value
        counts[set_id] += 1
    return sorted(((set_id, sums[set_id] / counts[set_id]) for set_id in sums), key=lambda item: (item[1], item[0]))


def send_back(version: RewardModelVersion, *, reason: str, count: int, extra_judgments: int = 1,
              user=None) -> ReannotationRequest:
    """Give the `count` lowest-ranked candidate sets `extra_judgments` more regular slots each."""
    if reason not in ReannotationRequest.Reason.values:
        raise ValidationError({"reason": f"choose one of {', '.join(ReannotationRequest.Reason.values)}"})
    if count < 1 or extra_judgments < 1:
        raise ValidationError("send at least one set back, for at least one more judgment")
    chosen = [set_id for set_id, _ in ranked_sets(version, reason)[:count]]
    tasks = list(AnnotationTask.objects.filter(candidate_set_id__in=chosen, is_gold=False))
    if not tasks:
        raise ValidationError("none of the scored candidate sets has an annotation task to send back")
    with transaction.atomic():
        request = ReannotationRequest.objects.create(version=version, reason=reason,
                                                     extra_judgments=extra_judgments, created_by=user)
        request.tasks.set(tasks)
        ask_more_judgments(tasks, extra_judgments)
    return request
