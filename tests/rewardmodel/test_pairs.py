"""Reading exported preference datasets: file URIs, embedded images, S3, queries, order."""
import numpy as np
import pytest
import torch
from PIL import Image

from preferences.core import files as preference_files
from rewardmodel.core.pairs import PreferencePairs, collate_pairs
from rewardmodel.core.query import build_query

from .synthetic_pairs import brightness_pairs, row, save_image, taxonomy, texture, write_dataset


@pytest.fixture
def dataset(tmp_path):
    return brightness_pairs(tmp_path / "data", {"train": 12, "validation": 2, "test": 5}, size=56, seed=3)


def test_items_carry_images_query_and_labels(dataset):
    pairs = PreferencePairs(dataset, "train")
    assert len(pairs) == 12
    item = pairs[4]
    assert item["winner"].shape == (3, 56, 56) and item["loser"].shape == (3, 56, 56)
    assert item["winner"].dtype == torch.float32
    assert 0.0 <= float(item["winner"].min()) and float(item["winner"].max()) <= 1.0
    # The synthetic rule: the winner is the brighter image.
    assert item["winner"].mean() > item["loser"].mean() + 0.1
    row_values = pairs.row(4)
    assert item["query"] == build_query(taxonomy(), row_values["task"], row_values["dimension"], row_values["prompt"])
    assert item["task"] == row_values["task"] and item["dimension"] == row_values["dimension"]
    for key in ("pair_id", "candidate_set_id", "input_id", "soft_label", "weight", "votes_for", "votes_against"):
        assert key in item
    assert item["weight"] == 1.0 and item["votes_for"] == 1 and item["votes_against"] == 0
    # Only the text-alignment queries quote the prompt.
    queries = {pairs[i]["dimension"]: pairs[i]["query"] for i in range(len(pairs))}
    assert "a red cup" in queries["text_alignment"] and "a red cup" not in queries["consistency"]


def test_splits_are_separate_and_an_absent_split_is_empty(tmp_path):
    folder = brightness_pairs(tmp_path / "data", {"train": 3, "test": 2})
    assert len(PreferencePairs(folder, "train")) == 3
    assert len(PreferencePairs(folder, "test")) == 2
    assert len(PreferencePairs(folder, "validation")) == 0
    with pytest.raises(ValueError, match="unknown split"):
        PreferencePairs(folder, "dev")


def test_a_folder_without_manifest_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="manifest.json"):
        PreferencePairs(tmp_path, "train")


def test_image_size_resizes_both_images(dataset):
    item = PreferencePairs(dataset, "test", image_size=(28, 42))[0]
    assert item["winner"].shape == (3, 28, 42) and item["loser"].shape == (3, 28, 42)


def test_collate_keeps_images_of_different_sizes_as_lists(tmp_path):
    rows = []
    for index, (height, width) in enumerate([(56, 56), (56, 84), (84, 56)]):
        winner = save_image(np.full((height, width, 3), 200, np.uint8), tmp_path / f"w{index}.png", False)
        loser = save_image(np.full((height, width, 3), 50, np.uint8), tmp_path / f"l{index}.png", False)
        rows.append(row(candidate_set_id=index + 1, winner_image=winner, loser_image=loser, weight=0.5 * (index + 1)))
    folder = write_dataset(tmp_path / "data", rows)
    pairs = PreferencePairs(folder, "train")
    batch = collate_pairs([pairs[i] for i in range(3)])
    assert [tuple(image.shape) for image in batch["winner"]] == [(3, 56, 56), (3, 56, 84), (3, 84, 56)]
    assert isinstance(batch["query"], list) and len(batch["query"]) == 3
    assert torch.equal(batch["weight"], torch.tensor([0.5, 1.0, 1.5]))


def test_embedded_images_read_row_group_by_row_group(tmp_path, monkeypatch):
    monkeypatch.setattr(preference_files, "BATCH_ROWS", 4)  # row groups of 4 rows
    embedded = brightness_pairs(tmp_path / "embedded", {"train": 10}, seed=5, embed_images=True)
    plain = brightness_pairs(tmp_path / "plain", {"train": 10}, seed=5)
    pairs, reference = PreferencePairs(embedded, "train", cache_row_groups=1), PreferencePairs(plain, "train")
    assert pairs.embedded and not reference.embedded
    assert len(pairs._groups) == 3
    # Images are not read up front: the narrow table has no image column.
    assert "winner_image" not in pairs.table.column_names
    for index in (9, 0, 5, 4, 3):
        item, expected = pairs[index], reference[index]
        assert torch.equal(item["winner"], expected["winner"]) and torch.equal(item["loser"], expected["loser"])
        assert item["pair_id"] == expected["pair_id"]
    assert len(pairs._cache) == 1
    # A pass in `order` reads each row group once: rows of one group are consecutive.
    order = pairs.order(seed=0, epoch=0)
    assert sorted(order.tolist()) == list(range(10))
    groups = [int(np.searchsorted(pairs._group_starts, i, side="right")) - 1 for i in order]
    assert sum(a != b for a, b in zip(groups, groups[1:])) == 2


def test_order_is_a_seeded_permutation_per_epoch(dataset):
    pairs = PreferencePairs(dataset, "train")
    first = pairs.order(seed=7, epoch=0)
    assert sorted(first.tolist()) == list(range(len(pairs)))
    assert np.array_equal(first, pairs.order(seed=7, epoch=0))
    assert not np.array_equal(first, pairs.order(seed=7, epoch=1))
    assert not np.array_equal(first, pairs.order(seed=8, epoch=0))


def test_images_from_s3(tmp_path, monkeypatch):
    moto = pytest.importorskip("moto")
    import boto3

    for name, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    for name in ("ONEREWARD_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "ONEREWARD_S3_ACCESS_KEY_ID",
                 "ONEREWARD_S3_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    with moto.mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="prefs")
        rng = np.random.default_rng(1)
        local = tmp_path / "local"
        rows = []
        for index in range(2):
            uris = []
            for side, level in (("w", 0.8), ("l", 0.3)):
                path = local / f"{index}{side}.png"
                save_image(texture(rng, 56, level), path, False)
                key = f"media/candidates/{index}{side}.png"
                client.put_object(Bucket="prefs", Key=key, Body=path.read_bytes())
                uris.append(f"s3://prefs/{key}")
            rows.append(row(candidate_set_id=index + 1, winner_image=uris[0], loser_image=uris[1]))
        folder = write_dataset(tmp_path / "data", rows)
        pairs = PreferencePairs(folder, "train")
        item = pairs[1]
    expected = torch.from_numpy(np.array(Image.open(local / "1w.png"))).permute(2, 0, 1)
    assert torch.equal((item["winner"] * 255).round().to(torch.uint8), expected)
    assert item["winner"].mean() > item["loser"].mean()
