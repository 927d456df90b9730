"""Text-to-image through any diffusers pipeline, from a hub id (already in the local cache) or a folder.

SD-Turbo (``stabilityai/sd-turbo``: 1-4 steps, no guidance) is the practical choice on a CPU;
any pipeline whose ``__call__`` takes a ``prompt`` works. Loading never downloads: a hub id
must already be in the Hugging Face cache, and a missing model is one sentence saying how to
get it. Each image has its own seed, and its starting noise is drawn in float32 on the CPU from
that seed: a request replays on any device and at any precision (float16 on a GPU, float32 on a
CPU) up to rounding, which a pipeline left to draw its own noise does not promise (it draws in its
dtype, and torch's float16 draws differ between builds).
"""

from __future__ import annotations

import inspect
import logging
import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from generators.base import (
    GeneratedFile,
    GenerateRequest,
    GenerateResult,
    Generator,
    GeneratorUnavailable,
    safe_name,
)
from generators.prompts import PromptConfig, negative_prompt, prompt_variations
from generators.registry import register_generator
from knowledge.io import looks_like_path
from knowledge.io import atomic_path

log = logging.getLogger(__name__)


class TextToImageConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Literal["diffusers"] = "diffusers"
    model: str = Field(min_length=1, description="hub id in the local cache (e.g. stabilityai/sd-turbo) or a local folder")
    steps: int = Field(4, ge=1, le=200, description="denoising steps; SD-Turbo needs 1-4, SD 1.5 about 25")
    guidance_scale: float | None = Field(None, ge=0, description="classifier-free guidance; None = the pipeline's default")
    image_size: int | None = Field(None, ge=8, le=2048, description="output side in pixels; None = the pipeline's default")
    batch_size: int = Field(4, ge=1, le=64)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        "auto", description="auto: float16 on a GPU, float32 on a CPU")
    prompts: PromptConfig = Field(default_factory=PromptConfig)


@register_generator("diffusers", TextToImageConfig)
class TextToImageGenerator(Generator):
    modality = "image"
    config: TextToImageConfig

    def __init__(self, config: TextToImageConfig):
        super().__init__(config)
        self._pipe = None
        self._device = "cpu"

    def check(self) -> None:
        """What can be told without loading anything: the folder is there and is a pipeline, or the hub id is in
        the local cache (nothing is ever downloaded)."""
        model = self.config.model
        if looks_like_path(model):
            folder = Path(model).expanduser()
            if not folder.is_dir():
                raise GeneratorUnavailable(
                    f"The diffusers pipeline folder {model} does not exist; pass a folder saved with save_pretrained "
                    "or the hub id of a pipeline already in the local cache.")
            if not (folder / "model_index.json").is_file():
                raise GeneratorUnavailable(
                    f"{model} is not a diffusers pipeline folder (it has no model_index.json); pass a folder saved "
                    "with save_pretrained.")
            return
        from huggingface_hub import try_to_load_from_cache

        try:
            cached = try_to_load_from_cache(model, "model_index.json")
        except ValueError:  # not a valid repo id
            cached = None
        if not isinstance(cached, str):
            raise GeneratorUnavailable(_load_failure(model, OSError("not in the local cache")))

    def load(self) -> None:
        if self._pipe is not None:
            return
        self.check()
        import importlib.util

        import torch
        from diffusers import DiffusionPipeline
        from diffusers.utils import logging as diffusers_logging
        from transformers.utils import logging as transformers_logging

        diffusers_logging.disable_progress_bar()
        transformers_logging.disable_progress_bar()  # a weight-loading bar per component is noise
        model = str(Path(self.config.model).expanduser()) if looks_like_path(self.config.model) else self.config.model
        self._device = "cuda" if self.config.device == "cuda" or (
            self.config.device == "auto" and torch.cuda.is_available()) else "cpu"
        if self._device == "cuda" and not torch.cuda.is_available():
            raise GeneratorUnavailable("The text-to-image generator was asked for a GPU but none is visible; "
                                       "use device 'auto' or 'cpu'.")
        dtype = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}.get(
            self.config.dtype, torch.float16 if self._device == "cuda" else torch.float32)
        try:
            # without `accelerate`, low_cpu_mem_usage must be off or diffusers warns on every component
            pipe = DiffusionPipeline.from_pretrained(model, dtype=dtype, local_files_only=True,
                                                     low_cpu_mem_usage=importlib.util.find_spec("accelerate") is not None)
        except (OSError, ValueError) as e:  # not in the cache, not a pipeline folder, or an invalid id
            raise GeneratorUnavailable(_load_failure(self.config.model, e)) from None
        if "prompt" not in inspect.signature(pipe.__call__).parameters:
            raise GeneratorUnavailable(f"{self.config.model!r} is a {type(pipe).__name__}, not a text-to-image "
                                       "pipeline; pass one that takes a prompt.")
        pipe.set_progress_bar_config(disable=True)
        self._pipe = pipe.to(self._device)
        log.info("loaded %s (%s) on %s", self.config.model, type(pipe).__name__, self._device)

    def generate(self, request: GenerateRequest, out_dir: Path, progress: bool = False) -> GenerateResult:
        import torch
        from tqdm.auto import tqdm

        self.load()
        started = time.perf_counter()
        cfg = self.config
        prompts = prompt_variations(request.text, request.count, request.seed, cfg.prompts)
        negative = negative_prompt(request.negatives, cfg.prompts)
        params = inspect.signature(self._pipe.__call__).parameters
        out_dir = Path(out_dir)
        stem = safe_name(request.class_name)
        files = []
        bar = tqdm(total=request.count, desc=f"diffusers {request.class_name}", unit="img", disable=not progress,
                   leave=False)
        for start in range(0, request.count, cfg.batch_size):
            batch = list(range(start, min(start + cfg.batch_size, request.count)))
            seeds = [_image_seed(request.seed, i) for i in batch]
            kwargs = {"prompt": [prompts[i] for i in batch], "num_inference_steps": cfg.steps, "output_type": "pil",
                      # CPU generators for what the pipeline draws itself (ancestral schedulers' noise)
                      "generator": [torch.Generator("cpu").manual_seed(s) for s in seeds]}
            latents = _initial_latents(self._pipe, params, seeds, cfg.image_size)
            if latents is not None:
                kwargs["latents"] = latents
            if "negative_prompt" in params:
                kwargs["negative_prompt"] = [negative] * len(batch)
            if cfg.guidance_scale is not None and "guidance_scale" in params:
                kwargs["guidance_scale"] = cfg.guidance_scale
            if cfg.image_size is not None:
                kwargs["height"] = kwargs["width"] = cfg.image_size
            with torch.inference_mode():
                output = self._pipe(**kwargs)
            flagged = getattr(output, "nsfw_content_detected", None) or [False] * len(batch)
            for i, seed, image, nsfw in zip(batch, seeds, output.images, flagged):
                path = out_dir / f"{stem}-{request.seed}-{i:05d}.png"
                with atomic_path(path) as tmp:
                    image.save(tmp, format="PNG")
                files.append(GeneratedFile(path, {
                    "generator": self.name, "model": cfg.model, "pipeline": type(self._pipe).__name__,
                    "prompt": prompts[i], "negative_prompt": kwargs.get("negative_prompt", [None])[0], "seed": seed,
                    "steps": cfg.steps, "guidance_scale": cfg.guidance_scale, "size": list(image.size),
                    "device": self._device, "dtype": str(self._pipe.dtype).removeprefix("torch."),
                    "nsfw_flagged": bool(nsfw)}))
            bar.update(len(batch))
        bar.close()
        return GenerateResult(self.name, request, files, round(time.perf_counter() - started, 2))


def _load_failure(model: str, error: Exception) -> str:
    text = str(error).strip()
    if "cache" in text.lower() or type(error).__name__ == "LocalEntryNotFoundError":
        return (f"The diffusers pipeline {model!r} is not in the local Hugging Face cache and Nanofactory never "
                f"downloads; fetch it once with `huggingface-cli download {model}` on a connected machine, "
                "or pass a local folder.")
    first = (text.split(". ")[0].splitlines() or [type(error).__name__])[0][:160]
    return (f"Could not load the diffusers pipeline {model!r} ({first}); pass a folder saved with save_pretrained "
            "or the id of a pipeline in the local cache.")


def _initial_latents(pipe, params, seeds: list[int], image_size: int | None):
    """The starting noise of a UNet latent-diffusion pipeline (Stable Diffusion 1.x/2.x, SDXL, SD-Turbo), one
    image per seed, drawn in float32 on the CPU and cast to the pipeline's dtype and device.

    A pipeline draws its own noise in its dtype, and some torch builds draw float16 from a seed
    differently from float32 (the CUDA build on the GPU machine lent to this project did; the CPU
    build here does not): there a float16 run on the GPU gave the tests' tiny pipeline other
    images than a float32 run on the CPU, where with this noise they agree to rounding. None for
    pipelines whose latents this shape does not describe (transformer pipelines pack theirs):
    they draw their own.
    """
    import torch

    unet, factor = getattr(pipe, "unet", None), getattr(pipe, "vae_scale_factor", None)
    if "latents" not in params or unet is None or not factor:
        return None
    side = image_size or unet.config.sample_size * factor
    shape = (unet.config.in_channels, side // factor, side // factor)
    noise = torch.stack([torch.randn(shape, generator=torch.Generator("cpu").manual_seed(s)) for s in seeds])
    return noise.to(device=unet.device, dtype=unet.dtype)


def _image_seed(seed: int, i: int) -> int:
    return (seed * 1_000_003 + i) % (2**63)
