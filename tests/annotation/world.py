"""A small annotation world built straight in the database: inputs, a batch, candidate sets with
candidates (file names only; these tests never read pixels) and their annotation tasks."""
from annotation.assignment import create_annotation_task
from generation.models import Candidate, CandidateSet, GenerationBatch, Generator
from inputs.importing import InputSpec, import_inputs
from tests.conftest import box_mask, photo, png_bytes


def make_inputs(count: int, task: str = "image_fill", first_seed: int = 0):
    specs = [InputSpec(entry=f"in{i}.png", task=task, source=png_bytes(photo(32, 32, seed=first_seed + i)),
                       source_name=f"in{i}.png", mask=png_bytes(box_mask(32, 32, (8, 8, 24, 24))),
                       mask_name=f"in{i}_mask.png", prompt=f"a thing number {i}") for i in range(count)]
    return import_inputs(specs)


def make_tasks(count: int, n: int = 4, k: int = 1, task: str = "image_fill", first_seed: int = 0):
    """`count` annotation tasks of N candidates each, k judgments wanted per task."""
    generator, _ = Generator.objects.get_or_create(
        name="baseline", defaults={"backend": "cpu_baseline", "settings": {}}
    )
    batch = GenerationBatch.objects.create(generator=generator, candidates_per_input=n, annotation_overlap=k,
                                           status="done", name="a batch name")
    tasks = []
    for item in make_inputs(count, task=task, first_seed=first_seed):
        candidate_set = CandidateSet.objects.create(batch=batch, input=item, status="done")
        Candidate.objects.bulk_create([
            Candidate(candidate_set=candidate_set, index=i, image=f"candidates/x/{candidate_set.pk}-{i}.png",
                      thumbnail=f"candidates/x/{candidate_set.pk}-{i}.jpg", settings={"seed": i}, seconds=0.0)
            for i in range(n)
        ])
        tasks.append(create_annotation_task(candidate_set))
    return tasks


def full_picks(slot, best: int = 0, worst: int = 1) -> dict:
    """A complete answer for the slot's task: the same best/worst screen positions on every dimension."""
    return {d.slug: {"best": best, "worst": worst} for d in slot.task.candidate_set.input.judged_dimensions()}


def annotate_concurrently(users) -> tuple[list[str], dict[int, list[int]]]:
    """Every user in a thread of their own takes and judges tasks until none is left, all starting
    at once. Returns the errors raised and, per user id, the task ids they judged."""
    import threading
    import uuid

    from django.db import connections

    from annotation.assignment import next_slot
    from annotation.judging import record_judgment

    errors, judged = [], {user.pk: [] for user in users}
    start = threading.Barrier(len(users))

    def work(user):
        try:
            start.wait()
            while (slot := next_slot(user)) is not None:
                record_judgment(user, slot.pk, {"submission_id": str(uuid.uuid4()), "dwell_ms": 1000,
                                                "picks": full_picks(slot, best=0, worst=2)})
                judged[user.pk].append(slot.task_id)
        except Exception as exc:  # noqa: BLE001 - returned to the caller
            errors.append(repr(exc))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work, args=(user,)) for user in users]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    return errors, judged


def race_a_retry(record, user, slot_model, slot_id: int, payload: dict):
    """A retried submission that arrives while its original is being stored: the original takes the
    slot's lock and stores the judgment, the retry (the same payload) checks for a stored one before
    the original commits and then waits on the lock. Returns (original, retry) as `record` returned
    them, or the exception it raised. Needs PostgreSQL and a transactional test."""
    import threading
    import time

    from django.db import connection, connections, transaction

    outcome, original_stored, release = {}, threading.Event(), threading.Event()

    def original():
        try:
            with transaction.atomic():
                slot_model.objects.select_for_update().get(pk=slot_id)
                outcome["original"] = record(user, slot_id, payload)
                original_stored.set()
                release.wait(30)  # hold the lock, uncommitted, until the retry waits on it
        except Exception as exc:  # noqa: BLE001 - returned to the caller
            outcome["original"] = exc
            original_stored.set()
        finally:
            connections.close_all()

    def retry():
        try:
            outcome["retry"] = record(user, slot_id, payload)
        except Exception as exc:  # noqa: BLE001 - returned to the caller
            outcome["retry"] = exc
        finally:
            connections.close_all()

    first = threading.Thread(target=original)
    first.start()
    assert original_stored.wait(30)
    second = threading.Thread(target=retry)
    second.start()
    with connection.cursor() as cursor:
        for _ in range(300):  # until the retry waits on the slot's row lock
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                           "AND datname = current_database()")
            if cursor.fetchone()[0]:
                break
            time.sleep(0.02)
        else:
            raise AssertionError("the retry never waited on the slot's lock")
    release.set()
    first.join(30)
    second.join(30)
    return outcome["original"], outcome["retry"]
