"""A trained policy as the files designers load: one LoRA file, or the merged transformer.

A policy is what its generator's settings load (generation.core.backends.flux_fill.FluxFillConfig):
a FLUX.1 Fill repository (`base`), optionally a replacement transformer (`transformer`: a full
fine-tuning policy), and LoRAs with weights (a LoRA policy's adapter last, after the base
generator's own). Both exports reproduce what that generator computes.

LoRA file (`write_lora`): one .safetensors in diffusers' FLUX LoRA layout, float32, three tensors per
wrapped Linear of FluxTransformer2DModel, named by the module's path in that model:

    transformer.<module>.lora_A.weight   (R, in)    "down"
    transformer.<module>.lora_B.weight   (out, R)   "up"
    transformer.<module>.alpha           ()         = R, so the scale alpha / R is 1

e.g. transformer.transformer_blocks.0.attn.to_q, transformer.single_transformer_blocks.7.proj_mlp,
transformer.proj_out. The update of a module is W <- W + B A.
- diffusers: FluxFillPipeline.load_lora_weights takes the names as they are and the ".alpha" keys as
  network alphas (peft lora_alpha), so it computes B A x with scale 1.
- ComfyUI: comfy/lora.py model_lora_keys_unet maps "transformer.<diffusers module>" of a Flux model
  through comfy.utils.flux_to_diffusers onto its own (BFL) layout: to_q / to_k / to_v onto thirds of
  the fused img_attn.qkv, add_*_proj onto txt_attn.qkv, a single block's to_q / to_k / to_v / proj_mlp
  onto slices of linear1, proj_out onto linear2 (final_layer.linear at the top level);
  comfy/weight_adapter/lora.py reads lora_B as up, lora_A as down and scales by alpha / rank.

Several LoRAs (the base generator's and the policy's) become one: for each module, A stacks the
rows of every LoRA's A and B their columns, each B times its LoRA's scale s_i (the generator's
weight x alpha_i / r_i), so that B A = sum_i s_i B_i A_i, which is what the generator adds; a
module's rank R is then the sum of the ranks that wrap it.

Merged transformer (`write_merged`): the generator's transformer with W <- W + B A applied (in
float32) to every module, saved in the generator's dtype (bfloat16 for "auto", as on a GPU):
either a diffusers model folder (config.json + one diffusion_pytorch_model.safetensors, for
FluxTransformer2DModel.from_pretrained) or that one .safetensors file alone, with the model's config
in its header, for FluxTransformer2DModel.from_single_file(file, config=<a FLUX.1 Fill repository>,
subfolder="transformer") and ComfyUI's "Load Diffusion Model" (comfy/sd.py converts a diffusers-layout
FLUX transformer on load). A full fine-tuning policy is its own transformer: the merge is a copy.

Plain Python + torch + diffusers + safetensors: no Django.
"""
from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from generation.core.backends.base import BackendConfigError

# The generator's own transformer loading (directory, repository with a subfolder, or hub id).
from generation.core.backends.flux_fill import FluxFillConfig, _dtype_kwarg, _load_transformer

if TYPE_CHECKING:
    import torch

FORMATS = ("lora", "merged")
PREFIX = "transformer."
A_SUFFIX, B_SUFFIX, ALPHA_SUFFIX = ".lora_A.weight", ".lora_B.weight", ".alpha"
# safetensors header keys this module writes next to "format": what the file applies to.
META_BASE, META_TRANSFORMER, META_CONFIG = "onereward.base", "onereward.transformer", "config"
DEFAULT_DTYPE = "bfloat16"  # a generator with dtype "auto" computes in bfloat16 on the GPU workers


class ExportError(ValueError):
    """The policy cannot be exported as asked; the message says why and what to do instead."""


def policy_config(settings: dict) -> FluxFillConfig:
    """The generator's settings, checked as the generator checks them."""
    try:
        return FluxFillConfig.from_dict(settings)
    except BackendConfigError as exc:
        raise ExportError(f"the policy's generator settings are not usable: {exc}") from exc


def lora_keys(module: str) -> tuple[str, str, str]:
    """The file's (lora_A, lora_B, alpha) keys of a FluxTransformer2DModel module path."""
    return f"{PREFIX}{module}{A_SUFFIX}", f"{PREFIX}{module}{B_SUFFIX}", f"{PREFIX}{module}{ALPHA_SUFFIX}"


# --- reading the generator's LoRAs ---------------------------------------------------------------------


def read_lora(spec) -> dict[str, tuple["torch.Tensor", "torch.Tensor"]]:
    """One LoRA of a generator (a flux_fill LoraSpec) as {module: (A (r, in), s B (out, r))}, float32,
    with s = the spec's weight x alpha / r, as diffusers loads it for the generator: through
    FluxFillPipeline.lora_state_dict (which converts kohya, xlabs and other layouts to diffusers'
    names), alphas from its ".alpha" keys or its adapter metadata, scale 1 without either."""
    import torch
    from diffusers import FluxFillPipeline

    try:
        state, alphas, metadata = FluxFillPipeline.lora_state_dict(
            os.path.expanduser(spec.path), return_alphas=True, return_lora_metadata=True)
    except (OSError, ValueError) as exc:
        raise ExportError(f"the LoRA {spec.path!r} could not be read: {exc}") from exc
    alphas = {key: float(value) for key, value in (alphas or {}).items() if key.startswith(PREFIX)}
    # diffusers gives every module the most common alpha and lists the others (get_peft_kwargs).
    default_alpha = Counter(alphas.values()).most_common(1)[0][0] if alphas else None
    if metadata:
        if metadata.get("use_dora") or metadata.get("use_rslora") or metadata.get("alpha_pattern"):
            raise ExportError(f"the LoRA {spec.path!r} uses DoRA, rsLoRA or per-module alphas, which this export "
                              f"does not carry; give the generator a plain LoRA")
        default_alpha = float(metadata["lora_alpha"]) if metadata.get("lora_alpha") else default_alpha

    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        if not key.startswith(PREFIX):
            if key.startswith("text_encoder"):
                raise ExportError(f"the LoRA {spec.path!r} also changes the text encoder ({key}); a transformer "
                                  f"LoRA or a merged transformer cannot carry that")
            continue  # diffusers loads only the transformer's and the text encoder's keys
        body = key[len(PREFIX):]
        for suffix, part in ((A_SUFFIX, "A"), (B_SUFFIX, "B")):
            if body.endswith(suffix):
                pairs.setdefault(body[:-len(suffix)], {})[part] = value
                break
        else:
            raise ExportError(f"the LoRA {spec.path!r} holds {key!r}, which is not a lora_A / lora_B weight "
                              f"(a LoRA bias, DoRA magnitude or full weight); this export carries plain LoRAs only")
    result = {}
    for module, pair in sorted(pairs.items()):
        if set(pair) != {"A", "B"}:
            raise ExportError(f"the LoRA {spec.path!r} has no lora_{'B' if 'A' in pair else 'A'} for {module}")
        down, up = pair["A"].to(torch.float32), pair["B"].to(torch.float32)
        rank = down.shape[0]
        if down.ndim != 2 or up.ndim != 2 or up.shape[1] != rank:
            raise ExportError(f"the LoRA {spec.path!r} has mismatched shapes at {module}: A {tuple(down.shape)}, "
                              f"B {tuple(up.shape)}")
        alpha = alphas.get(f"{PREFIX}{module}{ALPHA_SUFFIX}", default_alpha)
        scale = spec.weight * (alpha / rank if alpha is not None else 1.0)
        result[module] = (down, up * scale)
    return result


def combined_lora(config: FluxFillConfig) -> dict[str, tuple["torch.Tensor", "torch.Tensor"]]:
    """Every LoRA of the generator as one, scale 1: {module: (A (R, in), B (out, R))}, float32,
    B A = sum over the LoRAs of weight x alpha / r x B_i A_i (see the module docstring)."""
    import torch

    parts: dict[str, list] = {}
    for spec in config.loras:
        if spec.weight == 0:
            continue
        for module, pair in read_lora(spec).items():
            parts.setdefault(module, []).append(pair)
    return {module: (torch.cat([a for a, _ in pairs], dim=0), torch.cat([b for _, b in pairs], dim=1))
            for module, pairs in sorted(parts.items())}


def applies_to(config: FluxFillConfig) -> dict:
    """What a LoRA file goes on: the FLUX.1 Fill repository and, when the generator replaces it,
    the transformer."""
    return {"base": config.base, "transformer": config.transformer or ""}


# --- writing -------------------------------------------------------------------------------------------


def _replace_atomically(write, path: Path) -> None:
    """write(temporary path) then rename onto `path`: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    try:
        write(partial)
        os.replace(partial, path)
    finally:
        if partial.exists():
            partial.unlink()


def write_lora(settings: dict, path) -> dict:
    """Write the policy's LoRA file (layout: the module docstring) to `path` (.safetensors).
    settings: the generator's flux_fill settings. Returns {"format", "path", "modules", "rank",
    "applies_to"} where rank is the largest module rank. Raises ExportError for a policy without
    LoRAs (a full fine-tune: export it merged)."""
    import torch
    from safetensors.torch import save_file

    config = policy_config(settings)
    if not config.loras:
        raise ExportError("this policy has no LoRA: it is a full fine-tune (its own transformer); export the merged "
                          "transformer instead")
    lora = combined_lora(config)
    if not lora:
        raise ExportError("the policy's LoRAs all have weight 0: there is nothing to export")
    tensors = {}
    for module, (down, up) in lora.items():
        a_key, b_key, alpha_key = lora_keys(module)
        tensors[a_key], tensors[b_key] = down.contiguous(), up.contiguous()
        tensors[alpha_key] = torch.tensor(float(down.shape[0]), dtype=torch.float32)
    target = applies_to(config)
    metadata = {"format": "pt", META_BASE: target["base"], META_TRANSFORMER: target["transformer"]}
    path = Path(path)
    _replace_atomically(lambda partial: save_file(tensors, str(partial), metadata=metadata), path)
    return {"format": "lora", "path": str(path), "modules": len(lora),
            "rank": max(down.shape[0] for down, _ in lora.values()), "applies_to": target}


def merged_dtype(config: FluxFillConfig, dtype: str = "auto") -> str:
    """The dtype a merged transformer is saved in: `dtype`, or for "auto" the generator's own
    (bfloat16 when that is "auto" too)."""
    if dtype == "auto":
        dtype = config.dtype if config.dtype != "auto" else DEFAULT_DTYPE
    if dtype not in ("bfloat16", "float16", "float32"):
        raise ExportError(f"dtype {dtype!r}: expected auto, bfloat16, float16 or float32")
    return dtype


def merged_transformer(settings: dict, dtype: str = "auto") -> tuple:
    """(the generator's FluxTransformer2DModel on the CPU in `merged_dtype` with its LoRAs merged,
    the number of modules merged)."""
    import torch
    from diffusers import FluxTransformer2DModel

    config = policy_config(settings)
    torch_dtype = getattr(torch, merged_dtype(config, dtype))
    lora = combined_lora(config)  # read first: a bad LoRA fails before the large load
    location = config.transformer or config.base
    try:
        if config.transformer:
            transformer = _load_transformer(FluxTransformer2DModel, config.transformer, torch_dtype)
        else:
            transformer = FluxTransformer2DModel.from_pretrained(os.path.expanduser(config.base),
                                                                 subfolder="transformer", **_dtype_kwarg(torch_dtype))
    except OSError as exc:
        raise ExportError(f"the transformer of {location!r} could not be loaded: {exc}") from exc
    with torch.no_grad():
        for module, (down, up) in lora.items():
            try:
                layer = transformer.get_submodule(module)
            except AttributeError:
                raise ExportError(f"a LoRA wraps {module!r}, which the transformer of {location!r} does not "
                                  f"have") from None
            weight = layer.weight
            if weight.shape != (up.shape[0], down.shape[1]):
                raise ExportError(f"a LoRA on {module} is for a {up.shape[0]} x {down.shape[1]} weight; the "
                                  f"transformer's is {tuple(weight.shape)}")
            weight.copy_((weight.float() + up @ down).to(weight.dtype))
    return transformer, len(lora)


def write_merged(settings: dict, path, dtype: str = "auto") -> dict:
    """Write the merged transformer to `path`: a .safetensors path gets the one weights file (the
    model's config in its header), any other path a diffusers model folder. Returns {"format",
    "path", "dtype", "parameters", "modules_merged"}."""
    from safetensors.torch import save_file

    config = policy_config(settings)
    transformer, merged = merged_transformer(settings, dtype)
    path = Path(path)
    if path.suffix == ".safetensors":
        state = {name: tensor.contiguous() for name, tensor in transformer.state_dict().items()}
        metadata = {"format": "pt", META_CONFIG: transformer.to_json_string(),
                    META_BASE: config.base, META_TRANSFORMER: config.transformer or ""}
        _replace_atomically(lambda partial: save_file(state, str(partial), metadata=metadata), path)
    else:
        # One weights file, however large: ComfyUI and from_single_file read a file, not shards.
        transformer.save_pretrained(path, max_shard_size="10000GB")
    return {"format": "merged", "path": str(path), "dtype": merged_dtype(config, dtype),
            "parameters": sum(p.numel() for p in transformer.parameters()),
            "modules_merged": merged}


def export_policy(settings: dict, format: str, path, dtype: str = "auto") -> dict:
    """Write the policy of generator `settings` as `format` ("lora" or "merged") to `path`."""
    if format == "lora":
        return write_lora(settings, path)
    if format == "merged":
        return write_merged(settings, path, dtype)
    raise ExportError(f"format {format!r}: expected one of {', '.join(FORMATS)}")


__all__ = ["FORMATS", "ExportError", "policy_config", "lora_keys", "read_lora", "combined_lora", "applies_to",
           "write_lora", "merged_dtype", "merged_transformer", "write_merged", "export_policy"]
