"""The judge: a Qwen2-VL family model asked "is the first image better than the second?".

reward = P("Yes" | first image, second image, query) read from the full-vocabulary softmax at the
answer position (METHOD.md §3). The same forward serves three callers: the reward model trainer
(log-probabilities, gradients into the weights), RL (gradients into the first image's pixels through
the differentiable preprocessing) and evaluation (`score`, no gradients).

Plain Python + torch; loads with transformers and peft, no Django.
"""
from __future__ import annotations

import inspect
import json
import os
import re
from pathlib import Path

import torch

from mlcore.failures import model_load_error

from .preprocessing import VisionGeometry, preprocess
from .query import TEMPLATE_VERSION, build_query

JUDGE_FILE = "judge.json"
JUDGE_FORMAT = 1

# Used when the tokenizer has no chat template: Qwen2-VL's own chat layout, without a system turn.
FIXED_CHAT_FORMAT = "<|im_start|>user\n{images}{query}<|im_end|>\n<|im_start|>assistant\n"

# The language model's attention and MLP projections (Qwen2 names). The vision tower uses some of
# the same names (its MLP), hence a pattern anchored on the language model's layers.
LANGUAGE_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class Judge(torch.nn.Module):
    """A pairwise preference judge over a Qwen2-VL / Qwen2.5-VL model.

    model: Qwen2VLForConditionalGeneration or Qwen2_5_VLForConditionalGeneration (or a peft
    wrapper of one); tokenizer: its tokenizer; geometry: how images are cut into patches.
    yes_token / no_token must each be one token of the tokenizer. template_version: the query
    template the judge is (to be) trained with, recorded on save.
    """

    def __init__(
        self,
        model,
        tokenizer,
        geometry: VisionGeometry,
        yes_token: str = "Yes",
        no_token: str = "No",
        template_version: int = TEMPLATE_VERSION,
        *,
        use_chat_template: bool | None = None,
        base_model: str | None = None,
    ):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.geometry = geometry
        self.yes_token, self.no_token = yes_token, no_token
        self.yes_token_id = single_token_id(tokenizer, yes_token, "yes_token")
        self.no_token_id = single_token_id(tokenizer, no_token, "no_token")
        if self.yes_token_id == self.no_token_id:
            raise ValueError(f"yes_token {yes_token!r} and no_token {no_token!r} are the same token")
        self.template_version = int(template_version)
        if use_chat_template is None:
            use_chat_template = bool(getattr(tokenizer, "chat_template", None))
        elif use_chat_template and not getattr(tokenizer, "chat_template", None):
            raise ValueError("use_chat_template=True but the tokenizer has no chat template")
        self.use_chat_template = use_chat_template
        self.base_model = base_model or getattr(self._base(), "name_or_path", None) or None

        config = self._base().config
        self.image_token_id = int(config.image_token_id)
        self.image_token = tokenizer.convert_ids_to_tokens(self.image_token_id)
        self.vision_start = tokenizer.convert_ids_to_tokens(int(config.vision_start_token_id))
        self.vision_end = tokenizer.convert_ids_to_tokens(int(config.vision_end_token_id))
        self.pad_token_id = _pad_token_id(tokenizer)
        forward_parameters = inspect.signature(type(self._base()).forward).parameters
        # transformers >= 5 builds multimodal RoPE positions only when told which tokens are image tokens.
        self._pass_token_types = "mm_token_type_ids" in forward_parameters
        self._pass_logits_to_keep = "logits_to_keep" in forward_parameters

    # --- loading and saving -------------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls,
        path_or_id: str,
        *,
        dtype: str | torch.dtype = "auto",
        device: str | torch.device = "auto",
        adapter: str | None = None,
        gradient_checkpointing: bool = False,
        max_pixels: int | None = None,
        min_pixels: int | None = None,
        trainable_adapter: bool = False,
        yes_token: str | None = None,
        no_token: str | None = None,
        attn_implementation: str | None = None,
    ) -> "Judge":
        """Load a base model (directory or hub id) or a directory written by `save_pretrained`.

        dtype: "auto" (bfloat16 on a CUDA device that supports it, else float32), "float32",
        "bfloat16", "float16" or a torch dtype. device: "auto" (cuda when available, else cpu) or a
        device. adapter: a peft LoRA directory applied on top (trainable when trainable_adapter).
        max_pixels / min_pixels override the resize bounds of the geometry.
        """
        from transformers import AutoConfig, AutoTokenizer

        saved = _read_judge_file(path_or_id)
        tokenizer_source = str(path_or_id)
        base = str(path_or_id)
        if saved.get("adapter"):
            if adapter is not None:
                raise ValueError(f"{path_or_id} holds an adapter already; pass its base model with adapter=")
            base, adapter = saved["base_model"], str(path_or_id)
            if not base:
                raise ValueError(f"{path_or_id}/{JUDGE_FILE} names no base model for its adapter")

        if Path(base).is_dir():
            base = os.path.abspath(base)  # recorded with a saved adapter: must not depend on the cwd
        try:
            config = AutoConfig.from_pretrained(base)
        except OSError as exc:
            raise model_load_error("the judge model", base, exc, "use the demo judge") from exc
        model_class = _model_class(config)
        device = _resolve_device(device)
        torch_dtype = _resolve_dtype(dtype, device)
        load_kwargs = {"dtype": torch_dtype}
        if attn_implementation:
            load_kwargs["attn_implementation"] = attn_implementation
        if device.type != "cpu":
            load_kwargs["device_map"] = {"": str(device)}
        model = model_class.from_pretrained(base, **load_kwargs)
        if device.type == "cpu":
            model = model.to(device)
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_source)

        if saved.get("geometry"):
            geometry = VisionGeometry.from_dict(saved["geometry"])
            if max_pixels is not None or min_pixels is not None:
                geometry = VisionGeometry.from_dict({
                    **geometry.to_dict(),
                    **{k: v for k, v in {"max_pixels": max_pixels, "min_pixels": min_pixels}.items() if v is not None},
                })
        else:
            geometry = VisionGeometry.from_model_config(
                config, **{**_processor_bounds(base), **_not_none(max_pixels=max_pixels, min_pixels=min_pixels)}
            )

        if adapter is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, adapter, is_trainable=trainable_adapter)
        if gradient_checkpointing:
            _enable_gradient_checkpointing(model)
        model.eval()
        return cls(
            model,
            tokenizer,
            geometry,
            yes_token=yes_token or saved.get("yes_token", "Yes"),
            no_token=no_token or saved.get("no_token", "No"),
            template_version=saved.get("template_version", TEMPLATE_VERSION),
            use_chat_template=saved.get("use_chat_template"),
            base_model=base,
        )

    def save_pretrained(self, directory, *, merged: bool = False) -> Path:
        """Write the judge to `directory`: the model, the tokenizer and judge.json
        ({yes_token, no_token, template_version, geometry, ...}).

        With a LoRA adapter, only the adapter is written (judge.json names the base model, which
        `from_pretrained(directory)` loads first) unless merged=True: then the adapter is folded
        into the weights, here and in the saved copy, and a standalone model is written.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        adapter = self.has_adapter and not merged
        if self.has_adapter and merged:
            self.model = self.model.merge_and_unload()
        self.model.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)
        info = {
            "format": JUDGE_FORMAT,
            "yes_token": self.yes_token,
            "no_token": self.no_token,
            "template_version": self.template_version,
            "geometry": self.geometry.to_dict(),
            "use_chat_template": self.use_chat_template,
            "model_type": self._base().config.model_type,
            "adapter": adapter,
            "base_model": self.base_model if adapter else None,
        }
        (directory / JUDGE_FILE).write_text(json.dumps(info, indent=2) + "\n")
        return directory

    # --- LoRA -----------------------------------------------------------------------------------

    @property
    def has_adapter(self) -> bool:
        return hasattr(self.model, "peft_config")

    def add_lora(self, rank: int = 16, alpha: int = 32, dropout: float = 0.0, target_modules=None) -> "Judge":
        """Wrap the model with a peft LoRA adapter on the language model's attention and MLP
        projections (or `target_modules`, any peft spelling); the base weights are frozen."""
        from peft import LoraConfig, get_peft_model

        if self.has_adapter:
            raise ValueError("the judge has a LoRA adapter already")
        if target_modules is None:
            target_modules = self._language_projection_pattern()
        config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=target_modules, bias="none")
        # float32 adapter weights over a bf16 base: its updates must not round away (see TrainingConfig).
        self.model = get_peft_model(self.model, config, autocast_adapter_dtype=True)
        return self

    def _language_projection_pattern(self) -> str:
        base = self._base()
        language_model = base.get_decoder() if hasattr(base, "get_decoder") else None
        prefix = next((name for name, module in base.named_modules() if module is language_model), None)
        if not prefix:
            raise ValueError(f"cannot find the language model inside {type(base).__name__}; pass target_modules")
        # peft matches module names relative to the model it wraps, which is `base` itself.
        projections = "|".join(LANGUAGE_PROJECTIONS)
        return rf"{re.escape(prefix)}\.layers\.\d+\.(self_attn|mlp)\.({projections})"

    # --- scoring ----------------------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def query(self, taxonomy: dict, task: str, dimension: str, prompt: str, *, version: int | None = None,
              include_prompt: bool = True, source: bool = False, allow_other_version: bool = False) -> str:
        """`build_query` for this judge; refuses when the judge was trained on another template version.

        version: the wording to ask in (default: the code's TEMPLATE_VERSION). Asking a judge in a
        wording it was not trained on is refused unless allow_other_version=True, which only an
        ablation passes: there the mismatch is what is measured. include_prompt and source as in
        `build_query` (source=True needs the marked source image passed as `context` when scoring).
        """
        if version is None:
            if self.template_version != TEMPLATE_VERSION and not allow_other_version:
                raise ValueError(
                    f"this judge was trained with query template version {self.template_version}, the code has "
                    f"version {TEMPLATE_VERSION}; its answers to the new wording mean nothing"
                )
            version = TEMPLATE_VERSION
        elif int(version) != self.template_version and not allow_other_version:
            raise ValueError(
                f"this judge was trained with query template version {self.template_version}, not {version}; its "
                "answers to another wording mean nothing (an ablation that measures that passes allow_other_version)"
            )
        return build_query(taxonomy, task, dimension, prompt, version=version, include_prompt=include_prompt,
                           source=source)

    def forward(self, first: list[torch.Tensor], second: list[torch.Tensor], queries: list[str], *, context=None):
        return self.answer_logprobs(first, second, queries, context=context)

    def answer_logprobs(
        self, first: list[torch.Tensor], second: list[torch.Tensor], queries: list[str], *,
        context: list[torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """first, second: B images each, float (3, H, W) in [0, 1] (sizes may differ); queries: B strings.
        context: None (the method: two images), or B more images shown before the two candidates
        (ablations: the source with its mask marked), which the queries must then describe.

        Returns (log P(yes_token), log P(no_token)), each float32 (B,), from the full-vocabulary
        log-softmax at the answer position; differentiable w.r.t. the images and the weights.

        Rows that pass the same tensor object (one pair asked about several dimensions, or in both
        orders) share that image's preprocessing and vision features: the tower sees each distinct
        image once and its gradient sums over the rows, as it would over separate copies.
        """
        first, second, queries = list(first), list(second), list(queries)
        context = list(context) if context is not None else None
        if not (len(first) == len(second) == len(queries)):
            raise ValueError(f"got {len(first)} first images, {len(second)} second images, {len(queries)} queries")
        if context is not None and len(context) != len(queries):
            raise ValueError(f"got {len(context)} context images for {len(queries)} queries")
        if not queries:
            empty = torch.zeros(0, device=self.device)
            return empty, empty
        inputs = self.shared_image_inputs(first, second, queries, context=context)
        logits = self.model(**inputs).logits[:, -1].float()
        logprobs = torch.log_softmax(logits, dim=-1)
        return logprobs[:, self.yes_token_id], logprobs[:, self.no_token_id]

    def model_inputs(self, first: list[torch.Tensor], second: list[torch.Tensor], queries: list[str], *,
                     context: list[torch.Tensor] | None = None) -> dict:
        """The model's keyword arguments for B rows: per row its images in the order shown (context
        first when given, then first, second), each as its merged-patch tokens in the chat text.
        Every shown image is preprocessed and encoded by the model, repeated ones again each time."""
        shown = self._shown(first, second, queries, context)
        device = self.device
        images = [image.to(device) for row in zip(*shown) for image in row]
        pixel_values, image_grid_thw = preprocess(images, self.geometry)
        inputs = self._text_inputs(queries, image_grid_thw, len(shown), device)
        inputs["pixel_values"] = pixel_values
        inputs["image_grid_thw"] = image_grid_thw
        return inputs

    def _shown(self, first, second, queries, context) -> list[list[torch.Tensor]]:
        """The images of the rows, one list per place in the prompt (context first when given)."""
        first, second = list(first), list(second)
        if not (len(first) == len(second) == len(queries)):
            raise ValueError(f"got {len(first)} first images, {len(second)} second images, {len(queries)} queries")
        if context is None:
            return [first, second]
        context = list(context)
        if len(context) != len(queries):
            raise ValueError(f"got {len(context)} context images for {len(queries)} queries")
        return [context, first, second]

    def _text_inputs(self, queries: list[str], image_grid_thw: torch.Tensor, per_row: int, device) -> dict:
        """The tokenised chat texts of the rows (with image_grid_thw: every shown image, row after row)."""
        tokens = (image_grid_thw.prod(-1) // self.geometry.merge_size**2).tolist()
        texts = [self.chat_text(query, [int(count) for count in tokens[per_row * row: per_row * (row + 1)]])
                 for row, query in enumerate(queries)]
        input_ids, attention_mask = self._tokenize(texts, device)
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "use_cache": False}
        if self._pass_token_types:
            inputs["mm_token_type_ids"] = (input_ids == self.image_token_id).int()
        if self._pass_logits_to_keep:
            inputs["logits_to_keep"] = 1
        return inputs

    def shared_image_inputs(self, first: list[torch.Tensor], second: list[torch.Tensor], queries: list[str], *,
                            context: list[torch.Tensor] | None = None) -> dict:
        """The model's keyword arguments for B rows with the vision features already in place: each
        distinct image tensor (by identity) is preprocessed and encoded once, and its features are
        scattered into every row that shows it, as the model itself scatters `pixel_values`.
        `model_inputs` is the same layout with every image encoded by the model."""
        shown = self._shown(first, second, queries, context)
        device = self.device
        slot_of: dict[int, int] = {}
        distinct: list[torch.Tensor] = []
        slots: list[int] = []
        for row in zip(*shown):
            for image in row:
                if id(image) not in slot_of:
                    slot_of[id(image)] = len(distinct)
                    distinct.append(image.to(device))
                slots.append(slot_of[id(image)])
        pixel_values, distinct_grid = preprocess(distinct, self.geometry)
        features = self._image_features(pixel_values, distinct_grid)
        image_grid_thw = distinct_grid[slots]
        inputs = self._text_inputs(queries, image_grid_thw, len(shown), device)
        embeddings = self._base().get_input_embeddings()(inputs["input_ids"])
        image_embeds = torch.cat([features[slot] for slot in slots]).to(embeddings.device, embeddings.dtype)
        image_mask = (inputs["input_ids"] == self.image_token_id).unsqueeze(-1).expand_as(embeddings)
        if int(image_mask.sum()) != image_embeds.numel():
            raise ValueError(f"the prompts hold {int(image_mask.sum()) // embeddings.shape[-1]} image tokens for "
                             f"{image_embeds.shape[0]} image features")
        inputs["inputs_embeds"] = embeddings.masked_scatter(image_mask, image_embeds)
        inputs["image_grid_thw"] = image_grid_thw  # the multimodal positions of every row's images
        return inputs

    def _image_features(self, pixel_values: torch.Tensor, image_grid_thw: torch.Tensor) -> tuple:
        """One (tokens, hidden) tensor of merged vision features per image."""
        output = self._base().get_image_features(pixel_values, image_grid_thw)
        # transformers >= 5 returns a model output holding the per-image split; 4.x the split itself.
        return tuple(getattr(output, "pooler_output", output))

    @torch.no_grad()
    def score(
        self,
        first: list[torch.Tensor],
        second: list[torch.Tensor],
        queries: list[str],
        *,
        both_orders: bool = False,
        batch_size: int = 16,
        context: list[torch.Tensor] | None = None,
    ) -> dict:
        """Rewards for B pairs, computed batch_size pairs per forward.

        Returns float32 CPU tensors (B,): "p_yes" = P(yes_token | first, second, query) and
        "p_yes_renormalised" = P(yes) / (P(yes) + P(no)); with both_orders also "p_yes_reversed" and
        "p_yes_reversed_renormalised" for (second, first), run in the same forward batch.
        context: None, or B images shown before each pair (see `answer_logprobs`), in both orders.
        """
        first, second, queries = list(first), list(second), list(queries)
        context = list(context) if context is not None else None
        parts: dict[str, list[torch.Tensor]] = {}
        for start in range(0, len(queries), batch_size):
            a, b, q = (
                first[start : start + batch_size],
                second[start : start + batch_size],
                queries[start : start + batch_size],
            )
            c = context[start : start + batch_size] if context is not None else None
            if both_orders:
                yes, no = self.answer_logprobs(a + b, b + a, q + q, context=c + c if c is not None else None)
                n = len(q)
                chunks = {"p_yes": (yes[:n], no[:n]), "p_yes_reversed": (yes[n:], no[n:])}
            else:
                chunks = {"p_yes": self.answer_logprobs(a, b, q, context=c)}
            for name, (yes, no) in chunks.items():
                parts.setdefault(name, []).append(yes.exp().cpu())
                parts.setdefault(f"{name}_renormalised", []).append(torch.sigmoid(yes - no).cpu())
        names = ["p_yes", "p_yes_renormalised"] + (
            ["p_yes_reversed", "p_yes_reversed_renormalised"] if both_orders else []
        )
        return {name: torch.cat(parts[name]) if parts.get(name) else torch.zeros(0) for name in names}

    # --- text ----------------------------------------------------------------------------------

    def chat_text(self, query: str, image_tokens: list[int]) -> str:
        """The prompt for one pair: its images in order (each as its vision tokens; two for the
        method, three with a context image) then the query, in the tokenizer's chat template when
        it has one, ending where the assistant's answer starts."""
        if self.use_chat_template:
            content = [{"type": "image"} for _ in image_tokens] + [{"type": "text", "text": query}]
            messages = [{"role": "user", "content": content}]
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            pieces = text.split(self.image_token)
            if len(pieces) != len(image_tokens) + 1:
                raise ValueError(
                    f"the tokenizer's chat template placed {len(pieces) - 1} {self.image_token} tokens for "
                    f"{len(image_tokens)} images; it is not a Qwen2-VL chat template (use_chat_template=False "
                    "uses the fixed Qwen2-VL format)"
                )
            out = pieces[0]
            for count, piece in zip(image_tokens, pieces[1:]):
                out += self.image_token * count + piece
            return out
        images = "".join(f"{self.vision_start}{self.image_token * count}{self.vision_end}" for count in image_tokens)
        return FIXED_CHAT_FORMAT.format(images=images, query=query)

    def _tokenize(self, texts: list[str], device) -> tuple[torch.Tensor, torch.Tensor]:
        # Left padding: the answer position is the last one in every row.
        rows = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        length = max(len(row) for row in rows)
        input_ids = torch.full((len(rows), length), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), length), dtype=torch.long)
        for index, row in enumerate(rows):
            input_ids[index, length - len(row):] = torch.tensor(row, dtype=torch.long)
            attention_mask[index, length - len(row):] = 1
        return input_ids.to(device), attention_mask.to(device)

    def _base(self):
        """The transformers model under any peft wrapper."""
        model = self.model
        return model.get_base_model() if hasattr(model, "get_base_model") else model


# --- helpers of loading ---------------------------------------------------------------------------


def single_token_id(tokenizer, token: str, what: str = "answer token") -> int:
    """The id of `token` when the tokenizer encodes it as exactly one token; ValueError otherwise."""
    ids = tokenizer.encode(token, add_special_tokens=False)
    unknown = getattr(tokenizer, "unk_token_id", None)
    if len(ids) != 1 or (unknown is not None and ids[0] == unknown):
        pieces = tokenizer.convert_ids_to_tokens(ids)
        raise ValueError(
            f"{what} {token!r} is not a single token of this tokenizer (it encodes as {pieces}); the reward is "
            "the probability of one answer token, so pick an answer word the tokenizer keeps whole"
        )
    return ids[0]


def _pad_token_id(tokenizer) -> int:
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if candidate is not None:
            return int(candidate)
    return 0  # masked out by the attention mask; any id works


def _model_class(config):
    from transformers import Qwen2_5_VLForConditionalGeneration, Qwen2VLForConditionalGeneration

    classes = {"qwen2_5_vl": Qwen2_5_VLForConditionalGeneration, "qwen2_vl": Qwen2VLForConditionalGeneration}
    if config.model_type not in classes:
        raise ValueError(f"the judge needs a Qwen2-VL family model, got model_type {config.model_type!r}")
    return classes[config.model_type]


def _resolve_device(device) -> torch.device:
    if device == "auto" or device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _resolve_dtype(dtype, device: torch.device) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    names = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float16": torch.float16, "fp16": torch.float16}
    if dtype not in names:
        raise ValueError(f"unknown dtype {dtype!r}; use 'auto' or one of {sorted(names)}")
    return names[dtype]


def _read_judge_file(path_or_id) -> dict:
    path = Path(path_or_id) / JUDGE_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def _processor_bounds(path_or_id) -> dict:
    """min/max pixels and normalisation from the checkpoint's preprocessor_config.json, when it has one."""
    try:
        from transformers.utils import cached_file

        resolved = cached_file(
            str(path_or_id), "preprocessor_config.json",
            _raise_exceptions_for_missing_entries=False, _raise_exceptions_for_connection_errors=False,
        )
    except (OSError, ValueError):
        return {}
    if not resolved:
        return {}
    values = json.loads(Path(resolved).read_text())
    size = values.get("size") or {}
    bounds = _not_none(
        min_pixels=values.get("min_pixels", size.get("shortest_edge", size.get("min_pixels"))),
        max_pixels=values.get("max_pixels", size.get("longest_edge", size.get("max_pixels"))),
        image_mean=values.get("image_mean"),
        image_std=values.get("image_std"),
    )
    # Patch and merge sizes come from the model's config, the authority on what the tower expects.
    return bounds


def _not_none(**values) -> dict:
    return {k: v for k, v in values.items() if v is not None}


def _enable_gradient_checkpointing(model) -> None:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    # Non-reentrant checkpointing needs no input that requires grad, so frozen embeddings under
    # LoRA still pass gradients to the adapter.
    kwargs = {"use_reentrant": False}
    if hasattr(base, "activation_checkpointing_enable"):  # transformers >= 5 name
        base.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    base.config.use_cache = False
