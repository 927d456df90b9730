"""Architecture search spaces (a registry). A candidate is a typed config that builds its torch
module (``build``) and its compiler graph (``graph``, shapes and zero weights: what the
cost model and the memory planner read), and exports to ONNX like any student.

* ``mbnet``: MCU inverted residuals in the MobileNetV2 / MCUNet style: per-stage depth,
  width, expansion ratio and kernel (3/5/7); input resolution from the caller's choices.
* ``dscnn``: depthwise-separable stacks for keyword spotting and small images (the spine's
  fixed student is one point in it): number of blocks, per-block width and stride.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from knowledge.registry import Registry
from tools.student import Block, StudentConfig

SPACES: Registry = Registry("search space")


def register_space(name: str):
    return SPACES.register(name)


def create_space(name: str, **kwargs):
    return SPACES.create(name, **kwargs)


def list_spaces() -> list[str]:
    return SPACES.names()


class MBBlock(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    out_channels: int = Field(ge=1)
    expand: int = Field(ge=1, le=8)
    kernel: Literal[3, 5, 7] = 3
    stride: int = Field(1, ge=1, le=2)


class MBConfig(BaseModel):
    """An inverted-residual network: stem conv, MB blocks, global average pool, linear."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["mbnet"] = "mbnet"
    input_size: int = Field(ge=8)
    in_channels: int = Field(ge=1, le=4)
    num_classes: int = Field(ge=2)
    stem_channels: int = Field(ge=1)
    stem_stride: int = Field(1, ge=1, le=2)
    blocks: list[MBBlock] = Field(min_length=1)
    dropout: float = Field(0.1, ge=0, lt=1)

    @property
    def name(self) -> str:
        body = "-".join(f"e{b.expand}k{b.kernel}c{b.out_channels}{'s' if b.stride == 2 else ''}" for b in self.blocks)
        return f"mbnet-{self.input_size}x{self.input_size}x{self.in_channels}-s{self.stem_channels}-{body}"

    def build(self):
        from torch import nn

        def conv_bn(cin: int, cout: int, k: int, stride: int, groups: int = 1, act: bool = True) -> list:
            layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
            return layers + [nn.ReLU()] if act else layers

        class MB(nn.Module):
            def __init__(self, cin: int, block: MBBlock):
                super().__init__()
                mid = cin * block.expand
                layers = conv_bn(cin, mid, 1, 1) if block.expand > 1 else []
                layers += conv_bn(mid, mid, block.kernel, block.stride, groups=mid)
                layers += conv_bn(mid, block.out_channels, 1, 1, act=False)
                self.body = nn.Sequential(*layers)
                self.residual = block.stride == 1 and cin == block.out_channels

            def forward(self, x):
                y = self.body(x)
                return x + y if self.residual else y

        layers = conv_bn(self.in_channels, self.stem_channels, 3, self.stem_stride)
        cin = self.stem_channels
        for block in self.blocks:
            layers.append(MB(cin, block))
            cin = block.out_channels
        return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(self.dropout),
                             nn.Linear(cin, self.num_classes))

    def graph(self):
        g = _GraphBuilder(self.input_size, self.in_channels)
        g.conv("conv", self.stem_channels, 3, self.stem_stride, "relu")
        for block in self.blocks:
            x, cin = g.last, g.channels
            if block.expand > 1:
                g.conv("conv", cin * block.expand, 1, 1, "relu")
            g.conv("dwconv", g.channels, block.kernel, block.stride, "relu")
            g.conv("conv", block.out_channels, 1, 1, "none")
            if block.stride == 1 and cin == block.out_channels:
                g.add(x)
        return g.head(self.num_classes)


class _GraphBuilder:
    """The compiler IR a student's ONNX export reads as, built from the config directly."""

    def __init__(self, size: int, channels: int):
        from compilers.ir import Tensor

        self.size, self.channels = size, channels
        self.tensors = {"input": Tensor("input", (1, size, size, channels))}
        self.ops: list = []
        self.last = "input"

    def _add(self, op, shape) -> None:
        from compilers.ir import Tensor

        self.tensors[op.output] = Tensor(op.output, shape)
        self.ops.append(op)
        self.last = op.output

    def conv(self, kind: str, cout: int, k: int, stride: int, act: str) -> None:
        from compilers.ir import Op

        pad = k // 2
        out = (self.size + 2 * pad - k) // stride + 1
        cin = self.channels
        weight = np.zeros((cout, k, k, cin) if kind == "conv" else (1, k, k, cout), np.float32)
        self._add(Op(kind, f"{kind}{len(self.ops)}", [self.last], f"t{len(self.ops)}", act=act, kernel=(k, k),
                     stride=(stride, stride), pads=(pad, pad, pad, pad), weight=weight,
                     bias=np.zeros(cout, np.float32)), (1, out, out, cout))
        self.size, self.channels = out, cout

    def add(self, other: str) -> None:
        from compilers.ir import Op

        self._add(Op("add", f"add{len(self.ops)}", [other, self.last], f"t{len(self.ops)}"),
                  (1, self.size, self.size, self.channels))

    def head(self, classes: int):
        from compilers.ir import Graph, Op

        c = self.channels
        self._add(Op("avgpool", "pool", [self.last], "pool", kernel=(self.size, self.size)), (1, 1, 1, c))
        self._add(Op("reshape", "flatten", ["pool"], "flat"), (1, c))
        self._add(Op("fc", "classifier", ["flat"], "logits", weight=np.zeros((classes, c), np.float32),
                     bias=np.zeros(classes, np.float32)), (1, classes))
        return Graph(input="input", output="logits", tensors=self.tensors, ops=self.ops)


def dscnn_graph(config: StudentConfig):
    g = _GraphBuilder(config.input_size, config.in_channels)
    g.conv("conv", config.stem_channels, 3, config.stem_stride, "relu")
    for block in config.blocks:
        g.conv("dwconv", g.channels, 3, block.stride, "relu")
        g.conv("conv", block.out_channels, 1, 1, "relu")
    return g.head(config.num_classes)


def config_from_dict(data: dict):
    """A student config from its JSON form (design.json, stages/search.json, a checkpoint)."""
    return MBConfig.model_validate(data) if data.get("kind") == "mbnet" else StudentConfig.model_validate(data)


def build_model(config):
    """The torch module of any student config (DS-CNN or a searched network)."""
    from tools.student import build_student

    return config.build() if isinstance(config, MBConfig) else build_student(config)


def model_graph(config):
    """The compiler graph of any student config."""
    return config.graph() if isinstance(config, MBConfig) else dscnn_graph(config)


# ---- the spaces -----------------------------------------------------------------------------

class _Space:
    """Sampling and mutation over a config family; ``resolutions`` are the input sizes allowed."""

    def __init__(self, in_channels: int, num_classes: int, resolutions: list[int]):
        self.in_channels, self.num_classes, self.resolutions = in_channels, num_classes, list(resolutions)


@register_space("mbnet")
class MBNetSpace(_Space):
    STEMS = (6, 8, 12, 16, 24)  # 6: with 8 at 28 px the smallest arena (7,840 B) and the stack overflow 8 KB
    WIDTHS = ((8, 12, 16), (16, 24, 32), (24, 32, 48), (32, 48, 64))  # per stage
    DEPTHS = (1, 2, 3)
    EXPANDS = (1, 2, 3, 4, 6)
    KERNELS = (3, 5, 7)
    STRIDES = (2, 2, 2, 1)  # 28 px: 14, 7, 4, 4 (the stem keeps full resolution below 48 px)

    def sample(self, rng: np.random.Generator) -> dict:
        """A genome: input size, stem width, and (depth, width, expansion, kernel) per stage."""
        return {
            "size": int(rng.choice(self.resolutions)),
            "stem": int(rng.choice(self.STEMS)),
            "stages": [[int(rng.choice(self.DEPTHS)), int(rng.choice(w)), int(rng.choice(self.EXPANDS)),
                        int(rng.choice(self.KERNELS))] for w in self.WIDTHS],
        }

    def decode(self, genome: dict) -> MBConfig:
        blocks = []
        for (depth, width, expand, kernel), stride in zip(genome["stages"], self.STRIDES):
            for i in range(depth):
                blocks.append(MBBlock(out_channels=width, expand=expand, kernel=kernel, stride=stride if i == 0 else 1))
        size = genome["size"]
        return MBConfig(input_size=size, in_channels=self.in_channels, num_classes=self.num_classes,
                        stem_channels=genome["stem"], stem_stride=2 if size > 48 else 1, blocks=blocks)

    def mutate(self, genome: dict, rng: np.random.Generator) -> dict:
        """One gene changed: the resolution, the stem, or one stage's depth, width, expansion or kernel."""
        genome = {"size": genome["size"], "stem": genome["stem"], "stages": [list(s) for s in genome["stages"]]}
        what = int(rng.integers(0, 6))
        if what == 0 and len(self.resolutions) > 1:
            genome["size"] = int(rng.choice(self.resolutions))
        elif what == 1:
            genome["stem"] = int(rng.choice(self.STEMS))
        else:
            s = int(rng.integers(0, len(self.WIDTHS)))
            gene = int(rng.integers(0, 4))
            choices = (self.DEPTHS, self.WIDTHS[s], self.EXPANDS, self.KERNELS)[gene]
            genome["stages"][s][gene] = int(rng.choice(choices))
        return genome


@register_space("dscnn")
class DSCNNSpace(_Space):
    """DS-CNN stacks (3x3 depthwise + pointwise): the keyword-spotting family, and the spine's student."""

    STEMS = (4, 8, 12, 16, 24, 32)
    WIDTHS = (8, 12, 16, 24, 32, 48, 64, 96, 128)
    DEPTHS = (3, 4, 5, 6)

    def sample(self, rng: np.random.Generator) -> dict:
        """A genome: input size, stem width and the per-block widths (strides 2 at blocks 1, 3, 5)."""
        depth = int(rng.choice(self.DEPTHS))
        return {"size": int(rng.choice(self.resolutions)), "stem": int(rng.choice(self.STEMS)),
                "widths": sorted(int(w) for w in rng.choice(self.WIDTHS, depth))}

    def decode(self, genome: dict) -> StudentConfig:
        size = genome["size"]
        blocks = [Block(out_channels=w, stride=2 if i in (0, 2, 4) else 1) for i, w in enumerate(genome["widths"])]
        return StudentConfig(input_size=size, in_channels=self.in_channels, num_classes=self.num_classes,
                             stem_channels=genome["stem"], stem_stride=2 if size > 48 else 1, blocks=blocks)

    def mutate(self, genome: dict, rng: np.random.Generator) -> dict:
        genome = {"size": genome["size"], "stem": genome["stem"], "widths": list(genome["widths"])}
        what = int(rng.integers(0, 4))
        if what == 0:
            genome["stem"] = int(rng.choice(self.STEMS))
        elif what == 1 and len(genome["widths"]) < max(self.DEPTHS):
            genome["widths"].append(int(rng.choice(self.WIDTHS)))
        elif what == 2 and len(genome["widths"]) > min(self.DEPTHS):
            genome["widths"].pop(int(rng.integers(0, len(genome["widths"]))))
        else:
            i = int(rng.integers(0, len(genome["widths"])))
            genome["widths"][i] = int(rng.choice(self.WIDTHS))
        genome["widths"] = sorted(genome["widths"])
        return genome
