"""Algorithm 1's reference pool: the reference is frozen, so the image of (condition, noise) never
changes; K members per condition are sampled once, kept in the run directory and drawn from at each
step. Checked: a member is exactly the fresh rollout of its noise (the estimator is the one without
a pool, over K fixed draws), members are made once and found again by a resumed run, a warm pool
spares the reference's transformer calls, and Algorithm 2 refuses a pool. Also what else a step
no longer repeats: the pool's prompts are encoded once, up front."""
import pytest
import torch

from rl.core.config import ConfigError
from rl.core.onereward import OneRewardTrainer, pool_seed

from . import default_inputs, rl_config, write_default_conditions
from .test_onereward import world  # noqa: F401 - the module's fixture


def trainer(world, output, **overrides) -> OneRewardTrainer:  # noqa: F811
    flux, judge, conditions = world
    return OneRewardTrainer(rl_config(flux, judge, conditions, output, **overrides))


def count_transformer_calls(trainer: OneRewardTrainer) -> list[int]:
    calls = [0]
    trainer.transformer.register_forward_hook(lambda *args: calls.__setitem__(0, calls[0] + 1))
    return calls


def test_a_pool_member_is_the_fresh_reference_rollout_of_its_noise(world, tmp_path):  # noqa: F811
    rollout = {"steps": 3, "guidance": 3.5, "true_cfg": 2.0, "negative_prompt": "x"}
    pooled = trainer(world, tmp_path / "pooled", reference_pool=4, rollout=rollout)
    condition = pooled.pool.inputs[0]
    image, mask = condition.load()
    canvas = pooled.backend.prepare_canvas(image, mask)
    text = pooled.text(pooled.pool.prompt(condition))
    for seed in (5, 6, 13):  # members 1, 2 and 1 again
        member = seed % 4
        got = pooled.reference_image(condition, canvas, text, seed)
        fresh = pooled.reference_rollout(canvas, text, pool_seed(0, condition, member))
        torch.testing.assert_close(got, fresh, rtol=0, atol=1e-6)
    assert sorted(p.name for p in (tmp_path / "pooled" / "reference_pool").iterdir()) == [
        f"{condition.task}-{condition.id}-1.pt", f"{condition.task}-{condition.id}-2.pt"]
    # Another member is another noise, hence another image.
    other = pooled.reference_image(condition, canvas, text, 7)
    assert (other - pooled.reference_image(condition, canvas, text, 5)).abs().max() > 1e-3


def test_a_warm_pool_spares_the_reference_rollouts_and_a_resumed_run_finds_it(world, tmp_path):  # noqa: F811
    flux, judge, _ = world
    one_input = write_default_conditions(tmp_path / "one", inputs=[default_inputs()[0]])
    rollout = {"steps": 4, "guidance": 30.0, "true_cfg": 1.0, "negative_prompt": ""}

    def make(output, **overrides):
        return OneRewardTrainer(rl_config(flux, judge, one_input, tmp_path / output, rollout=rollout,
                                          task_probabilities={"image_fill": 1}, max_steps=4, **overrides))

    # t in [0.5, 0.5] of 4 steps: a sample runs 2 policy steps and 1 call with gradient, plus the
    # reference's 4 steps of a fresh rollout; batch 2.
    fresh = make("fresh")
    fresh_calls = count_transformer_calls(fresh)
    fresh.step()
    assert fresh_calls[0] == (2 + 1 + 4) * 2

    pooled = make("pooled", reference_pool=1)
    calls = count_transformer_calls(pooled)
    pooled.step()
    assert calls[0] == (2 + 1) * 2 + 4  # the one member is sampled once, by the first sample
    pooled.step()
    assert calls[0] == (2 + 1) * 2 * 2 + 4  # warm: no reference call at all
    files = sorted((tmp_path / "pooled" / "reference_pool").iterdir())
    assert [p.name for p in files] == ["image_fill-fill-1-0.pt"]
    pooled.save_checkpoint({})

    resumed = make("pooled", reference_pool=1)
    resumed.load_checkpoint(resumed.run_dir.latest_checkpoint())
    resumed_calls = count_transformer_calls(resumed)
    resumed.step()
    assert resumed_calls[0] == (2 + 1) * 2  # the pool is found in the run directory


def test_algorithm_2_refuses_a_pool_its_reference_moves(world, tmp_path):  # noqa: F811
    with pytest.raises(ConfigError, match="reference_pool"):
        trainer(world, tmp_path / "dynamic", algorithm="dynamic", reference_pool=4)
    with pytest.raises(ConfigError, match="reference_pool"):
        trainer(world, tmp_path / "negative", reference_pool=-1)


def test_the_pool_prompts_are_encoded_up_front_and_never_again(world, tmp_path):  # noqa: F811
    rollout = {"steps": 2, "guidance": 3.5, "true_cfg": 2.0, "negative_prompt": "blurry"}
    run = trainer(world, tmp_path / "text", rollout=rollout)
    prompts = {run.pool.prompt(condition) for condition in run.pool.inputs} | {"blurry"}
    assert set(run._text_cache) == prompts
    assert not run.text_encoders_offloaded  # on the CPU they stay: there is no GPU memory to free
    encoded = []
    original = run.backend.encode_prompt
    run.backend.encode_prompt = lambda text: encoded.append(text) or original(text)
    run.step()
    assert encoded == []
