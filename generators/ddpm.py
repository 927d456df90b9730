"""The offline image generator: a small class-conditional DDPM trained on the run's own labeled pool.

With no pretrained text-to-image pipeline on the machine, the only images that can teach the
student what a short class looks like are the pool's own. A diffusers ``UNet2DModel`` with a
class embedding (one extra "no class" index for classifier-free guidance, Ho & Salimans 2021)
learns all the labeled classes together, so a short class borrows shape and texture from the
others; batches are class-balanced so the short class is seen as often as the rest. Training
is time-boxed (``budget_minutes``); sampling uses DDIM with few steps.

    result = train_ddpm(images, labels, ["shirt", "bag"], DDPMConfig(budget_minutes=3), out_dir)
    gen = create_generator(DDPMConfig(model=str(result.path)))
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from generators.base import (
    GeneratedFile,
    GenerateRequest,
    GenerateResult,
    Generator,
    GeneratorUnavailable,
    safe_name,
)
from generators.registry import register_generator
from knowledge.io import atomic_path, write_json_atomic

log = logging.getLogger(__name__)

META = "nanofactory_ddpm.json"  # written last: its presence marks a complete model folder
TRAIN_TIMESTEPS = 1000


class DDPMConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Literal["ddpm"] = "ddpm"
    model: str | None = Field(None, description="folder of a trained model; None = train one on the labeled pool first")
    # training
    budget_minutes: float = Field(3.0, gt=0, le=600, description="training stops after this long")
    max_steps: int | None = Field(None, ge=1, description="or after this many steps, whichever comes first")
    # small batches at a high rate: a CPU budget buys few steps, and steps matter more than batch size here
    # (Fashion-MNIST, 2 minutes on 2 cores: batch 32 at 2e-3 gives ~900 steps and recognisable shirts and bags,
    # batch 64 at 1e-3 ~250 steps of noise)
    batch_size: int = Field(32, ge=2)
    lr: float = Field(2e-3, gt=0)
    # 16-32-64 without attention: 0.4 s per step of 64 28x28 images on 2 cores, against 0.8 s for 32-64-64
    # with attention at the bottom: twice the steps in the same budget matter more than the width here
    channels: list[int] = Field([16, 32, 64], min_length=2, max_length=4)
    label_dropout: float = Field(0.1, ge=0, lt=1, description="fraction trained without the class (for guidance)")
    hflip: bool = Field(True, description="mirror training images (label-preserving for most image classes)")
    ema: float = Field(0.995, ge=0, lt=1, description="weight averaging; the average samples better than the last step")
    # v-prediction (Salimans & Ho 2022) trains stably at every noise level; epsilon-prediction left the same
    # budget's samples grey and speckled
    prediction: Literal["epsilon", "sample", "v_prediction"] = Field(
        "v_prediction", description="what the UNet predicts: the noise, the clean image, or the velocity")
    # sampling
    sample_steps: int = Field(25, ge=1, le=1000, description="DDIM steps per image")
    guidance: float = Field(1.0, ge=0, description="classifier-free guidance weight w: eps_u + (1 + w)(eps_c - eps_u); 0 = plain conditional")
    sample_batch: int = Field(128, ge=1)
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: a GPU when one is visible")


def _device(config: DDPMConfig) -> str:
    import torch

    if config.device == "cuda" and not torch.cuda.is_available():
        raise GeneratorUnavailable("The DDPM was asked for a GPU but none is visible; use device 'auto' or 'cpu'.")
    return "cuda" if config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available()) else "cpu"


@dataclass
class DDPMTrainResult:
    path: Path
    steps: int
    seconds: float
    final_loss: float

    def as_dict(self) -> dict:
        return {"path": str(self.path), "steps": self.steps, "seconds": self.seconds, "final_loss": self.final_loss}


def _unet(config: DDPMConfig, resolution: int, channels: int, num_classes: int):
    from diffusers import UNet2DModel

    levels = len(config.channels)
    return UNet2DModel(
        sample_size=resolution, in_channels=channels, out_channels=channels,
        block_out_channels=tuple(config.channels), layers_per_block=1,
        down_block_types=("DownBlock2D",) * levels, up_block_types=("UpBlock2D",) * levels,
        add_attention=False, norm_num_groups=min(8, config.channels[0]),
        num_class_embeds=num_classes + 1,  # the last index means "no class"
    )


def _scheduler(prediction: str):
    from diffusers import DDPMScheduler

    # the cosine schedule keeps small images from being pure noise for most of the timesteps (Nichol & Dhariwal 2021)
    return DDPMScheduler(num_train_timesteps=TRAIN_TIMESTEPS, beta_schedule="squaredcos_cap_v2", clip_sample=True,
                         prediction_type=prediction)


def _resolution(side: int, levels: int) -> int:
    step = 2 ** (levels - 1)
    return int(math.ceil(side / step) * step)


def _to_tensor(images: np.ndarray, resolution: int):
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.array(images, dtype=np.float32)).permute(0, 3, 1, 2) / 127.5 - 1.0
    if x.shape[-1] != resolution:
        x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False)
    return x


def train_ddpm(images: np.ndarray, labels: np.ndarray, class_names: list[str], config: DDPMConfig, out_dir: Path,
               seed: int = 0, progress: bool = False) -> DDPMTrainResult:
    """Train on uint8 NHWC ``images`` with integer ``labels`` into ``class_names``; save to ``out_dir``."""
    import torch
    import torch.nn.functional as F
    from tqdm.auto import tqdm

    from knowledge.teachers.base import torch_threads

    labels = np.asarray(labels, np.int64)
    if len(images) == 0:
        raise GeneratorUnavailable("The DDPM has no labeled images to learn from; label some pool images first.")
    torch.manual_seed(seed)
    torch.set_num_threads(torch_threads())
    rng = np.random.default_rng(seed)
    side, channels = images.shape[1], images.shape[3]
    resolution = _resolution(side, len(config.channels))
    x_all = _to_tensor(images, resolution)
    device = _device(config)
    unet, scheduler = _unet(config, resolution, channels, len(class_names)).to(device), _scheduler(config.prediction)
    ema = [p.detach().clone() for p in unet.parameters()]
    opt = torch.optim.AdamW(unet.parameters(), lr=config.lr, weight_decay=0.0)
    # class-balanced draws: a class with 10 images is seen as often as one with 1,000
    counts = np.bincount(labels, minlength=len(class_names)).astype(np.float64)
    weights = 1.0 / counts[labels]
    weights /= weights.sum()
    null = len(class_names)
    deadline = time.perf_counter() + 60 * config.budget_minutes
    started, step, loss_avg = time.perf_counter(), 0, float("nan")
    bar = tqdm(total=config.max_steps, desc="ddpm", unit="step", disable=not progress, leave=False)
    unet.train()
    while time.perf_counter() < deadline and (config.max_steps is None or step < config.max_steps):
        idx = rng.choice(len(x_all), config.batch_size, p=weights)
        x0 = x_all[idx].to(device)
        if config.hflip:
            flip = torch.from_numpy(rng.random(len(idx)) < 0.5).to(device)
            x0 = torch.where(flip[:, None, None, None], x0.flip(3), x0)
        y = torch.from_numpy(np.where(rng.random(len(idx)) < config.label_dropout, null, labels[idx])).to(device)
        noise = torch.randn_like(x0)
        t = torch.from_numpy(rng.integers(0, TRAIN_TIMESTEPS, len(idx))).to(device)
        target = {"epsilon": noise, "sample": x0}.get(config.prediction)
        if target is None:
            target = scheduler.get_velocity(x0, noise, t)
        loss = F.mse_loss(unet(scheduler.add_noise(x0, noise, t), t, class_labels=y).sample, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        step += 1
        decay = min(config.ema, (1 + step) / (10 + step))  # a short run averages over its own length
        with torch.no_grad():
            for e, p in zip(ema, unet.parameters()):
                e.lerp_(p.detach(), 1 - decay)
        value = float(loss.detach())
        loss_avg = value if step == 1 else 0.98 * loss_avg + 0.02 * value
        bar.update(1)
        bar.set_postfix(loss=f"{loss_avg:.4f}")
    bar.close()
    with torch.no_grad():
        for e, p in zip(ema, unet.parameters()):
            p.copy_(e)
    seconds = round(time.perf_counter() - started, 2)
    out_dir = Path(out_dir)
    unet.cpu().save_pretrained(out_dir / "unet")
    scheduler.save_pretrained(out_dir / "scheduler")
    write_json_atomic(out_dir / META, {
        "class_names": list(class_names), "image_size": side, "channels": channels, "resolution": resolution,
        "steps": step, "seconds": seconds, "final_loss": loss_avg, "train_images": len(images),
        "images_per_class": {n: int(c) for n, c in zip(class_names, counts)}, "config": config.model_dump()})
    log.info("DDPM: %d steps in %.0f s, loss %.4f", step, seconds, loss_avg)
    return DDPMTrainResult(out_dir, step, seconds, loss_avg)


@register_generator("ddpm", DDPMConfig)
class DDPMGenerator(Generator):
    modality = "image"
    config: DDPMConfig

    def __init__(self, config: DDPMConfig):
        super().__init__(config)
        self._unet = None
        self._meta: dict | None = None
        self._device = "cpu"

    def check(self) -> None:
        if self.config.model is None:
            raise GeneratorUnavailable("The DDPM generator has no trained model; train one on the labeled pool "
                                       "first (the build's generate step does it) or pass its folder.")
        if not (Path(self.config.model) / META).is_file():
            raise GeneratorUnavailable(f"{self.config.model} is not a trained DDPM folder (no {META}); "
                                       "train one with generators.ddpm.train_ddpm.")

    @property
    def class_names(self) -> list[str]:
        self.check()
        if self._meta is None:
            self._meta = json.loads((Path(self.config.model) / META).read_text())
        return self._meta["class_names"]

    def load(self) -> None:
        if self._unet is not None:
            return
        from diffusers import UNet2DModel

        self.class_names  # noqa: B018  (reads and checks the metadata)
        # low_cpu_mem_usage=False: the default wants `accelerate`, and warns without it, for a model of a few MB
        model = UNet2DModel.from_pretrained(Path(self.config.model) / "unet", low_cpu_mem_usage=False)
        self._device = _device(self.config)
        self._unet = model.to(self._device).eval()

    def _class_index(self, name: str) -> int:
        names = self.class_names
        for i, n in enumerate(names):
            if (n == name or n.lower() == name.lower()) and self._meta["images_per_class"].get(n, 0) > 0:
                return i
        raise GeneratorUnavailable(f"The DDPM at {self.config.model} learned {', '.join(names)}, not {name!r}; "
                                   "it cannot draw a class it has no images of.")

    def sample(self, class_index: int, seeds: list[int]) -> np.ndarray:
        """uint8 NHWC images of ``class_index``, one per seed (each seed fixes its image)."""
        import torch
        import torch.nn.functional as F
        from diffusers import DDIMScheduler

        from knowledge.teachers.base import torch_threads

        self.load()
        torch.set_num_threads(torch_threads())
        meta, cfg = self._meta, self.config
        res, ch = meta["resolution"], meta["channels"]
        scheduler = DDIMScheduler.from_pretrained(Path(cfg.model) / "scheduler", timestep_spacing="trailing")
        scheduler.set_timesteps(cfg.sample_steps)
        # noise from CPU generators: a seed gives the same start whichever device samples
        x = torch.stack([torch.randn((ch, res, res), generator=torch.Generator().manual_seed(s)) for s in seeds])
        x = x.to(self._device)
        cond = torch.full((len(seeds),), class_index, device=self._device)
        uncond = torch.full((len(seeds),), len(meta["class_names"]), device=self._device)
        with torch.inference_mode():
            for t in scheduler.timesteps:
                eps_c, eps_u = self._unet(torch.cat([x, x]), t, class_labels=torch.cat([cond, uncond])).sample.chunk(2)
                eps = eps_u + (1 + cfg.guidance) * (eps_c - eps_u)
                x = scheduler.step(eps, t, x, eta=0.0).prev_sample
            if res != meta["image_size"]:
                x = F.interpolate(x, size=(meta["image_size"],) * 2, mode="bilinear", align_corners=False)
        return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()

    def generate(self, request: GenerateRequest, out_dir: Path, progress: bool = False) -> GenerateResult:
        from PIL import Image
        from tqdm.auto import tqdm

        started = time.perf_counter()
        index = self._class_index(request.class_name)
        self.load()
        out_dir, stem, cfg = Path(out_dir), safe_name(request.class_name), self.config
        files = []
        with tqdm(total=request.count, desc=f"ddpm {request.class_name}", unit="img", disable=not progress,
                  leave=False) as bar:
            for start in range(0, request.count, cfg.sample_batch):
                batch = list(range(start, min(start + cfg.sample_batch, request.count)))
                seeds = [(request.seed * 1_000_003 + i) % (2**63) for i in batch]
                for i, seed, image in zip(batch, seeds, self.sample(index, seeds)):
                    path = out_dir / f"{stem}-{request.seed}-{i:05d}.png"
                    with atomic_path(path) as tmp:
                        Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(tmp, format="PNG")
                    files.append(GeneratedFile(path, {
                        "generator": self.name, "model": cfg.model, "class_index": index, "seed": seed,
                        "sample_steps": cfg.sample_steps, "guidance": cfg.guidance,
                        "trained_steps": self._meta["steps"]}))
                bar.update(len(batch))
        return GenerateResult(self.name, request, files, round(time.perf_counter() - started, 2))
