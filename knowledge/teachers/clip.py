"""CLIP through transformers, from a hub id or a local folder.

Zero-shot scores are CLIP's softmax over the class descriptions; embeddings are the
projected image embeddings. Nothing is downloaded unless the user names a hub id and
has network access: an air-gapped user passes the path of a saved model folder.
"""

from __future__ import annotations

import numpy as np

from knowledge.errors import NanofactoryError
from knowledge.teachers import register_teacher
from knowledge.teachers.base import Teacher, TeacherConfig, torch_device, torch_threads

# OpenAI CLIP's preprocessing statistics (CLIPImageProcessor defaults)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _features(output):
    """transformers >= 5 returns a model output whose pooler_output is the projection; 4.x a tensor."""
    return output if hasattr(output, "shape") else output.pooler_output


@register_teacher("clip")
class ClipTeacher(Teacher):
    def __init__(self, config: TeacherConfig):
        super().__init__(config)
        if not config.model:
            raise NanofactoryError(
                "The clip teacher needs a model: pass a hub id (e.g. openai/clip-vit-base-patch32) or a local folder."
            )
        self._model = None
        self._tokenizer = None
        self._device = "cpu"

    @property
    def cache_key(self) -> str:
        return f"clip:{self.config.model}:{self.config.image_size or 'native'}"

    def load(self) -> None:
        if self._model is not None:
            return
        from transformers import AutoTokenizer, CLIPModel

        try:
            model = CLIPModel.from_pretrained(self.config.model).eval()
            self._tokenizer = AutoTokenizer.from_pretrained(self.config.model)
        except OSError as e:
            raise NanofactoryError(
                f"Could not load CLIP from {self.config.model!r} ({str(e).splitlines()[0]}); "
                "pass a local folder saved with save_pretrained, or a hub id when online."
            ) from None
        # transformers builds an empty tokenizer from a folder without tokenizer files: every prompt
        # would tokenize alike and zero-shot would silently be uniform
        if len(self._tokenizer) < 16:
            raise NanofactoryError(
                f"The CLIP folder {self.config.model!r} has no usable tokenizer; save the tokenizer next to the "
                "model (tokenizer.save_pretrained) and retry."
            )
        self._device = torch_device(self.config)
        self._model = model.to(self._device)

    @property
    def image_size(self) -> int:
        self.load()
        return self.config.image_size or self._model.config.vision_config.image_size

    def embed(self, images: np.ndarray) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        self.load()
        torch.set_num_threads(torch_threads())
        mean = torch.tensor(CLIP_MEAN, device=self._device).view(1, 3, 1, 1)
        std = torch.tensor(CLIP_STD, device=self._device).view(1, 3, 1, 1)
        out = []
        with torch.inference_mode():
            for start in range(0, len(images), self.config.batch_size):
                x = torch.from_numpy(np.array(images[start : start + self.config.batch_size]))  # a copy: inputs may be read-only
                x = x.to(self._device).permute(0, 3, 1, 2).float() / 255.0
                if x.shape[1] == 1:
                    x = x.expand(-1, 3, -1, -1)
                x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bicubic", align_corners=False)
                native = self.image_size == self._model.config.vision_config.image_size
                feats = _features(self._model.get_image_features(
                    pixel_values=(x - mean) / std, interpolate_pos_encoding=not native))
                out.append(feats.cpu().numpy())
        dim = self._model.config.projection_dim
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, dim), np.float32)

    def text_embeddings(self, prompts: list[str]) -> np.ndarray:
        import torch

        self.load()
        tokens = self._tokenizer(list(prompts), padding=True, return_tensors="pt").to(self._device)
        with torch.inference_mode():
            feats = _features(self._model.get_text_features(**tokens))
        return feats.cpu().numpy().astype(np.float32)

    def class_scores(self, embeddings: np.ndarray, prompts: list[str]) -> np.ndarray:
        img = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
        txt = self.text_embeddings(prompts)
        txt = txt / np.linalg.norm(txt, axis=1, keepdims=True)
        scale = float(self._model.logit_scale.detach().exp())
        logits = scale * img @ txt.T
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)
