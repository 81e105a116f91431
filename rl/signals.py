from django.dispatch import receiver

from generation.events import batch_finished

from .execution import create_pending_studies


@receiver(batch_finished, dispatch_uid="rl-pending-studies")
def create_studies_of_finished_batches(sender, batch, **kwargs):
    # A policy's human study starts once its batch and its base's batch are both done.
    create_pending_studies(batch)
