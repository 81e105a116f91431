"""Exports of a policy checkpoint: the LoRA file and the merged transformer (rl/core/export.py), and
their way out through the API, the admin and `manage.py export_checkpoint`.

The checkpoints are made by the trainer's own save code (OneRewardTrainer.save_policy) on the tiny
FLUX Fill model, with non-zero EMA weights put in place of training, and registered as generators by
rl.execution.register_checkpoint. Ground truth is what the checkpoint's generator paints through the
project's flux_fill backend; each export is loaded by the tools' own loaders (diffusers'
load_lora_weights, FluxTransformer2DModel.from_pretrained / from_single_file) and must paint the
same pixels. ComfyUI is not installed: its key map and LoRA arithmetic are transcribed below from its
source, and the LoRA file is applied the way ComfyUI applies it.
"""
import io
import re

import numpy as np
import pytest
import torch
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage
from django.core.management import CommandError, call_command
from django.utils.text import slugify
from rest_framework.test import APIClient
from safetensors import safe_open
from safetensors.torch import load_file

from generation.core.backends.base import CandidateSettings, GenerationRequest
from generation.core.backends.flux_fill import FluxFillBackend
from generation.core.demo_flux import save_tiny_flux_fill, save_tiny_lora
from generation.models import Generator
from preferences.models import PreferenceDataset
from rewardmodel.core.demo_judge import save_tiny_qwen
from rewardmodel.models import RewardModelRun, RewardModelVersion
from rl.core.export import ExportError, write_lora, write_merged
from rl.core.onereward import OneRewardTrainer
from rl.execution import register_checkpoint
from rl.exports import STORING, export_states, find_checkpoint, request_export, storage_name
from rl.models import PolicyCheckpoint, PolicyExport, RLRun
from rl.tasks import export_policy
from tests.conftest import box_mask, photo, stored_files

from . import SEQ, base_generator, rl_config, write_default_conditions

pytest_plugins = ["tests.s3_server"]  # the s3_settings fixture

STEPS = 2
GUIDANCE = 30.0


# --- the tiny world and its checkpoints ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("rl-export")
    flux = save_tiny_flux_fill(root / "flux")
    judge = save_tiny_qwen(root / "judge", seed=0)
    conditions = write_default_conditions(root / "conditions")
    return flux, judge, conditions, root


def saved_policy(world, name: str, lora_rank: int | None, base_loras=()) -> dict:
    """The generator settings that OneRewardTrainer.save_policy writes for a policy whose EMA holds
    seeded non-zero weights: LoRA A and B drawn at random, or the full transformer nudged."""
    flux, judge, conditions, root = world
    config = rl_config(flux, judge, conditions, root / name, lora_rank=lora_rank,
                       base_generator=base_generator(flux, composite_source=False, loras=list(base_loras)))
    trainer = OneRewardTrainer(config)
    generator = torch.Generator("cpu").manual_seed(1)
    with torch.no_grad():
        if lora_rank:
            for shadow in trainer.ema.shadow.values():
                shadow.copy_(torch.randn(shadow.shape, generator=generator) * 0.2)
        else:
            for parameter in trainer.ema_module.parameters():
                parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.05)
    return trainer.save_policy()


@pytest.fixture(scope="module")
def lora_policy(world):
    return saved_policy(world, "lora-run", lora_rank=4)


@pytest.fixture(scope="module")
def full_policy(world):
    return saved_policy(world, "full-run", lora_rank=None)


def register(world, settings: dict, lora_rank: int | None, name: str = "", run_pk: int | None = None
             ) -> PolicyCheckpoint:
    flux = world[0]
    base = Generator.objects.create(name=f"tiny flux {name}", backend="flux_fill",
                                    settings=base_generator(flux, composite_source=False))
    dataset = PreferenceDataset.objects.create(name=f"d{name}", version=1, status="done")
    judge = RewardModelVersion.objects.create(run=RewardModelRun.objects.create(dataset=dataset, status="done"),
                                              name=f"judge {name}", model_path=str(world[1]), base_model="tiny",
                                              template_version=1)
    run = RLRun.objects.create(pk=run_pk, name=name, base_generator=base, reward_model=judge, status="done", step=2,
                               lora_rank=lora_rank)
    return register_checkpoint(run, {"generator_settings": settings, "steps": 2})


@pytest.fixture
def exports_here(settings, tmp_path):
    settings.ONEREWARD_TRAINING_DIR = tmp_path / "training"


# --- painting ---------------------------------------------------------------------------------------------------


def request(seed: int) -> GenerationRequest:
    return GenerationRequest(image=photo(32, 32, seed=2), mask=box_mask(32, 32, (6, 8, 26, 28)), prompt="a red cup",
                             task="fill", settings=CandidateSettings(seed=seed, steps=STEPS, guidance=GUIDANCE))


def generator_paints(settings: dict, seed: int) -> np.ndarray:
    """What a generator with these settings paints, through the project's flux_fill backend."""
    return FluxFillBackend.from_config(settings).generate_arrays([request(seed)])[0]


def pipeline_paints(pipeline, seed: int) -> np.ndarray:
    """diffusers' FluxFillPipeline itself, for the same request: float (H, W, 3) in [0, 1]."""
    req = request(seed)
    return pipeline(prompt=req.prompt, image=req.image, mask_image=req.mask, height=32, width=32, strength=1.0,
                    num_inference_steps=STEPS, guidance_scale=GUIDANCE,
                    generator=torch.Generator("cpu").manual_seed(seed), max_sequence_length=SEQ,
                    output_type="np").images[0]


def fresh_pipeline(flux, **components):
    from diffusers import FluxFillPipeline

    pipeline = FluxFillPipeline.from_pretrained(flux, **components)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def check_reproduces(pipeline, settings: dict, base_settings: dict, seeds=(3, 11)) -> None:
    for seed in seeds:
        expected = generator_paints(settings, seed)
        np.testing.assert_allclose(pipeline_paints(pipeline, seed), expected, rtol=0, atol=2e-5)
        # The policy paints something else than its base: the export carries the policy.
        assert np.abs(expected - generator_paints(base_settings, seed)).max() > 1e-2


# --- ComfyUI's layout, transcribed ---------------------------------------------------------------------------
# From Comfy-Org/ComfyUI comfy/utils.py, flux_to_diffusers(mmdit_config, output_prefix): diffusers name of a
# Linear (or norm) -> (ComfyUI's BFL-layout name, slice of dim 0 as (start, length) in units of the hidden size, or
# None for the whole tensor). ComfyUI's loader (comfy/sd.py load_diffusion_model_state_dict, through
# comfy/model_detection.py convert_diffusers_mmdit) builds its model from a diffusers-layout file with this map.
COMFY_DOUBLE_BLOCK = {
    "attn.to_q": ("img_attn.qkv", (0, 1)), "attn.to_k": ("img_attn.qkv", (1, 1)),
    "attn.to_v": ("img_attn.qkv", (2, 1)),
    "attn.add_q_proj": ("txt_attn.qkv", (0, 1)), "attn.add_k_proj": ("txt_attn.qkv", (1, 1)),
    "attn.add_v_proj": ("txt_attn.qkv", (2, 1)),
    "attn.to_out.0": ("img_attn.proj", None), "attn.to_add_out": ("txt_attn.proj", None),
    "norm1.linear": ("img_mod.lin", None), "norm1_context.linear": ("txt_mod.lin", None),
    "ff.net.0.proj": ("img_mlp.0", None), "ff.net.2": ("img_mlp.2", None),
    "ff_context.net.0.proj": ("txt_mlp.0", None), "ff_context.net.2": ("txt_mlp.2", None),
    "attn.norm_q": ("img_attn.norm.query_norm", None), "attn.norm_k": ("img_attn.norm.key_norm", None),
    "attn.norm_added_q": ("txt_attn.norm.query_norm", None), "attn.norm_added_k": ("txt_attn.norm.key_norm", None),
}
COMFY_SINGLE_BLOCK = {
    "attn.to_q": ("linear1", (0, 1)), "attn.to_k": ("linear1", (1, 1)), "attn.to_v": ("linear1", (2, 1)),
    "proj_mlp": ("linear1", (3, 4)), "proj_out": ("linear2", None), "norm.linear": ("modulation.lin", None),
    "attn.norm_q": ("norm.query_norm", None), "attn.norm_k": ("norm.key_norm", None),
}
COMFY_BASIC = {  # MAP_BASIC; norm_out.linear goes through swap_scale_shift
    "proj_out": "final_layer.linear", "x_embedder": "img_in", "context_embedder": "txt_in",
    "time_text_embed.timestep_embedder.linear_1": "time_in.in_layer",
    "time_text_embed.timestep_embedder.linear_2": "time_in.out_layer",
    "time_text_embed.text_embedder.linear_1": "vector_in.in_layer",
    "time_text_embed.text_embedder.linear_2": "vector_in.out_layer",
    "time_text_embed.guidance_embedder.linear_1": "guidance_in.in_layer",
    "time_text_embed.guidance_embedder.linear_2": "guidance_in.out_layer",
    "norm_out.linear": "final_layer.adaLN_modulation.1",
}
# From comfy/lora.py model_lora_keys_unet, the Flux branch: key_map["transformer." + diffusers name] = the target
# above; comfy/weight_adapter/lora.py LoRAAdapter.load reads "<key>.lora_B.weight" as up and "<key>.lora_A.weight"
# as down (the "diffusers2" names), "<key>.alpha" as alpha, and adds strength * alpha / rank * up @ down to the
# target (its slice, for q / k / v / proj_mlp).
COMFY_LORA_PREFIX = "transformer."


def swap_scale_shift(weight):  # comfy/utils.py swap_scale_shift
    shift, scale = weight.chunk(2, dim=0)
    return torch.cat([scale, shift], dim=0)


def comfy_key_map(state_dict) -> dict:
    """flux_to_diffusers for this model: {diffusers key: (ComfyUI key, (offset, length) or None, fn or None)}."""
    hidden = state_dict["x_embedder.bias"].shape[0]
    blocks = {int(m.group(1)) for k in state_dict if (m := re.match(r"transformer_blocks\.(\d+)\.", k))}
    singles = {int(m.group(1)) for k in state_dict if (m := re.match(r"single_transformer_blocks\.(\d+)\.", k))}
    key_map = {}
    for prefix_from, prefix_to, table, indices in (("transformer_blocks", "double_blocks", COMFY_DOUBLE_BLOCK, blocks),
                                                   ("single_transformer_blocks", "single_blocks", COMFY_SINGLE_BLOCK,
                                                    singles)):
        for index in indices:
            for name, (target, part) in table.items():
                for end in ("weight", "bias"):
                    span = None if part is None else (part[0] * hidden, part[1] * hidden)
                    key_map[f"{prefix_from}.{index}.{name}.{end}"] = (f"{prefix_to}.{index}.{target}.{end}", span,
                                                                      None)
    for name, target in COMFY_BASIC.items():
        fn = swap_scale_shift if name == "norm_out.linear" else None
        for end in ("weight", "bias"):
            key_map[f"{name}.{end}"] = (target + "." + end, None, fn)
    return key_map


def to_comfy(state_dict) -> dict:
    """ComfyUI's conversion of a diffusers-layout FLUX transformer (convert_diffusers_mmdit); every key of
    the file must be converted, or ComfyUI's model would miss it."""
    key_map = comfy_key_map(state_dict)
    left = sorted(set(state_dict) - set(key_map))
    assert not left, f"keys ComfyUI's map does not convert: {left}"
    out = {}
    for key, weight in state_dict.items():
        target, span, fn = key_map[key]
        weight = fn(weight) if fn else weight
        if span is None:
            out[target] = weight.clone()
        else:
            start, length = span
            assert weight.shape[0] == length, (key, weight.shape, span)
            whole = out.get(target)
            if whole is None or whole.shape[0] < start + length:
                grown = torch.zeros((start + length, *weight.shape[1:]), dtype=weight.dtype)
                if whole is not None:
                    grown[:whole.shape[0]] = whole
                whole = grown
            whole[start:start + length] = weight
            out[target] = whole
    return out


def comfy_apply_lora(comfy_state: dict, lora: dict, diffusers_keys) -> tuple[dict, set]:
    """The LoRA applied to ComfyUI's weights as ComfyUI applies it; returns (weights, the LoRA keys it read)."""
    key_map = {f"{COMFY_LORA_PREFIX}{k[:-len('.weight')]}": target
               for k, target in comfy_key_map(diffusers_keys).items() if k.endswith(".weight")}
    patched = {k: v.clone() for k, v in comfy_state.items()}
    loaded = set()
    for x, (target, span, _) in key_map.items():
        up_name, down_name, alpha_name = f"{x}.lora_B.weight", f"{x}.lora_A.weight", f"{x}.alpha"
        if up_name not in lora:
            continue
        up, down = lora[up_name].float(), lora[down_name].float()
        alpha = lora[alpha_name].item() if alpha_name in lora else None
        scale = alpha / down.shape[0] if alpha is not None else 1.0
        weight = patched[target]
        view = weight if span is None else weight.narrow(0, span[0], span[1])
        view += (scale * (up @ down)).to(weight.dtype)
        loaded |= {up_name, down_name} | ({alpha_name} if alpha is not None else set())
    return patched, loaded


# The modules the policy's LoRA wraps in the tiny transformer (one double block, one single block), as
# rl.core.config.DEFAULT_LORA_TARGETS selects them, and so the file's keys.
POLICY_MODULES = [
    *(f"transformer_blocks.0.{m}" for m in (
        "attn.to_q", "attn.to_k", "attn.to_v", "attn.to_out.0", "attn.add_q_proj", "attn.add_k_proj",
        "attn.add_v_proj", "attn.to_add_out", "ff.net.0.proj", "ff.net.2", "ff_context.net.0.proj",
        "ff_context.net.2")),
    *(f"single_transformer_blocks.0.{m}" for m in ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp", "proj_out")),
    "proj_out",
]
EXPECTED_LORA_KEYS = {f"transformer.{module}.{part}" for module in POLICY_MODULES
                      for part in ("lora_A.weight", "lora_B.weight", "alpha")}


# --- the LoRA file --------------------------------------------------------------------------------------------


def test_the_lora_file_has_comfyuis_keys_and_patches_comfyuis_weights_as_the_merge_does(world, lora_policy,
                                                                                        tmp_path):
    flux = world[0]
    write_lora(lora_policy, tmp_path / "policy.safetensors")
    lora = load_file(tmp_path / "policy.safetensors")
    assert set(lora) == EXPECTED_LORA_KEYS
    for module in POLICY_MODULES:
        down, up = lora[f"transformer.{module}.lora_A.weight"], lora[f"transformer.{module}.lora_B.weight"]
        assert down.shape[0] == up.shape[1] == 4 and lora[f"transformer.{module}.alpha"].item() == 4.0
        assert down.dtype == up.dtype == torch.float32 and up.abs().max() > 0
    with safe_open(tmp_path / "policy.safetensors", "pt") as handle:
        assert handle.metadata()["onereward.base"] == str(flux)

    from diffusers import FluxTransformer2DModel

    base = FluxTransformer2DModel.from_pretrained(flux, subfolder="transformer").state_dict()
    # Every LoRA key names a module of the transformer, and ComfyUI's map puts it on that module's weight.
    key_map = comfy_key_map(base)
    for module in POLICY_MODULES:
        assert f"{module}.weight" in base and f"{module}.weight" in key_map
    write_merged(lora_policy, tmp_path / "merged")
    merged = FluxTransformer2DModel.from_pretrained(tmp_path / "merged").state_dict()
    patched, loaded = comfy_apply_lora(to_comfy(base), lora, base)
    assert loaded == set(lora), f"keys ComfyUI would not load: {sorted(set(lora) - loaded)}"
    expected = to_comfy(merged)
    assert set(patched) == set(expected)
    for key in expected:
        torch.testing.assert_close(patched[key], expected[key], rtol=0, atol=1e-5, msg=key)
    # ... and the LoRA changes what it should: q / k / v land in their thirds of the fused qkv.
    hidden = base["x_embedder.bias"].shape[0]
    qkv = patched["double_blocks.0.img_attn.qkv.weight"] - to_comfy(base)["double_blocks.0.img_attn.qkv.weight"]
    q = lora["transformer.transformer_blocks.0.attn.to_q.lora_B.weight"] @ \
        lora["transformer.transformer_blocks.0.attn.to_q.lora_A.weight"]
    torch.testing.assert_close(qkv[:hidden], q, rtol=0, atol=1e-6)


@pytest.mark.django_db
def test_the_lora_download_from_the_api_reproduces_the_checkpoint_in_diffusers(world, lora_policy, make_user,
                                                                               exports_here, tmp_path,
                                                                               django_capture_on_commit_callbacks):
    checkpoint = register(world, lora_policy, lora_rank=4, name="lora")
    api = APIClient()
    api.force_authenticate(make_user("ann", "annotator"))
    assert api.post(f"/api/policy-checkpoints/{checkpoint.pk}/exports/", {"format": "lora"}).status_code == 403
    api.force_authenticate(make_user("eve", "ml_engineer"))
    url = f"/api/policy-checkpoints/{checkpoint.pk}/"
    assert api.get(url).json()["exports"]["lora"] == {"status": "not made", "error": "", "size": 0, "details": {},
                                                      "progress": 0.0, "phase": "", "downloadable": False,
                                                      "problem": "", "download_url": None}
    assert api.get(f"{url}exports/lora/file/").status_code == 404
    with django_capture_on_commit_callbacks() as queued:
        response = api.post(f"{url}exports/", {"format": "lora"}, format="json")
    assert response.status_code == 202, response.content
    assert len(queued) == 1 and response.json()["exports"]["lora"]["status"] == "queued"
    export = PolicyExport.objects.get(checkpoint=checkpoint, format="lora")
    export_policy(export.pk)  # the Celery task, run here as a GPU worker runs it
    state = api.get(url).json()["exports"]["lora"]
    assert state["status"] == "done" and state["downloadable"], state
    assert state["progress"] == 1.0 and state["phase"] == ""
    assert state["details"]["modules"] == len(POLICY_MODULES) and state["details"]["rank"] == 4
    assert state["download_url"].endswith(f"{url}exports/lora/file/")
    # Asking again for a ready export queues nothing and answers 200.
    with django_capture_on_commit_callbacks() as queued:
        assert api.post(f"{url}exports/", {"format": "lora"}, format="json").status_code == 200
    assert not queued

    response = api.get(f"{url}exports/lora/file/")
    assert response.status_code == 200
    filename = f"{slugify(checkpoint.generator.name)}-lora.safetensors"
    assert response["Content-Disposition"] == f'attachment; filename="{filename}"'
    downloaded = tmp_path / "download.safetensors"
    downloaded.write_bytes(b"".join(response.streaming_content))
    assert state["size"] == downloaded.stat().st_size and set(load_file(downloaded)) == EXPECTED_LORA_KEYS

    pipeline = fresh_pipeline(world[0])
    pipeline.load_lora_weights(str(downloaded), adapter_name="policy")
    check_reproduces(pipeline, checkpoint.generator.settings, base_generator(world[0], composite_source=False))


def test_the_base_generators_own_loras_are_folded_into_the_one_lora_file(world, tmp_path):
    flux = world[0]
    removal = save_tiny_lora(flux, tmp_path / "removal", seed=3, rank=2)
    policy = saved_policy(world, "stacked-run", lora_rank=4,
                          base_loras=[{"path": str(removal), "weight": 0.7, "name": "removal"}])
    assert [lora["name"] for lora in policy["loras"]] == ["removal", "onereward_policy"]
    summary = write_lora(policy, tmp_path / "policy.safetensors")
    lora = load_file(tmp_path / "policy.safetensors")
    # The attention projections carry both LoRAs (rank 2 + 4), the feed-forwards the policy's alone.
    assert lora["transformer.transformer_blocks.0.attn.to_q.lora_A.weight"].shape[0] == 6
    assert lora["transformer.transformer_blocks.0.attn.to_q.alpha"].item() == 6.0
    assert lora["transformer.transformer_blocks.0.ff.net.2.lora_A.weight"].shape[0] == 4
    assert summary["rank"] == 6 and summary["modules"] == len(POLICY_MODULES)
    pipeline = fresh_pipeline(flux)
    pipeline.load_lora_weights(str(tmp_path / "policy.safetensors"))
    check_reproduces(pipeline, policy, base_generator(flux, composite_source=False), seeds=(5,))


# --- the merged transformer -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_merged_transformer_reproduces_the_checkpoint(world, lora_policy, make_user, client, exports_here,
                                                          tmp_path):
    from diffusers import FluxTransformer2DModel

    flux = world[0]
    checkpoint = register(world, lora_policy, lora_rank=4, name="merge me")
    out = io.StringIO()
    call_command("export_checkpoint", "merge me", "--format", "merged", "--out", str(tmp_path / "merged"), stdout=out)
    assert "18 LoRA modules merged" in out.getvalue() and "float32" in out.getvalue()
    transformer = FluxTransformer2DModel.from_pretrained(tmp_path / "merged")
    to_comfy(transformer.state_dict())  # every key converts for ComfyUI
    check_reproduces(fresh_pipeline(flux, transformer=transformer), checkpoint.generator.settings,
                     base_generator(flux, composite_source=False))

    # The admin's download: one .safetensors, loaded with a FLUX.1 Fill repository's config.
    client.force_login(make_user("eve", "ml_engineer"))
    page = f"/admin/rl/policycheckpoint/{checkpoint.pk}/change/"
    assert "Prepare" in client.get(page).content.decode()
    response = client.post(f"/admin/rl/policycheckpoint/{checkpoint.pk}/export/", {"format": "merged"})
    assert response.status_code == 302
    export_policy(PolicyExport.objects.get(checkpoint=checkpoint, format="merged").pk)
    html = client.get(page).content.decode()
    download = f"/admin/rl/policycheckpoint/{checkpoint.pk}/export/merged/download/"
    assert download in html and "Download" in html
    response = client.get(download)
    assert response.status_code == 200 and response["Content-Disposition"].endswith('-transformer.safetensors"')
    single = tmp_path / "transformer.safetensors"
    single.write_bytes(b"".join(response.streaming_content))
    loaded = FluxTransformer2DModel.from_single_file(str(single), config=str(flux), subfolder="transformer")
    for name, tensor in transformer.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    with safe_open(single, "pt") as handle:
        assert '"num_single_layers": 1' in handle.metadata()["config"]


@pytest.mark.django_db
def test_a_full_fine_tune_exports_its_transformer_and_refuses_a_lora(world, full_policy, make_user, client,
                                                                     exports_here, tmp_path):
    from diffusers import FluxTransformer2DModel

    flux = world[0]
    assert full_policy["transformer"] and full_policy["loras"] == []
    checkpoint = register(world, full_policy, lora_rank=None, name="full")
    with pytest.raises(CommandError, match="full fine-tune .* merged transformer"):
        call_command("export_checkpoint", f"checkpoint:{checkpoint.pk}", "--format", "lora", "--out", str(tmp_path))
    with pytest.raises(ExportError, match="full fine-tune"):
        write_lora(full_policy, tmp_path / "x.safetensors")
    api = APIClient()
    api.force_authenticate(make_user("eve", "ml_engineer"))
    response = api.post(f"/api/policy-checkpoints/{checkpoint.pk}/exports/", {"format": "lora"}, format="json")
    assert response.status_code == 400 and "full fine-tune" in response.json()["format"][0]
    assert api.post(f"/api/policy-checkpoints/{checkpoint.pk}/exports/", {"format": "gif"},
                    format="json").status_code == 400
    states = api.get(f"/api/policy-checkpoints/{checkpoint.pk}/").json()["exports"]
    assert "full fine-tune" in states["lora"]["problem"] and not states["merged"]["problem"]
    client.force_login(make_user("max", "ml_engineer"))
    response = client.post(f"/admin/rl/policycheckpoint/{checkpoint.pk}/export/", {"format": "lora"}, follow=True)
    assert "full fine-tune" in response.content.decode() and not PolicyExport.objects.exists()

    call_command("export_checkpoint", f"run:{checkpoint.run.pk}", "--format", "merged",
                 "--out", str(tmp_path / "merged"), stdout=io.StringIO())
    transformer = FluxTransformer2DModel.from_pretrained(tmp_path / "merged")
    check_reproduces(fresh_pipeline(flux, transformer=transformer), checkpoint.generator.settings,
                     base_generator(flux, composite_source=False), seeds=(7,))


# --- bad input ----------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_references_that_name_no_checkpoint_fail_clearly(world, lora_policy, tmp_path):
    checkpoint = register(world, lora_policy, lora_rank=4, name="named run")
    assert find_checkpoint("named run") == checkpoint
    assert find_checkpoint(f"run:{checkpoint.run.pk}") == checkpoint
    assert find_checkpoint(checkpoint.generator.name) == checkpoint
    with pytest.raises(CommandError, match="no policy checkpoint or RL run 'nothing'"):
        call_command("export_checkpoint", "nothing", "--format", "lora", "--out", str(tmp_path))
    with pytest.raises(CommandError, match="no policy checkpoint or RL run 'checkpoint:999'"):
        call_command("export_checkpoint", "checkpoint:999", "--format", "lora", "--out", str(tmp_path))
    RLRun.objects.create(name="still training", base_generator=checkpoint.run.base_generator,
                         reward_model=checkpoint.run.reward_model, status="running")
    with pytest.raises(CommandError, match="still training has no policy checkpoint yet"):
        call_command("export_checkpoint", "still training", "--format", "merged", "--out", str(tmp_path))
    # A bare number that is one checkpoint's ID and another checkpoint's run's ID is ambiguous.
    number = checkpoint.pk + 10_000
    by_run = register(world, lora_policy, lora_rank=4, name="by run", run_pk=number)
    by_id = register(world, lora_policy, lora_rank=4, name="by id")
    PolicyCheckpoint.objects.filter(pk=by_id.pk).update(id=number)
    with pytest.raises(LookupError, match="several checkpoints"):
        find_checkpoint(str(number))
    assert find_checkpoint(f"run:{number}") == by_run and find_checkpoint(f"checkpoint:{number}").run == by_id.run


@pytest.mark.django_db
def test_a_failed_export_says_why_and_can_be_prepared_again(world, lora_policy, exports_here, tmp_path,
                                                            django_capture_on_commit_callbacks):
    lora_file = tmp_path / "gone.safetensors"
    write_lora(lora_policy, lora_file)
    settings = {**lora_policy, "loras": [{"path": str(lora_file), "weight": 1.0, "name": "gone"}]}
    checkpoint = register(world, settings, lora_rank=4, name="gone")
    export = request_export(checkpoint, "lora")
    lora_file.unlink()  # the checkpoint's files are not where its generator says
    export_policy(export.pk)
    export.refresh_from_db()
    assert export.status == "failed" and str(lora_file) in export.error_cause, export.error
    assert not list((tmp_path / "training").iterdir())  # no partial files left behind
    write_lora(lora_policy, lora_file)  # the file is back
    with django_capture_on_commit_callbacks() as queued:
        again = request_export(checkpoint, "lora")
    assert again.pk == export.pk and again.status == "queued" and len(queued) == 1
    export_policy(again.pk)
    again.refresh_from_db()
    assert again.status == "done" and again.error == "" and again.file.name.endswith("-lora.safetensors")


# --- storage: S3, and the progress of storing ---------------------------------------------------------------


@pytest.mark.django_db
def test_an_export_goes_to_s3_and_is_downloaded_from_it(world, lora_policy, make_user, client, exports_here,
                                                         s3_settings, tmp_path):
    checkpoint = register(world, lora_policy, lora_rank=4, name="on s3")
    export = request_export(checkpoint, "lora")
    export_policy(export.pk)
    export.refresh_from_db()
    name = storage_name(checkpoint, "lora")
    assert (export.status, export.file.name) == ("done", name), export.error
    assert s3_settings.keys("rl/") == [name]
    stored = s3_settings.read(name)
    assert export.size == len(stored) and export.progress_done == export.progress_total == len(stored)
    assert stored_files() == [] and not list((tmp_path / "training").iterdir())  # nothing left on the disk

    api = APIClient()
    api.force_authenticate(make_user("eve", "ml_engineer"))
    from_api = api.get(f"/api/policy-checkpoints/{checkpoint.pk}/exports/lora/file/")
    client.force_login(make_user("max", "ml_engineer"))
    from_admin = client.get(f"/admin/rl/policycheckpoint/{checkpoint.pk}/export/lora/download/")
    for response in (from_api, from_admin):
        assert response.status_code == 200
        assert b"".join(response.streaming_content) == stored
    downloaded = tmp_path / "lora.safetensors"
    downloaded.write_bytes(stored)
    assert set(load_file(downloaded)) == EXPECTED_LORA_KEYS

    # Prepared again (its file removed from the bucket): the same key, the new file.
    s3_settings.client.delete_object(Bucket=s3_settings.name, Key=f"media/{name}")
    again = request_export(checkpoint, "lora")
    assert again.status == "queued"
    export_policy(again.pk)
    assert s3_settings.keys("rl/") == [name]
    (tmp_path / "again.safetensors").write_bytes(s3_settings.read(name))
    first, second = load_file(downloaded), load_file(tmp_path / "again.safetensors")
    assert set(first) == set(second) and all(torch.equal(first[key], second[key]) for key in first)


class UploadWatchingStorage(FileSystemStorage):
    """Local storage that reads an upload in 1 KiB chunks, as an S3 upload reads its parts, and
    notes what the API and the admin say of the export after each chunk."""

    seen: list = []
    checkpoint = None
    client = None

    def _save(self, name, content):
        chunks = []
        while chunk := content.read(1024):
            chunks.append(chunk)
            state = export_states(self.checkpoint)["lora"]
            page = self.client.get(f"/admin/rl/policycheckpoint/{self.checkpoint.pk}/change/").content.decode()
            self.seen.append((state, page))
        return super()._save(name, ContentFile(b"".join(chunks)))


@pytest.mark.django_db
def test_the_page_and_the_api_follow_the_export_while_it_is_stored(world, lora_policy, make_user, client,
                                                                    exports_here, settings):
    checkpoint = register(world, lora_policy, lora_rank=4, name="watched")
    client.force_login(make_user("eve", "ml_engineer"))
    UploadWatchingStorage.seen, UploadWatchingStorage.checkpoint = [], checkpoint
    UploadWatchingStorage.client = client
    settings.STORAGES = {**settings.STORAGES, "default": {"BACKEND": f"{__name__}.UploadWatchingStorage"}}
    export = request_export(checkpoint, "lora")
    export_policy(export.pk)
    export.refresh_from_db()
    assert export.status == "done", export.error
    size = export.size
    seen = [state for state, _ in UploadWatchingStorage.seen]
    assert len(seen) == -(-size // 1024) > 10
    assert {state["status"] for state in seen} == {"running"} and {state["phase"] for state in seen} == {STORING}
    fractions = [state["progress"] for state in seen]
    assert fractions == sorted(fractions) and fractions[0] < 0.1 and fractions[-1] == 1.0
    assert len(set(fractions)) > 10  # it moves with the bytes, not in one jump
    # Each fraction is the bytes read so far (to the 1 % step the row is written at).
    for number, fraction in enumerate(fractions, start=1):
        assert min(number * 1024, size) / size - 0.011 <= fraction <= min(number * 1024, size) / size
    _, page = UploadWatchingStorage.seen[len(seen) // 2]
    percent = round(100 * fractions[len(seen) // 2])
    assert f"running: {STORING}" in page and f"{percent} %" in page
    assert export_states(checkpoint)["lora"]["phase"] == ""  # done: no phase
