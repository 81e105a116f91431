"""Running a generation batch: fan-out per input, a claimed set per worker, candidates stored
file-first with unique (set, index) keys, so a retried or redelivered job never duplicates."""
import contextlib
import hashlib
import io
import json
import logging
import threading
import time
from datetime import timedelta

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from PIL import Image

from inputs.core.images import encode_png, encode_thumbnail
from onereward.jobs import JobStatus

from .core.backends.base import GenerationRequest, backend_class, generate_recorded, load_backend
from .events import candidate_set_finished
from .models import Candidate, CandidateSet, Generator, SetStatus

log = logging.getLogger(__name__)

# One loaded generator per worker process: loading FLUX takes long and fills the GPU, so a worker
# keeps the last one and swaps only when a batch asks for another.
_loaded: dict[str, object] = {}


def _generator_key(generator: Generator) -> str:
    # A backend that loads other records too (a reranking generator: the generator it wraps, its
    # judge) names what it reads of them, so that an edit of those loads it again.
    backend = backend_class(generator.backend)
    reads = backend.records_read(generator.settings) if hasattr(backend, "records_read") else None
    payload = json.dumps({"backend": generator.backend, "settings": generator.settings, "reads": reads},
                         sort_keys=True, default=str)
    return f"{generator.pk}:{hashlib.sha256(payload.encode()).hexdigest()[:16]}"


def backend_for(generator: Generator):
    key = _generator_key(generator)
    if key not in _loaded:
        _loaded.clear()  # free the previous model before loading the next
        log.info("loading generator %s (%s)", generator.name, generator.backend)
        _loaded[key] = load_backend(generator.backend, generator.settings)
    return _loaded[key]


def requests_for(candidate_set: CandidateSet, indices: list[int]) -> list[GenerationRequest]:
    item = candidate_set.input
    with default_storage.open(item.source.name, "rb") as handle:
        image = Image.open(io.BytesIO(handle.read())).convert("RGB")
    with default_storage.open(item.mask.name, "rb") as handle:
        mask = Image.open(io.BytesIO(handle.read())).convert("L")
    batch = candidate_set.batch
    return [
        GenerationRequest(image=image, mask=mask, prompt=item.effective_prompt, task=item.task.slug,
                          settings=batch.settings_for(item, index), prompt_given=item.prompt_given)
        for index in indices
    ]


def candidate_paths(public_id) -> tuple[str, str]:
    folder = f"candidates/{public_id.hex[:2]}"
    return f"{folder}/{public_id.hex}.png", f"{folder}/{public_id.hex}-thumb.jpg"


def store_candidate(candidate_set: CandidateSet, index: int, request: GenerationRequest, image: Image.Image,
                    seconds: float, record: dict | None = None) -> Candidate | None:
    """Files first, then the row; a row that already exists (a concurrent retry) wins and our
    files are removed. Returns None in that case. `record`: what the backend said about how it made
    the image, kept beside the settings (under "record", which CandidateSettings.from_dict leaves
    out, so the settings still remake the candidate)."""
    if image.size != request.image.size:
        raise ValueError(f"the generator returned {image.size[0]}x{image.size[1]} for a "
                         f"{request.image.width}x{request.image.height} canvas")
    settings = request.settings.as_dict()
    if record:
        settings["record"] = record
    candidate = Candidate(candidate_set=candidate_set, index=index, settings=settings, seconds=seconds)
    image_path, thumb_path = candidate_paths(candidate.public_id)
    written = [default_storage.save(image_path, ContentFile(encode_png(image.convert("RGB"))))]
    try:
        written.append(default_storage.save(thumb_path, ContentFile(encode_thumbnail(image))))
        candidate.image, candidate.thumbnail = written
        with transaction.atomic():
            candidate.save()
        return candidate
    except BaseException as exc:
        for name in written:
            default_storage.delete(name)
        if isinstance(exc, IntegrityError):
            return None
        raise


def claim(set_id: int, worker: str) -> CandidateSet | None:
    """Take a set to work on, unless it is finished, its batch is not running, or another worker
    holds a fresh claim on it."""
    with transaction.atomic():
        candidate_set = CandidateSet.objects.select_for_update().select_related("batch").get(pk=set_id)
        if candidate_set.status == SetStatus.DONE:
            return None
        if candidate_set.batch.status not in (JobStatus.RUNNING, JobStatus.QUEUED):
            return None
        if (candidate_set.status == SetStatus.RUNNING and candidate_set.worker != worker
                and candidate_set.claimed_at and timezone.now() - candidate_set.claimed_at < lease()):
            return None
        candidate_set.status = SetStatus.RUNNING
        candidate_set.worker = worker
        candidate_set.claimed_at = timezone.now()
        candidate_set.attempts += 1
        candidate_set.error = ""
        candidate_set.save(update_fields=["status", "worker", "claimed_at", "attempts", "error"])
    return candidate_set


def lease() -> timedelta:
    return timedelta(seconds=settings.ONEREWARD_GENERATION_LEASE_SECONDS)


@contextlib.contextmanager
def heartbeat(set_id: int, worker: str):
    """Renew this worker's claim on a set every quarter lease while the block runs (a thread with
    its own database connection), so that only a claim whose worker stopped beating expires."""
    stop = threading.Event()

    def beat():
        try:
            while not stop.wait(lease().total_seconds() / 4):
                CandidateSet.objects.filter(pk=set_id, worker=worker, status=SetStatus.RUNNING).update(
                    claimed_at=timezone.now())
        finally:
            connection.close()

    thread = threading.Thread(target=beat, name=f"claim-heartbeat-{set_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def expired_claims():
    """Sets of running batches whose claim has not been renewed for a lease: their worker died."""
    return CandidateSet.objects.filter(status=SetStatus.RUNNING, batch__status=JobStatus.RUNNING,
                                       claimed_at__lt=timezone.now() - lease())


def generate_set(set_id: int, worker: str) -> None:
    """Make the candidates a set still lacks, then record how it went."""
    candidate_set = claim(set_id, worker)
    if candidate_set is None:
        return
    with heartbeat(set_id, worker):
        _generate_claimed(candidate_set, worker)


def _generate_claimed(candidate_set: CandidateSet, worker: str) -> None:
    set_id = candidate_set.pk
    batch = candidate_set.batch
    try:
        have = set(candidate_set.candidates.values_list("index", flat=True))
        missing = [i for i in range(batch.candidates_per_input) if i not in have]
        if missing:
            requests = requests_for(candidate_set, missing)
            backend = backend_for(batch.generator)
            started = time.perf_counter()
            generated = generate_recorded(backend, requests)
            share = (time.perf_counter() - started) / len(requests)
            if len(generated) != len(requests):
                raise ValueError(f"the generator returned {len(generated)} images for {len(requests)} requests")
            for index, request, made in zip(missing, requests, generated):
                store_candidate(candidate_set, index, request, made.image, share, made.record)
        status, error = SetStatus.DONE, ""
    except Exception as exc:  # one input's failure must not stop the batch
        log.exception("candidate set %s failed", set_id)
        status, error = SetStatus.FAILED, f"{type(exc).__name__}: {exc}"
    CandidateSet.objects.filter(pk=set_id).update(status=status, error=error, finished_at=timezone.now())
    if status == SetStatus.DONE:
        # Annotation listens (and leaves evaluation batches' sets out of its queue).
        candidate_set_finished.send(sender=CandidateSet, candidate_set=candidate_set)
    batch.refresh_progress()


def run_batch_here(batch, worker: str = "this process") -> None:
    """Generate a batch's unfinished sets in this process, one after the other, as GPU workers
    would (same claim, same storage, same finish): for the command line and the demo loop on a
    machine without a worker."""
    batch.mark_running(total=batch.candidate_sets.count())
    for set_id in batch.candidate_sets.exclude(status=SetStatus.DONE).values_list("pk", flat=True):
        generate_set(set_id, worker)
    batch.refresh_from_db()
