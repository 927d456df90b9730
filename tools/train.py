"""Train a student by knowledge distillation from the teacher's cached soft labels.

loss = alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(student, auto-label)

(Hinton et al. 2015). The teacher's soft labels are the auto-labeler's label
distribution, computed once and cached, so training never runs the teacher.
With ``soft_targets=None`` it is plain cross-entropy (the oracle and ablations).

Optional feature distillation (``feature_weight`` > 0 with ``feature_targets``): the
student's pooled features, through a linear adapter that is dropped after training,
are pulled toward the teacher's embedding of the same image (cosine; a FitNets-style
hint on the last layer, Romero et al. 2015). The exported student is unchanged.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from generators.augment import AugmentConfig, augment_batch
from tools.student import StudentConfig

log = logging.getLogger(__name__)


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # 8 epochs of 256: an epoch of 54k 28x28 images takes ~14 s on 2 cores at batch 256 (~20 s at 128)
    epochs: int = Field(8, ge=1)
    batch_size: int = Field(256, ge=1)
    lr: float = Field(5e-3, gt=0, description="peak learning rate of the one-cycle schedule")
    weight_decay: float = Field(1e-4, ge=0)
    temperature: float = Field(4.0, gt=0, description="distillation temperature T")
    alpha: float = Field(0.7, ge=0, le=1, description="weight of the distillation term")
    feature_weight: float = Field(0.0, ge=0, description="weight of the feature-distillation term (0: off)")
    # 3: +0.55 point int8 on the demo's auto-labels over three seeds; +0.35 on average over bench/labels_needed.py's
    # three draws (ten of twelve students, README)
    reverse_ce: float = Field(3.0, ge=0, description="weight of the reverse cross-entropy on the hard labels "
                              "(symmetric cross-entropy, robust to wrong labels; 0: off)")
    augment: AugmentConfig | None = Field(default_factory=AugmentConfig)


@dataclass
class TrainResult:
    model: object  # torch.nn.Module, in eval mode
    history: list[dict] = field(default_factory=list)


def soft_targets_at(soft: np.ndarray, temperature: float):
    """The teacher's probabilities sharpened or softened at temperature T: softmax(log p / T)."""
    import torch

    log_p = torch.from_numpy(np.log(np.clip(soft, 1e-8, 1.0)).astype(np.float32))
    return torch.softmax(log_p / temperature, dim=1)


def true_label_config(config: TrainConfig) -> TrainConfig:
    """``config`` for training on true labels (the oracle reference, bench/proxies.py): reverse CE is
    there for wrong labels, which true labels do not have (it cost the demo's oracle 0.5 point)."""
    return config.model_copy(update={"reverse_ce": 0.0})


# log(1e-4): the one-hot label's zeros clipped to 1e-4, so that their logarithm is finite
REVERSE_CE_LOG_ZERO = -9.2103


def distillation_loss(logits, labels, soft_t, config: TrainConfig):
    """CE on the hard labels (plus, with ``reverse_ce``, the reverse CE of symmetric cross-entropy),
    mixed with KL to the softened teacher at T when ``soft_t`` is given.

    Reverse CE (Wang et al., ICCV 2019) swaps the roles: -sum_k p_k log y_k over the student's
    probabilities p and the one-hot label y, whose zeros are clipped to 1e-4; that is 9.21 x (1 - p_label),
    bounded, so a wrong label pulls at most that hard where CE grows without bound."""
    import torch.nn.functional as F

    loss = F.cross_entropy(logits, labels)
    if config.reverse_ce > 0:
        p_label = F.softmax(logits, 1).gather(1, labels[:, None]).squeeze(1)
        loss = loss + config.reverse_ce * -REVERSE_CE_LOG_ZERO * (1 - p_label).mean()
    if soft_t is None:
        return loss
    kd = F.kl_div(F.log_softmax(logits / config.temperature, 1), soft_t, reduction="batchmean")
    return config.alpha * config.temperature**2 * kd + (1 - config.alpha) * loss


PIXEL_OFFSET = PIXEL_DIVISOR = 128.0  # a pixel p enters the student as (p - 128) / 128


def to_input(images: np.ndarray):
    """uint8 NHWC -> float NCHW in [-1, 1): (pixel - 128) / 128, which int8 carries exactly on the MCU."""
    import torch

    x = torch.from_numpy(np.array(images, dtype=np.float32)).permute(0, 3, 1, 2)
    return (x - PIXEL_OFFSET) / PIXEL_DIVISOR


def split_validation(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    n_val = max(1, int(round(n * fraction)))
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def train_student(
    student: StudentConfig,  # or any config tools.spaces.build_model takes
    images: np.ndarray,
    labels: np.ndarray,
    soft_targets: np.ndarray | None,
    val_images: np.ndarray,
    val_labels: np.ndarray,
    config: TrainConfig,
    seed: int = 0,
    desc: str = "train",
    progress: bool = True,
    feature_targets: np.ndarray | None = None,
) -> TrainResult:
    """Train on ``images`` (uint8 NHWC) with hard ``labels`` and optional ``soft_targets`` (N, K);
    ``val_*`` measure each epoch. ``feature_targets`` (N, d): the teacher's embeddings, used when
    ``config.feature_weight`` > 0."""
    import torch
    from tqdm.auto import tqdm

    from knowledge.teachers.base import torch_threads

    torch.manual_seed(seed)
    torch.set_num_threads(torch_threads())
    gen = torch.Generator().manual_seed(seed)
    from tools.spaces import build_model

    model = build_model(student)
    x_all = to_input(images)
    y_all = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    x_val, y_val = to_input(val_images), np.asarray(val_labels, dtype=np.int64)
    train_idx = np.arange(len(images))
    t_all = None
    if soft_targets is not None:
        t_all = soft_targets_at(soft_targets, config.temperature)

    hint = _FeatureHint(model, feature_targets) if feature_targets is not None and config.feature_weight > 0 else None
    # a small pool would get only a step or two per epoch at the full batch size: keep >= 8 steps an epoch
    batch_size = max(1, min(config.batch_size, len(train_idx) // 8))
    params = list(model.parameters()) + (list(hint.adapter.parameters()) if hint else [])
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(train_idx) / batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=config.epochs * steps_per_epoch)
    history: list[dict] = []
    bar = tqdm(total=config.epochs * steps_per_epoch, desc=desc, unit="step", disable=not progress, leave=False)
    for epoch in range(config.epochs):
        model.train()
        order = torch.from_numpy(train_idx)[torch.randperm(len(train_idx), generator=gen)]
        total = 0.0
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            x = x_all[batch]
            if config.augment is not None:
                x = augment_batch(x, config.augment, gen)
            loss = distillation_loss(model(x), y_all[batch], None if t_all is None else t_all[batch], config)
            if hint is not None:
                loss = loss + config.feature_weight * hint.loss(batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(batch)
            bar.update(1)
        val_acc = float((predict(model, x_val) == y_val).mean()) if len(y_val) else float("nan")
        history.append({"epoch": epoch + 1, "train_loss": total / len(train_idx), "val_accuracy": val_acc})
        bar.set_postfix(loss=f"{total / len(train_idx):.3f}", val=f"{val_acc:.3f}")
        log.info("%s epoch %d: loss %.4f, val accuracy %.4f", desc, epoch + 1, total / len(train_idx), val_acc)
    bar.close()
    if hint is not None:
        hint.remove()
    model.eval()
    return TrainResult(model=model, history=history)


class _FeatureHint:
    """Captures the input of the student's last Linear layer (its pooled features) and scores it
    against the teacher's embedding through a trainable linear adapter."""

    def __init__(self, model, targets: np.ndarray):
        import torch
        from torch import nn

        last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
        targets = torch.from_numpy(np.asarray(targets, np.float32))
        self.targets = targets / targets.norm(dim=1, keepdim=True).clamp_min(1e-12)
        self.adapter = nn.Linear(last.in_features, self.targets.shape[1])
        self.features = None
        self._handle = last.register_forward_hook(lambda mod, inp, out: setattr(self, "features", inp[0]))

    def loss(self, batch):
        import torch.nn.functional as F

        return (1 - F.cosine_similarity(self.adapter(self.features), self.targets[batch], dim=1)).mean()

    def remove(self) -> None:
        self._handle.remove()


def predict(model, x, batch_size: int = 1024) -> np.ndarray:
    """Top-1 predictions for a float NCHW tensor (see ``to_input``)."""
    import torch

    was_training = model.training
    model.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(x), batch_size):
            out.append(model(x[start : start + batch_size]).argmax(1).numpy())
    model.train(was_training)
    return np.concatenate(out) if out else np.zeros(0, np.int64)
