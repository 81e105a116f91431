"""Simulated annotators judge through the page's own code path, by an oracle computed from the
pixels; their judgments are marked, left out of datasets unless asked, and listed apart in QC.
The ground truth here is set by the test: candidate i of every set is painted with a known
brightness inside the mask, and the shown order is the server's shuffle."""
import random

import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command
from PIL import Image

from annotation.core.oracles import Brightness, load_oracle, pick
from annotation.models import Judgment, QualityControlSettings, SimulatedAnnotator, Slot
from annotation.quality import annotator_report
from annotation.simulation import simulate, simulated_annotators
from preferences.export import build, create_dataset
from tests.annotation.world import make_tasks
from tests.conftest import png_bytes

pytestmark = pytest.mark.django_db
LEVELS = [0.55, 0.15, 0.85, 0.35]  # candidate index -> brightness inside the mask: 2 brightest, 1 darkest


class Darkness:
    """A plug-in oracle (loaded by its dotted path): prefers the darker masked area."""

    name = "darkness"

    def scores(self, task, dimension, source, mask, candidates):
        return [-float(candidate[mask].mean()) for candidate in candidates]


@pytest.fixture
def world():
    settings = QualityControlSettings.current()
    settings.gold_rate = settings.repeat_share = 0.0
    settings.save()
    tasks = make_tasks(6, n=4, k=2)
    for task in tasks:
        item = task.candidate_set.input
        # make_tasks stores 32 x 32 inputs with this box as the mask.
        assert np.asarray(Image.open(item.mask)).shape == (32, 32)
        for candidate in task.candidate_set.candidates.all():
            pixels = np.full((32, 32, 3), 0.5)
            pixels[8:24, 8:24] = LEVELS[candidate.index]
            image = Image.fromarray((pixels * 255).round().astype(np.uint8))
            default_storage.save(candidate.image.name, ContentFile(png_bytes(image)))
    return tasks


def winners(judgment) -> set[tuple[int, int]]:
    return {(pick.best.index, pick.worst.index) for pick in judgment.picks.all() if not pick.discarded}


def test_without_noise_every_answer_is_the_oracles_through_the_page_code(world):
    users = simulated_annotators("brightness", 3, noise=0.0)
    report = simulate(users)
    assert report.judged == Judgment.objects.count() == 6 * 2 and not report.refused
    assert not Slot.objects.exclude(state="done").exists()
    for judgment in Judgment.objects.all():
        assert winners(judgment) == {(2, 1)}  # brightest best, darkest worst, whatever the shown order
        assert judgment.annotator.simulated_annotator.oracle == "brightness"
    assert len({tuple(j.shown_order) for j in Judgment.objects.all()}) > 1  # the shuffle was not the identity

    plug_in = simulated_annotators("tests.annotation.test_simulation:Darkness", 1, noise=0.0)
    world_two = make_tasks(1, n=4, k=1, first_seed=50)
    for candidate in world_two[0].candidate_set.candidates.all():
        pixels = np.full((32, 32, 3), 0.5)
        pixels[8:24, 8:24] = LEVELS[candidate.index]
        default_storage.save(candidate.image.name,
                             ContentFile(png_bytes(Image.fromarray((pixels * 255).round().astype(np.uint8)))))
    assert simulate(plug_in).judged == 1
    assert winners(Judgment.objects.get(task=world_two[0])) == {(1, 2)}


def test_noise_gives_random_answers_and_the_same_seed_the_same_ones(world):
    users = simulated_annotators("brightness", 2, noise=1.0, seed=7)
    simulate(users)
    answers = [winners(j) for j in Judgment.objects.order_by("task_id", "annotator_id")]
    assert any(answer != {(2, 1)} for answer in answers)
    assert pick([0.1, 0.9, 0.5], noise=0.0, rng=random.Random(0)) == (1, 0)
    assert pick([0.3, 0.3, 0.3], noise=0.0, rng=random.Random(0)) is None


def test_datasets_leave_simulated_judgments_out_unless_asked(world):
    simulate(simulated_annotators("brightness", 2, noise=0.0))
    default = create_dataset(name="people-only", queue=False)
    build(default)
    default.refresh_from_db()
    assert default.pair_count == 0 and default.judgment_count == 0
    with_sim = create_dataset(name="with-sim", queue=False, include_simulated=True)
    build(with_sim)
    with_sim.refresh_from_db()
    assert with_sim.judgment_count == 12 and with_sim.pair_count > 0
    assert with_sim.manifest["options"]["include_simulated"] is True


def test_qc_lists_simulated_annotators_apart(world, make_user):
    simulate(simulated_annotators("brightness", 1, noise=0.25), max_tasks=2)
    rows = annotator_report()
    simulated = [row for row in rows if row.simulated]
    assert [row.simulated for row in simulated] == ["brightness, noise 0.25"]
    assert rows[-1].simulated  # after the people


def test_the_command(world, capsys):
    call_command("simulate_annotators", "--oracle", "brightness", "--annotators", "2", "--max-tasks", "3")
    out = capsys.readouterr().out
    assert out.startswith("3 judgments by 2 simulated annotators") and Judgment.objects.count() == 3
    assert SimulatedAnnotator.objects.count() == 2
    with pytest.raises(CommandError, match="unknown oracle 'nope'"):
        call_command("simulate_annotators", "--oracle", "nope")
    call_command("simulate_annotators", "--oracle", "brightness", "--studies")
    assert capsys.readouterr().out.startswith("0 study judgments")  # no study yet
    with pytest.raises(CommandError, match="no study with id"):
        call_command("simulate_annotators", "--oracle", "brightness", "--studies", "--study", "999999")
    with pytest.raises(CommandError, match="no generation batch"):
        call_command("simulate_annotators", "--oracle", "brightness", "--batch", "999999")
    other = make_tasks(1, n=4, k=1, first_seed=90)[0].candidate_set.batch
    call_command("simulate_annotators", "--oracle", "brightness", "--annotators", "1", "--batch", str(other.pk),
                 "--max-tasks", "5")
    assert Judgment.objects.filter(task__candidate_set__batch=other).count() == 0  # no images: nothing judged


def test_oracles_score_by_their_rule():
    mask = np.zeros((4, 4), bool)
    mask[1:3, 1:3] = True
    dark, bright = np.full((4, 4, 3), 0.2), np.full((4, 4, 3), 0.2)
    bright[mask] = 0.9
    assert Brightness().scores("image_fill", "structure", dark, mask, [dark, bright]) == pytest.approx([0.2, 0.9])
    green = np.zeros((4, 4, 3))
    green[mask] = (0.2, 0.6, 0.3)
    scores = load_oracle("target-colour").scores("image_fill", "structure", dark, mask, [dark, green])
    assert scores[1] == pytest.approx(0.0) and scores[0] < scores[1]
    assert len(load_oracle("random").scores("x", "y", dark, mask, [dark] * 3)) == 3


def test_study_items_are_judged_by_the_oracle_through_the_study_code(world):
    """Two arms over the same inputs, the second's candidates brighter in the mask: the brightness
    oracle prefers it on every dimension of every item, and the report's good/same/bad says so."""
    from evaluation.simulation import simulate_studies
    from evaluation.studies import create_study, study_report
    from generation.models import Candidate, CandidateSet, GenerationBatch, Generator

    inputs = [task.candidate_set.input for task in world[:3]]
    arms = []
    for label, level in (("dark", 0.2), ("bright", 0.8)):
        generator = Generator.objects.create(name=f"{label} generator", backend="cpu_baseline")
        batch = GenerationBatch.objects.create(generator=generator, candidates_per_input=1, status="done",
                                               for_annotation=False, name=label)
        for item in inputs:
            candidate_set = CandidateSet.objects.create(batch=batch, input=item, status="done")
            candidate = Candidate.objects.create(candidate_set=candidate_set, index=0, seconds=0.0, settings={},
                                                 image=f"c/{label}-{item.pk}.png", thumbnail=f"c/{item.pk}.jpg")
            pixels = np.full((32, 32, 3), 0.5)
            pixels[8:24, 8:24] = level
            default_storage.save(candidate.image.name,
                                 ContentFile(png_bytes(Image.fromarray((pixels * 255).round().astype(np.uint8)))))
        arms.append((batch, label))
    study = create_study("dark vs bright", arms, judgments_per_item=2)
    report = simulate_studies(simulated_annotators("brightness", 2, noise=0.0), study=study)
    assert report.judged == 3 * 2 and not report.refused
    blocks = {(block["a"], block["b"]): block for block in study_report(study)["gsb"]}
    for (a, _), block in blocks.items():
        for row in (row for task in block["tasks"] for row in task["rows"]):
            assert row["total"] == 6 and row["same"] == 0
            assert (row["good"], row["bad"]) == ((6, 0) if a == "bright" else (0, 6)), (a, row)
    assert set(blocks) == {("dark", "bright"), ("bright", "dark")}
