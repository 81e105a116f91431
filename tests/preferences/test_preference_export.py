"""Preference dataset versions: rows derived from judgments, filters, splits, hash, files, round trip."""
import json
from datetime import timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone

from annotation.models import AnnotatorStatus, SlotKind
from inputs.models import Dimension, Task
from preferences.export import build, create_dataset, write_dataset
from preferences.models import PreferenceDataset
from tests.annotation.world import make_tasks
from tests.conftest import photo, png_bytes
from tests.preferences.preference_world import judge

pytestmark = pytest.mark.django_db

FILL_DIMS = ("text_alignment", "consistency", "structure", "aesthetics")


def all_dims(best, worst):
    return {slug: (best, worst) for slug in FILL_DIMS}


def dataset(name="prefs", **fields) -> PreferenceDataset:
    return create_dataset(name=name, queue=False, **fields)


def built(name="prefs", **fields) -> PreferenceDataset:
    version = dataset(name, **fields)
    build(version)
    version.refresh_from_db()
    assert version.status == "done", version.error
    return version


def rows_of(version, split=None):
    rows = []
    for name in version.manifest["files"]:
        if name.startswith("data/") and (split is None or name.startswith(f"data/{split}-")):
            with default_storage.open(f"{version.storage_prefix}/{name}", "rb") as handle:
                rows += pq.read_table(handle).to_pylist()
    return rows


@pytest.fixture
def world(make_user):
    tasks = make_tasks(6, n=4, k=2)
    alice, bob = make_user("alice", "annotator"), make_user("bob", "annotator")
    return tasks, alice, bob


def test_best_worst_rows_match_the_judgments(world):
    tasks, alice, _ = world
    judge(tasks[0], alice, {"text_alignment": (0, 3), "consistency": (1, 2), "structure": None, "aesthetics": (2, 0)})
    version = built(train_fraction=1.0, validation_fraction=0.0, test_fraction=0.0)
    rows = rows_of(version, "train")
    got = sorted((r["dimension"], r["winner_index"], r["loser_index"], r["origin"]) for r in rows)
    assert got == [("aesthetics", 2, 0, "best>worst"), ("consistency", 1, 2, "best>worst"),
                   ("text_alignment", 0, 3, "best>worst")]
    row = next(r for r in rows if r["dimension"] == "text_alignment")
    candidates = {c.index: c for c in tasks[0].candidate_set.candidates.all()}
    item = tasks[0].candidate_set.input
    assert row["winner_candidate"] == str(candidates[0].public_id)
    assert row["loser_candidate"] == str(candidates[3].public_id)
    assert row["input_id"] == item.pk and row["input_hash"] == item.content_hash
    assert row["task"] == "image_fill" and row["prompt"] == item.prompt and row["prompt_given"] is True
    assert row["source"].startswith("file://") and row["source"].endswith(item.source.name)
    assert row["winner_image"].endswith(candidates[0].image.name)
    assert row["annotators"] == [alice.pk] and row["votes_for"] == 1 and row["votes_against"] == 0
    assert row["winner_generator"] == "baseline" and json.loads(row["winner_settings"]) == {"seed": 0}
    assert row["split"] == "train"
    assert version.pair_count == 3 and version.judgment_count == 1
    assert version.counts["image_fill"]["text_alignment"] == {"train": 1, "validation": 0, "test": 0}
    assert "structure" not in version.counts["image_fill"]  # discarded: no pair


def test_best_worst_all_and_several_annotators(world):
    tasks, alice, bob = world
    judge(tasks[0], alice, {"text_alignment": (0, 3)})
    judge(tasks[0], bob, {"text_alignment": (3, 0)})
    judge(tasks[1], alice, {"text_alignment": (1, 2)})
    judge(tasks[1], bob, {"text_alignment": (1, 0)})
    version = built(
        pairing="best_worst_all", tie_rule="drop", dimensions=Dimension.objects.filter(slug="text_alignment")
    )
    rows = {(r["candidate_set_id"], r["winner_index"], r["loser_index"]): r for r in rows_of(version)}
    set0, set1 = tasks[0].candidate_set_id, tasks[1].candidate_set_id
    # Task 0: the annotators' orders are exact opposites: every pair is a tie, and ties are dropped.
    assert not [key for key in rows if key[0] == set0]
    # Task 1: both say 1 is best -> 1 > 0, 1 > 2, 1 > 3 by both; 3 > 2 (alice) and 2 > 0 (bob) and 3 > 0 (bob).
    assert rows[set1, 1, 0]["votes_for"] == 2 and rows[set1, 1, 0]["soft_label"] == 1.0
    assert rows[set1, 1, 2]["votes_for"] == 2 and rows[set1, 1, 2]["origin"] == "best>worst"
    assert rows[set1, 1, 3]["votes_for"] == 2 and rows[set1, 1, 3]["origin"] == "best>other"
    assert rows[set1, 1, 0]["annotators"] == sorted([alice.pk, bob.pk])
    # 0 vs 2: alice says 0 > 2 (other>worst), bob says 2 > 0 (other>worst): a tie, dropped.
    assert (set1, 0, 2) not in rows and (set1, 2, 0) not in rows


def test_gold_repeat_and_paused_annotators_are_left_out_unless_asked(world, make_user):
    tasks, alice, bob = world
    carol = make_user("carol", "annotator")
    judge(tasks[0], alice, all_dims(0, 1))
    judge(tasks[0], alice, all_dims(0, 1), kind=SlotKind.REPEAT)
    tasks[1].is_gold = True
    tasks[1].save()
    judge(tasks[1], bob, all_dims(0, 1))  # regular judgment on a task marked gold later
    judge(tasks[2], carol, all_dims(0, 1))
    AnnotatorStatus.objects.create(user=carol, paused=True, reason="test")
    default = built()
    assert sorted({r["candidate_set_id"] for r in rows_of(default)}) == [tasks[0].candidate_set_id]
    assert default.judgment_count == 1
    everything = built(include_gold=True, include_repeats=True, good_standing_only=False)
    assert {r["candidate_set_id"] for r in rows_of(everything)} == {t.candidate_set_id for t in tasks[:3]}
    repeated = [r for r in rows_of(everything) if r["candidate_set_id"] == tasks[0].candidate_set_id]
    assert {r["votes_for"] for r in repeated} == {2}  # the repeat counts as a second vote


def test_filters_by_batch_task_dimension_annotator_and_date(world, make_user):
    tasks, alice, bob = world
    other = make_tasks(2, n=4, k=1, first_seed=50)
    removal = make_tasks(1, n=3, k=1, task="object_removal", first_seed=80)
    old = timezone.now() - timedelta(days=10)
    judge(tasks[0], alice, all_dims(0, 1), submitted_at=old)
    judge(tasks[1], bob, all_dims(2, 3))
    judge(other[0], alice, all_dims(1, 0))
    judge(removal[0], alice, {"removal_quality": (2, 1)})
    sets = lambda version: sorted({r["candidate_set_id"] for r in rows_of(version)})  # noqa: E731
    assert sets(built(batches=[tasks[0].candidate_set.batch])) == sorted(
        [tasks[0].candidate_set_id, tasks[1].candidate_set_id]
    )
    assert sets(built(tasks=Task.objects.filter(slug="object_removal"))) == [removal[0].candidate_set_id]
    assert {r["dimension"] for r in rows_of(built(dimensions=Dimension.objects.filter(slug="structure")))} == {
        "structure"
    }
    assert sets(built(annotators=[bob])) == [tasks[1].candidate_set_id]
    recent = built(submitted_from=timezone.now() - timedelta(days=1))
    assert tasks[0].candidate_set_id not in sets(recent) and len(sets(recent)) == 3
    assert sets(built(submitted_until=timezone.now() - timedelta(days=5))) == [tasks[0].candidate_set_id]


def test_splits_are_by_input_and_disjoint(make_user):
    tasks = make_tasks(60, n=4, k=1)
    alice = make_user("alice", "annotator")
    for task in tasks:
        judge(task, alice, all_dims(0, 1))
    version = built(
        pairing="best_worst_all", train_fraction=0.6, validation_fraction=0.2, test_fraction=0.2, split_seed=5
    )
    inputs = {split: {r["input_id"] for r in rows_of(version, split)} for split in ("train", "validation", "test")}
    assert all(inputs.values())
    assert not (inputs["train"] & inputs["validation"]) and not (inputs["train"] & inputs["test"])
    assert not (inputs["validation"] & inputs["test"])
    assert sum(map(len, inputs.values())) == 60
    assert version.manifest["inputs_per_split"] == {split: len(ids) for split, ids in inputs.items()}
    assert sum(r["rows"] for r in version.manifest["files"].values()) == version.pair_count == 60 * 4 * 5


def test_the_same_filters_give_the_same_hash_and_a_changed_judgment_changes_it(world):
    tasks, alice, bob = world
    judge(tasks[0], alice, all_dims(0, 1))
    judgment = judge(tasks[1], bob, all_dims(2, 3))
    first, second = built("a"), built("a")
    assert (first.version, second.version) == (1, 2)
    assert first.content_hash == second.content_hash and len(first.content_hash) == 64
    pick = judgment.picks.get(dimension__slug="structure")
    pick.best, pick.worst = pick.worst, pick.best
    pick.save()
    assert built("a").content_hash != first.content_hash
    assert built("a", pairing="best_worst_all").content_hash != first.content_hash
    assert built("a", split_seed=9).content_hash != first.content_hash


def test_round_trip_through_datasets_and_pandas(world):
    datasets = pytest.importorskip("datasets")
    import pandas

    tasks, alice, bob = world
    expected = set()
    for i, task in enumerate(tasks):
        best, worst = i % 4, (i + 1) % 4
        judge(task, alice, all_dims(best, worst))
        for slug in FILL_DIMS:
            expected.add((task.candidate_set_id, slug, best, worst))
    version = built(formats=["jsonl", "trl"], train_fraction=0.5, validation_fraction=0.25, test_fraction=0.25)
    folder = Path(default_storage.path(version.storage_prefix))
    files = {split: str(folder / f"data/{split}-*.parquet") for split in ("train", "validation", "test")
             if list(folder.glob(f"data/{split}-*.parquet"))}
    loaded = datasets.load_dataset("parquet", data_files=files)
    got = {(r["candidate_set_id"], r["dimension"], r["winner_index"], r["loser_index"])
           for split in loaded for r in loaded[split]}
    assert got == expected
    frame = pandas.read_parquet(folder / "data")
    assert len(frame) == len(expected) and set(frame["split"]) <= {"train", "validation", "test"}
    jsonl = [json.loads(line) for path in folder.glob("jsonl/*.jsonl") for line in path.read_text().splitlines()]
    assert sorted(r["pair_id"] for r in jsonl) == sorted(frame["pair_id"])
    trl = datasets.load_dataset("parquet", data_files={s: str(folder / f"trl/{s}-*.parquet") for s in files})
    row = trl[next(iter(files))][0]
    assert set(row) >= {"prompt", "images", "chosen", "rejected"} and len(row["images"]) == 2
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["content_hash"] == version.content_hash and manifest["schema_version"] == 1
    assert manifest["pairs"] == len(expected)
    assert manifest["taxonomy"]["dimensions"]["structure"]["name"] == "Structure"
    assert manifest["taxonomy"]["tasks"]["image_fill"]["name"] == "Image fill"


def test_embedded_images_load_as_images(make_user):
    datasets = pytest.importorskip("datasets")
    tasks = make_tasks(2, n=3, k=1)
    alice = make_user("alice", "annotator")
    for task in tasks:
        for candidate in task.candidate_set.candidates.all():
            default_storage.save(candidate.image.name, ContentFile(png_bytes(photo(32, 32, seed=candidate.index))))
        judge(task, alice, all_dims(2, 0))
    version = built(embed_images=True, train_fraction=1, validation_fraction=0, test_fraction=0)
    folder = Path(default_storage.path(version.storage_prefix))
    loaded = datasets.load_dataset("parquet", data_files={"train": str(folder / "data/train-*.parquet")})["train"]
    row = loaded[0]
    assert row["winner_image"].size == (32, 32) and row["source"].size == (32, 32)
    assert row["mask"].mode in {"L", "1"}


def test_bad_options_are_refused_and_nothing_is_saved(world):
    with pytest.raises(ValidationError) as error:
        dataset(train_fraction=0.9, validation_fraction=0.1, test_fraction=0.1)
    assert "add up to 1.1" in str(error.value)
    with pytest.raises(ValidationError, match="formats"):
        dataset(formats=["csv"])
    with pytest.raises(ValidationError, match="pairing"):
        dataset(pairing="all_pairs")
    with pytest.raises(ValidationError, match="after its start"):
        dataset(submitted_from=timezone.now(), submitted_until=timezone.now() - timedelta(days=1))
    assert not PreferenceDataset.objects.exists()


def test_an_empty_selection_builds_an_empty_dataset(world):
    version = built()
    assert version.pair_count == 0 and version.manifest["files"] == {}


def test_write_dataset_streams_in_buffers(world, monkeypatch, tmp_path):
    # More sets than one buffer: the result must not depend on where buffers are cut.
    import preferences.export as export

    tasks = make_tasks(30, n=4, k=1, first_seed=100)
    _, alice, _ = world
    for i, task in enumerate(tasks):
        judge(task, alice, all_dims(i % 4, (i + 2) % 4))
    version = dataset()
    whole = write_dataset(version, tmp_path / "whole")
    monkeypatch.setattr(export, "SETS_PER_BUFFER", 4)
    calls = []
    cut = write_dataset(version, tmp_path / "cut", progress=lambda done, total: calls.append((done, total)))
    assert cut["content_hash"] == whole["content_hash"] and cut["pairs"] == 30 * 4
    assert len(calls) > 5 and calls[-1] == (30, 30)


def test_large_splits_are_sharded(world, monkeypatch, tmp_path):
    import preferences.core.files as files

    tasks, alice, _ = world
    for task in tasks:
        judge(task, alice, all_dims(0, 1))
    monkeypatch.setattr(files, "BATCH_ROWS", 3)
    monkeypatch.setattr(files, "SHARD_ROWS", 5)
    version = dataset(pairing="best_worst_all", formats=["jsonl", "trl"], train_fraction=1, validation_fraction=0,
                      test_fraction=0)
    manifest = write_dataset(version, tmp_path)
    shards = sorted(name for name in manifest["files"] if name.startswith("data/"))
    assert shards[:3] == ["data/train-00000.parquet", "data/train-00001.parquet", "data/train-00002.parquet"]
    assert all(manifest["files"][name]["rows"] == 6 for name in shards[:-1])  # 2 writes of 3, then a new shard
    assert sum(manifest["files"][name]["rows"] for name in shards) == manifest["pairs"] == 6 * 4 * 5
    for prefix in ("jsonl/", "trl/"):
        assert (
            sum(info["rows"] for name, info in manifest["files"].items() if name.startswith(prefix))
            == manifest["pairs"]
        )
    assert pq.read_table(tmp_path / "data").num_rows == manifest["pairs"]


def test_split_warnings_on_hand_made_counts():
    from preferences.core.splits import split_warnings

    fractions = {"train": 0.9, "validation": 0.05, "test": 0.05}
    assert split_warnings(fractions, {"train": 40, "validation": 12, "test": 11},
                          {"train": 400, "validation": 120, "test": 110}) == []
    assert split_warnings(fractions, {"train": 11, "validation": 0, "test": 0}, {"train": 22}) == [
        "the validation split got no inputs (11 inputs in all, 5% share): a reward-model run cannot validate "
        "(no validation loss or accuracy); raise its share or add inputs",
        "the test split got no inputs (11 inputs in all, 5% share): a reward model trained on it cannot be "
        "evaluated; raise its share or add inputs"]
    assert split_warnings({**fractions, "validation": 0.0}, {"train": 9, "validation": 0, "test": 3},
                          {"train": 90, "validation": 0, "test": 0}) == [
        "the test split got 3 inputs but no pairs: a reward model trained on it cannot be evaluated"]
    assert split_warnings(fractions, {"train": 30, "validation": 1, "test": 20},
                          {"train": 300, "validation": 4, "test": 200}) == [
        "the validation split has only 1 input (4 pairs): figures measured on it are noisy; aim for 10 or more"]


def test_a_version_whose_small_splits_got_no_inputs_says_so(make_user, client):
    """Eleven inputs at the default 90/5/5 shares: the hash puts every one of them in train here, and
    the version reports the empty splits in its manifest, its API record and its admin page."""
    from rest_framework.test import APIClient

    tasks = make_tasks(11, n=3, k=1)
    alice = make_user("alice", "annotator")
    for task in tasks:
        judge(task, alice, all_dims(0, 1))
    version = built()
    per_split = version.manifest["inputs_per_split"]
    assert per_split == {"train": len({r["input_id"] for r in rows_of(version, "train")}),
                         "validation": len({r["input_id"] for r in rows_of(version, "validation")}),
                         "test": len({r["input_id"] for r in rows_of(version, "test")})}
    empty = [split for split in ("validation", "test") if per_split[split] == 0]
    assert empty, per_split  # the case this test is about: a 5 % split of 11 inputs left empty
    warnings = version.manifest["warnings"]
    assert [w.split(" split ")[0] for w in warnings if "got no inputs" in w] == [f"the {s}" for s in empty]
    admin = make_user("eve", "ml_engineer")
    api = APIClient()
    api.force_authenticate(admin)
    record = api.get(f"/api/preference-datasets/{version.pk}/").json()
    assert record["warnings"] == warnings and record["inputs_per_split"] == per_split
    client.force_login(admin)
    page = client.get(f"/admin/preferences/preferencedataset/{version.pk}/change/").content.decode()
    assert "got no inputs" in page and f"train {per_split['train']}, validation {per_split['validation']}" in page


def test_storage_uris_are_those_of_pathlib():
    from preferences.export import storage_uri

    for name in ["inputs/a b%c.png", "inputs/été 東京.png", "x/./y//z.png", "q?#&=+~.png"]:
        assert storage_uri(name) == Path(default_storage.path(name)).as_uri()
