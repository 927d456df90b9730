"""The student: a small depthwise-separable CNN (MobileNetV1 / DS-CNN style) for MCUs.

Depthwise-separable blocks are what int8 MCU runtimes run best (CMSIS-NN, ESP-NN):
few weights, few MACs, and only ReLU, so int8 quantization loses little.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Block(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    out_channels: int = Field(ge=1)
    stride: int = Field(1, ge=1, le=2)


class StudentConfig(BaseModel):
    """Everything needed to build the network; saved in design.json and with student.pt."""

    model_config = ConfigDict(extra="forbid")

    input_size: int = Field(ge=8)
    in_channels: int = Field(ge=1, le=4)
    num_classes: int = Field(ge=2)
    stem_channels: int = Field(ge=1)
    stem_stride: int = Field(1, ge=1, le=2)
    blocks: list[Block] = Field(min_length=1)
    dropout: float = Field(0.1, ge=0, lt=1)

    @model_validator(mode="after")
    def _not_too_deep(self) -> "StudentConfig":
        size = self.input_size
        for stride in [self.stem_stride] + [b.stride for b in self.blocks]:
            size = (size + stride - 1) // stride
        if size < 1:
            raise ValueError("too many stride-2 layers for the input size")
        return self

    @property
    def name(self) -> str:
        widths = "-".join(str(b.out_channels) for b in self.blocks)
        return f"dscnn-{self.input_size}x{self.input_size}x{self.in_channels}-s{self.stem_channels}-{widths}"


def ds_cnn(width: int, input_size: int, in_channels: int, num_classes: int) -> StudentConfig:
    """A five-block DS-CNN whose channel counts scale with ``width``.

    Inputs above 48 px get a stride-2 stem so the first, widest activations stay small in SRAM.
    """
    return StudentConfig(
        input_size=input_size,
        in_channels=in_channels,
        num_classes=num_classes,
        stem_channels=width,
        stem_stride=2 if input_size > 48 else 1,
        blocks=[
            Block(out_channels=2 * width, stride=2),
            Block(out_channels=2 * width, stride=1),
            Block(out_channels=4 * width, stride=2),
            Block(out_channels=4 * width, stride=1),
            Block(out_channels=8 * width, stride=2),
        ],
    )


WIDTHS = (4, 6, 8, 12, 16, 24, 32, 48)  # the sizing ladder, smallest first


def build_student(config: StudentConfig):
    """The torch module for ``config`` (BatchNorm everywhere; folded at ONNX export)."""
    import torch.nn as nn

    def conv_bn(cin: int, cout: int, k: int, stride: int, groups: int = 1) -> list:
        return [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

    layers = conv_bn(config.in_channels, config.stem_channels, 3, config.stem_stride)
    cin = config.stem_channels
    for block in config.blocks:
        layers += conv_bn(cin, cin, 3, block.stride, groups=cin)  # depthwise
        layers += conv_bn(cin, block.out_channels, 1, 1)  # pointwise
        cin = block.out_channels
    return nn.Sequential(
        *layers,
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(config.dropout),
        nn.Linear(cin, config.num_classes),
    )
