"""Generators: the registry contract, text-to-image through a tiny random diffusers pipeline, the DDPM,
speech from espeak-ng and flite, audio augmentation, and the quality gate. Offline and seeded."""

from __future__ import annotations

import functools
import shutil
import string
import wave
from pathlib import Path

import numpy as np
import pytest

from generators import (
    GenerateRequest,
    GeneratorUnavailable,
    create_generator,
    create_generator_by_name,
    generator_config,
    list_generators,
)
from generators.registry import CONFIGS
from knowledge.errors import NanofactoryError

ESPEAK = shutil.which("espeak-ng") is not None
FLITE = shutil.which("flite") is not None


# ---- the registry ------------------------------------------------------------------------------


def test_registry_lists_the_entries_and_refuses_unknown_names():
    assert {"diffusers", "ddpm", "speech"} <= set(list_generators())
    with pytest.raises(NanofactoryError, match="Unknown generator 'dalle'; choose one of: .*speech"):
        create_generator_by_name("dalle")
    with pytest.raises(NanofactoryError, match=r"Generator 'speech': field `clip_seconds`"):
        generator_config("speech", clip_seconds=-1)


@pytest.mark.parametrize("name", list_generators())
def test_every_entry_honours_the_contract(name, tmp_path):
    """Config names its entry; constructing touches nothing; a generator that cannot run says so in one sentence."""
    fields = {"model": str(tmp_path / "missing")} if name in ("diffusers", "ddpm") else {}
    config = generator_config(name, **fields)
    assert config.name == name and CONFIGS[name] is type(config)
    generator = create_generator(config)
    assert generator.name == name and generator.modality in ("image", "audio")
    assert list(tmp_path.iterdir()) == []  # nothing written, nothing loaded
    if name != "speech":
        with pytest.raises(GeneratorUnavailable) as info:
            generator.check()
        message = str(info.value)
        assert message.count(". ") == 0 and message.endswith(".")  # one sentence


# ---- prompts -----------------------------------------------------------------------------------


def test_prompt_variations_are_seeded_distinct_and_keep_the_description():
    from generators.prompts import PromptConfig, negative_prompt, prompt_variations

    prompts = prompt_variations("a raccoon at a pet door", 200, seed=1)
    assert len(set(prompts)) == 200 and all(p.startswith("a raccoon at a pet door, ") for p in prompts)
    assert prompts == prompt_variations("a raccoon at a pet door", 200, seed=1)
    assert prompts != prompt_variations("a raccoon at a pet door", 200, seed=2)
    night = prompt_variations("a fox", 5, seed=0, config=PromptConfig(cameras=["night infrared camera"]))
    assert all(p.endswith("night infrared camera") for p in night)
    assert negative_prompt(["a cat", "a dog"]).startswith("a cat, a dog, text")


# ---- text-to-image: a tiny random Stable Diffusion pipeline, built from configs --------------------


def _tiny_tokenizer():
    """A character-level CLIP tokenizer (no download): every letter a token, with and without the word end."""
    from transformers import CLIPTokenizer

    chars = list(string.ascii_lowercase + string.digits + ",.-/!?'")
    vocab = {t: i for i, t in enumerate(["<|startoftext|>", "<|endoftext|>"] + chars + [c + "</w>" for c in chars])}
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


@pytest.fixture(scope="module")
def tiny_pipeline(tmp_path_factory) -> Path:
    """StableDiffusionPipeline with a 2-block UNet, a 2-block VAE and a 2-layer CLIP text encoder, saved to a folder."""
    import torch
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(4, 8), layers_per_block=1, sample_size=16, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=16, norm_num_groups=2)
    vae = AutoencoderKL(block_out_channels=[4, 8], in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=2,
                        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2)
    tokenizer = _tiny_tokenizer()
    text_encoder = CLIPTextModel(CLIPTextConfig(
        bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=16, intermediate_size=37, num_attention_heads=2,
        num_hidden_layers=2, vocab_size=len(tokenizer), projection_dim=16))
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionPipeline(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    folder = tmp_path_factory.mktemp("tiny-sd") / "pipeline"
    pipe.save_pretrained(folder)
    return folder


def _read(paths) -> np.ndarray:
    from PIL import Image

    return np.stack([np.asarray(Image.open(p)) for p in paths])


def test_text_to_image_end_to_end_with_a_tiny_pipeline(tiny_pipeline, tmp_path, monkeypatch):
    from generators.text_to_image import TextToImageConfig

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = TextToImageConfig(model=str(tiny_pipeline), steps=2, image_size=32, guidance_scale=3.0, batch_size=3)
    request = GenerateRequest(class_name="raccoon", description="a raccoon at a pet door", negatives=["a cat"],
                              count=4, seed=7)
    result = create_generator(config).generate(request, tmp_path / "a")
    assert [p.name for p in result.paths] == [f"raccoon-7-{i:05d}.png" for i in range(4)]
    images = _read(result.paths)
    assert images.shape == (4, 32, 32, 3) and images.dtype == np.uint8 and images.std() > 0
    prov = [f.provenance for f in result.files]
    assert len({p["prompt"] for p in prov}) == 4 and all(p["prompt"].startswith("a raccoon at a pet door") for p in prov)
    assert prov[0]["negative_prompt"].startswith("a cat") and prov[0]["pipeline"] == "StableDiffusionPipeline"
    assert len({p["seed"] for p in prov}) == 4 and prov[0]["steps"] == 2
    assert prov[0]["dtype"] == ("float16" if prov[0]["device"] == "cuda" else "float32")  # dtype auto
    # each image has its own seed: a different batch size gives the same images
    again = create_generator(config.model_copy(update={"batch_size": 4})).generate(request, tmp_path / "b")
    np.testing.assert_array_equal(_read(again.paths), images)
    assert not np.array_equal(images[0], images[1])


def test_text_to_image_draws_the_noise_in_float32_whatever_the_precision(tiny_pipeline, tmp_path, monkeypatch):
    """The starting noise comes from the seed in float32 on the CPU, then takes the pipeline's dtype: a
    bfloat16 run gives the float32 run's images to rounding, on builds whose bfloat16 draw differs too."""
    import torch
    from diffusers import StableDiffusionPipeline

    from generators.text_to_image import TextToImageConfig

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    seen, call = [], StableDiffusionPipeline.__call__

    @functools.wraps(call)  # keeps the signature the generator reads
    def spy(self, *args, **kwargs):
        seen.append(kwargs.get("latents"))
        return call(self, *args, **kwargs)

    monkeypatch.setattr(StableDiffusionPipeline, "__call__", spy)
    request = GenerateRequest(class_name="raccoon", description="a raccoon", count=2, seed=3)
    images = {}
    for dtype in ("float32", "bfloat16"):
        config = TextToImageConfig(model=str(tiny_pipeline), steps=2, image_size=32, batch_size=2, dtype=dtype)
        result = create_generator(config).generate(request, tmp_path / dtype)
        images[dtype] = _read(result.paths).astype(int)
        assert result.files[0].provenance["dtype"] == dtype
        latents = seen[-1]
        # the tiny VAE halves the side once (two blocks): 32-px images start from 16 x 16 latents
        assert latents is not None and latents.shape == (2, 4, 16, 16) and latents.dtype == getattr(torch, dtype)
        first = torch.randn((4, 16, 16), generator=torch.Generator("cpu").manual_seed(result.files[0].provenance["seed"]))
        torch.testing.assert_close(latents[0].float().cpu(), first.to(latents.dtype).float())
    assert np.abs(images["bfloat16"] - images["float32"]).mean() < 2


@pytest.mark.parametrize("model, expected", [
    ("./no/such/pipeline", "does not exist"),
    ("someone/not-cached-model", "not in the local Hugging Face cache and Nanofactory never downloads"),
])
def test_text_to_image_without_the_model_says_so(model, expected, tmp_path, monkeypatch):
    from generators.text_to_image import TextToImageConfig

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # belt and braces: the loader passes local_files_only itself
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    generator = create_generator(TextToImageConfig(model=model))
    with pytest.raises(GeneratorUnavailable, match=expected):
        generator.load()


# ---- the DDPM ----------------------------------------------------------------------------------


def _blobs(n: int, size: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Class 0: a bright square on the left; class 1: on the right."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 40, (n, size, size, 1)).astype(np.uint8)
    y = np.arange(n) % 2
    for i in range(n):
        col = 2 if y[i] == 0 else size // 2 + 2
        x[i, 4:12, col:col + 5] = 220
    return x, y


@pytest.fixture(scope="module")
def trained_ddpm(tmp_path_factory):
    from generators.ddpm import DDPMConfig, train_ddpm

    x, y = _blobs(24)
    config = DDPMConfig(max_steps=4, batch_size=8, channels=[8, 16], sample_steps=3, sample_batch=3)
    result = train_ddpm(x, y, ["left", "right", "empty"], config, tmp_path_factory.mktemp("ddpm") / "model", seed=0)
    return config.model_copy(update={"model": str(result.path)}), result


def test_ddpm_trains_saves_and_samples_reproducibly(trained_ddpm, tmp_path):
    config, trained = trained_ddpm
    assert trained.steps == 4 and np.isfinite(trained.final_loss)
    assert (trained.path / "unet" / "config.json").is_file() and (trained.path / "nanofactory_ddpm.json").is_file()
    generator = create_generator(config)
    result = generator.generate(GenerateRequest(class_name="Right", count=4, seed=2), tmp_path / "a")
    images = _read(result.paths)
    assert images.shape == (4, 16, 16) and images.dtype == np.uint8
    assert result.files[0].provenance["class_index"] == 1 and result.files[0].provenance["trained_steps"] == 4
    # a seed fixes its image whatever the batch it is drawn in, to rounding: on a GPU the batched
    # kernels move a few pixels by one grey level (5 of 256 on an H100)
    alone = create_generator(config.model_copy(update={"sample_batch": 1})).sample(1, [result.files[2].provenance["seed"]])
    diff = np.abs(alone[0, ..., 0].astype(int) - images[2].astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.05


def test_ddpm_refuses_classes_it_has_no_images_of(trained_ddpm, tmp_path):
    config, _ = trained_ddpm
    generator = create_generator(config)
    for name in ("empty", "raccoon"):  # one it was told about but never shown, one it never heard of
        with pytest.raises(GeneratorUnavailable, match="cannot draw a class it has no images of"):
            generator.generate(GenerateRequest(class_name=name, count=1), tmp_path)


def test_ddpm_training_is_time_boxed(tmp_path):
    import time

    from generators.ddpm import DDPMConfig, train_ddpm

    x, y = _blobs(16)
    started = time.perf_counter()
    result = train_ddpm(x, y, ["left", "right"], DDPMConfig(budget_minutes=0.02, batch_size=4, channels=[8, 16]),
                        tmp_path / "m")
    # no step limit: it trained for its 1.2 s budget and stopped soon after (slack for a busy machine)
    assert result.steps >= 1 and 1.2 <= result.seconds < 1.2 + 5
    assert time.perf_counter() - started < 30


# ---- speech ------------------------------------------------------------------------------------


def _wav(path: Path) -> tuple[np.ndarray, int, int, int]:
    with wave.open(str(path)) as w:
        frames = np.frombuffer(w.readframes(w.getnframes()), "<i2")
        return frames, w.getframerate(), w.getnchannels(), w.getsampwidth()


@pytest.mark.skipif(not (ESPEAK and FLITE), reason="needs espeak-ng and flite (make installs them as root)")
def test_speech_clips_are_16khz_mono_one_second_and_replayable(tmp_path):
    from generators.speech import SpeechConfig

    generator = create_generator(SpeechConfig())
    voices = generator.voices
    assert len(voices["espeak-ng"]) > 100 and "slt" in voices["flite"] and "awb_time" not in voices["flite"]
    assert not any("mb-" in v or v.startswith("variant") for v in voices["espeak-ng"])
    request = GenerateRequest(class_name="hey nano", count=12, seed=5)
    result = generator.generate(request, tmp_path / "a")
    assert [p.name for p in result.paths] == [f"hey-nano-5-{i:05d}.wav" for i in range(12)]
    for f in result.files:
        samples, rate, channels, width = _wav(f.path)
        assert (rate, channels, width, len(samples)) == (16000, 1, 2, 16000)
        assert np.abs(samples).max() > 1000  # a word, not silence
    prov = [f.provenance for f in result.files]
    assert {p["engine"] for p in prov} == {"espeak-ng", "flite"} and len({p["voice"] for p in prov}) >= 6
    assert all(p["text"].rstrip(".!?") == "hey nano" for p in prov) and len({p["speed"] for p in prov}) == 12
    # one worker or many, the same bytes
    again = create_generator(SpeechConfig(workers=1)).generate(request, tmp_path / "b")
    assert [p.read_bytes() for p in again.paths] == [p.read_bytes() for p in result.paths]


@pytest.mark.parametrize("engine", ["espeak-ng", "flite"])
def test_speech_with_one_engine(engine, tmp_path):
    from generators.speech import SpeechConfig

    if not shutil.which(engine):
        pytest.skip(f"{engine} is not installed")
    result = create_generator(SpeechConfig(engines=[engine], augment=None, clip_seconds=1.5)).generate(
        GenerateRequest(class_name="stop", count=3, seed=0), tmp_path)
    assert {f.provenance["engine"] for f in result.files} == {engine}
    samples, rate, _, _ = _wav(result.paths[0])
    assert rate == 16000 and len(samples) == 24000
    assert "snr_db" not in result.files[0].provenance  # no augmentation asked, none done


def test_speech_without_an_engine_says_how_to_get_one(monkeypatch, tmp_path):
    from generators import speech

    monkeypatch.setattr(speech.shutil, "which", lambda name: None)
    generator = create_generator(speech.SpeechConfig())
    with pytest.raises(GeneratorUnavailable, match=r"No text-to-speech engine is installed .*apt-get install espeak-ng"):
        generator.generate(GenerateRequest(class_name="yes", count=1), tmp_path)
    assert not list(tmp_path.iterdir())


# ---- audio augmentation ------------------------------------------------------------------------


def test_augment_is_seeded_and_keeps_the_clip_length():
    from generators.audio import AudioAugmentConfig, augment, place

    rate = 16000
    word = np.sin(np.linspace(0, 400 * np.pi, 6000)).astype(np.float32) * 0.7
    config = AudioAugmentConfig(reverb_probability=1.0, noise_probability=1.0, snr_db=(10, 10))
    a, drawn = augment(word, rate, 1.0, config, np.random.default_rng(3))
    b, _ = augment(word, rate, 1.0, config, np.random.default_rng(3))
    c, _ = augment(word, rate, 1.0, config, np.random.default_rng(4))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c) and len(a) == rate and np.abs(a).max() <= 0.99
    assert {"gain_db", "rt60_seconds", "snr_db", "shift_seconds"} <= set(drawn)
    # noise at 10 dB SNR: the quiet part of the clip is no longer silent
    assert np.abs(a[:500]).max() > 0 if drawn["shift_seconds"] > -0.15 else True
    clip, cropped = place(np.ones(20000, np.float32), rate, 0)
    assert cropped and len(clip) == rate


def test_wav_round_trip_and_resampling(tmp_path):
    from generators.audio import read_wav, resample, write_wav

    x = (np.sin(np.linspace(0, 100 * np.pi, 22050)) * 0.5).astype(np.float32)
    y = resample(x, 22050, 16000)
    assert len(y) == 16000
    write_wav(tmp_path / "a.wav", y, 16000)
    back, rate = read_wav(tmp_path / "a.wav")
    assert rate == 16000 and np.abs(back - y).max() < 1e-4


# ---- the quality gate --------------------------------------------------------------------------


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_gate_rejects_disagreement_low_confidence_duplicates_and_caps():
    from generators.gate import GateConfig, apply_gate
    from knowledge.index import VectorIndex

    rng = np.random.default_rng(0)
    pool = _unit(rng.standard_normal((50, 16)))
    index = VectorIndex.build(pool)
    fresh = _unit(rng.standard_normal((8, 16)))
    emb = np.concatenate([
        fresh[:4],  # 0-3: new and agreed with
        pool[:1] + 0.01,  # 4: a copy of a pool sample
        fresh[:1] + 0.01,  # 5: a copy of sample 0, less confident
        fresh[5:6],  # 6: the teacher says class 0
        fresh[6:7],  # 7: class 1, but unsure
    ])
    probs = np.tile([[0.1, 0.9]], (8, 1)).astype(np.float32)
    probs[5] = [0.2, 0.8]
    probs[6] = [0.7, 0.3]
    probs[7] = [0.45, 0.55]
    result = apply_gate(emb, probs, 1, index, real=4, config=GateConfig(max_share=0.6, min_keep=0))
    assert result.cap == 6  # 0.6 / 0.4 x 4 real
    assert result.reasons == [None] * 4 + ["near-duplicate of the pool", "near-duplicate of another sample",
                                           "teacher disagrees", "low confidence"]
    assert result.kept == 4 and result.rejection_rate == 0.5
    capped = apply_gate(emb, probs, 1, index, real=2, config=GateConfig(max_share=0.5, min_keep=0))
    assert capped.kept == 2 and capped.rejected["over the cap"] == 2 == capped.over_cap
    assert capped.rejection_rate == 0.5  # the cap is a quota, not a verdict on the samples
    floor = apply_gate(emb, probs, 1, index, real=0, config=GateConfig(min_keep=3))
    assert floor.kept == 3  # no real data at all: the floor, not a share of nothing
    assert apply_gate(emb[:0], probs[:0], 1, index, real=0, config=GateConfig()).kept == 0


class _FakeTeacher:
    """Embeddings are the first pixels; zero-shot favours class 0 for bright images."""

    def embed(self, images):
        return images.reshape(len(images), -1)[:, :8].astype(np.float32) + 1.0

    def class_scores(self, emb, prompts):
        bright = (emb.mean(1, keepdims=True) > 100).astype(np.float32)
        return np.concatenate([0.5 * bright + 0.25, 0.75 - 0.5 * bright], 1)


def test_teacher_judge_labels_like_the_pool_and_falls_back_on_zero_shot():
    from generators.gate import TeacherJudge
    from knowledge.labeling import Projection, zero_shot_distribution

    rng = np.random.default_rng(0)
    # a short class: 5 bright images against 200 dark ones
    pool = np.concatenate([rng.integers(0, 60, (200, 8)), rng.integers(150, 255, (5, 8))]).astype(np.uint8)
    labels = np.repeat([1, 0], [200, 5])
    teacher = _FakeTeacher()
    emb = teacher.embed(pool[:, None, :, None])
    projection = Projection.fit(emb, dims=8, seed=0)
    judge = TeacherJudge(teacher, projection.apply(emb), labels, 2, ["bright", "dark"], other=False,
                         projection=projection)
    bright = rng.integers(150, 255, (6, 1, 8, 1)).astype(np.uint8)
    dark = rng.integers(0, 60, (6, 1, 8, 1)).astype(np.uint8)
    _, probs = judge(bright, 0)
    assert (probs.argmax(1) == 0).all() and (probs[:, 0] > 0.6).all()  # the short class is not outvoted
    _, probs = judge(dark, 0)
    assert (probs.argmax(1) == 1).all()
    # a class with no pool samples is judged by zero-shot alone
    lonely = TeacherJudge(teacher, projection.apply(emb), labels, 3, ["bright", "dark"], other=True,
                          projection=projection)
    _, probs = lonely(dark, 2)
    expected = zero_shot_distribution(teacher.class_scores(teacher.embed(dark), ["bright", "dark"]), other=True)
    np.testing.assert_allclose(probs, expected, rtol=1e-5)
