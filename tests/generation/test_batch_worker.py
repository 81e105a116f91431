"""Batches run by a real Celery worker (Redis, PostgreSQL), the CPU baseline making the pixels."""
import io
import time

import numpy as np
import pytest
from django.core.files.storage import default_storage
from PIL import Image

from generation.core.backends.base import load_backend
from generation.execution import requests_for
from generation.models import Candidate, CandidateSet, GenerationBatch, Generator
from inputs.demo_inputs import demo_specs
from inputs.importing import import_inputs
from inputs.models import Input
from onereward.jobs import JobStatus
from tests.conftest import start_worker, stop_worker, stored_files, wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def baseline_generator():
    generator = Generator(name="CPU baseline", backend="cpu_baseline", settings={})
    generator.full_clean()
    generator.save()
    return generator


def finished(batch_id):
    batch = GenerationBatch.objects.get(pk=batch_id)
    return batch if batch.is_finished else None


def png_pixels(name):
    with default_storage.open(name, "rb") as handle:
        return np.asarray(Image.open(io.BytesIO(handle.read())).convert("RGB"))


def test_a_batch_from_the_admin_is_generated_and_browsable(celery_worker_process, client, make_user):
    inputs = import_inputs(demo_specs())
    generator = baseline_generator()
    client.force_login(make_user("boss", "admin"))
    chosen = [i for i in inputs if i.task.slug in ("object_removal", "image_extend")]
    response = client.post("/admin/generation/generationbatch/add/", {
        "generator": generator.pk, "input_ids": ",".join(str(i.pk) for i in chosen), "candidates_per_input": 3,
        "steps_min": 28, "steps_max": 50, "guidance_min": 20, "guidance_max": 40, "true_cfg_min": 1, "true_cfg_max": 4,
        "strength_min": 0.85, "strength_max": 1.0, "negative_prompts": "(none)", "vary": "candidate", "seed": 11,
    })
    assert response.status_code == 302, response.content.decode()[:2000]
    batch = GenerationBatch.objects.get()
    batch = wait_for(lambda: finished(batch.pk), timeout=180, what="the batch")
    assert batch.status == JobStatus.DONE, (batch.error, celery_worker_process.log()[-4000:])
    assert (batch.progress_done, batch.progress_failed, batch.progress_total) == (len(chosen), 0, len(chosen))

    for candidate_set in CandidateSet.objects.filter(batch=batch).select_related("input"):
        candidates = list(candidate_set.candidates.order_by("index"))
        assert [c.index for c in candidates] == [0, 1, 2]
        source = png_pixels(candidate_set.input.source.name)
        for candidate in candidates:
            pixels = png_pixels(candidate.image.name)
            assert pixels.shape == source.shape
            assert candidate.settings == batch.settings_for(candidate_set.input, candidate.index).as_dict()
    assert len(stored_files()) == 3 * len(inputs) + 2 * 3 * len(
        chosen
    )  # inputs' files + candidates' images and thumbnails

    # Regenerating a candidate from its record gives the same pixels (same hardware).
    candidate = Candidate.objects.order_by("pk").first()
    request = requests_for(candidate.candidate_set, [candidate.index])[0]
    again = load_backend(generator.backend, generator.settings).generate([request])[0]
    assert np.array_equal(np.asarray(again.convert("RGB")), png_pixels(candidate.image.name))

    grid = client.get(f"/admin/generation/generationbatch/{batch.pk}/grid/").content.decode()
    assert grid.count('class="candidate"') == 3 * len(chosen)
    assert f"/candidates/{candidate.public_id}/thumbnail.img" in grid
    file_response = client.get(f"/candidates/{candidate.public_id}/image.img")
    assert file_response.status_code == 200 and file_response["Content-Type"] == "image/png"
    progress = client.get(f"/admin/generation/generationbatch/{batch.pk}/progress/").content.decode()
    assert "hx-trigger" not in progress and f"{len(chosen)} done" in progress


def test_a_failing_input_is_recorded_while_the_rest_goes_on(celery_worker_process):
    inputs = import_inputs(demo_specs()[:3])
    broken = inputs[1]
    default_storage.delete(broken.source.name)  # its pixels are gone: this input must fail alone
    batch = GenerationBatch.launch(generator=baseline_generator(), inputs=inputs, candidates_per_input=2)
    batch = wait_for(lambda: finished(batch.pk), timeout=120, what="the batch")
    assert batch.status == JobStatus.DONE
    assert (batch.progress_done, batch.progress_failed) == (2, 1)
    failed = CandidateSet.objects.get(batch=batch, input=broken)
    assert failed.status == "failed" and "No such file" in failed.error
    assert "1 of 3 inputs failed" in batch.error


def test_a_killed_worker_restarted_finishes_the_batch_without_duplicates(celery_worker_process):
    inputs = import_inputs(demo_specs())
    batch = GenerationBatch.launch(generator=baseline_generator(), inputs=inputs, candidates_per_input=4, seed=3)
    wait_for(lambda: GenerationBatch.objects.get(pk=batch.pk).progress_done >= 2, timeout=120, what="two inputs done")
    celery_worker_process.kill()
    batch.refresh_from_db()
    assert batch.progress_done < batch.progress_total, "the batch finished before the worker could be killed"
    celery_worker_process.restart()

    batch = wait_for(lambda: finished(batch.pk), timeout=240, what="the batch after the restart")
    assert batch.status == JobStatus.DONE and batch.progress_failed == 0, batch.error
    for candidate_set in CandidateSet.objects.filter(batch=batch):
        assert sorted(candidate_set.candidates.values_list("index", flat=True)) == [0, 1, 2, 3]
    assert Candidate.objects.count() == 4 * len(inputs)
    names = {c.image.name for c in Candidate.objects.all()} | {c.thumbnail.name for c in Candidate.objects.all()}
    assert {f for f in stored_files() if f.startswith("candidates/")} == names


def test_a_set_left_by_a_dead_worker_is_finished_by_a_worker_of_another_name(celery_worker_process, tmp_path):
    """The claim expires because its heartbeat stops, not because of the worker's name: a worker that
    comes back under another name (a new host, a new container) takes the set over, with no
    duplicate and no missing candidate."""
    inputs = import_inputs(demo_specs())
    batch = GenerationBatch.launch(generator=baseline_generator(), inputs=inputs, candidates_per_input=4, seed=5)
    wait_for(lambda: GenerationBatch.objects.get(pk=batch.pk).progress_done >= 2, timeout=120, what="two inputs done")
    celery_worker_process.kill()
    batch.refresh_from_db()
    assert batch.progress_done < batch.progress_total, "the batch finished before the worker could be killed"
    stranger = start_worker({**celery_worker_process.env_overrides, "ONEREWARD_GENERATION_LEASE_SECONDS": "4"},
                            tmp_path / "stranger.log", purge=False, name="another-host@elsewhere")
    try:
        batch = wait_for(lambda: finished(batch.pk), timeout=240, what="the batch after another worker started")
    finally:
        stop_worker(stranger)
        celery_worker_process.restart()
    assert batch.status == JobStatus.DONE and batch.progress_failed == 0, (batch.error, stranger.log()[-3000:])
    for candidate_set in CandidateSet.objects.filter(batch=batch):
        assert sorted(candidate_set.candidates.values_list("index", flat=True)) == [0, 1, 2, 3]
    assert Candidate.objects.count() == 4 * len(inputs)
    assert CandidateSet.objects.filter(batch=batch, worker="another-host@elsewhere").exists()


def test_a_running_set_keeps_its_claim_while_its_worker_beats(settings):
    """The heartbeat renews the claim of a long set, so another worker cannot take it; once the beat
    stops, the claim expires after one lease and the sweep hands the set back to the queue."""
    from datetime import timedelta

    from django.utils import timezone

    from generation.execution import claim, expired_claims, heartbeat

    settings.ONEREWARD_GENERATION_LEASE_SECONDS = 0.4
    batch = GenerationBatch.checked(generator=baseline_generator(), inputs=import_inputs(demo_specs()[:1]),
                                    candidates_per_input=1, for_annotation=False)
    batch.save()  # not queued: no worker may take it
    candidate_set = CandidateSet.objects.create(batch=batch, input=Input.objects.get())
    batch.mark_running(total=1)
    assert claim(candidate_set.pk, "first") is not None
    with heartbeat(candidate_set.pk, "first"):
        time.sleep(1.0)  # 2.5 leases: expired without the beat
        assert claim(candidate_set.pk, "second") is None
        assert not expired_claims().exists()
    CandidateSet.objects.filter(pk=candidate_set.pk).update(claimed_at=timezone.now() - timedelta(seconds=1))
    assert list(expired_claims()) == [candidate_set]
    assert claim(candidate_set.pk, "second").worker == "second"


def test_cancel_and_resume(celery_worker_process):
    inputs = import_inputs(demo_specs())
    batch = GenerationBatch.launch(generator=baseline_generator(), inputs=inputs, candidates_per_input=2, seed=4)
    wait_for(lambda: GenerationBatch.objects.get(pk=batch.pk).progress_done >= 1, timeout=120, what="one input done")
    assert batch.cancel()
    wait_for(lambda: not CandidateSet.objects.filter(batch=batch, status="running").exists(), timeout=60,
             what="the running set to stop")
    batch.refresh_from_db()
    assert batch.status == JobStatus.CANCELLED and batch.progress_done < len(inputs)
    assert batch.resume()
    batch = wait_for(lambda: finished(batch.pk), timeout=180, what="the resumed batch")
    assert batch.status == JobStatus.DONE and batch.progress_done == len(inputs)
    assert Candidate.objects.count() == 2 * len(inputs)


def test_a_flux_fill_batch_from_the_command_line_with_wait(celery_worker_process, tmp_path, capsys):
    """The real diffusers path through the worker: a tiny FLUX Fill saved to a directory, loaded by
    the generator record, true CFG on for some candidates."""
    from django.core.management import call_command

    from generation.core.demo_flux import save_tiny_flux_fill

    base = save_tiny_flux_fill(tmp_path / "tiny-flux-fill")
    generator = Generator(name="tiny FLUX Fill", backend="flux_fill",
                          settings={"base": str(base), "device": "cpu", "dtype": "float32"})
    generator.full_clean()
    generator.save()
    inputs = import_inputs(demo_specs())
    chosen = [i for i in inputs if i.task.slug in ("image_fill", "image_extend")][:2]
    call_command("generate", "--generator", generator.name, "--inputs", ",".join(str(i.pk) for i in chosen),
                 "-n", "2", "--steps", "2-3", "--true-cfg", "1-4", "--vary", "input", "--wait")
    out = capsys.readouterr().out
    assert "Done: 2/2 done, 0 failed" in out, out
    batch = GenerationBatch.objects.get()
    for candidate_set in batch.candidate_sets.select_related("input"):
        first, second = candidate_set.candidates.order_by("index")
        assert (
            first.settings["steps"] == second.settings["steps"] and first.settings["seed"] != second.settings["seed"]
        )
        a, b = png_pixels(first.image.name), png_pixels(second.image.name)
        assert a.shape == (candidate_set.input.height, candidate_set.input.width, 3)
        assert not np.array_equal(a, b)
