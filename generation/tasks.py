from celery import shared_task

from onereward.jobs import JobStatus

from .execution import generate_set, log
from .models import CandidateSet, GenerationBatch, SetStatus


@shared_task(name="generation.run_batch")
def run_generation_batch(batch_id: int) -> None:
    run_batch(GenerationBatch.objects.get(pk=batch_id))


@shared_task(name="generation.generate_candidate_set", bind=True)
def generate_candidate_set(self, set_id: int) -> None:
    generate_set(set_id, worker=self.request.hostname or "unknown")


def run_batch(batch: GenerationBatch) -> None:
    """Send every unfinished set of a batch to the GPU queue."""
    if batch.status in (JobStatus.DONE, JobStatus.CANCELLED, JobStatus.FAILED):
        return
    batch.mark_running(total=batch.candidate_sets.count())
    pending = list(batch.candidate_sets.exclude(status=SetStatus.DONE).values_list("pk", flat=True))
    for set_id in pending:
        generate_candidate_set.delay(set_id)
    batch.refresh_progress()


def requeue_orphans(worker: str) -> int:
    """Sets this worker was running when it died go back to the queue (called at worker start)."""
    orphans = list(CandidateSet.objects.filter(status=SetStatus.RUNNING, worker=worker,
                                               batch__status=JobStatus.RUNNING).values_list("pk", flat=True))
    CandidateSet.objects.filter(pk__in=orphans).update(status=SetStatus.PENDING)
    for set_id in orphans:
        generate_candidate_set.delay(set_id)
    if orphans:
        log.info("re-queued %d candidate set(s) left running by %s", len(orphans), worker)
    return len(orphans)
