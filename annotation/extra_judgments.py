"""Sending annotation tasks back for more judgments: each task gets `extra` more regular slots and
wants that many more judgments, so it comes back into the pool for annotators who have not judged
it yet (the queue never hands a task twice to one annotator). Used wherever a set is sent back: a
reward model's disagreement with people (rewardmodel/reannotation.py) and the human-disagreement
collection rounds (rl/rounds.py)."""
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F

from .models import AnnotationTask, Slot


def ask_more_judgments(tasks, extra: int) -> list[AnnotationTask]:
    """Give every task of `tasks` (AnnotationTasks) `extra` more regular slots and raise its
    required judgments by as many, in one transaction; returns the tasks. Gold tasks measure
    annotators against known answers and are never sent back."""
    tasks = list(tasks)
    if extra is None or extra < 1:
        raise ValidationError(f"send a task back for at least one more judgment, not {extra}")
    gold = [task.pk for task in tasks if task.is_gold]
    if gold:
        raise ValidationError(f"gold tasks are not sent back for more judgments: {', '.join(map(str, gold))}")
    with transaction.atomic():
        Slot.objects.bulk_create([Slot(task=task) for task in tasks for _ in range(extra)])
        AnnotationTask.objects.filter(pk__in=[task.pk for task in tasks]).update(
            required_judgments=F("required_judgments") + extra)
    return tasks
