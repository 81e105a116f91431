from celery import shared_task

from onereward.jobs import JobStatus

from .execution import expired_claims, generate_set, lease, log
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


@shared_task(name="generation.requeue_expired_claims")
def requeue_expired_claims() -> int:
    """Sets whose worker stopped renewing its claim (it died, whatever name it comes back under) go
    back to the queue; a compare-and-set on the claim's time, so a set whose worker beat meanwhile
    stays with it. The job that died with the worker is redelivered later and finds the set done."""
    requeued = 0
    for set_id, claimed_at in list(expired_claims().values_list("pk", "claimed_at")):
        if CandidateSet.objects.filter(pk=set_id, status=SetStatus.RUNNING, claimed_at=claimed_at).update(
                status=SetStatus.PENDING):
            generate_candidate_set.delay(set_id)
            requeued += 1
    if requeued:
        log.info("re-queued %d candidate set(s) whose claim expired", requeued)
    return requeued


def sweep_after_start(worker: str) -> None:
    """At a worker's start: its own sets left running go back at once, expired claims of any worker
    too, and the sweep runs again one lease later for claims that were still fresh at the start."""
    requeue_orphans(worker)
    requeue_expired_claims()
    requeue_expired_claims.apply_async(countdown=lease().total_seconds() + 1)


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
