"""Prompt variations for text-to-image: one class description, many scenes.

A generator asked for 200 raccoons with one prompt returns 200 near-identical raccoons the
quality gate then throws away as duplicates. Crossing the description with viewpoints,
lighting, backgrounds and cameras (a night IR frame is what a pet-door camera sees) gives the
student the spread of conditions it will meet.
"""

from __future__ import annotations

import itertools

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

VIEWPOINTS = ("front view", "side view", "seen from above", "close-up", "seen from a distance",
              "three-quarter view", "partly out of frame", "seen from a low angle")
LIGHTING = ("daylight", "overcast light", "indoor lighting", "at dusk", "harsh flash", "dim light", "backlit")
BACKGROUNDS = ("plain background", "cluttered background", "outdoors", "indoors", "on a doorstep",
               "on grass", "on a wooden floor", "next to a wall")
CAMERAS = ("photo", "smartphone photo", "low-resolution security camera frame", "night infrared camera, grayscale",
           "wide-angle lens", "slightly blurry snapshot")
NEGATIVE = ("text, watermark, logo, frame, collage, drawing, cartoon, illustration, render, "
            "deformed, duplicate, multiple objects")


class PromptConfig(BaseModel):
    """The axes a description is crossed with; set an axis to one value to pin it (e.g. cameras=["night IR"])."""

    model_config = ConfigDict(extra="forbid")

    viewpoints: list[str] = Field(default_factory=lambda: list(VIEWPOINTS))
    lighting: list[str] = Field(default_factory=lambda: list(LIGHTING))
    backgrounds: list[str] = Field(default_factory=lambda: list(BACKGROUNDS))
    cameras: list[str] = Field(default_factory=lambda: list(CAMERAS))
    negative: str = Field(NEGATIVE, description="always avoided; the class's negatives are added to it")


def prompt_variations(description: str, count: int, seed: int, config: PromptConfig | None = None) -> list[str]:
    """``count`` prompts, each the description plus one viewpoint, lighting, background and camera.

    The combinations are drawn without replacement (seeded) until all are used, so a few hundred
    prompts are all different.
    """
    config = config or PromptConfig()
    axes = [a or [""] for a in (config.viewpoints, config.lighting, config.backgrounds, config.cameras)]
    combos = list(itertools.product(*axes))
    rng = np.random.default_rng(seed)
    order: list[int] = []
    while len(order) < count:
        order += rng.permutation(len(combos)).tolist()
    return [", ".join([description, *(part for part in combos[i] if part)]) for i in order[:count]]


def negative_prompt(negatives: list[str], config: PromptConfig | None = None) -> str:
    config = config or PromptConfig()
    return ", ".join(part for part in [*negatives, config.negative] if part)
