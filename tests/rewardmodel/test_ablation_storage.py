"""A zero-shot judge ablation with S3 as the storage: the dataset version it scores is read from the
bucket into the ablation's directory (the files byte for byte), scored by the base model, and the
report is kept on the row (an ablation stores no file of its own in storage). Run in one process,
as a GPU worker runs it."""
import pytest

from rewardmodel.ablation import run_ablation, start_ablation
from rewardmodel.core.demo_judge import save_tiny_qwen
from rewardmodel.execution import stored_files as dataset_files
from tests.conftest import stored_files

from .ablation_world import judged_dataset

pytestmark = pytest.mark.django_db
pytest_plugins = ["tests.s3_server"]  # the s3_settings fixture


def test_a_zero_shot_ablation_reads_its_dataset_from_s3(s3_settings, make_user, settings, tmp_path):
    settings.ONEREWARD_TRAINING_DIR = tmp_path / "training"
    dataset = judged_dataset(make_user, sets=2)
    in_bucket = s3_settings.keys(f"{dataset.storage_prefix}/")
    assert in_bucket and stored_files() == []
    base = save_tiny_qwen(tmp_path / "base", seed=0)
    ablation = start_ablation(dataset=dataset, base_model=str(base), zero_shot=True, queue=False)
    run_ablation(ablation)
    ablation.refresh_from_db()
    assert ablation.status == "done", ablation.error
    assert ablation.results["pairs"] == dataset.pair_count == 8
    assert ablation.progress_done == ablation.progress_total == 8  # one column, every test pair
    copy = ablation.output_dir / "dataset"
    names = dataset_files(dataset)
    assert sorted(f"{dataset.storage_prefix}/{name}" for name in names) == in_bucket
    for name in names:
        assert (copy / name).read_bytes() == s3_settings.read(f"{dataset.storage_prefix}/{name}")
    assert s3_settings.keys(f"{dataset.storage_prefix}/") == in_bucket  # nothing written to storage
    assert stored_files() == []
