"""Micro-batches of an RL step: samples whose canvases have the same size run together (batched
reference and policy rollouts, each to its own stop, one transformer call with gradient, one judge
call), gradients accumulating over the micro-batches. The oracle is the one-at-a-time path
(micro_batch 1, today's algorithm, checked against the base generator and the judge in
test_onereward.py): the same samples must give the same losses, rewards, gradients and weights
after the step, to float tolerance. The call counts are worked out by hand from the samples.
Also: the reference pool batched, the options' validation, and torch's scaled_dot_product_attention
in both the FLUX transformer and the judge."""
import pytest
import torch

from rl.core.config import ConfigError
from rl.core.onereward import OneRewardTrainer, Sample, pool_seed

from . import rl_config
from .test_onereward import SpyOnJudge, world  # noqa: F401 - the module's fixture

CFG4 = {"steps": 4, "guidance": 3.5, "true_cfg": 2.0, "negative_prompt": "blurry, low quality, nsfw"}


def trainer(world, output, **overrides) -> OneRewardTrainer:  # noqa: F811
    flux, judge, conditions = world
    options = dict(rollout=CFG4, batch_size=5, learning_rate=1e-2, t_range=(0.0, 1.0))
    return OneRewardTrainer(rl_config(flux, judge, conditions, output, **{**options, **overrides}))


def hand_made_samples(run: OneRewardTrainer) -> list[Sample]:
    """Four samples on 32x32 canvases (one input twice, stops 0 to 3, so every row of a batched
    rollout stops elsewhere) and one on the 40x24 input, padded to 48x32."""
    by_id = {condition.id: condition for condition in run.pool.inputs}
    plan = [("fill-1", 0), ("extend-1", 3), ("removal-1", 1), ("fill-1", 2), ("fill-2", 2)]
    return [Sample(index=i, condition=by_id[name], reference_seed=100 + i, policy_seed=200 + i, stop=stop)
            for i, (name, stop) in enumerate(plan)]


def gradients(run: OneRewardTrainer, samples: list[Sample]) -> tuple[list[dict], dict]:
    run.optimizer.zero_grad(set_to_none=True)
    records = sorted(run.accumulate(samples), key=lambda r: r["index"])
    return records, {name: p.grad.clone() for name, p in run.trainable if p.grad is not None}


def assert_same_step(records, grads, expected_records, expected_grads):
    assert [r["index"] for r in records] == [r["index"] for r in expected_records]
    for got, expected in zip(records, expected_records):
        assert got["dimensions"] == expected["dimensions"] and got["stop"] == expected["stop"]
        torch.testing.assert_close(torch.tensor(got["rewards"]), torch.tensor(expected["rewards"]),
                                   rtol=1e-4, atol=1e-7)
        assert got["loss"] == pytest.approx(expected["loss"], rel=1e-5, abs=1e-8)
    assert grads.keys() == expected_grads.keys() and grads
    largest = max(float(g.abs().max()) for g in expected_grads.values())
    assert largest > 0
    # Batched matmuls sum in another order: near-zero entries differ by up to a few 1e-4 of the
    # largest gradient (seen 1.3e-9 against 5.2e-6 under full fine-tuning) and the whole gradient by
    # about 2e-4 of its norm, which says nothing; a wrong noise level, stop or row mix moves it by
    # per cents (one stop of five samples moved by one step: 7-13 %, the check in the test below).
    for name, grad in expected_grads.items():
        torch.testing.assert_close(grads[name], grad, rtol=1e-4, atol=2e-3 * largest)
    assert relative_difference(grads, expected_grads) <= 1e-3


def relative_difference(grads: dict, expected: dict) -> float:
    """|grads - expected| / |expected| over every tensor together."""
    difference = torch.cat([(grads[name] - grad).flatten() for name, grad in expected.items()]).norm()
    return float(difference / torch.cat([grad.flatten() for grad in expected.values()]).norm())


@pytest.mark.parametrize("algorithm, lora_rank", [("fixed", 4), ("dynamic", 4), ("fixed", None)])
def test_micro_batches_give_the_gradients_of_one_sample_at_a_time(world, tmp_path, algorithm, lora_rank):  # noqa: F811
    options = dict(algorithm=algorithm, lora_rank=lora_rank, ema_decay=0.5,
                   learning_rate=1e-2 if lora_rank else 1e-3)
    runs = {size: trainer(world, tmp_path / f"mb{size}", micro_batch=size, **options) for size in (1, 2, 4)}
    if algorithm == "dynamic":
        for run in runs.values():  # the EMA (the reference) moves away from the policy
            run.step()
    results = {size: gradients(run, hand_made_samples(run)) for size, run in runs.items()}
    for size in (2, 4):
        assert_same_step(*results[size], *results[1])
    # The oracle is not trivially equal to itself with another sample: the gradients respond to the stop.
    moved = hand_made_samples(runs[1])
    moved[1].stop = 2
    other = gradients(runs[1], moved)[1]
    assert any(not torch.allclose(other[name], grad, rtol=1e-3) for name, grad in results[1][1].items())
    assert relative_difference(other, results[1][1]) > 0.02


def test_a_micro_batched_step_leaves_the_weights_of_one_at_a_time(world, tmp_path):  # noqa: F811
    runs = {size: trainer(world, tmp_path / f"mb{size}", micro_batch=size, batch_size=4, max_steps=3)
            for size in (1, 4)}
    # The steps' random plans hold micro-batches of several samples with different stops.
    plans = [runs[4].micro_batches(runs[4].plan(step)) for step in (1, 2)]
    assert any(len(micro) > 1 and len({s.stop for s in micro}) > 1 for plan in plans for micro in plan)
    results = {size: [run.step() for _ in range(2)] for size, run in runs.items()}
    for one, batched in zip(results[1], results[4]):
        assert batched["loss"] == pytest.approx(one["loss"], rel=1e-5)
        assert batched["grad_norm"] == pytest.approx(one["grad_norm"], rel=1e-4)
        for a, b in zip(one["records"], batched["records"], strict=True):
            assert a["index"] == b["index"]
            torch.testing.assert_close(torch.tensor(b["rewards"]), torch.tensor(a["rewards"]), rtol=1e-4, atol=1e-7)
    weights = {size: dict(run.trainable) for size, run in runs.items()}
    start = trainer(world, tmp_path / "start", batch_size=4)
    for name, parameter in weights[1].items():
        # AdamW's first steps move each weight by about lr (1e-2) whatever the gradient's size:
        # agreement to 1e-5 is float order, not a shared nothing.
        torch.testing.assert_close(weights[4][name], parameter, rtol=1e-4, atol=1e-5)
    assert any((weights[1][name] - p).abs().max() > 1e-3 for name, p in start.trainable)


def test_a_micro_batch_is_one_batched_rollout_and_one_judge_call(world, tmp_path):  # noqa: F811
    run = trainer(world, tmp_path / "mb4", micro_batch=4)
    samples = hand_made_samples(run)
    assert [[s.index for s in micro] for micro in run.micro_batches(samples)] == [[0, 1, 2, 3], [4]]
    rows = []
    run.transformer.register_forward_hook(lambda module, args, kwargs, output: rows.append(
        kwargs["hidden_states"].shape[0]), with_kwargs=True)
    with SpyOnJudge(run.judge) as spy:
        records = run.accumulate(samples)
    # True CFG doubles each call's rows. 32x32 group, stops (0, 3, 1, 2): the reference's 4 steps on
    # 4 samples; policy step k on the samples stopping after k: 3, 2, 1 of them; the call with gradient
    # on all 4. The 48x32 sample alone: 4 reference steps, 2 policy steps, 1 call with gradient.
    assert rows == [8] * 4 + [6, 4, 2] + [8] + [2] * 4 + [2] * 2 + [2]
    assert len(spy.calls) == 2
    first, second, queries = spy.calls[0]
    dimensions = [len(run.pool.dimensions(s.condition)) for s in samples[:4]]
    assert len(queries) == sum(dimensions)
    # A sample's rows show the same two tensor objects (the judge may encode each once), and
    # samples show different ones.
    start = 0
    for count in dimensions:
        assert all(image is first[start] for image in first[start:start + count])
        assert all(image is second[start] for image in second[start:start + count])
        start += count
    assert len({id(image) for image in first}) == 4
    assert [r["index"] for r in records] == [0, 1, 2, 3, 4]


def test_micro_batch_1_makes_the_calls_of_one_sample_at_a_time(world, tmp_path):  # noqa: F811
    run = trainer(world, tmp_path / "mb1", micro_batch=1)
    samples = hand_made_samples(run)
    rows = []
    run.transformer.register_forward_hook(lambda module, args, kwargs, output: rows.append(
        kwargs["hidden_states"].shape[0]), with_kwargs=True)
    run.accumulate(samples)
    assert rows == [row for s in samples for row in [2] * 4 + [2] * s.stop + [2]]


def test_the_reference_pool_batched_makes_each_member_once(world, tmp_path):  # noqa: F811
    runs = {size: trainer(world, tmp_path / f"mb{size}", micro_batch=size, reference_pool=2) for size in (1, 4)}
    samples = hand_made_samples(runs[4])
    # Samples 0 and 3 (the same input) draw the same member (seeds 100 and 102, mod 2): the batch
    # must make it once.
    samples[3].reference_seed = 102
    calls = []
    runs[4].transformer.register_forward_hook(lambda module, args, kwargs, output: calls.append(
        kwargs["hidden_states"].shape[0]), with_kwargs=True)
    records, grads = gradients(runs[4], samples)
    # Members missing: fill-1/0 (samples 0 and 3), extend-1/1, removal-1/0 in one rollout of 3 rows
    # (x2 for CFG), then fill-2/0 alone.
    assert calls[:4] == [6] * 4 and calls[8:12] == [2] * 4
    for condition, member in [(samples[0].condition, 0), (samples[1].condition, 1), (samples[4].condition, 0)]:
        image, mask = condition.load()
        canvas = runs[1].backend.prepare_canvas(image, mask)
        fresh = runs[1].reference_latents(canvas, runs[1].text(runs[1].pool.prompt(condition)),
                                          pool_seed(0, condition, member))
        torch.testing.assert_close(runs[4]._pooled_latents(condition, member), fresh, rtol=1e-4, atol=1e-5)
    assert len(list((tmp_path / "mb4" / "reference_pool").glob("*.pt"))) == 4
    assert_same_step(records, grads, *gradients(runs[1], samples))
    # Warm, the batched step makes no reference call at all.
    calls.clear()
    gradients(runs[4], samples)
    assert calls == [6, 4, 2, 8, 2, 2, 2]
    # prepare_reference_pool makes a condition's members micro_batch at a time: 3 rows per rollout.
    ahead = trainer(world, tmp_path / "ahead", micro_batch=4, reference_pool=3)
    calls.clear()
    ahead.transformer.register_forward_hook(lambda module, args, kwargs, output: calls.append(
        kwargs["hidden_states"].shape[0]), with_kwargs=True)
    assert ahead.prepare_reference_pool() == 3 * len(ahead.pool.inputs)
    assert calls == [6] * 4 * len(ahead.pool.inputs)
    condition = ahead.pool.inputs[1]
    image, mask = condition.load()
    canvas = ahead.backend.prepare_canvas(image, mask)
    fresh = ahead.reference_latents(canvas, ahead.text(ahead.pool.prompt(condition)), pool_seed(0, condition, 2))
    torch.testing.assert_close(ahead._pooled_latents(condition, 2), fresh, rtol=1e-4, atol=1e-5)


def test_the_options_are_checked(world, tmp_path):  # noqa: F811
    flux, judge, conditions = world
    for overrides, message in [({"micro_batch": 0}, "micro_batch: a positive integer"),
                               ({"micro_batch": 1.5}, "micro_batch"),
                               ({"judge_attention": "flash"}, "judge_attention: sdpa or eager"),
                               ({"compile": "yes"}, "compile")]:
        with pytest.raises(ConfigError, match=message):
            rl_config(flux, judge, conditions, tmp_path, **overrides)
    config = rl_config(flux, judge, conditions, tmp_path)
    assert config.micro_batch == 1 and config.compile is False and config.judge_attention == "sdpa"


class CountAttention(torch.overrides.TorchFunctionMode):
    """Counts calls of torch.nn.functional.scaled_dot_product_attention (the real one runs)."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is torch.nn.functional.scaled_dot_product_attention:
            self.calls += 1
        return func(*args, **(kwargs or {}))


def test_the_transformer_and_the_judge_attend_through_torchs_sdpa(world, tmp_path):  # noqa: F811
    runs = {name: trainer(world, tmp_path / name, judge_attention=name) for name in ("sdpa", "eager")}
    run = runs["sdpa"]
    assert run.judge._base().config._attn_implementation == "sdpa"
    assert runs["eager"].judge._base().config._attn_implementation == "eager"
    sample = hand_made_samples(run)[0]
    [canvas] = run._canvases([sample.condition])
    text = run.text(run.pool.prompt(sample.condition))
    scheduler, timesteps, latents, conditioning = run.start(canvas, 1)
    with torch.no_grad(), CountAttention() as counted:
        run.backend.predict_velocity(latents, conditioning, timesteps[0], text, canvas)
    blocks = run.transformer.config.num_layers + run.transformer.config.num_single_layers
    assert counted.calls == blocks  # every block's joint attention
    image = run.reference_rollout(canvas, text, 3)
    queries = [run.judge.query(run.pool.taxonomy, sample.condition.task, d, sample.condition.prompt)
               for d in run.pool.dimensions(sample.condition)]
    answers = {}
    for name, judged in runs.items():
        with torch.no_grad(), CountAttention() as counted:
            answers[name] = judged.judge.answer_logprobs([image] * len(queries), [image.flip(-1)] * len(queries),
                                                         queries)[0]
        assert (counted.calls > 0) == (name == "sdpa"), (name, counted.calls)
    # The fused kernel computes the reference implementation's attention.
    torch.testing.assert_close(answers["sdpa"], answers["eager"], rtol=1e-4, atol=1e-5)
