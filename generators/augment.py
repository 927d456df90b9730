"""Label-preserving augmentation applied on the fly while a student trains.

Random shifts and horizontal flips: cheap on a CPU, and they keep a tiny student
from memorizing the exact pixel positions of a small pool.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class AugmentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    shift: float = Field(0.1, ge=0, le=0.5, description="largest shift, as a fraction of the image side")
    hflip: bool = True
    mode: Literal["reflect", "zeros"] = "zeros"


def augment_batch(x, config: AugmentConfig, generator):
    """Shift (zero-padded) and flip a float batch (N, C, H, W) with a seeded torch generator."""
    import torch
    import torch.nn.functional as F

    n, _, h, w = x.shape
    pad = int(round(config.shift * max(h, w)))
    if pad:
        padded = F.pad(x, (pad, pad, pad, pad), mode="constant" if config.mode == "zeros" else "reflect",
                       **({"value": float(x.min())} if config.mode == "zeros" else {}))
        dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
        dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
        x = _crop(padded, dy, dx, h, w)
    if config.hflip:
        flip = torch.rand(n, generator=generator) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    return x


def _crop(padded, dy, dx, h: int, w: int):
    import torch

    n = padded.shape[0]
    ys = (dy[:, None] + torch.arange(h)[None, :])  # (N, H)
    xs = (dx[:, None] + torch.arange(w)[None, :])  # (N, W)
    idx_n = torch.arange(n)[:, None, None]
    # advanced indexing: (N, H, W) positions, channels kept
    return padded.permute(0, 2, 3, 1)[idx_n, ys[:, :, None], xs[:, None, :]].permute(0, 3, 1, 2)
