"""A finished candidate set of an annotation batch becomes an annotation task."""
from django.dispatch import receiver

from generation.events import candidate_set_finished

from .assignment import create_annotation_task
from .events import holds_tasks


@receiver(candidate_set_finished, dispatch_uid="annotation-task-for-finished-set")
def open_annotation_task(sender, candidate_set, **kwargs):
    # Evaluation batches make no tasks: their inputs are held out for studies.
    batch = candidate_set.batch
    if batch.for_annotation and not any(held for _, held in holds_tasks.send(sender=type(batch), batch=batch)):
        create_annotation_task(candidate_set)
