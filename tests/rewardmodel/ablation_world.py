"""A small world for judge ablations: candidate sets judged by three annotators, a dataset version
built from them (every input in the test split), and a "trained" version whose run directory holds
the dataset copy and a saved tiny judge (the version is registered by hand; training is tested
elsewhere).

Per set (3 candidates), as the export pairs them (best/worst, majority):
  structure       alice and bob pick 0 best, 2 worst; carol 2 best, 0 worst -> one row 0 > 2, votes 2-1,
                  listing alice and bob (carol's vote against is only in her judgment)
  aesthetics      alice and bob 1 / 2, carol 1 / 0 -> rows 1 > 2 and 1 > 0, votes 3-0
  text alignment  everyone 0 / 1 -> one row 0 > 1, votes 3-0
Leave one out: on structure alice and bob each face the others tied (1/2), carol faces 2-0 against her
(0): 1/3; on a 3-0 pair everyone agrees with the others: 1. Over a set's 12 votes: 10/12.
"""
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from preferences.export import build, create_dataset
from preferences.models import PreferenceDataset
from rewardmodel.core.demo_judge import save_tiny_qwen
from rewardmodel.core.judge import Judge
from rewardmodel.execution import copy_dataset
from rewardmodel.models import RewardModelRun, RewardModelVersion
from tests.annotation.world import make_tasks
from tests.conftest import photo, png_bytes
from tests.preferences.preference_world import judge

PICKS = {
    "alice": {"structure": (0, 2), "aesthetics": (1, 2), "text_alignment": (0, 1)},
    "bob": {"structure": (0, 2), "aesthetics": (1, 2), "text_alignment": (0, 1)},
    "carol": {"structure": (2, 0), "aesthetics": (1, 0), "text_alignment": (0, 1)},
}
# The hand-worked leave-one-out figures above.
CEILING = {"structure": 1 / 3, "aesthetics": 1.0, "text_alignment": 1.0, "all": 10 / 12}
WITH_OTHERS = {"alice": (0.5 + 3) / 4, "bob": (0.5 + 3) / 4, "carol": (0 + 3) / 4}


def judged_dataset(make_user, sets: int = 4, name: str = "ablation-prefs", first_seed: int = 0) -> PreferenceDataset:
    tasks = make_tasks(sets, n=3, k=3, first_seed=first_seed)
    users = {username: make_user(username, "annotator") for username in PICKS}
    for task in tasks:
        for candidate in task.candidate_set.candidates.all():
            default_storage.save(candidate.image.name, ContentFile(png_bytes(photo(32, 32, seed=candidate.index))))
        for username, picks in PICKS.items():
            judge(task, users[username], picks)
    dataset = create_dataset(name=name, queue=False, batches=[tasks[0].candidate_set.batch], train_fraction=0.0,
                             validation_fraction=0.0, test_fraction=1.0)
    build(dataset)
    dataset = PreferenceDataset.objects.get(pk=dataset.pk)
    assert dataset.status == "done" and dataset.pair_count == 4 * sets, (dataset.error, dataset.pair_count)
    return dataset


def registered_version(dataset: PreferenceDataset, base_dir, model_dir, name: str = "judge-a",
                       seed: int = 1) -> RewardModelVersion:
    """A version of `dataset` whose saved judge is a tiny model of `seed` (the base is seed 0)."""
    if not (base_dir / "config.json").exists():
        save_tiny_qwen(base_dir, seed=0)
    run = RewardModelRun.objects.create(dataset=dataset, status="done", base_model=str(base_dir), name=name)
    copy_dataset(run)
    Judge.from_pretrained(str(save_tiny_qwen(model_dir, seed=seed))).save_pretrained(run.output_dir / "model")
    return RewardModelVersion.objects.create(run=run, name=name, model_path=str(run.output_dir / "model"),
                                             base_model=str(base_dir), template_version=1)


def expected_agreement(rows: list[dict], scores: dict, username: str) -> float:
    """An annotator's agreement with the judge's averaged verdict, from PICKS (not from the database):
    on each pair, did they prefer the row's winner, and does the judge?"""
    total = 0.0
    for row in rows:
        best, worst = PICKS[username][row["dimension"]]
        prefers_winner = row["winner_index"] == best or row["loser_index"] == worst
        p_forward, p_reversed = scores[row["pair_id"]]
        s = (p_forward + 1 - p_reversed) / 2
        judge_for_winner = 1.0 if s > 0.5 else 0.5 if s == 0.5 else 0.0
        total += judge_for_winner if prefers_winner else 1 - judge_for_winner
    return total / len(rows)
