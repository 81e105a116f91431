"""The trainers' one command-line parser, on the real configs and on a small one of its own."""
import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mlcore.cli import build_parser, parse_config
from mlcore.config import ConfigError, Problems, check_types, from_dict
from rewardmodel.core.config import TrainingConfig
from rl.core.config import OneRewardConfig

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Inner:
    steps: int = field(default=4, metadata={"help": "inner steps"})
    scale: float = field(default=1.0, metadata={"help": "inner scale"})


@dataclass
class Toy:
    path: str = field(metadata={"help": "where it goes", "flags": ["--out"]})
    rate: float = field(default=0.5, metadata={"help": "a rate in (0, 1), 100% safe"})
    rank: int | None = field(default=8, metadata={"help": "rank or null", "const": {"--no-rank": None}})
    span: tuple = field(default=(0.1, 0.2), metadata={"help": "two numbers"})
    flag: bool = field(default=False, metadata={"help": "a switch"})
    inner: Inner = field(default_factory=Inner, metadata={"help": "nested"})

    def __post_init__(self):
        problems = Problems()
        check_types(self, problems)
        problems.raise_any()
        if not 0 < self.rate < 1:
            problems.add("rate", f"must lie in (0, 1), got {self.rate}")
        if isinstance(self.inner, dict):
            self.inner = Inner(**self.inner)
        problems.raise_any()

    @classmethod
    def from_dict(cls, values):
        return from_dict(cls, values, "toy")


def test_a_config_file_and_overrides(tmp_path):
    path = tmp_path / "toy.json"
    path.write_text(json.dumps({"path": "a", "rate": 0.25, "rank": 4, "inner": {"steps": 2, "scale": 3.0}}))
    toy = parse_config(Toy, ["--config", str(path)])
    assert toy == Toy(path="a", rate=0.25, rank=4, inner=Inner(steps=2, scale=3.0))
    # Options override the file; a nested field alone keeps the file's other nested values.
    toy = parse_config(Toy, ["--config", str(path), "--out", "b", "--rate", "0.75", "--rank", "null",
                             "--span", "[0.3, 0.4]", "--flag", "--inner.steps", "7"])
    assert (toy.path, toy.rate, toy.rank, toy.span, toy.flag) == ("b", 0.75, None, [0.3, 0.4], True)
    assert toy.inner == Inner(steps=7, scale=3.0)
    assert parse_config(Toy, ["--path", "c", "--span", "0.5,0.6", "--no-rank"]).span == [0.5, 0.6]
    assert parse_config(Toy, ["--path", "c", "--no-rank"]).rank is None
    assert parse_config(Toy, ["--path", "c", "--flag", "--no-flag"]).flag is False


def test_help_comes_from_the_field_metadata(capsys):
    help_text = build_parser(Toy, prog="toy").format_help()
    assert "--path TEXT, --out TEXT" in help_text and "where it goes (required)" in help_text
    assert "a rate in (0, 1), 100% safe (default: 0.5)" in help_text
    assert "--no-rank" in help_text and "--inner.steps INT" in help_text and "--no-flag" in help_text
    rl_help = " ".join(build_parser(OneRewardConfig).format_help().split())
    lambda_help = "lambda in (0, 1]: a (sample, dimension) whose P(Yes) reaches it gives no gradient (default: 0.9)"
    assert lambda_help in rl_help
    assert "--rollout.steps INT" in rl_help and "--full-fine-tune" in rl_help


def test_a_bad_value_names_its_field(tmp_path):
    with pytest.raises(ConfigError) as error:
        parse_config(Toy, ["--path", "a", "--rate", "fast"])
    assert error.value.field == "rate" and "--rate 'fast' is not a number" in str(error.value)
    with pytest.raises(ConfigError) as error:
        parse_config(Toy, ["--path", "a", "--rate", "2"])
    assert error.value.field == "rate" and "must lie in (0, 1)" in str(error.value)
    with pytest.raises(ConfigError) as error:
        parse_config(Toy, ["--path", "a", "--inner.steps", "many"])
    assert error.value.field == "inner.steps"
    with pytest.raises(ConfigError) as error:
        parse_config(Toy, ["--rate", "0.5"])
    assert error.value.field == "path" and "missing toy option" in str(error.value)
    with pytest.raises(ConfigError, match="cannot read --config"):
        parse_config(Toy, ["--config", str(tmp_path / "missing.json")])
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match="must hold a JSON object"):
        parse_config(Toy, ["--config", str(tmp_path / "list.json")])


def test_the_trainers_options_of_before_still_parse():
    config = parse_config(TrainingConfig, [
        "--dataset", "d", "--output", "o", "--base-model", "m", "--lora-rank", "16", "--lora-alpha", "8",
        "--lr", "1e-5", "--batch-size", "8", "--per-device-batch-size", "4", "--max-steps", "3",
        "--gradient-checkpointing", "--weighted-loss", "--no-zero-shot-eval", "--keep-checkpoints", "null"])
    assert (config.dataset_dir, config.output_dir, config.adapter_rank, config.adapter_alpha) == ("d", "o", 16, 8.0)
    assert config.learning_rate == 1e-5 and config.per_device_batch_size == 4 and config.keep_checkpoints is None
    assert config.gradient_checkpointing and config.weighted_loss and not config.zero_shot_eval
    with pytest.raises(ConfigError) as error:
        parse_config(TrainingConfig, ["--dataset", "d", "--output", "o", "--base-model", "m", "--batch-size", "0"])
    assert error.value.field == "batch_size"

    base = ["--conditions", "c", "--output", "o", "--judge", "j", "--base-generator", '{"base": "b"}']
    config = parse_config(OneRewardConfig, [
        *base, "--reward-cap", "0.8", "--ema-decay", "0.9", "--lr", "1e-4", "--full-fine-tune",
        "--no-gradient-checkpointing", "--t-range", "[0.5, 0.7]", "--rollout.steps", "6", "--algorithm", "fixed"])
    assert (config.conditions_dir, config.reward_cap, config.ema_decay, config.learning_rate) == ("c", 0.8, 0.9, 1e-4)
    assert config.lora_rank is None and not config.gradient_checkpointing and config.t_range == (0.5, 0.7)
    assert config.rollout.steps == 6 and config.rollout.true_cfg == 4.0 and config.algorithm == "fixed"
    with pytest.raises(ConfigError) as error:
        parse_config(OneRewardConfig, [*base, "--t-range", "[0.9, 0.1]"])
    assert error.value.field == "t_range"


def test_the_config_modules_need_neither_torch_nor_django():
    code = ("import sys, rl.core.config, rewardmodel.core.config, mlcore.cli, mlcore.rundir; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'diffusers', 'transformers', 'django'}))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
