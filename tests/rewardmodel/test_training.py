"""The trainer on one CPU process: config, loss, accumulation, checkpoints and exact resume, outputs."""
import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from mlcore.rundir import RunDirectory
from rewardmodel.core import train as train_cli
from rewardmodel.core.config import ConfigError, TrainingConfig
from rewardmodel.core.demo_judge import save_tiny_qwen
from rewardmodel.core.judge import Judge
from rewardmodel.core.pairs import PreferencePairs, collate_pairs
from rewardmodel.core.query import TEMPLATE_VERSION
from rewardmodel.core.training import train

from .synthetic_pairs import brightness_pairs

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return save_tiny_qwen(tmp_path_factory.mktemp("tiny") / "model", seed=0)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return brightness_pairs(
        tmp_path_factory.mktemp("data") / "set",
        {"train": 32, "validation": 6, "test": 10},
        seed=4,
        weights=lambda i: (0.5, 1.0, 2.0, 0.0)[i % 4],
    )


def config(dataset, tiny, output, **overrides) -> TrainingConfig:
    values = dict(dataset_dir=str(dataset), output_dir=str(output), base_model=str(tiny), learning_rate=1e-3,
                  batch_size=8, max_steps=4, log_every=1, save_every=100, zero_shot_eval=False, seed=0)
    values.update(overrides)
    return TrainingConfig(**values)


def losses(output) -> list[float]:
    return [line["loss"] for line in metrics(output) if "loss" in line]


def metrics(output) -> list[dict]:
    return [json.loads(line) for line in (Path(output) / "metrics.jsonl").read_text().splitlines()]


# --- configuration ------------------------------------------------------------------------------------


def test_config_from_dict_checks_names_types_and_values(tmp_path):
    base = {"dataset_dir": "d", "output_dir": "o", "base_model": "m"}
    assert TrainingConfig.from_dict(base).as_dict()["learning_rate"] == 1e-6
    assert TrainingConfig.from_dict(TrainingConfig.from_dict(base).as_dict()) == TrainingConfig.from_dict(base)
    with pytest.raises(ConfigError, match="unknown training option.*learning_rat\\b"):
        TrainingConfig.from_dict({**base, "learning_rat": 1e-5})
    with pytest.raises(ConfigError, match="missing training option.*base_model"):
        TrainingConfig.from_dict({"dataset_dir": "d", "output_dir": "o"})
    with pytest.raises(ConfigError, match="batch_size: must be int"):
        TrainingConfig.from_dict({**base, "batch_size": "16"})
    with pytest.raises(ConfigError, match="batch_size: must be int"):
        TrainingConfig.from_dict({**base, "batch_size": True})
    with pytest.raises(ConfigError, match="learning_rate: must lie in"):
        TrainingConfig.from_dict({**base, "learning_rate": 0})
    with pytest.raises(ConfigError, match="mixed_precision"):
        TrainingConfig.from_dict({**base, "mixed_precision": "fp8"})
    with pytest.raises(ConfigError, match="per_device_batch_size: 5 does not divide"):
        TrainingConfig.from_dict({**base, "per_device_batch_size": 5})
    with pytest.raises(ConfigError, match="adapter_rank: must be at least 1"):
        TrainingConfig.from_dict({**base, "adapter_rank": 0})
    # Optional options may be null, as the platform writes them.
    assert TrainingConfig.from_dict({**base, "adapter_rank": None, "max_steps": None,
                                     "per_device_batch_size": None}).adapter_rank is None


def test_the_platforms_run_config_is_a_training_config():
    from rewardmodel.models import RewardModelRun

    run = RewardModelRun(base_model="some/model", adapter_rank=16, per_device_batch_size=4, max_steps=10,
                         extra={"weighted_loss": True, "log_every": 5})
    config = TrainingConfig.from_dict(run.training_config())
    assert config.adapter_rank == 16 and config.weighted_loss and config.log_every == 5


def test_cli_exits_non_zero_with_a_clear_message(tmp_path, dataset, tiny, capsys):
    assert train_cli.main(["--dataset", str(dataset), "--output", str(tmp_path), "--base-model", str(tiny),
                           "--batch-size", "0"]) == 2
    assert "batch_size: must be at least 1" in capsys.readouterr().err
    assert train_cli.main(["--dataset", str(tmp_path / "nowhere"), "--output", str(tmp_path),
                           "--base-model", str(tiny)]) == 2
    assert "manifest.json is missing" in capsys.readouterr().err
    (tmp_path / "config.json").write_text(json.dumps({"dataset_dir": str(dataset), "output_dir": str(tmp_path),
                                                      "base_model": str(tiny), "batch_size": 64}))
    assert train_cli.main(["--config", str(tmp_path / "config.json")]) == 2
    assert "fewer than one batch of 64" in capsys.readouterr().err
    # The real entry point, as a subprocess.
    done = subprocess.run([sys.executable, "-m", "rewardmodel.core.train", "--config", str(tmp_path / "missing.json")],
                          cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 2 and "cannot read --config" in done.stderr


# --- the loss ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("weighted", [False, True])
def test_first_step_loss_is_the_pair_loss_of_the_first_batch(tmp_path, dataset, tiny, weighted):
    cfg = config(dataset, tiny, tmp_path / "run", max_steps=1, weighted_loss=weighted)
    train(cfg)
    pairs = PreferencePairs(dataset, "train")
    indices = pairs.order(cfg.seed, 0)[: cfg.batch_size]
    batch = collate_pairs([pairs[int(i)] for i in indices])
    judge = Judge.from_pretrained(str(tiny), device="cpu", dtype="float32")
    with torch.no_grad():
        yes_forward, _ = judge.answer_logprobs(batch["winner"], batch["loser"], batch["query"])
        _, no_reversed = judge.answer_logprobs(batch["loser"], batch["winner"], batch["query"])
    per_pair = -0.5 * (yes_forward + no_reversed)
    weights = batch["weight"] if weighted else torch.ones(len(indices))
    expected = float((weights * per_pair).sum() / weights.sum())
    assert losses(tmp_path / "run")[0] == pytest.approx(expected, rel=1e-5)


def test_gradient_accumulation_gives_the_same_steps(tmp_path, dataset, tiny):
    train(config(dataset, tiny, tmp_path / "whole"))
    train(config(dataset, tiny, tmp_path / "accumulated", per_device_batch_size=2))
    resolved = json.loads((tmp_path / "accumulated" / "config.resolved.json").read_text())
    assert resolved["accumulation_steps"] == 4
    assert losses(tmp_path / "accumulated") == pytest.approx(losses(tmp_path / "whole"), rel=1e-5)
    assert losses(tmp_path / "whole")[-1] < losses(tmp_path / "whole")[0]


# --- checkpoints and resume --------------------------------------------------------------------------------


class Interrupted(Exception):
    pass


def test_an_interrupted_run_resumes_on_the_same_loss_curve(tmp_path, dataset, tiny):
    # 32 pairs / 8 = 4 steps per epoch: 7 steps cross an epoch boundary.
    common = dict(max_steps=7, save_every=2, keep_checkpoints=2, warmup_steps=2)
    whole = train(config(dataset, tiny, tmp_path / "whole", **common))

    def crash_at_step_5(update):
        if update["step"] == 5:
            raise Interrupted

    with pytest.raises(Interrupted):
        train(config(dataset, tiny, tmp_path / "resumed", **common), progress=crash_at_step_5)
    assert [line["step"] for line in metrics(tmp_path / "resumed")] == [1, 2, 3, 4, 5]
    assert RunDirectory(tmp_path / "resumed").latest_checkpoint().name == "step-4"
    resumed = train(config(dataset, tiny, tmp_path / "resumed", **common))

    before, after = metrics(tmp_path / "whole"), metrics(tmp_path / "resumed")
    assert [line["step"] for line in after] == list(range(1, 8))  # step 5 trained again, not logged twice
    assert [line["loss"] for line in after] == pytest.approx([line["loss"] for line in before], rel=1e-6)
    assert [line["lr"] for line in after] == pytest.approx([line["lr"] for line in before], rel=1e-9)
    assert resumed["final_loss"] == pytest.approx(whole["final_loss"], rel=1e-6)
    # Only the last `keep_checkpoints` are kept; `latest` points at the final one.
    assert sorted(path.name for path in (tmp_path / "resumed" / "checkpoints").glob("step-*")) == ["step-6", "step-7"]
    assert RunDirectory(tmp_path / "resumed").latest_checkpoint().name == "step-7"


def test_stop_at_step_checkpoints_and_the_next_call_finishes(tmp_path, dataset, tiny):
    result = train(config(dataset, tiny, tmp_path / "run", stop_at_step=2))
    assert result["stopped_at"] == 2 and not (tmp_path / "run" / "result.json").exists()
    result = train(config(dataset, tiny, tmp_path / "run", stop_at_step=2))
    assert result["steps"] == 4 and (tmp_path / "run" / "result.json").exists()
    assert [line["step"] for line in metrics(tmp_path / "run")] == [1, 2, 3, 4]


def test_resuming_with_other_training_options_is_refused(tmp_path, dataset, tiny):
    train(config(dataset, tiny, tmp_path / "run", stop_at_step=1))
    with pytest.raises(ConfigError, match="learning_rate"):
        train(config(dataset, tiny, tmp_path / "run", learning_rate=5e-4))


# --- what a run leaves behind ----------------------------------------------------------------------------------


def test_a_run_writes_progress_metrics_model_scores_and_result(tmp_path, dataset, tiny):
    seen = []
    result = train(config(dataset, tiny, tmp_path / "run", max_steps=4, log_every=2, eval_every=2,
                          zero_shot_eval=True), progress=seen.append)
    output = tmp_path / "run"
    assert [update["step"] for update in seen] == [2, 4]
    assert set(seen[0]) == {"step", "total_steps", "loss", "eta_seconds", "samples_per_second"}
    assert seen[0]["total_steps"] == 4 and seen[0]["eta_seconds"] >= 0 and seen[0]["samples_per_second"] > 0
    progress = json.loads((output / "progress.json").read_text())
    assert progress["step"] == 4 and progress["phase"] == "done"

    lines = metrics(output)
    train_lines = [line for line in lines if "loss" in line]
    assert [line["step"] for line in train_lines] == [2, 4]
    assert {"step", "loss", "lr", "samples_per_second", "elapsed"} <= set(train_lines[0])
    validation = [line for line in lines if "validation/accuracy" in line]
    assert [line["step"] for line in validation] == [2, 4]
    assert list((output / "tensorboard").glob("events.out.tfevents.*"))

    assert set(result) >= {"config", "template_version", "steps", "final_loss", "evaluation", "zero_shot"}
    assert result["template_version"] == TEMPLATE_VERSION and result["steps"] == 4
    assert json.loads((output / "result.json").read_text())["final_loss"] == result["final_loss"]
    evaluation = json.loads((output / "evaluation.json").read_text())
    assert evaluation["test"] == result["evaluation"] and evaluation["zero_shot"] == result["zero_shot"]
    assert result["evaluation"]["pairs"] == 10 and result["zero_shot"]["pairs"] == 10

    scores = pq.read_table(output / "test_scores.parquet").to_pylist()
    assert len(scores) == 10
    assert set(scores[0]) == {"pair_id", "candidate_set_id", "input_id", "task", "dimension", "p_forward",
                              "p_reversed", "votes_for", "votes_against"}
    assert {row["pair_id"] for row in scores} == {
        PreferencePairs(dataset, "test").row(i)["pair_id"] for i in range(10)
    }

    # The saved judge loads on its own and gives the scores the run recorded.
    judge = Judge.from_pretrained(str(output / "model"), device="cpu")
    pairs = PreferencePairs(dataset, "test")
    batch = collate_pairs([pairs[i] for i in range(len(pairs))])
    again = judge.score(batch["winner"], batch["loser"], batch["query"], both_orders=True)
    by_id = {row["pair_id"]: row for row in scores}
    for index, pair_id in enumerate(batch["pair_id"]):
        assert float(again["p_yes_renormalised"][index]) == pytest.approx(by_id[pair_id]["p_forward"], abs=1e-5)
        assert float(again["p_yes_reversed_renormalised"][index]) == pytest.approx(
            by_id[pair_id]["p_reversed"], abs=1e-5)


def test_lora_trains_the_adapter_only_and_saves_it(tmp_path, dataset, tiny):
    train(config(dataset, tiny, tmp_path / "run", adapter_rank=4, max_steps=3, learning_rate=1e-2))
    output = tmp_path / "run"
    assert json.loads((output / "model" / "judge.json").read_text())["adapter"] is True
    assert (output / "model" / "adapter_model.safetensors").exists()
    assert losses(output)[-1] < losses(output)[0]
    trained = Judge.from_pretrained(str(output / "model"), device="cpu")
    base = Judge.from_pretrained(str(tiny), device="cpu")
    base_weights = dict(base.model.named_parameters())
    for name, parameter in trained.model.get_base_model().named_parameters():
        if "lora_" not in name:
            plain = name.replace(".base_layer", "")
            assert torch.equal(parameter, base_weights[plain]), name


def test_the_sharded_save_path_writes_the_trained_weights(tmp_path, dataset, tiny):
    """FSDP and DeepSpeed runs gather the weights and hand them to a fresh judge on the main process;
    on one process the same path must write the very judge that was trained (here: a LoRA one)."""
    from accelerate import Accelerator

    from rewardmodel.core.training import _final_judge

    cfg = config(dataset, tiny, tmp_path / "run", adapter_rank=4)
    judge = Judge.from_pretrained(str(tiny), device="cpu", dtype="float32")
    judge.add_lora(rank=4, alpha=8)
    with torch.no_grad():
        for name, parameter in judge.named_parameters():
            if "lora_B" in name:
                parameter.normal_()  # a zero-initialised B would hide a lost adapter
    accelerator = Accelerator(cpu=True)
    model = accelerator.prepare(judge)
    _final_judge(accelerator, model, judge, cfg, sharded=True)
    saved = Judge.from_pretrained(str(tmp_path / "run" / "model"), device="cpu", dtype="float32")
    expected, written = judge.state_dict(), saved.state_dict()
    assert expected.keys() == written.keys()
    assert all(torch.equal(expected[key], written[key]) for key in expected)


def test_paths_are_accepted_and_kept_as_text(tmp_path, dataset, tiny):
    cfg = TrainingConfig(dataset_dir=Path(dataset), output_dir=tmp_path / "run", base_model=Path(tiny))
    assert cfg.dataset_dir == str(dataset) and isinstance(cfg.output_dir, str)
    json.dumps(cfg.as_dict())
