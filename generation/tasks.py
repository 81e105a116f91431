from celery import shared_task

from .execution import generate_set, run_batch
from .models import GenerationBatch


@shared_task(name="generation.run_batch")
def run_generation_batch(batch_id: int) -> None:
    run_batch(GenerationBatch.objects.get(pk=batch_id))


@shared_task(name="generation.generate_candidate_set", bind=True)
def generate_candidate_set(self, set_id: int) -> None:
    generate_set(set_id, worker=self.request.hostname or "unknown")
