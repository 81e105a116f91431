"""FluxFillBackend on a tiny FLUX Fill model saved to disk and loaded back (CPU, float32).

No database: these tests use no db fixtures.
"""
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from generation.core.backends.base import (
    BackendConfigError,
    CandidateSettings,
    GenerationRequest,
    check_backend_config,
    load_backend,
)
from generation.core.backends.flux_fill import FluxFillBackend, pad_canvas
from generation.core.demo_flux import save_tiny_flux_fill, save_tiny_lora, save_tiny_transformer

SEQ = 32  # T5 tokens: enough for the test prompts, keeps the tiny T5 fast
STEPS = 3


def canvas(width=64, height=48, seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / (width - 1), y * 255 / (height - 1), np.full_like(x, 128.0)], axis=-1)
    return Image.fromarray(np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8), "RGB")


def box(width=64, height=48, rect=(16, 12, 40, 30)) -> Image.Image:
    mask = Image.new("L", (width, height), 0)
    mask.paste(255, rect)
    return mask


def border(width, height, inner) -> Image.Image:
    """Outpainting mask: white everywhere but the source's rectangle."""
    mask = Image.new("L", (width, height), 255)
    mask.paste(0, inner)
    return mask


IMAGE, MASK = canvas(), box()


def request(seed=0, prompt="a red cup", image=IMAGE, mask=MASK, task="fill", **settings) -> GenerationRequest:
    settings.setdefault("steps", STEPS)
    return GenerationRequest(
        image=image, mask=mask, prompt=prompt, task=task, settings=CandidateSettings(seed=seed, **settings)
    )


@pytest.fixture(scope="session")
def tiny_repo(tmp_path_factory):
    return save_tiny_flux_fill(tmp_path_factory.mktemp("flux-fill"))


@pytest.fixture(scope="session")
def backend(tiny_repo) -> FluxFillBackend:
    return FluxFillBackend.from_config(
        {"base": str(tiny_repo), "device": "cpu", "dtype": "float32", "max_sequence_length": SEQ}
    )


def pipeline_output(backend, req, **overrides) -> np.ndarray:
    """diffusers' FluxFillPipeline itself, for one request: float (H, W, 3) in [0, 1]."""
    width, height = req.image.size
    kwargs = dict(
        prompt=req.prompt, image=req.image, mask_image=req.mask, height=height, width=width,
        strength=req.settings.strength, num_inference_steps=req.settings.steps,
        guidance_scale=req.settings.guidance, generator=torch.Generator("cpu").manual_seed(req.settings.seed),
        max_sequence_length=SEQ, output_type="np",
    )
    kwargs.update(overrides)
    return backend.pipeline(**kwargs).images[0]


# --- equality with diffusers ----------------------------------------------------------------


@pytest.mark.parametrize("strength", [1.0, 0.6])
def test_without_true_cfg_one_request_equals_flux_fill_pipeline(backend, strength):
    req = request(seed=5, guidance=30.0, strength=strength)
    ours = backend.generate_arrays([req])[0]
    reference = pipeline_output(backend, req)
    assert ours.shape == reference.shape == (48, 64, 3)
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-6)
    # generate() rounds exactly as the pipeline's PIL output does.
    assert np.array_equal(
        np.asarray(backend.generate([req])[0]), np.asarray(pipeline_output(backend, req, output_type="pil"))
    )


def test_true_cfg_equals_a_two_call_reference_and_changes_the_output(backend, monkeypatch):
    req = request(seed=3, guidance=1.0, true_cfg=4.0, negative_prompt="nsfw")
    ours = backend.generate_arrays([req])[0]
    plain = backend.generate_arrays([replace(req, settings=replace(req.settings, true_cfg=1.0))])[0]
    assert np.abs(ours - plain).max() > 1e-2

    # Reference: the pipeline's own loop, its transformer wrapped to run the negative branch as a
    # second, separate call and combine v = v_neg + true_cfg * (v_pos - v_neg).
    negative = backend.encode_prompt("nsfw")
    transformer = backend.pipeline.transformer
    forward = transformer.forward

    def two_call_forward(**kwargs):
        positive = forward(**kwargs)[0]
        neg = forward(**{**kwargs, "encoder_hidden_states": negative.embeds, "pooled_projections": negative.pooled})[0]
        return (neg + 4.0 * (positive - neg),)

    monkeypatch.setattr(transformer, "forward", two_call_forward)
    reference = pipeline_output(backend, req)
    monkeypatch.undo()
    # One batched call (batch 2) against two calls of batch 1: CPU GEMM kernels may sum in another
    # order for another batch size, hence a tolerance instead of equality.
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-4)


def test_empty_negative_prompt_with_true_cfg_guides_against_the_empty_prompt(backend):
    empty = request(seed=2, true_cfg=3.0, negative_prompt="")
    other = request(seed=2, true_cfg=3.0, negative_prompt="blurry, low quality")
    a, b = backend.generate_arrays([empty, other])
    assert np.abs(a - b).max() > 1e-3


def test_true_cfg_at_or_below_one_is_off_as_in_the_diffusers_pipelines(backend):
    # diffusers: do_true_cfg = true_cfg_scale > 1. A scale of 0.5 is no damped guidance: the
    # positive branch alone, the pixels of true_cfg 1; above 1 the negative branch changes them.
    off, half, zero, on = backend.generate_arrays(
        [request(seed=5, true_cfg=scale, negative_prompt="blurry") for scale in (1.0, 0.5, 0.0, 1.5)])
    np.testing.assert_array_equal(half, off)
    np.testing.assert_array_equal(zero, off)
    assert np.abs(on - off).max() > 1e-3


# --- batching -------------------------------------------------------------------------------

MIXED = [
    dict(seed=1, guidance=30.0),
    dict(seed=2, guidance=10.0, true_cfg=4.0, negative_prompt="nsfw", prompt="a cat sleeping"),
    dict(seed=3, guidance=1.0, true_cfg=2.0, negative_prompt=""),
    dict(seed=4, guidance=5.0, negative_prompt="blurry", prompt="a sign that says OPEN"),
    dict(seed=1, guidance=3.5, true_cfg=4.0, negative_prompt="nsfw"),
]


def test_a_candidate_is_the_same_in_a_batch_and_alone(backend):
    requests = [request(**settings) for settings in MIXED]
    batched = backend.generate_arrays(requests)
    small_batches = FluxFillBackend(backend.pipeline, replace(backend.config, max_batch=2)).generate_arrays(requests)
    for req, in_batch, in_pairs in zip(requests, batched, small_batches):
        alone = backend.generate_arrays([req])[0]
        # Exact in everything drawn from the seed; the transformer's batched matmuls may round the
        # last bits differently for another batch size on CPU, hence the tolerance.
        np.testing.assert_allclose(in_batch, alone, rtol=0, atol=1e-4)
        np.testing.assert_allclose(in_pairs, alone, rtol=0, atol=1e-4)
    # and the candidates are really different from each other
    assert np.abs(batched[0] - batched[4]).max() > 1e-2


def test_requests_of_different_canvases_and_settings_come_back_in_order(backend):
    other_image, other_mask = canvas(48, 32, seed=9), box(48, 32, (8, 8, 30, 24))
    requests = [
        request(seed=1),
        request(seed=2, image=other_image, mask=other_mask),
        request(seed=3, steps=2),
        request(seed=4, strength=0.5),
        request(seed=5, image=other_image, mask=other_mask),
    ]
    together = backend.generate_arrays(requests)
    for req, out in zip(requests, together):
        np.testing.assert_allclose(out, backend.generate_arrays([req])[0], rtol=0, atol=1e-4)
    assert together[1].shape == (32, 48, 3) and together[0].shape == (48, 64, 3)


def test_prompts_are_encoded_once_per_generate_call(backend, monkeypatch):
    calls = []
    encode = backend.pipeline.encode_prompt

    def counting(*args, **kwargs):
        calls.append(kwargs["prompt"])
        return encode(*args, **kwargs)

    monkeypatch.setattr(backend.pipeline, "encode_prompt", counting)
    backend.generate(
        [request(seed=s, true_cfg=4.0, negative_prompt="nsfw") for s in range(4)] + [request(seed=9, steps=2)]
    )
    assert sorted(calls) == ["a red cup", "nsfw"]


# --- tasks and sizes ------------------------------------------------------------------------


def test_every_task_returns_an_rgb_image_of_the_canvas_size(backend):
    extend_canvas = Image.new("RGB", (72, 40), (127, 127, 127))
    extend_canvas.paste(canvas(48, 24, seed=4), (12, 8))
    requests = [
        request(seed=1, task="fill"),
        request(seed=2, task="fill", prompt='a sign that says "OPEN"'),
        request(seed=3, task="extend", prompt="high-definition, perfect composition",
                image=extend_canvas, mask=border(72, 40, (12, 8, 60, 32))),
        request(seed=4, task="removal", prompt="remove", guidance=1.0, true_cfg=4.0, negative_prompt="nsfw"),
    ]
    for req, out in zip(requests, backend.generate(requests)):
        assert out.mode == "RGB" and out.size == req.image.size


def test_a_canvas_off_the_16_pixel_grid_is_padded_not_resized(backend):
    image, mask = canvas(72, 40, seed=6), box(72, 40, (50, 20, 72, 40))
    req = request(seed=8, image=image, mask=mask, true_cfg=1.0)
    ours = backend.generate_arrays([req])[0]
    assert ours.shape == (40, 72, 3)
    padded_image, padded_mask = pad_canvas(image, mask, 16)
    assert padded_image.size == padded_mask.size == (80, 48)
    # The hole touches the right and bottom edges: the padding continues it (generated), and the
    # kept content is mirrored into the strip.
    assert np.asarray(padded_mask)[47, 79] == 255 and np.asarray(padded_mask)[0, 79] == 0
    assert np.array_equal(np.asarray(padded_image)[:40, 72:], np.asarray(image)[:, 64:][:, ::-1])
    reference = pipeline_output(backend, request(seed=8, image=padded_image, mask=padded_mask))
    np.testing.assert_allclose(ours, reference[:40, :72], rtol=0, atol=1e-6)


def test_same_seed_same_pixels_other_seed_other_pixels(backend):
    requests = [request(seed=42), request(seed=42, true_cfg=4.0, negative_prompt="nsfw"), request(seed=43)]
    first, again = backend.generate(requests), backend.generate(requests)
    for a, b in zip(first, again):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    assert np.array_equal(
        np.asarray(backend.generate([requests[0]])[0]), np.asarray(backend.generate([requests[0]])[0])
    )
    assert not np.array_equal(np.asarray(first[0]), np.asarray(first[2]))


def test_invalid_requests_are_refused(backend):
    with pytest.raises(ValueError, match="mask"):
        backend.generate([request(mask=box(32, 32))])
    with pytest.raises(ValueError, match="strength"):
        backend.generate([request(strength=0.0)])
    with pytest.raises(ValueError, match="steps"):
        backend.generate([request(steps=0)])


# --- configuration --------------------------------------------------------------------------


def test_composite_source_delivers_the_source_outside_the_binarised_mask(backend):
    # A soft edge: grey 100 is "keep" and 200 "generate" once binarised at 0.5, as the pipeline does.
    mask = np.zeros((48, 64), np.uint8)
    mask[12:30, 16:40] = 200
    mask[12:30, 40:44] = 100
    req = request(seed=3, mask=Image.fromarray(mask, "L"))
    whole = backend.generate_arrays([req])[0]
    composited = FluxFillBackend(backend.pipeline, replace(backend.config, composite_source=True)).generate_arrays(
        [req])[0]
    generate = mask >= 128
    source = np.asarray(IMAGE, dtype=np.float32) / 255.0
    np.testing.assert_allclose(composited[generate], whole[generate], atol=1e-6)
    np.testing.assert_allclose(composited[~generate], source[~generate], atol=1e-6)
    assert np.abs(whole[~generate] - source[~generate]).mean() > 0.05  # the decode alone does not keep it


def test_check_config_normalises_without_loading(tiny_repo):
    config = check_backend_config("flux_fill", {"base": str(tiny_repo)})
    assert config == {
        "base": str(tiny_repo), "transformer": None, "loras": [], "dtype": "auto", "device": "auto",
        "cpu_offload": False, "max_sequence_length": 512, "max_batch": 8, "composite_source": False,
    }
    # a hub id cannot be checked before loading and is accepted
    assert (
        FluxFillBackend.check_config({"base": "black-forest-labs/FLUX.1-Fill-dev"})["base"]
        == "black-forest-labs/FLUX.1-Fill-dev"
    )


@pytest.mark.parametrize("config, message", [
    ({}, "base: required"),
    ({"base": "/no/such/flux"}, "base '/no/such/flux': no such directory"),
    ({"dtype": "float8"}, "dtype 'float8': expected one of"),
    ({"device": "tpu"}, "device 'tpu'"),
    ({"loras": [{"path": "x.safetensors"}]}, "lora 'x.safetensors': no such file"),
    ({"loras": [{"path": "/nowhere/adapter"}]}, "lora '/nowhere/adapter': no such file"),
    ({"transformer": "/no/such/transformer"}, "transformer '/no/such/transformer': no such directory"),
    ({"max_batch": 0}, "max_batch 0"),
    ({"max_sequence_length": 1024}, "max_sequence_length 1024"),
    ({"cpu_offload": True, "device": "cpu"}, "cpu_offload"),
    ({"guidance": 3}, "unknown setting 'guidance'"),
    ({"composite_source": "yes"}, "composite_source: must be true or false"),
])
def test_check_config_names_the_wrong_setting(tiny_repo, config, message):
    config = {"base": str(tiny_repo), **config} if "base" not in config and config else config
    with pytest.raises(BackendConfigError) as error:
        FluxFillBackend.check_config(config)
    assert message in str(error.value)


def test_check_config_refuses_a_directory_that_is_not_a_pipeline(tmp_path):
    with pytest.raises(BackendConfigError, match="no model_index.json"):
        FluxFillBackend.check_config({"base": str(tmp_path)})


def test_loaded_through_the_registry(tiny_repo):
    loaded = load_backend("flux_fill", {"base": str(tiny_repo), "device": "cpu", "max_sequence_length": SEQ})
    assert isinstance(loaded, FluxFillBackend)
    assert loaded.pipeline.transformer.dtype == torch.float32  # "auto" on CPU


# --- replacement transformer and LoRA -------------------------------------------------------


@pytest.mark.parametrize("subfolder", [True, False])
def test_a_replacement_transformer_is_used(backend, tiny_repo, tmp_path, subfolder):
    location = save_tiny_transformer(tmp_path / "onereward", seed=7, subfolder=subfolder)
    replaced = FluxFillBackend.from_config({"base": str(tiny_repo), "transformer": str(location), "device": "cpu",
                                            "dtype": "float32", "max_sequence_length": SEQ})
    req = request(seed=1)
    assert np.abs(replaced.generate_arrays([req])[0] - backend.generate_arrays([req])[0]).max() > 1e-2
    saved = torch.nn.Module.state_dict(type(replaced.pipeline.transformer).from_pretrained(
        location, subfolder="transformer" if subfolder else None))
    for name, value in replaced.pipeline.transformer.state_dict().items():
        assert torch.equal(value, saved[name]), name


def test_a_lora_changes_the_output_and_weight_zero_is_no_lora(backend, tiny_repo, tmp_path):
    lora_file = save_tiny_lora(tiny_repo, tmp_path / "lora")
    config = {"base": str(tiny_repo), "device": "cpu", "dtype": "float32", "max_sequence_length": SEQ}
    req = request(seed=1, true_cfg=2.0, negative_prompt="nsfw")
    plain = backend.generate_arrays([req])[0]

    with_lora = FluxFillBackend.from_config(
        {**config, "loras": [{"path": str(lora_file), "weight": 1.0, "name": "removal"}]}
    )
    assert with_lora.pipeline.get_list_adapters() == {"transformer": ["removal"]}
    assert np.abs(with_lora.generate_arrays([req])[0] - plain).max() > 1e-2

    # a directory holding the adapter works too; weight 0 switches it off
    muted = FluxFillBackend.from_config({**config, "loras": [{"path": str(lora_file.parent), "weight": 0.0}]})
    np.testing.assert_allclose(muted.generate_arrays([req])[0], plain, rtol=0, atol=1e-5)
