"""Audio helpers for keyword clips: WAV in and out, resampling, silence trimming, augmentation.

Augmentation makes clean TTS sound like a microphone in a room: gain, a synthetic room
reverb (exponentially decaying noise, the usual RT60 model), background noise at a drawn
SNR, and a random position of the word inside the clip (time shift). Every draw comes from
the generator passed in, so a clip replays exactly from its seed.
"""

from __future__ import annotations

import io
import wave
from math import gcd
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from knowledge.errors import NanofactoryError
from knowledge.io import atomic_path


class AudioAugmentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    gain_db: tuple[float, float] = Field((-12.0, 3.0), description="drawn gain range")
    reverb_probability: float = Field(0.5, ge=0, le=1)
    rt60_seconds: tuple[float, float] = Field((0.1, 0.6), description="room decay time range (60 dB)")
    reverb_wet: tuple[float, float] = Field((0.2, 0.6), description="reverberant share of the mix")
    noise_probability: float = Field(0.8, ge=0, le=1)
    snr_db: tuple[float, float] = Field((5.0, 35.0), description="speech-to-noise ratio range")
    max_shift_seconds: float = Field(0.25, ge=0, description="largest offset of the word from the clip's centre")

    @model_validator(mode="after")
    def _ordered(self) -> AudioAugmentConfig:
        for name in ("gain_db", "rt60_seconds", "reverb_wet", "snr_db"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ValueError(f"{name} must be (low, high), got ({lo}, {hi})")
        return self


def decode_wav(data: bytes) -> tuple[np.ndarray, int]:
    """16-bit PCM WAV bytes -> (float32 mono samples in [-1, 1], sample rate).

    TTS engines writing to a pipe put a placeholder length in the header; the data is read to its end.
    """
    try:
        with wave.open(io.BytesIO(data)) as w:
            rate, channels, width = w.getframerate(), w.getnchannels(), w.getsampwidth()
            frames = w.readframes(w.getnframes())
    except (wave.Error, EOFError) as e:
        raise NanofactoryError(f"The speech engine returned unreadable audio ({e}); check that it runs on its own.") from None
    if width != 2:
        raise NanofactoryError(f"The speech engine wrote {8 * width}-bit audio; only 16-bit PCM is supported.")
    x = np.frombuffer(frames[: len(frames) // (2 * channels) * 2 * channels], "<i2").astype(np.float32) / 32768.0
    return x.reshape(-1, channels).mean(1), rate


def write_wav(path: Path, samples: np.ndarray, rate: int) -> None:
    """float samples in [-1, 1] -> 16-bit PCM mono WAV, written atomically."""
    pcm = (np.clip(samples, -1.0, 1.0) * 32767.0).round().astype("<i2")
    with atomic_path(Path(path)) as tmp, wave.open(str(tmp), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    return decode_wav(Path(path).read_bytes())


def resample(x: np.ndarray, rate: int, target: int) -> np.ndarray:
    if rate == target:
        return x
    from scipy.signal import resample_poly

    g = gcd(rate, target)
    return resample_poly(x, target // g, rate // g).astype(np.float32)


def trim_silence(x: np.ndarray, rate: int, threshold: float = 0.02, margin_seconds: float = 0.03) -> np.ndarray:
    """Cut leading and trailing samples quieter than ``threshold`` x the peak, keeping a short margin."""
    peak = float(np.abs(x).max()) if len(x) else 0.0
    if peak == 0.0:
        return x
    loud = np.where(np.abs(x) > threshold * peak)[0]
    margin = int(margin_seconds * rate)
    return x[max(0, loud[0] - margin): loud[-1] + margin + 1]


def room_impulse(rate: int, rt60: float, rng: np.random.Generator) -> np.ndarray:
    """Exponentially decaying noise whose energy falls 60 dB in ``rt60`` seconds."""
    n = max(1, int(rt60 * rate))
    t = np.arange(n) / rate
    ir = rng.standard_normal(n) * np.exp(-6.9078 * t / rt60)  # ln(1000): amplitude -60 dB at rt60
    ir[0] = 1.0  # the direct path
    return (ir / np.sqrt(np.sum(ir**2))).astype(np.float32)


def place(word: np.ndarray, length: int, offset: int) -> tuple[np.ndarray, bool]:
    """The word centred in a clip of ``length`` samples, moved by ``offset``; cropped (True) if it does not fit."""
    clip = np.zeros(length, np.float32)
    if len(word) > length:
        start = (len(word) - length) // 2
        return word[start:start + length].astype(np.float32), True
    room = length - len(word)
    start = int(np.clip(room // 2 + offset, 0, room))
    clip[start:start + len(word)] = word
    return clip, False


def augment(word: np.ndarray, rate: int, clip_seconds: float, config: AudioAugmentConfig | None,
            rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Gain, reverb, placement and noise for one word; returns the clip and what was drawn."""
    length = round(clip_seconds * rate)
    if config is None:
        clip, cropped = place(word, length, 0)
        return clip, {"cropped": cropped}
    drawn: dict = {"gain_db": round(float(rng.uniform(*config.gain_db)), 2)}
    x = word * np.float32(10 ** (drawn["gain_db"] / 20))
    if rng.random() < config.reverb_probability:
        from scipy.signal import fftconvolve

        rt60, wet = float(rng.uniform(*config.rt60_seconds)), float(rng.uniform(*config.reverb_wet))
        tail = fftconvolve(x, room_impulse(rate, rt60, rng))[: len(x) + int(0.5 * rt60 * rate)]
        dry = np.pad(x, (0, len(tail) - len(x)))
        x = ((1 - wet) * dry + wet * tail * (np.abs(dry).max() / max(np.abs(tail).max(), 1e-9))).astype(np.float32)
        drawn |= {"rt60_seconds": round(rt60, 3), "reverb_wet": round(wet, 3)}
    shift = int(rng.integers(-int(config.max_shift_seconds * rate), int(config.max_shift_seconds * rate) + 1)) \
        if config.max_shift_seconds else 0
    clip, cropped = place(x, length, shift)
    drawn |= {"shift_seconds": round(shift / rate, 3), "cropped": cropped}
    if rng.random() < config.noise_probability:
        snr = float(rng.uniform(*config.snr_db))
        power = float(np.mean(x**2)) if len(x) else 0.0
        noise = rng.standard_normal(length).astype(np.float32)
        clip = clip + noise * np.float32(np.sqrt(power / 10 ** (snr / 10)))
        drawn["snr_db"] = round(snr, 2)
    peak = float(np.abs(clip).max())
    if peak > 0.99:  # never clip: scale the whole clip down instead
        clip *= np.float32(0.99 / peak)
    return clip.astype(np.float32), drawn
