"""FLUX.1 Fill backend: mask-guided generation with true classifier-free guidance, batched.

The denoising loop is diffusers' FluxFillPipeline.__call__ (read it side by side), reusing the
pipeline's components and helpers, with three changes:

- true CFG as the OneReward release runs it: v = v_neg + true_cfg * (v_pos - v_neg), the embedded
  guidance given to both branches, and both branches in one transformer call per step; only for
  true_cfg above 1, as diffusers reads it (at or below 1: the positive branch alone). The mix is
  computed in float32 and cast back to the transformer's dtype (bf16 on a GPU): in bf16 the
  difference v_pos - v_neg of two close velocities would keep about 2 significant digits;
- a batch holds candidates of one canvas that differ in seed, prompt, negative prompt, embedded
  guidance and true_cfg; each candidate's randomness comes from its own seed exactly as the
  pipeline draws it for a batch of one, so a candidate does not depend on its batch-mates;
- canvases whose sides are not multiples of 16 are padded, never resized, and cropped back.

With true_cfg = 1 and a canvas whose sides are multiples of 16, one request gives the pixels of
FluxFillPipeline(prompt, image, mask, strength, num_inference_steps, guidance_scale,
generator=torch.Generator("cpu").manual_seed(seed)).

This module imports nothing from Django; torch and diffusers are imported when a backend is built.
"""
from __future__ import annotations

import hashlib
import os
import re
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Sequence

import numpy as np
from PIL import Image

from generation.core.backends.base import BackendConfigError, GenerationRequest
from mlcore.failures import model_load_error

if TYPE_CHECKING:
    import torch

DTYPES = ("bfloat16", "float16", "float32")
# A hub repository id: "owner/name", one slash, no path-like prefix.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")


# --- configuration --------------------------------------------------------------------------


@dataclass(frozen=True)
class LoraSpec:
    """One LoRA adapter on the pipeline. path: a .safetensors file, a directory holding one, or a
    hub id; weight: its scale (0 = no effect); name: the adapter name inside the pipeline."""

    path: str
    weight: float = 1.0
    name: str = ""


@dataclass(frozen=True)
class FluxFillConfig:
    """What a FLUX Fill generator is made of and where it runs.

    base: a FLUX.1-Fill-dev style diffusers repository (local directory or hub id).
    transformer: optional replacement FluxTransformer2DModel (e.g. a OneReward checkpoint): a model
        directory, a repository with a "transformer" subfolder, or a hub id.
    loras: adapters loaded on top, with their weights.
    dtype: "auto" (bfloat16 on CUDA, float32 on CPU), "bfloat16", "float16" or "float32".
    device: "auto" (CUDA when present), "cpu", "cuda" or "cuda:N".
    cpu_offload: keep models on the CPU and move each to the device while it runs (saves memory).
    max_sequence_length: T5 tokens per prompt (FLUX was trained with 512).
    max_batch: most candidates in one denoising batch (the CFG branch adds up to as many again
        to the transformer's batch).
    composite_source: deliver candidates with the unmasked area pasted from the source (the
        binarised mask decides, as in the pipeline) instead of the whole decode, as diffusers'
        pipeline returns it. What annotators see is what a judge learns from, so RL and its
        evaluation judge the same kind of image (rl.core.config: composite_source).
    """

    base: str
    transformer: str | None = None
    loras: tuple[LoraSpec, ...] = ()
    dtype: str = "auto"
    device: str = "auto"
    cpu_offload: bool = False
    max_sequence_length: int = 512
    max_batch: int = 8
    composite_source: bool = False

    def as_dict(self) -> dict:
        data = asdict(self)
        data["loras"] = [asdict(lora) for lora in self.loras]
        return data

    @classmethod
    def from_dict(cls, config: dict) -> "FluxFillConfig":
        """Validate and normalise a JSON configuration without touching any weights; raises
        BackendConfigError naming the setting at fault."""
        if not isinstance(config, dict):
            raise BackendConfigError("settings must be a JSON object")
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(config) - known)
        if unknown:
            raise BackendConfigError(f"unknown setting {unknown[0]!r}; known: {', '.join(sorted(known))}")

        base = config.get("base")
        if not isinstance(base, str) or not base.strip():
            raise BackendConfigError("base: required, a diffusers FLUX Fill repository (directory or hub id)")
        base = base.strip()
        _check_model_location("base", base, marker="model_index.json")

        transformer = config.get("transformer") or None
        if transformer is not None:
            if not isinstance(transformer, str):
                raise BackendConfigError("transformer: must be a directory or hub id")
            transformer = transformer.strip()
            _check_model_location("transformer", transformer, marker="config.json", subfolder="transformer")

        loras = _check_loras(config.get("loras") or [])

        dtype = config.get("dtype") or "auto"
        if dtype not in ("auto",) + DTYPES:
            raise BackendConfigError(f"dtype {dtype!r}: expected one of auto, {', '.join(DTYPES)}")

        device = config.get("device") or "auto"
        if not isinstance(device, str) or not _DEVICE.match(device):
            raise BackendConfigError(f"device {device!r}: expected auto, cpu, cuda or cuda:N")

        cpu_offload = config.get("cpu_offload", False)
        if not isinstance(cpu_offload, bool):
            raise BackendConfigError("cpu_offload: must be true or false")
        if cpu_offload and device == "cpu":
            raise BackendConfigError("cpu_offload: needs a CUDA device (device is 'cpu')")

        max_sequence_length = config.get("max_sequence_length", 512)
        if not _is_int(max_sequence_length) or not 1 <= max_sequence_length <= 512:
            raise BackendConfigError(f"max_sequence_length {max_sequence_length!r}: an integer from 1 to 512")

        max_batch = config.get("max_batch", 8)
        if not _is_int(max_batch) or max_batch < 1:
            raise BackendConfigError(f"max_batch {max_batch!r}: a positive integer")

        composite_source = config.get("composite_source", False)
        if not isinstance(composite_source, bool):
            raise BackendConfigError("composite_source: must be true or false")

        return cls(base=base, transformer=transformer, loras=loras, dtype=dtype, device=device,
                   cpu_offload=cpu_offload, max_sequence_length=max_sequence_length, max_batch=max_batch,
                   composite_source=composite_source)


def uses_true_cfg(scale: float) -> bool:
    """Whether a true CFG scale runs the negative branch: above 1 only, as diffusers' FLUX pipelines
    read it (do_true_cfg = true_cfg_scale > 1); at or below 1 the positive branch alone, never an
    inverted or damped guidance."""
    return float(scale) > 1.0


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _looks_local(location: str) -> bool:
    return (
        os.path.exists(location)
        or os.path.isabs(location)
        or location.startswith((".", "~"))
        or not _HUB_ID.match(location)
    )


def _check_model_location(setting: str, location: str, marker: str, subfolder: str | None = None) -> None:
    # Only local paths can be checked before loading; a hub id is resolved (cache or download) at load.
    if not _looks_local(location):
        return
    path = os.path.expanduser(location)
    if not os.path.isdir(path):
        raise BackendConfigError(f"{setting} {location!r}: no such directory")
    candidates = [os.path.join(path, marker)]
    if subfolder:
        candidates.append(os.path.join(path, subfolder, marker))
    if not any(os.path.isfile(c) for c in candidates):
        raise BackendConfigError(f"{setting} {location!r}: not a diffusers model directory (no {marker})")


def _check_loras(loras) -> tuple[LoraSpec, ...]:
    if not isinstance(loras, list):
        raise BackendConfigError("loras: must be a list of {path, weight, name}")
    specs, names = [], set()
    for index, entry in enumerate(loras):
        if isinstance(entry, str):
            entry = {"path": entry}
        if not isinstance(entry, dict):
            raise BackendConfigError(f"loras[{index}]: must be an object with path, weight, name")
        unknown = sorted(set(entry) - {"path", "weight", "name"})
        if unknown:
            raise BackendConfigError(f"loras[{index}]: unknown key {unknown[0]!r}; known: name, path, weight")
        path = entry.get("path")
        if not isinstance(path, str) or not path.strip():
            raise BackendConfigError(f"loras[{index}]: path is required")
        path = path.strip()
        if path.endswith(_WEIGHT_SUFFIXES) or _looks_local(path):
            if not os.path.exists(os.path.expanduser(path)):
                raise BackendConfigError(f"lora {path!r}: no such file")
        weight = entry.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not np.isfinite(weight):
            raise BackendConfigError(f"lora {path!r}: weight must be a number")
        # peft adapter names become attribute keys: keep them to identifier characters.
        name = entry.get("name") or os.path.splitext(os.path.basename(path.rstrip("/")))[0] or f"lora_{index}"
        if not isinstance(name, str):
            raise BackendConfigError(f"lora {path!r}: name must be a string")
        name = re.sub(r"\W", "_", name)
        if name in names:
            raise BackendConfigError(f"lora {path!r}: duplicate name {name!r}; give each LoRA its own name")
        names.add(name)
        specs.append(LoraSpec(path=path, weight=float(weight), name=name))
    return tuple(specs)


# --- canvas handling ------------------------------------------------------------------------


def pad_canvas(image: Image.Image, mask: Image.Image, multiple: int) -> tuple[Image.Image, Image.Image]:
    """Pad image and mask on the right and bottom up to multiples of `multiple` pixels.

    The image is mirrored into the strip (no hard edge next to real content); the mask repeats its
    edge pixel, so the strip continues whatever touches it: beside kept content it is kept context,
    beside a region to generate (e.g. an outpainting border) it is generated too, and the model is
    never shown invented "known" pixels next to a hole. The strip is cropped off afterwards.
    """
    width, height = image.size
    pad_w, pad_h = (-width) % multiple, (-height) % multiple
    if not pad_w and not pad_h:
        return image, mask
    pixels = np.pad(np.asarray(image), ((0, pad_h), (0, pad_w), (0, 0)), mode="symmetric")
    mask_pixels = np.pad(np.asarray(mask), ((0, pad_h), (0, pad_w)), mode="edge")
    return Image.fromarray(pixels, "RGB"), Image.fromarray(mask_pixels, "L")


def _fingerprint(image: Image.Image) -> str:
    return hashlib.blake2b(image.tobytes(), digest_size=16).hexdigest()


# --- the backend ----------------------------------------------------------------------------


@dataclass
class EncodedPrompt:
    """Text conditioning of one prompt: embeds (1, L, D) from T5, pooled (1, Dp) from CLIP."""

    embeds: "torch.Tensor"
    pooled: "torch.Tensor"


@dataclass
class TextConditioning:
    """The transformer's text inputs for a batch of B samples, K of which use true CFG.

    prompt_embeds (B + K, L, D) and pooled (B + K, Dp): the B positive rows, then the negative rows
    of the samples listed in cfg_rows (indices into B); text_ids (L, 3); guidance (B,) float32
    embedded guidance; true_cfg (K,) float32 scales of the cfg_rows.
    """

    prompt_embeds: "torch.Tensor"
    pooled: "torch.Tensor"
    text_ids: "torch.Tensor"
    guidance: "torch.Tensor"
    cfg_rows: list[int]
    true_cfg: "torch.Tensor"

    def select(self, rows: Sequence[int]) -> "TextConditioning":
        """The text inputs of the samples `rows` (indices into the B samples), in that order: their
        positive rows, then the negative rows of those among them that use true CFG."""
        import torch

        batch = self.guidance.shape[0]
        negative_of = {row: k for k, row in enumerate(self.cfg_rows)}
        cfg_rows = [new for new, row in enumerate(rows) if row in negative_of]
        negatives = [negative_of[rows[new]] for new in cfg_rows]
        device = self.prompt_embeds.device
        order = torch.tensor(list(rows) + [batch + k for k in negatives], dtype=torch.long, device=device)
        return TextConditioning(
            prompt_embeds=self.prompt_embeds[order], pooled=self.pooled[order], text_ids=self.text_ids,
            guidance=self.guidance[torch.tensor(list(rows), dtype=torch.long, device=self.guidance.device)],
            cfg_rows=cfg_rows,
            true_cfg=self.true_cfg[torch.tensor(negatives, dtype=torch.long, device=self.true_cfg.device)],
        )


@dataclass
class Canvas:
    """One canvas prepared for FLUX Fill, padded (never resized) to multiples of 16 pixels.

    width, height: the input's size, to crop back to; padded_width, padded_height: the canvas's.
    source: (1, 3, Hp, Wp) float32 pixels in [0, 1]; mask: (1, 1, Hp, Wp) float32, binarised as the
    pipeline's mask processor does, 1 = generate. image_latents / masked_latents: the VAE's latent
    distributions of the canvas and of the canvas with the hole blanked (unscaled). latent_ids:
    (S, 3) positions of the S packed latent tokens. dtype: the latents' dtype.
    """

    width: int
    height: int
    padded_width: int
    padded_height: int
    source: "torch.Tensor"
    mask: "torch.Tensor"
    image_latents: object
    masked_latents: object
    latent_ids: "torch.Tensor"
    dtype: "torch.dtype"

    def composite(self, images: "torch.Tensor") -> "torch.Tensor":
        """images (B, 3, height, width) in [0, 1]: the generated pixels where the mask is 1, the
        source's elsewhere (differentiable in `images`)."""
        mask = self.mask[..., :self.height, :self.width]
        return mask * images + (1 - mask) * self.source[..., :self.height, :self.width]


@dataclass
class _Batch:
    """Candidates of one canvas denoised together; index: positions in the caller's list."""

    index: list[int]
    requests: list[GenerationRequest] = field(default_factory=list)


class FluxFillBackend:
    """Generates candidates with a FLUX.1 Fill pipeline (see the module docstring).

    pipeline: the loaded diffusers FluxFillPipeline; its components are what an RL trainer trains.
    The sampling steps are methods named after the step (as in diffusers' FluxFillPipeline), which
    generate() composes and an RL trainer calls one by one: prepare_text, prepare_canvas,
    prepare_timesteps, prepare_latents + prepare_mask_latents, denoise (denoise_step,
    predict_velocity), decode_latents.
    """

    def __init__(self, pipeline, config: FluxFillConfig):
        self.pipeline = pipeline
        self.config = config

    # -- construction --

    @classmethod
    def check_config(cls, config: dict) -> dict:
        return FluxFillConfig.from_dict(config).as_dict()

    @classmethod
    def from_config(cls, config: dict | FluxFillConfig, transformer=None) -> "FluxFillBackend":
        """transformer: a module to use instead of loading one, left on its device (a sharded
        trainer's, on the host or the meta device until it is sharded)."""
        import torch
        from diffusers import FluxFillPipeline, FluxTransformer2DModel

        if not isinstance(config, FluxFillConfig):
            config = FluxFillConfig.from_dict(config)
        if config.device == "auto":
            device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        else:
            device = torch.device(config.device)
        if config.dtype == "auto":
            dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        else:
            dtype = getattr(torch, config.dtype)

        components = {}
        if transformer is not None:
            components["transformer"] = transformer
        elif config.transformer:
            try:
                components["transformer"] = _load_transformer(FluxTransformer2DModel, config.transformer, dtype)
            except OSError as exc:
                raise model_load_error("the FLUX Fill transformer", config.transformer, exc,
                                       "leave the transformer empty") from exc
        try:
            pipeline = FluxFillPipeline.from_pretrained(
                os.path.expanduser(config.base), **_dtype_kwarg(dtype), **components
            )
        except OSError as exc:
            raise model_load_error("the FLUX Fill model", config.base, exc, "use the demo generator") from exc
        for lora in config.loras:
            pipeline.load_lora_weights(os.path.expanduser(lora.path), adapter_name=lora.name)
        if config.loras:
            pipeline.set_adapters([lora.name for lora in config.loras],
                                  adapter_weights=[lora.weight for lora in config.loras])
        if config.cpu_offload:
            pipeline.enable_model_cpu_offload(device=device)
        elif transformer is not None:
            for name, component in pipeline.components.items():
                if name != "transformer" and isinstance(component, torch.nn.Module):
                    component.to(device)
        else:
            pipeline.to(device)
        pipeline.set_progress_bar_config(disable=True)
        return cls(pipeline, config)

    @property
    def device(self) -> "torch.device":
        return self.pipeline._execution_device

    # -- generation --

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Image.Image]:
        """One RGB image per request, in order, each the size of its canvas.

        The whole canvas comes back as FLUX Fill decodes it: the unmasked area is the model's
        reconstruction (close to, not equal to, the input) and is not pasted back here, so that
        callers see what the model made; compositing is the platform's choice.
        """
        # The rounding of VaeImageProcessor.numpy_to_pil, which FluxFillPipeline's "pil" output uses.
        arrays = self.generate_arrays(requests)
        return [Image.fromarray((array * 255).round().astype("uint8"), "RGB") for array in arrays]

    def generate_arrays(self, requests: Sequence[GenerationRequest]) -> list[np.ndarray]:
        """As generate, before rounding to 8 bits: float32 arrays (H, W, 3) in [0, 1]."""
        import torch

        results: list[np.ndarray | None] = [None] * len(requests)
        text_cache: dict[str, EncodedPrompt] = {}
        with torch.no_grad():
            for batch in self._batches(requests):
                for position, array in zip(batch.index, self._generate_batch(batch.requests, text_cache)):
                    results[position] = array
        self.pipeline.maybe_free_model_hooks()
        return results

    def _batches(self, requests: Sequence[GenerationRequest]) -> list[_Batch]:
        # What one batch shares: the canvas (pixels, mask, size) because its VAE latents and the
        # token layout are common, and steps + strength because they fix the timestep schedule.
        # Everything else (seed, prompt, negative prompt, guidance, true_cfg) varies per sample.
        fingerprints: dict[int, str] = {}

        def fingerprint(image: Image.Image) -> str:
            if id(image) not in fingerprints:
                fingerprints[id(image)] = _fingerprint(image)
            return fingerprints[id(image)]

        groups: dict[tuple, _Batch] = {}
        for position, request in enumerate(requests):
            _check_request(request)
            s = request.settings
            key = (request.image.size, fingerprint(request.image), fingerprint(request.mask), s.steps,
                   float(s.strength))
            group = groups.setdefault(key, _Batch(index=[]))
            group.index.append(position)
            group.requests.append(request)
        batches = []
        size = self.config.max_batch
        for group in groups.values():
            for start in range(0, len(group.index), size):
                batches.append(_Batch(group.index[start:start + size], group.requests[start:start + size]))
        return batches

    def _text(self, text: str, cache: dict[str, EncodedPrompt]) -> EncodedPrompt:
        if text not in cache:
            cache[text] = self.encode_prompt(text)
        return cache[text]

    def _generate_batch(self, requests: list[GenerationRequest], text_cache: dict) -> list[np.ndarray]:
        import torch

        first = requests[0]
        # 1. Text: each distinct prompt encoded once per generate call, alone (as the pipeline does).
        text = self.prepare_text(
            positives=[self._text(r.prompt, text_cache) for r in requests],
            negatives=[self._text(r.settings.negative_prompt, text_cache) if uses_true_cfg(r.settings.true_cfg)
                       else None for r in requests],
            guidance=[r.settings.guidance for r in requests],
            true_cfg=[r.settings.true_cfg for r in requests],
        )
        # 2. Canvas, padded (never resized) to the 2x2-packed latent grid, encoded by the VAE once.
        canvas = self.prepare_canvas(first.image, first.mask, dtype=text.prompt_embeds.dtype)
        # 3. Timesteps.
        scheduler, timesteps = self.prepare_timesteps(canvas, first.settings.steps, first.settings.strength)
        # 4. Latents: each candidate's numbers from its own CPU generator, in the pipeline's order.
        generators = [torch.Generator("cpu").manual_seed(r.settings.seed) for r in requests]
        latents = self.prepare_latents(canvas, generators, scheduler, timesteps[:1])
        conditioning = self.prepare_mask_latents(canvas, generators)
        # 5. Denoising.
        latents = self.denoise(scheduler, timesteps, latents, conditioning, text, canvas)
        # 6. Decoding.
        images = self.decode_latents(latents, canvas)
        if self.config.composite_source:
            images = canvas.composite(images)
        return [image.permute(1, 2, 0).cpu().numpy() for image in images]

    # -- the sampling steps --

    def encode_prompt(self, text: str) -> EncodedPrompt:
        """One prompt through CLIP (pooled) and T5 (padded to max_sequence_length), batch of one,
        as FluxFillPipeline encodes it."""
        embeds, pooled, _ = self.pipeline.encode_prompt(
            prompt=text, prompt_2=None, device=self.device, num_images_per_prompt=1,
            max_sequence_length=self.config.max_sequence_length,
        )
        return EncodedPrompt(embeds=embeds, pooled=pooled)

    def encode(self, prompt: str, negative_prompt: str | None = None) -> tuple[EncodedPrompt, EncodedPrompt | None]:
        """The positive conditioning and, when negative_prompt is not None, the negative one
        ("" encodes the empty prompt: plain classifier-free guidance)."""
        negative = None if negative_prompt is None else self.encode_prompt(negative_prompt)
        return self.encode_prompt(prompt), negative

    def prepare_text(self, positives: Sequence[EncodedPrompt], negatives: Sequence[EncodedPrompt | None],
                     guidance: Sequence[float], true_cfg: Sequence[float]) -> TextConditioning:
        """The text inputs of a batch of B samples: per sample its positive prompt, its negative
        prompt (None: no true CFG for it), its embedded guidance and its true CFG scale (read only
        where a negative is given). Encoded prompts may sit on any device."""
        import torch

        device = self.device
        cfg_rows = [i for i, negative in enumerate(negatives) if negative is not None]
        rows = list(positives) + [negatives[i] for i in cfg_rows]
        prompt_embeds = torch.cat([row.embeds for row in rows]).to(device)
        pooled = torch.cat([row.pooled for row in rows]).to(device)
        text_ids = torch.zeros(prompt_embeds.shape[1], 3).to(device=device, dtype=self.pipeline.text_encoder.dtype)
        return TextConditioning(
            prompt_embeds=prompt_embeds, pooled=pooled, text_ids=text_ids,
            guidance=torch.tensor([float(g) for g in guidance], device=device, dtype=torch.float32),
            cfg_rows=cfg_rows,
            true_cfg=torch.tensor([float(true_cfg[i]) for i in cfg_rows], device=device, dtype=torch.float32),
        )

    def prepare_canvas(self, image: Image.Image, mask: Image.Image, dtype: "torch.dtype | None" = None) -> Canvas:
        """image: RGB PIL canvas; mask: mode "L" PIL mask of the same size (255 = generate).
        dtype: of the latents (default: the VAE's). The VAE encodes the canvas and the canvas with
        the hole blanked once; every sample of the canvas then draws from those distributions."""
        import torch

        pipe = self.pipeline
        device = self.device
        dtype = dtype or pipe.vae.dtype
        width, height = image.size
        multiple = pipe.vae_scale_factor * 2
        image, mask = pad_canvas(image.convert("RGB"), mask.convert("L"), multiple)
        padded_w, padded_h = image.size
        with torch.no_grad():
            init_image = pipe.image_processor.preprocess(image, height=padded_h, width=padded_w)
            init_image = init_image.to(dtype=torch.float32)
            mask_image = pipe.mask_processor.preprocess(mask, height=padded_h, width=padded_w)
            masked_image = (init_image * (1 - mask_image)).to(device=device, dtype=dtype)
            image_dist = pipe.vae.encode(init_image.to(device=device, dtype=dtype)).latent_dist
            masked_dist = pipe.vae.encode(masked_image).latent_dist
        source = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
        latent_ids = pipe._prepare_latent_image_ids(1, padded_h // multiple, padded_w // multiple, device, dtype)
        return Canvas(width=width, height=height, padded_width=padded_w, padded_height=padded_h,
                      source=source.to(device), mask=mask_image.to(device=device, dtype=torch.float32),
                      image_latents=image_dist, masked_latents=masked_dist, latent_ids=latent_ids, dtype=dtype)

    def prepare_timesteps(self, canvas: Canvas, steps: int, strength: float = 1.0):
        """(scheduler, timesteps): a fresh scheduler with the pipeline's schedule for this canvas
        size (sigmas linspace(1, 1/steps) shifted by mu(sequence length); `.sigmas` (steps + 1,)
        ending at 0, timestep = 1000 * sigma) and the timesteps left to run at this strength.

        A scheduler of our own: the pipeline's keeps state between calls, and an RL trainer may be
        sampling with another one meanwhile."""
        from diffusers.pipelines.flux.pipeline_flux_fill import calculate_shift, retrieve_timesteps

        pipe = self.pipeline
        scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)
        cell = pipe.vae_scale_factor * 2
        image_seq_len = (canvas.padded_height // cell) * (canvas.padded_width // cell)
        mu = calculate_shift(
            image_seq_len,
            scheduler.config.get("base_image_seq_len", 256),
            scheduler.config.get("max_image_seq_len", 4096),
            scheduler.config.get("base_shift", 0.5),
            scheduler.config.get("max_shift", 1.15),
        )
        sigmas = np.linspace(1.0, 1 / steps, steps)
        _, steps = retrieve_timesteps(scheduler, steps, self.device, sigmas=sigmas, mu=mu)
        # FluxFillPipeline.get_timesteps: strength < 1 skips the first steps (at least one step is
        # always left, as strength > 0).
        t_start = int(max(steps - min(steps * strength, steps), 0))
        scheduler.set_begin_index(t_start * scheduler.order)
        return scheduler, scheduler.timesteps[t_start * scheduler.order:]

    def prepare_latents(self, canvas: Canvas, generators: Sequence["torch.Generator"], scheduler,
                        timestep: "torch.Tensor") -> "torch.Tensor":
        """The initial packed latents (B, S, 4C) of B samples, one CPU generator each: from each,
        the canvas latent sample, then the noise, mixed at the first timestep (1,) as the pipeline's
        scale_noise does (at strength 1: the noise). Call prepare_mask_latents with the same
        generators next: it draws the third number of each, in FluxFillPipeline's order, so that
        a sample's numbers are those of the pipeline's batch of one with that generator."""
        import torch
        from diffusers.utils.torch_utils import randn_tensor

        pipe = self.pipeline
        device, dtype = self.device, canvas.dtype
        shift, scale = pipe.vae.config.shift_factor, pipe.vae.config.scaling_factor
        channels = pipe.vae.config.latent_channels
        multiple = pipe.vae_scale_factor * 2
        latent_h, latent_w = 2 * (canvas.padded_height // multiple), 2 * (canvas.padded_width // multiple)
        batch = len(generators)
        with torch.no_grad():
            image_latents, noise = [], []
            for generator in generators:
                image_latents.append((canvas.image_latents.sample(generator) - shift) * scale)
                noise.append(randn_tensor((1, channels, latent_h, latent_w), generator=generator, device=device,
                                          dtype=dtype))
            latents = scheduler.scale_noise(torch.cat(image_latents), timestep.repeat(batch), torch.cat(noise))
        return pipe._pack_latents(latents, batch, channels, latent_h, latent_w)

    def prepare_mask_latents(self, canvas: Canvas, generators: Sequence["torch.Generator"]) -> "torch.Tensor":
        """The Fill model's extra input channels (B, S, 4C + 4s^2), s the VAE scale factor, as
        FluxFillPipeline.prepare_mask_latents builds them: a sample of the masked canvas's latents
        from each generator, packed, then the mask folded into s*s channels per latent cell and
        packed."""
        import torch

        pipe = self.pipeline
        device, dtype = self.device, canvas.dtype
        shift, scale = pipe.vae.config.shift_factor, pipe.vae.config.scaling_factor
        s = pipe.vae_scale_factor
        batch = len(generators)
        with torch.no_grad():
            masked = torch.cat([((canvas.masked_latents.sample(generator) - shift) * scale)
                                .to(device=device, dtype=dtype) for generator in generators])
            _, channels, latent_h, latent_w = masked.shape
            packed_latents = pipe._pack_latents(masked, batch, channels, latent_h, latent_w)
            mask = canvas.mask[:, 0].repeat(batch, 1, 1)
            mask = mask.view(batch, latent_h, s, latent_w, s).permute(0, 2, 4, 1, 3)
            mask = mask.reshape(batch, s * s, latent_h, latent_w)
            mask = pipe._pack_latents(mask, batch, s * s, latent_h, latent_w)
            mask = mask.to(device=packed_latents.device, dtype=packed_latents.dtype)
        return torch.cat((packed_latents, mask), dim=-1)

    def denoise(self, scheduler, timesteps, latents, conditioning, text: TextConditioning,
                canvas: Canvas) -> "torch.Tensor":
        """Euler steps over `timesteps` from `latents` (B, S, 4C): the latents after the last."""
        for t in timesteps:
            latents = self.denoise_step(scheduler, t, latents, conditioning, text, canvas)
        return latents

    def denoise_to(self, scheduler, timesteps, latents, conditioning, text: TextConditioning, canvas: Canvas,
                   stops: Sequence[int]) -> "torch.Tensor":
        """Each sample i of the batch run through timesteps[:stops[i]]: Euler step k is taken by the
        samples whose stop lies beyond it, in one transformer call on those rows alone, so a sample
        gets the steps (and the numbers) of its own `denoise(timesteps[:stop])`, up to the float
        rounding of a larger batch, and no transformer row is spent on a sample that has stopped.
        All samples share the schedule: same canvas size (hence token layout and shift), same steps."""
        import torch

        stops = [int(stop) for stop in stops]
        if len(stops) != latents.shape[0] or any(not 0 <= stop <= len(timesteps) for stop in stops):
            raise ValueError(f"stops {stops}: one per sample, each in 0..{len(timesteps)}")
        everyone = list(range(len(stops)))
        for k, t in enumerate(timesteps[:max(stops, default=0)]):
            active = [i for i in everyone if stops[i] > k]
            if active == everyone:
                latents = self.denoise_step(scheduler, t, latents, conditioning, text, canvas)
                continue
            rows = torch.tensor(active, dtype=torch.long, device=latents.device)
            stepped = self.denoise_step(scheduler, t, latents[rows], conditioning[rows], text.select(active), canvas)
            latents = latents.to(stepped.dtype).clone()
            latents[rows] = stepped
        return latents

    def denoise_step(self, scheduler, t, latents, conditioning, text: TextConditioning,
                     canvas: Canvas) -> "torch.Tensor":
        """One Euler step at timestep t (the schedule's, 0..1000) with true CFG: the next latents."""
        velocity = self.predict_velocity(latents, conditioning, t, text, canvas)
        return scheduler.step(velocity, t, latents, return_dict=False)[0]

    def predict_velocity(self, latents, conditioning, t, text: TextConditioning, canvas: Canvas) -> "torch.Tensor":
        """The flow velocity of a batch at timestep t (the schedule's, 0..1000; a scalar, or one per
        sample, shape (B,)), with true CFG on text.cfg_rows, in one transformer call.

        latents: (B, S, 4C) packed noisy latents; conditioning: (B, S, 4C + 4s^2) from
        prepare_mask_latents. Returns (B, S, 4C): v_pos, or v_neg + true_cfg * (v_pos - v_neg) on
        the cfg rows.
        """
        import torch

        transformer = self.pipeline.transformer
        batch = latents.shape[0]
        timestep = t.expand(batch).to(latents.dtype) / 1000
        guidance = text.guidance
        hidden = torch.cat((latents, conditioning), dim=2)
        if text.cfg_rows:
            rows = torch.tensor(text.cfg_rows, device=hidden.device)
            hidden = torch.cat((hidden, hidden[rows]))
            timestep = torch.cat((timestep, timestep[rows]))
            guidance = torch.cat((guidance, guidance[rows]))
        output = transformer(
            hidden_states=hidden,
            timestep=timestep,
            guidance=guidance if transformer.config.guidance_embeds else None,
            pooled_projections=text.pooled,
            encoder_hidden_states=text.prompt_embeds,
            txt_ids=text.text_ids,
            img_ids=canvas.latent_ids,
            return_dict=False,
        )[0]
        velocity = output[:batch]
        if text.cfg_rows:
            # Rows without CFG keep v_pos untouched: v_neg + 1 * (v_pos - v_neg) is not bit-equal to v_pos.
            positive, negative = velocity[rows].float(), output[batch:].float()
            velocity = velocity.clone()
            velocity[rows] = (negative + text.true_cfg[:, None, None] * (positive - negative)).to(velocity.dtype)
        return velocity

    def decode_latents(self, latents: "torch.Tensor", canvas: Canvas) -> "torch.Tensor":
        """Packed latents (B, S, 4C) -> images float32 (B, 3, height, width) in [0, 1] at the
        input's size, differentiable. One sample at a time: a batch of 1024x1024 decodes needs
        several GB of activations, and decoding alone keeps a sample's pixels independent of its
        batch."""
        import torch

        pipe = self.pipeline
        scale, shift = pipe.vae.config.scaling_factor, pipe.vae.config.shift_factor
        latents = pipe._unpack_latents(latents, canvas.padded_height, canvas.padded_width, pipe.vae_scale_factor)
        latents = (latents / scale) + shift
        images = []
        for row in range(latents.shape[0]):
            decoded = pipe.vae.decode(latents[row:row + 1].to(pipe.vae.dtype), return_dict=False)[0]
            images.append(pipe.image_processor.postprocess(decoded, output_type="pt").float())
        return torch.cat(images)[:, :, :canvas.height, :canvas.width]


def _check_request(request: GenerationRequest) -> None:
    s = request.settings
    if request.image.size != request.mask.size:
        raise ValueError(f"canvas is {request.image.size} but its mask is {request.mask.size}")
    if s.steps < 1:
        raise ValueError(f"steps must be at least 1, got {s.steps}")
    if not 0 < s.strength <= 1:
        raise ValueError(f"strength must be in (0, 1], got {s.strength}")


def _load_transformer(model_class, location: str, dtype):
    path = os.path.expanduser(location)
    kwargs = _dtype_kwarg(dtype)
    if os.path.isdir(path):
        subfolder = "transformer" if os.path.isfile(os.path.join(path, "transformer", "config.json")) else None
        return model_class.from_pretrained(path, subfolder=subfolder, **kwargs)
    # A hub id: a pipeline-style repository keeps the model under "transformer", a model repository at its root.
    try:
        return model_class.from_pretrained(location, subfolder="transformer", **kwargs)
    except (OSError, EnvironmentError):
        return model_class.from_pretrained(location, **kwargs)


def _dtype_kwarg(dtype) -> dict:
    # diffusers 0.42 renamed torch_dtype to dtype (the old name warns); the project allows >= 0.35.
    import diffusers
    from packaging.version import Version

    return {"dtype": dtype} if Version(diffusers.__version__) >= Version("0.42") else {"torch_dtype": dtype}
