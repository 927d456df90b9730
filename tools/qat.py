"""Quantization-aware fine-tuning, used when post-training int8 loses too much.

The gate: the fp32 student and its int8 build (the compiler's own quantization and
bit-exact int8 reference, i.e. what ships) are compared on validation data; when the
int8 top-1 is more than ``max_drop`` below fp32, the student is fine-tuned with fake
quantization and exported again. Both accuracies and the decision go into the run.

Fake quantization mirrors the compiler: BatchNorm is folded into the convolutions first
(the compiler quantizes folded weights), weights are per-output-channel symmetric int8,
activations after every ReLU and at the logits are per-tensor int8 with min/max tracked
by an exponential moving average.
"""

from __future__ import annotations

import logging

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

log = logging.getLogger(__name__)


class QATConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_drop: float = Field(0.005, ge=0, description="int8 may lose at most this much top-1 (0.005 = 0.5 point)")
    epochs: int = Field(2, ge=1)
    lr: float = Field(2e-4, gt=0)
    momentum: float = Field(0.05, gt=0, le=1, description="EMA weight of each batch's activation range")


def fold_batchnorm(model):
    """Fold every Conv2d -> BatchNorm2d pair (inside Sequentials) into the conv; BN becomes Identity."""
    import torch
    from torch import nn

    for module in model.modules():
        if not isinstance(module, nn.Sequential):
            continue
        children = list(module.children())
        for i in range(len(children) - 1):
            conv, bn = children[i], children[i + 1]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                with torch.no_grad():
                    a = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
                    conv.weight.mul_(a.reshape(-1, 1, 1, 1))
                    conv.bias = nn.Parameter((bias - bn.running_mean) * a + bn.bias)
                module[i + 1] = nn.Identity()
    return model


def _fake_quant_modules():
    import torch
    from torch import nn

    class PerChannelWeight(nn.Module):
        def forward(self, w):
            scale = (w.detach().abs().amax(dim=tuple(range(1, w.dim()))) / 127).clamp_min(1e-12)
            return torch.fake_quantize_per_channel_affine(w, scale, torch.zeros_like(scale, dtype=torch.int32),
                                                           0, -127, 127)

    class Activation(nn.Module):
        def __init__(self, momentum: float):
            super().__init__()
            self.momentum = momentum
            self.register_buffer("lo", torch.tensor(0.0))
            self.register_buffer("hi", torch.tensor(0.0))
            self.register_buffer("seen", torch.tensor(False))

        def forward(self, x):
            if self.training:
                lo, hi = float(x.detach().min().clamp_max(0)), float(x.detach().max().clamp_min(0))
                if not bool(self.seen):
                    self.lo.fill_(lo)
                    self.hi.fill_(hi)
                    self.seen.fill_(True)
                else:
                    self.lo.mul_(1 - self.momentum).add_(self.momentum * lo)
                    self.hi.mul_(1 - self.momentum).add_(self.momentum * hi)
            scale = max(float(self.hi - self.lo) / 255, 1e-8)
            zero = int(np.clip(round(-128 - float(self.lo) / scale), -128, 127))
            return torch.fake_quantize_per_tensor_affine(x, scale, zero, -128, 127)

    return PerChannelWeight, Activation


def prepare_qat(model, config: QATConfig):
    """Fold BatchNorm, then fake-quantize weights and activations in place; returns the model."""
    from torch import nn
    from torch.nn.utils import parametrize

    PerChannelWeight, Activation = _fake_quant_modules()
    fold_batchnorm(model)
    for module in list(model.modules()):
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            parametrize.register_parametrization(module, "weight", PerChannelWeight())
        if isinstance(module, nn.Sequential):
            for i, child in enumerate(list(module.children())):
                if isinstance(child, nn.ReLU):
                    module[i] = nn.Sequential(child, Activation(config.momentum))
    return nn.Sequential(model, Activation(config.momentum))


def finish_qat(model):
    """Bake the fake-quantized weights in and drop the activation observers, ready for export."""
    from torch import nn
    from torch.nn.utils import parametrize

    for module in model.modules():
        if parametrize.is_parametrized(module, "weight"):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
    for module in model.modules():
        if isinstance(module, nn.Sequential):
            for i, child in enumerate(list(module.children())):
                if type(child).__name__ == "Activation":
                    module[i] = nn.Identity()
    return model.eval()


def int8_accuracy(onnx_path, calibration: np.ndarray, x: np.ndarray, y: np.ndarray, work_dir) -> float:
    """Top-1 of the compiler's int8 build (numpy reference, bit-exact with the C library)."""
    from compilers.build import CompileConfig, compile_onnx, nchw_to_nhwc
    from compilers.reference import run_int8

    compiled = compile_onnx(onnx_path, calibration, work_dir, config=CompileConfig(backends=[]))
    g = compiled.graph
    q = g.tensors[g.input].quant.quantize(nchw_to_nhwc(x))
    return float((run_int8(g, q).reshape(len(x), -1).argmax(1) == y).mean())


def qat_finetune(model, images: np.ndarray, labels: np.ndarray, soft: np.ndarray | None, config: QATConfig,
                 train_config, seed: int = 0, progress: bool = True):
    """Fine-tune ``model`` (a trained student) with fake quantization; returns the exportable model."""
    import math

    import torch
    from tqdm.auto import tqdm

    from generators.augment import augment_batch
    from tools.train import distillation_loss, soft_targets_at, to_input

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    qat = prepare_qat(model, config)
    x_all = to_input(images)
    y_all = torch.from_numpy(np.asarray(labels, np.int64))
    t_all = None
    if soft is not None:
        t_all = soft_targets_at(soft, train_config.temperature)
    batch_size = max(1, min(train_config.batch_size, len(images) // 8))
    opt = torch.optim.AdamW([p for p in qat.parameters() if p.requires_grad], lr=config.lr, weight_decay=0)
    steps = config.epochs * math.ceil(len(images) / batch_size)
    bar = tqdm(total=steps, desc="QAT", unit="step", disable=not progress, leave=False)
    qat.train()
    for _ in range(config.epochs):
        order = torch.randperm(len(images), generator=gen)
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            x = x_all[batch]
            if train_config.augment is not None:
                x = augment_batch(x, train_config.augment, gen)
            loss = distillation_loss(qat(x), y_all[batch], None if t_all is None else t_all[batch], train_config)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            bar.update(1)
    bar.close()
    return finish_qat(qat[0])
