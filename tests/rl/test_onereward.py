"""The OneReward trainer on a tiny FLUX Fill policy and a tiny (untrained) judge, on CPU.

Both models are saved to disk and loaded back by the real loading code (FluxFillBackend.from_config,
Judge.from_pretrained). What is checked: where gradients go, the references of Algorithms 1 and 2,
the EMA arithmetic, the hinge, the x0 formula, exact resume, the output files and the saved policy
(loaded back as a generator), the command line, and two processes against one.
"""
import json
import subprocess

import numpy as np
import pytest
import torch

from generation.core.backends.base import CandidateSettings, GenerationRequest
from generation.core.backends.flux_fill import FluxFillBackend
from generation.core.demo_flux import save_tiny_flux_fill, save_tiny_lora
from rewardmodel.core.demo_judge import save_tiny_qwen
from rl.core.config import ConfigError, OneRewardConfig
from rl.core.onereward import OneRewardTrainer, predict_clean
from tests.trainer_processes import run_module

from . import base_generator, rl_config, write_default_conditions


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("rl-world")
    flux = save_tiny_flux_fill(root / "flux")
    judge = save_tiny_qwen(root / "judge", seed=0)
    conditions = write_default_conditions(root / "conditions")
    return flux, judge, conditions


def trainer(world, output, **overrides) -> OneRewardTrainer:
    flux, judge, conditions = world
    return OneRewardTrainer(rl_config(flux, judge, conditions, output, **overrides))


def base_arrays(world, condition_index: int, seed: int, rollout: dict, **generator) -> np.ndarray:
    """The base generator's candidate (FluxFillBackend.generate_arrays) for one input and seed, the
    whole decode (as rollout_of gives it) unless `generator` says otherwise."""
    from rl.core.conditions import ConditionPool

    flux, _, conditions = world
    pool = ConditionPool(conditions)
    condition = pool.inputs[condition_index]
    image, mask = condition.load()
    backend = FluxFillBackend.from_config(base_generator(flux, **{"composite_source": False, **generator}))
    settings = CandidateSettings(seed=seed, steps=rollout["steps"], guidance=rollout["guidance"],
                                 true_cfg=rollout["true_cfg"], negative_prompt=rollout["negative_prompt"])
    request = GenerationRequest(image=image, mask=mask, prompt=pool.prompt(condition), task=condition.task,
                                settings=settings)
    return backend.generate_arrays([request])[0]


def rollout_of(trainer: OneRewardTrainer, condition_index: int, seed: int, reference: bool) -> np.ndarray:
    """Full sampling by the reference (or the current policy), decoded without compositing: (H, W, 3)."""
    condition = trainer.pool.inputs[condition_index]
    image, mask = condition.load()
    canvas = trainer.backend.prepare_canvas(image, mask)
    text = trainer.text(trainer.pool.prompt(condition))
    with torch.no_grad():
        scheduler, timesteps, latents, conditioning = trainer.start(canvas, seed)
        if reference:
            with trainer.reference() as backend:
                latents = backend.denoise(scheduler, timesteps, latents, conditioning, text, canvas)
        else:
            latents = trainer.backend.denoise(scheduler, timesteps, latents, conditioning, text, canvas)
        return trainer.backend.decode_latents(latents, canvas)[0].permute(1, 2, 0).numpy()


CFG_ROLLOUT = {"steps": 2, "guidance": 3.5, "true_cfg": 2.0, "negative_prompt": "blurry, low quality, nsfw"}


# --- configuration ----------------------------------------------------------------------------------------


def test_config_from_dict_checks_names_types_and_values(world, tmp_path):
    flux, judge, conditions = world
    good = {"conditions_dir": str(conditions), "output_dir": str(tmp_path), "base_generator": base_generator(flux),
            "judge": str(judge)}
    config = OneRewardConfig.from_dict(good)
    assert config.algorithm == "dynamic" and config.reward_cap == 0.9 and config.t_range == (0.6, 0.75)
    assert config.ema_decay == 0.99 and config.learning_rate == 1e-5 and config.batch_size == 8
    assert config.max_steps == 8000 and config.lora_rank == 32 and config.gradient_clip == 1.0
    assert config.rollout.steps == 50 and config.rollout.true_cfg == 4.0 and config.rollout.negative_prompt == "nsfw"
    assert OneRewardConfig.from_dict(json.loads(json.dumps(config.as_dict()))) == config
    config.check_inputs()

    for values, message in [
        ({**good, "lambda": 0.9}, "unknown RL option"),
        ({k: v for k, v in good.items() if k != "judge"}, "missing RL option"),
        ({**good, "algorithm": "ppo"}, "algorithm: 'fixed'"),
        ({**good, "t_range": [0.9, 0.6]}, "t_range"),
        ({**good, "reward_cap": 1.5}, "reward_cap"),
        ({**good, "ema_decay": 1.0}, "ema_decay"),
        ({**good, "batch_size": 0}, "batch_size"),
        ({**good, "rollout": {"steps": 0}}, "rollout.steps"),
        ({**good, "rollout": {"cfg": 2}}, "rollout: unknown option 'cfg'"),
        ({**good, "rollout": {"true_cfg": 0.5}}, r"rollout.true_cfg: 1 \(off\) or more"),
        ({**good, "algorithm": "dynamic", "reference_pool": 4}, "reference_pool"),
        ({**good, "mixed_precision": "fp8"}, "mixed_precision"),
        ({**good, "task_probabilities": {"image_fill": -1}}, "task_probabilities: non-negative numbers"),
        ({**good, "task_probabilities": {"image_fill": 0, "object_removal": 0}}, "at least one task needs"),
    ]:
        with pytest.raises(ConfigError, match=message):
            OneRewardConfig.from_dict(values)
    for values, message in [
        ({**good, "base_generator": {"base": str(tmp_path / "nothing")}}, "base_generator: base"),
        ({**good, "judge": str(tmp_path)}, "not a saved judge directory"),
        ({**good, "task_probabilities": {"painting": 1}}, "unknown task 'painting'"),
    ]:
        with pytest.raises(ConfigError, match=message):
            OneRewardConfig.from_dict(values).check_inputs()


# --- gradients ------------------------------------------------------------------------------------------------


def test_gradients_reach_only_the_lora_weights(world, tmp_path):
    run = trainer(world, tmp_path / "a")
    sample = run.plan(1)[0]
    loss, record = run.sample_loss(sample)
    assert loss.requires_grad and 0 < float(loss.detach()) < 0.9
    loss.backward()
    lora = {name for name, _ in run.trainable}
    assert lora and all("lora_" in name for name in lora)
    for name, parameter in run.transformer.named_parameters():
        if name in lora:
            assert parameter.requires_grad and parameter.dtype == torch.float32
        else:
            assert not parameter.requires_grad and parameter.grad is None, name
    # B starts at zero, so at the first step only B gets a gradient (dL/dA goes through B).
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for n, p in run.trainable if "lora_B" in n)
    frozen = [run.pipeline.vae, run.pipeline.text_encoder, run.pipeline.text_encoder_2, run.judge]
    for module in frozen:
        assert all(not p.requires_grad and p.grad is None for p in module.parameters())


def test_gradient_checkpointing_gives_the_same_gradients(world, tmp_path):
    grads = []
    for checkpointing in (False, True):
        run = trainer(world, tmp_path / str(checkpointing), gradient_checkpointing=checkpointing)
        assert run.transformer.is_gradient_checkpointing == checkpointing
        loss, _ = run.sample_loss(run.plan(1)[0])
        loss.backward()
        grads.append({name: p.grad.clone() for name, p in run.trainable if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], rtol=1e-4, atol=1e-9)


def test_no_gradient_once_the_reward_reaches_the_cap(world, tmp_path):
    # The untrained judge answers P(Yes) of about 1e-3: a cap below it leaves nothing to gain.
    run = trainer(world, tmp_path / "a", reward_cap=1e-6)
    loss, record = run.sample_loss(run.plan(1)[0])
    assert min(record["rewards"]) > 1e-6 and float(loss.detach()) == 0.0
    loss.backward()
    assert all(p.grad is None or torch.count_nonzero(p.grad) == 0 for _, p in run.trainable)
    run.optimizer.zero_grad(set_to_none=True)
    before = {name: p.detach().clone() for name, p in run.trainable}
    result = run.step()
    assert result["loss"] == 0.0 and result["grad_norm"] == 0.0
    assert all(torch.equal(p, before[name]) for name, p in run.trainable)


# --- the x0 prediction ----------------------------------------------------------------------------------------------


def test_x0_prediction_matches_the_schedulers_formula(world, tmp_path):
    run = trainer(
        world, tmp_path / "a", rollout={"steps": 6, "guidance": 30.0, "true_cfg": 1.0, "negative_prompt": ""}
    )
    image, mask = run.pool.inputs[1].load()
    canvas = run.backend.prepare_canvas(image, mask)
    scheduler, _ = run.backend.prepare_timesteps(canvas, 6)
    sigmas, timesteps = scheduler.sigmas, scheduler.timesteps
    assert len(timesteps) == 6 and sigmas[0] == 1.0 and sigmas[-1] == 0.0
    torch.testing.assert_close(timesteps, sigmas[:-1] * 1000)

    scheduler.set_begin_index(None)  # scale_noise then looks each timestep up instead of using the first
    generator = torch.Generator().manual_seed(0)
    clean = torch.randn(1, 6, 16, generator=generator)
    noise = torch.randn(1, 6, 16, generator=generator)
    for index in range(6):
        # x_t = (1 - s) x0 + s e (the scheduler's own noising) and v = e - x0 give back x0.
        x_t = scheduler.scale_noise(clean, timesteps[index:index + 1], noise)
        torch.testing.assert_close(predict_clean(x_t, noise - clean, sigmas[index]), clean, rtol=0, atol=1e-5)
    # From the last step (sigma_next = 0) the prediction is the scheduler's own Euler step.
    x_t = scheduler.scale_noise(clean, timesteps[-1:], noise)
    v = torch.randn(1, 6, 16, generator=generator)
    last, _ = run.backend.prepare_timesteps(canvas, 6)
    last.set_begin_index(5)
    assert torch.equal(predict_clean(x_t, v, sigmas[5]), last.step(v, timesteps[5], x_t, return_dict=False)[0])


# --- the references and the EMA ---------------------------------------------------------------------------------


def test_algorithm_1_reference_stays_the_base_bit_for_bit(world, tmp_path):
    run = trainer(world, tmp_path / "a", algorithm="fixed", rollout=CFG_ROLLOUT, learning_rate=5e-2, max_steps=3)
    base = base_arrays(world, 1, seed=123, rollout=CFG_ROLLOUT)
    np.testing.assert_array_equal(rollout_of(run, 1, 123, reference=True), base)
    run.train()
    # The policy has moved away from the base, its adapter-disabled reference has not.
    assert not np.allclose(rollout_of(run, 1, 123, reference=False), base, atol=1e-4)
    np.testing.assert_array_equal(rollout_of(run, 1, 123, reference=True), base)


class SpyOnJudge:
    """Records what the trainer shows the (real) judge: the two images and the queries of every call."""

    def __init__(self, judge):
        self.judge, self.calls = judge, []
        self.original = judge.answer_logprobs

    def __enter__(self):
        def answer_logprobs(first, second, queries):
            self.calls.append((list(first), list(second), list(queries)))
            return self.original(first, second, queries)

        self.judge.answer_logprobs = answer_logprobs
        return self

    def __exit__(self, *exc):
        self.judge.answer_logprobs = self.original


@pytest.mark.parametrize("algorithm", ["fixed", "dynamic"])
def test_the_reward_is_p_yes_of_the_policy_first_against_the_algorithms_reference(world, tmp_path, algorithm):
    """Checked against images and probabilities the trainer does not compute: the reference must be
    the base generator's own candidate (Algorithm 1) or the EMA's full sampling (Algorithm 2, after
    steps that moved the EMA away from the start and from the policy), shown SECOND; the policy's
    differentiable one-step image FIRST; the reward P(Yes) read by Judge.score on those images; and
    the loss the mean over the task's dimensions of max(0, lambda - reward)."""
    from rl.core.evaluate import composite

    run = trainer(world, tmp_path / "a", algorithm=algorithm, rollout=CFG_ROLLOUT, learning_rate=5e-2,
                  ema_decay=0.5, max_steps=4, batch_size=1)
    if algorithm == "dynamic":
        for _ in range(2):
            run.step()
    # A condition judged on several dimensions, so that how their terms combine shows.
    sample = next(s for step in range(3, 40) for s in run.plan(step) if len(run.pool.dimensions(s.condition)) > 1)
    position = run.pool.inputs.index(sample.condition)
    with SpyOnJudge(run.judge) as spy:
        loss, record = run.sample_loss(sample)
    [(first, second, queries)] = spy.calls
    image, mask = sample.condition.load()
    if algorithm == "fixed":
        expected = composite(base_arrays(world, position, sample.reference_seed, CFG_ROLLOUT), image, mask)
    else:
        with run.reference():  # the EMA's weights, checked to be the tau average by the test below
            expected = composite(rollout_of(run, position, sample.reference_seed, reference=False), image, mask)
        base = composite(base_arrays(world, position, sample.reference_seed, CFG_ROLLOUT), image, mask)
        policy = composite(rollout_of(run, position, sample.reference_seed, reference=False), image, mask)
        assert not np.allclose(expected, base, atol=1e-3) and not np.allclose(expected, policy, atol=1e-3)
    for shown in second:
        assert not shown.requires_grad
        np.testing.assert_allclose(shown.permute(1, 2, 0).numpy(), expected, atol=1e-4)
    assert all(shown.requires_grad for shown in first)  # the policy's image, with its graph
    dimensions = run.pool.dimensions(sample.condition)
    assert queries == [run.judge.query(run.pool.taxonomy, sample.condition.task, d, sample.condition.prompt)
                       for d in dimensions]
    scores = run.judge.score([f.detach() for f in first], [s.detach() for s in second], queries)
    np.testing.assert_allclose(record["rewards"], scores["p_yes"].numpy(), rtol=1e-4)
    hinge = np.maximum(run.config.reward_cap - scores["p_yes"].numpy(), 0)
    assert float(loss.detach()) == pytest.approx(float(hinge.mean()), rel=1e-4)


@pytest.mark.parametrize("delivered, setting, composited", [
    (True, None, True), (False, None, False), (False, True, True), (True, False, False)])
def test_the_judge_sees_images_as_the_base_generator_delivers_them(world, tmp_path, delivered, setting, composited):
    """composite_source null follows the base generator's own delivery (what annotators saw, so what
    the judge learned from); a value in the config overrides it. Checked on the images shown: the
    unmasked area is the source's exactly, or the decode's."""
    flux, _, _ = world
    run = trainer(world, tmp_path / "a", base_generator=base_generator(flux, composite_source=delivered),
                  composite_source=setting)
    sample = run.plan(1)[0]
    with SpyOnJudge(run.judge) as spy:
        run.sample_loss(sample)
    [(first, second, _)] = spy.calls
    image, mask = sample.condition.load()
    keep = np.asarray(mask) < 128
    source = np.asarray(image, dtype=np.float32) / 255.0
    for shown in (first[0], second[0]):
        outside = np.abs(shown.detach().permute(1, 2, 0).numpy()[keep] - source[keep]).max()
        assert (outside < 1e-5) == composited, outside


def test_the_ema_update_is_the_tau_average(world, tmp_path):
    tau = 0.9
    run = trainer(world, tmp_path / "a", algorithm="dynamic", ema_decay=tau, learning_rate=1e-2)
    ema = {name: run.ema.shadow[name].clone() for name in run.ema.names}
    assert all(torch.equal(ema[name], p.detach()) for name, p in run.trainable)  # starts as the policy
    for _ in range(3):
        run.step()
        policy = {name: p.detach().clone() for name, p in run.trainable}
        expected = {name: tau * ema[name].double() + (1 - tau) * policy[name].double() for name in ema}
        for name in ema:
            torch.testing.assert_close(run.ema.shadow[name].double(), expected[name], rtol=1e-6, atol=1e-9)
        ema = {name: run.ema.shadow[name].clone() for name in run.ema.names}
    assert any(not torch.equal(ema[name], policy[name]) for name in ema)
    # Algorithm 2's reference is the EMA: swapped into the adapter inside the block only.
    with run.reference():
        assert all(torch.equal(p.detach(), ema[name]) for name, p in run.trainable)
    assert all(torch.equal(p.detach(), policy[name]) for name, p in run.trainable)


def test_full_fine_tuning_keeps_a_frozen_reference_and_an_ema_copy(world, tmp_path):
    run = trainer(world, tmp_path / "a", algorithm="fixed", lora_rank=None, rollout=CFG_ROLLOUT, learning_rate=1e-3,
                  max_steps=2, ema_decay=0.5)
    assert {name for name, _ in run.trainable} == {name for name, _ in run.transformer.named_parameters()}
    base = base_arrays(world, 0, seed=5, rollout=CFG_ROLLOUT)
    result = run.train()
    np.testing.assert_array_equal(rollout_of(run, 0, 5, reference=True), base)
    assert not np.allclose(rollout_of(run, 0, 5, reference=False), base, atol=1e-4)
    # The deliverable is the EMA, saved as a transformer directory the generator loads.
    settings = result["generator_settings"]
    assert settings["transformer"] == str((tmp_path / "a" / "policy").resolve()) and settings["loras"] == []
    assert (tmp_path / "a" / "policy" / "transformer" / "config.json").is_file()
    generated = base_arrays(world, 0, seed=5, rollout=CFG_ROLLOUT, transformer=settings["transformer"])
    run.reference_module = run.ema_module
    from types import SimpleNamespace

    run._reference_backend = FluxFillBackend(SimpleNamespace(transformer=run.ema_module), run.backend.config)
    np.testing.assert_allclose(rollout_of(run, 0, 5, reference=True), generated, atol=1e-6)


# --- outputs, resume, the saved policy ----------------------------------------------------------------------------


def test_a_run_writes_metrics_progress_policy_and_result(world, tmp_path):
    output = tmp_path / "run"
    run = trainer(world, output, algorithm="dynamic", rollout=CFG_ROLLOUT, max_steps=3, log_every=2, save_every=2,
                  learning_rate=1e-2, ema_decay=0.5)
    updates = []
    result = run.train(progress=updates.append)

    assert set(result) >= {"config", "steps", "final_reward", "generator_settings", "policy"}
    assert result["steps"] == 3 and 0 < result["final_reward"] < 1
    assert json.loads((output / "result.json").read_text())["generator_settings"] == result["generator_settings"]
    metrics = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [2, 3]
    assert {"loss", "reward_mean", "hinge_share", "grad_norm", "lr", "seconds_per_step"} <= set(metrics[0])
    keys = {k for m in metrics for k in m if k.startswith("reward/")}
    assert keys and all(len(k.split("/")) == 3 for k in keys)  # reward/task/dimension
    assert all(m["hinge_share"] == 1.0 for m in metrics)  # the untrained judge is far below lambda
    progress = json.loads((output / "progress.json").read_text())
    assert set(progress) >= {"step", "total_steps", "loss", "eta_seconds", "reward_mean", "rewards"}
    assert progress["step"] == 3 and progress["total_steps"] == 3 and progress["phase"] == "done"
    assert all("/" in key for key in progress["rewards"])
    assert [u["step"] for u in updates] == [2, 3]
    assert list((output / "tensorboard").glob("events.out.tfevents.*"))
    assert (output / "checkpoints" / "latest").read_text() == "step-3"
    assert sorted(p.name for p in (output / "checkpoints").glob("step-*")) == ["step-2", "step-3"]

    # The policy is a LoRA file in diffusers' format: the generator loads it and makes the EMA's pixels.
    settings = result["generator_settings"]
    assert settings["loras"] == [{"path": str((output / "policy" / "pytorch_lora_weights.safetensors").resolve()),
                                  "weight": 1.0, "name": "onereward_policy"}]
    generated = base_arrays(world, 1, seed=9, rollout=CFG_ROLLOUT, loras=settings["loras"])
    np.testing.assert_allclose(rollout_of(run, 1, 9, reference=True), generated, atol=1e-5)
    assert not np.allclose(generated, base_arrays(world, 1, seed=9, rollout=CFG_ROLLOUT), atol=1e-4)


@pytest.fixture
def one_thread():
    """Bit-exact comparisons across trainer instances: with several threads, CPU kernels may split
    a reduction differently from one call to the next (the last bits of a gradient norm moved)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("algorithm, lora_rank", [("dynamic", 4), ("fixed", None)])
def test_a_resumed_run_continues_identically(world, tmp_path, algorithm, lora_rank, one_thread):
    options = dict(algorithm=algorithm, lora_rank=lora_rank, max_steps=4, learning_rate=1e-2 if lora_rank else 1e-3,
                   ema_decay=0.5, t_range=(0.0, 1.0))
    trainer(world, tmp_path / "whole", **options).train()
    stopped = trainer(world, tmp_path / "parts", stop_at_step=2, **options).train()
    assert stopped["stopped_at"] == 2 and not (tmp_path / "parts" / "result.json").exists()
    resumed = trainer(world, tmp_path / "parts", **options)
    resumed.train()
    assert resumed.step_count == 4

    def metrics(output):
        return [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]

    whole, parts = metrics(tmp_path / "whole"), metrics(tmp_path / "parts")
    assert [m["step"] for m in parts] == [1, 2, 3, 4]
    for a, b in zip(whole, parts):
        assert a["loss"] == b["loss"] and a["reward_mean"] == b["reward_mean"] and a["grad_norm"] == b["grad_norm"]
    policy = ("policy/pytorch_lora_weights.safetensors" if lora_rank
              else "policy/transformer/diffusion_pytorch_model.safetensors")
    assert (tmp_path / "whole" / policy).read_bytes() == (tmp_path / "parts" / policy).read_bytes()


def test_resuming_with_other_options_is_refused(world, tmp_path):
    trainer(world, tmp_path / "a", max_steps=2, stop_at_step=1).train()
    with pytest.raises(ConfigError, match="reward_cap"):
        trainer(world, tmp_path / "a", max_steps=2, reward_cap=0.5).train()


def test_the_base_generators_loras_are_part_of_the_start(world, tmp_path):
    flux, judge, conditions = world
    lora = save_tiny_lora(flux, tmp_path / "removal-lora", seed=3)
    generator = base_generator(flux, loras=[{"path": str(lora), "weight": 0.7, "name": "removal"}])
    run = trainer(world, tmp_path / "a", algorithm="fixed", base_generator=generator, max_steps=1)
    with_lora = base_arrays(world, 0, seed=4, rollout=run.config.as_dict()["rollout"], loras=generator["loras"])
    plain = base_arrays(world, 0, seed=4, rollout=run.config.as_dict()["rollout"])
    reference = rollout_of(run, 0, 4, reference=True)
    np.testing.assert_allclose(reference, with_lora, atol=1e-5)  # fused here, separate in generation
    assert not np.allclose(reference, plain, atol=1e-3)
    result = run.train()
    assert [entry["name"] for entry in result["generator_settings"]["loras"]] == ["removal", "onereward_policy"]
    assert result["generator_settings"]["loras"][0]["weight"] == 0.7


# --- command line and processes ---------------------------------------------------------------------------------


def run_cli(arguments: list[str], processes: int = 1, tmp_path=None) -> subprocess.CompletedProcess:
    return run_module("rl.core.train", arguments, processes)


def test_cli_refuses_a_bad_config_with_exit_code_2(world, tmp_path):
    flux, judge, conditions = world
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"conditions_dir": str(conditions), "output_dir": str(tmp_path / "out"),
                                "base_generator": base_generator(flux), "judge": str(judge), "algorithm": "ppo"}))
    done = run_cli(["--config", str(path)])
    assert done.returncode == 2 and "algorithm: 'fixed'" in done.stderr


def test_two_processes_make_the_steps_of_one(world, tmp_path):
    """DDP over gloo: sample i of a step runs on process i % 2 and the gradients are summed; the
    losses and the trained adapter agree with one process up to the order of float sums."""
    flux, judge, conditions = world
    config = rl_config(flux, judge, conditions, tmp_path / "x", batch_size=2, max_steps=3, learning_rate=1e-2,
                       algorithm="dynamic", ema_decay=0.5).as_dict()
    outputs = {}
    for processes in (1, 2):
        output = tmp_path / f"p{processes}"
        path = tmp_path / f"config-{processes}.json"
        path.write_text(json.dumps({**config, "output_dir": str(output)}))
        done = run_cli(["--config", str(path)], processes)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
        outputs[processes] = output
    resolved = json.loads((outputs[2] / "config.resolved.json").read_text())
    assert resolved["processes"] == 2
    one, two = ([json.loads(line) for line in (outputs[p] / "metrics.jsonl").read_text().splitlines()] for p in (1, 2))
    for a, b in zip(one, two, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
        assert a["reward_mean"] == pytest.approx(b["reward_mean"], rel=1e-5)
    from safetensors.torch import load_file

    weights = [load_file(outputs[p] / "policy" / "pytorch_lora_weights.safetensors") for p in (1, 2)]
    # AdamW divides each update by the root of the squared gradients' average: where a gradient is
    # near zero, float-order differences of 1e-9 in it move the update by up to 1e-5 of the weight
    # (seen on one CI run); a gradient not summed over the processes would move it by about lr (1e-2).
    for name in weights[0]:
        torch.testing.assert_close(weights[1][name], weights[0][name], rtol=1e-4, atol=1e-4)
