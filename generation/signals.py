"""Worker start-up and file clean-up hooks of the generation app."""
from celery.signals import worker_ready
from django.db.models.signals import post_delete
from django.dispatch import receiver

from onereward.files import delete_after_commit

from .models import Candidate
from .tasks import sweep_after_start


@worker_ready.connect
def requeue_sets_of_dead_workers(sender=None, **kwargs):
    # A worker killed mid-set comes back under its name or another: its sets go back to the queue.
    sweep_after_start(sender.hostname)


@receiver(post_delete, sender=Candidate, dispatch_uid="generation-candidate-files")
def delete_candidate_files(sender, instance, **kwargs):
    delete_after_commit([instance.image, instance.thumbnail])
