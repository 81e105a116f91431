from django.db.models.signals import post_delete
from django.dispatch import receiver

from generation.events import batch_finished
from onereward.files import delete_after_commit

from .execution import create_pending_studies
from .models import PolicyExport


@receiver(batch_finished, dispatch_uid="rl-pending-studies")
def create_studies_of_finished_batches(sender, batch, **kwargs):
    # A policy's human study starts once its batch and its base's batch are both done.
    create_pending_studies(batch)


@receiver(post_delete, sender=PolicyExport, dispatch_uid="rl-export-files")
def delete_export_file(sender, instance, **kwargs):
    delete_after_commit([instance.file])
