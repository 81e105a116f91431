"""Worker start-up and file clean-up hooks of the generation app."""
from celery.signals import worker_ready
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models.signals import post_delete
from django.dispatch import receiver

from .models import Candidate


@worker_ready.connect
def requeue_sets_of_a_restarted_worker(sender=None, **kwargs):
    # A worker that was killed mid-set comes back under the same name: its sets go back to the queue.
    from .execution import requeue_orphans

    requeue_orphans(sender.hostname)


@receiver(post_delete, sender=Candidate, dispatch_uid="generation-candidate-files")
def delete_candidate_files(sender, instance, **kwargs):
    names = [f.name for f in (instance.image, instance.thumbnail) if f and f.name]
    transaction.on_commit(lambda: [default_storage.delete(name) for name in names])
