"""A batch of a reranking generator run by a real Celery worker (Redis, PostgreSQL): the worker
loads the judge (a tiny Qwen2.5-VL saved to a directory) and the CPU baseline it wraps, and every
candidate it stores is one of the wrapped generator's, with the scores of all M on its record."""
import io

import numpy as np
import pytest
from django.core.files.storage import default_storage
from PIL import Image

from generation.core.backends.base import CandidateSettings, load_backend
from generation.execution import requests_for
from generation.models import CandidateSet, GenerationBatch, Generator
from inputs.core.images import CanvasSpec
from inputs.importing import InputSpec, import_inputs
from onereward.jobs import JobStatus
from tests.conftest import box_mask, photo, png_bytes, wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

M = 3


def small_inputs():
    """An image fill with its prompt (all four dimensions judged) and an extend without one (text
    alignment left out)."""
    return import_inputs([
        InputSpec(entry="cup.png", task="image_fill", source=png_bytes(photo(64, 48, seed=1)), source_name="cup.png",
                  mask=png_bytes(box_mask()), mask_name="cup_mask.png", prompt="a red cup on a wooden table"),
        InputSpec(entry="wide.png", task="image_extend", source=png_bytes(photo(48, 48, seed=2)),
                  source_name="wide.png", canvas=CanvasSpec.parse({"padding": [0, 0, 16, 0]}, "wide.png")),
    ])


def pixels(name):
    with default_storage.open(name, "rb") as handle:
        return np.asarray(Image.open(io.BytesIO(handle.read())).convert("RGB"))


def test_a_reranking_batch_runs_on_the_worker_and_records_every_score(celery_worker_process, tmp_path):
    from rewardmodel.core.demo_judge import save_tiny_qwen

    judge = save_tiny_qwen(tmp_path / "judge", seed=0)
    Generator.objects.create(name="CPU baseline", backend="cpu_baseline", settings={})
    settings = {"generator": "CPU baseline", "candidates": M, "judge": str(judge), "device": "cpu"}
    reranking = Generator(name="CPU baseline, best of 3", backend="rerank", settings=settings)
    reranking.full_clean()
    reranking.save()
    inputs = small_inputs()
    batch = GenerationBatch.launch(generator=reranking, inputs=inputs, candidates_per_input=2, seed=4)

    batch = wait_for(lambda: GenerationBatch.objects.get(pk=batch.pk) if GenerationBatch.objects.get(
        pk=batch.pk).is_finished else None, timeout=300, what="the batch")
    assert batch.status == JobStatus.DONE and batch.progress_failed == 0, (
        batch.error, list(CandidateSet.objects.values_list("error", flat=True)), celery_worker_process.log()[-4000:])

    wrapped = load_backend("cpu_baseline", {})
    expected_dimensions = {"image_fill": ["text_alignment", "consistency", "structure", "aesthetics"],
                           "image_extend": ["consistency", "structure", "aesthetics"]}
    for candidate_set in CandidateSet.objects.filter(batch=batch).select_related("input__task"):
        candidates = list(candidate_set.candidates.order_by("index"))
        assert [c.index for c in candidates] == [0, 1]
        for candidate in candidates:
            drawn = batch.settings_for(candidate_set.input, candidate.index)
            # The settings still remake the candidate; the record sits beside them.
            assert CandidateSettings.from_dict(candidate.settings) == drawn
            record = candidate.settings["record"]
            assert record["generator"] == "CPU baseline" and record["judge"] == str(judge)
            seeds = [c["seed"] for c in record["candidates"]]
            assert seeds == [drawn.seed * M + k for k in range(M)]
            scores = [c["score"] for c in record["candidates"]]
            assert all(0.0 <= s <= 1.0 for s in scores)
            assert record["kept"] == max(range(M), key=lambda k: (scores[k], -k))
            assert record["kept_seed"] == seeds[record["kept"]]
            # (JSON objects come back from PostgreSQL in its own key order.)
            dimensions = expected_dimensions[candidate_set.input.task.slug]
            assert set(record["weights"]) == set(dimensions) and sum(record["weights"].values()) == pytest.approx(1)
            for entry in record["candidates"]:
                assert set(entry["dimensions"]) == set(dimensions)
            for dimension in dimensions:
                matrix = record["p_yes"][dimension]
                assert len(matrix) == M and all(
                    (matrix[i][j] is None) == (i == j) for i in range(M) for j in range(M))

            # The stored image is the wrapped generator's candidate with the kept seed, pixel for pixel.
            request = requests_for(candidate_set, [candidate.index])[0]
            request.settings = CandidateSettings.from_dict({**drawn.as_dict(), "seed": record["kept_seed"]})
            again = np.asarray(wrapped.generate([request])[0].convert("RGB"))
            assert np.array_equal(again, pixels(candidate.image.name))
