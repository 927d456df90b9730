"""Keyword clips from Debian's text-to-speech engines, espeak-ng and flite.

Each clip draws an engine (each installed one equally often), a voice (espeak-ng: every installed
accent of the language crossed with its voice variants, about 700 for English; flite: its
built-in voices), a speaking
rate, a pitch and an intonation, then goes through ``generators.audio.augment``. Output is
16 kHz mono 16-bit WAV of a fixed length, the keyword-spotting convention. Engines run as
subprocesses in parallel threads; every clip is drawn from its own seed, so the same request
gives the same files whatever the thread count.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from generators.audio import (
    AudioAugmentConfig,
    augment,
    decode_wav,
    resample,
    trim_silence,
    write_wav,
)
from generators.base import (
    GeneratedFile,
    GenerateRequest,
    GenerateResult,
    Generator,
    GeneratorUnavailable,
    safe_name,
)
from generators.registry import register_generator
from knowledge.errors import NanofactoryError

log = logging.getLogger(__name__)

Engine = Literal["espeak-ng", "flite"]
ESPEAK_RATE = 175  # espeak-ng's default words per minute
ESPEAK_PITCH = 50  # its default pitch, on a 0-99 scale
# espeak-ng variants that do not sound like a person (robots, effects, a speed test): keywords spoken by
# them teach a student nothing about real speakers
EXCLUDED_VARIANTS = re.compile(r"robo|Robot|Demonic|announcer|fast|Tweaky|UniRobot", re.IGNORECASE)
# flite's built-in voices and their usual mean pitch (Hz); awb_time is a limited-domain voice (it can only say times)
FLITE_F0 = {"kal": 105.0, "kal16": 105.0, "awb": 110.0, "rms": 100.0, "slt": 170.0}
FLITE_LIMITED = {"awb_time"}


class SpeechConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Literal["speech"] = "speech"
    engines: list[Engine] = Field(["espeak-ng", "flite"], min_length=1)
    language: str = Field("en", pattern=r"^[a-z]{2,3}(-[a-zA-Z0-9-]+)?$", description="espeak-ng language code")
    espeak_voices: list[str] | None = Field(None, description="None = every installed non-MBROLA voice of the language")
    espeak_variants: list[str] | None = Field(None, description="None = every installed variant that sounds human")
    flite_voices: list[str] | None = Field(None, description="None = flite's built-in general voices")
    speed: tuple[float, float] = Field((0.8, 1.25), description="speaking rate range, relative to normal")
    pitch: tuple[float, float] = Field((0.7, 1.4), description="pitch range, relative to the voice's normal")
    intonations: list[str] = Field(["", ".", "!", "?"], description="punctuation appended to vary the melody")
    sample_rate: int = Field(16000, ge=8000, le=48000)
    clip_seconds: float = Field(1.0, gt=0, le=10, description="every clip is this long; longer words are cropped")
    augment: AudioAugmentConfig | None = Field(default_factory=AudioAugmentConfig)
    workers: int | None = Field(None, ge=1, le=64, description="parallel engine processes; None = 2 per CPU core")


@register_generator("speech", SpeechConfig)
class SpeechGenerator(Generator):
    modality = "audio"
    config: SpeechConfig

    def __init__(self, config: SpeechConfig | None = None):
        super().__init__(config or SpeechConfig())
        self._voices: dict[str, list[str]] | None = None

    def engines(self) -> list[str]:
        return [e for e in self.config.engines if shutil.which(e)]

    def check(self) -> None:
        if not self.engines():
            raise GeneratorUnavailable(
                f"No text-to-speech engine is installed ({' or '.join(self.config.engines)}); run "
                "`sudo apt-get install espeak-ng flite` (or `make` as root) to synthesize keyword audio.")

    def load(self) -> None:
        if self._voices is not None:
            return
        self.check()
        voices: dict[str, list[str]] = {}
        engines = self.engines()
        missing = [e for e in self.config.engines if e not in engines]
        if missing:
            log.info("%s not installed; speaking with %s only", ", ".join(missing), ", ".join(engines))
        if "espeak-ng" in engines:
            accents = self.config.espeak_voices or espeak_voices(self.config.language)
            variants = self.config.espeak_variants if self.config.espeak_variants is not None else espeak_variants()
            voices["espeak-ng"] = accents + [f"{a}+{v}" for a in accents for v in variants]
        if "flite" in engines:
            voices["flite"] = self.config.flite_voices or flite_voices()
        voices = {e: v for e, v in voices.items() if v}
        if not voices:
            raise GeneratorUnavailable(f"The speech engines found no voice for language {self.config.language!r}; "
                                       "install espeak-ng-data or pick another language.")
        self._voices = voices

    @property
    def voices(self) -> dict[str, list[str]]:
        """Voices per installed engine, e.g. {"espeak-ng": ["en-us", "en-us+f3", ...], "flite": ["slt", ...]}."""
        self.load()
        return {e: list(v) for e, v in self._voices.items()}

    def generate(self, request: GenerateRequest, out_dir: Path, progress: bool = False) -> GenerateResult:
        import os

        from tqdm.auto import tqdm

        self.load()
        started = time.perf_counter()
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        stem = safe_name(request.class_name)
        workers = self.config.workers or 2 * (os.cpu_count() or 1)  # the engines wait on I/O half the time
        files: list[GeneratedFile | None] = [None] * request.count
        with ThreadPoolExecutor(max_workers=workers) as pool, \
                tqdm(total=request.count, desc=f"speech {request.class_name}", unit="clip", disable=not progress,
                     leave=False) as bar:
            futures = {pool.submit(self._clip, request, i, out_dir / f"{stem}-{request.seed}-{i:05d}.wav"): i
                       for i in range(request.count)}
            for future, i in futures.items():
                files[i] = future.result()
                bar.update(1)
        return GenerateResult(self.name, request, [f for f in files if f is not None],
                              round(time.perf_counter() - started, 2))

    def _clip(self, request: GenerateRequest, i: int, path: Path) -> GeneratedFile:
        cfg = self.config
        rng = np.random.default_rng([request.seed, i])
        # engines first, then a voice: flite's five voices would otherwise drown among espeak-ng's hundreds
        engine = sorted(self._voices)[int(rng.integers(len(self._voices)))]
        voice = self._voices[engine][int(rng.integers(len(self._voices[engine])))]
        speed, pitch = float(rng.uniform(*cfg.speed)), float(rng.uniform(*cfg.pitch))
        text = _clean(request.text) + cfg.intonations[int(rng.integers(len(cfg.intonations)))]
        if engine == "espeak-ng":
            args = ["espeak-ng", "-v", voice, "-s", str(int(ESPEAK_RATE * speed)),
                    "-p", str(int(np.clip(ESPEAK_PITCH * pitch, 0, 99))), "--stdin", "--stdout"]
        else:
            f0 = FLITE_F0.get(Path(voice).stem, 120.0) * pitch
            args = ["flite", "-voice", voice, "--setf", f"duration_stretch={1 / speed:.3f}",
                    "--setf", f"int_f0_target_mean={f0:.1f}", "-o", "/dev/stdout", "-t", text]
        done = subprocess.run(args, input=text.encode() if engine == "espeak-ng" else None, capture_output=True,
                              timeout=60, check=False)
        if done.returncode != 0 or len(done.stdout) <= 44:
            reason = (done.stderr.decode(errors="replace").strip().splitlines() or ["no audio"])[-1][:160]
            raise NanofactoryError(f"{engine} failed to speak {text!r} with voice {voice!r} ({reason}); "
                                   "check the voice name or leave the voice list empty to use the installed ones.")
        samples, rate = decode_wav(done.stdout)
        word = trim_silence(resample(samples, rate, cfg.sample_rate), cfg.sample_rate)
        peak = float(np.abs(word).max()) if len(word) else 0.0
        word = word * np.float32(0.7 / peak) if peak > 0 else word  # a common level before the drawn gain
        clip, drawn = augment(word, cfg.sample_rate, cfg.clip_seconds, cfg.augment, rng)
        write_wav(path, clip, cfg.sample_rate)
        return GeneratedFile(path, {
            "generator": self.name, "engine": engine, "voice": voice, "text": text, "seed": request.seed, "index": i,
            "speed": round(speed, 3), "pitch": round(pitch, 3), "engine_rate": rate, "sample_rate": cfg.sample_rate,
            "word_seconds": round(len(word) / cfg.sample_rate, 3), **drawn})



def _clean(text: str) -> str:
    """One line of plain words: no option-like leading dashes, no control characters."""
    return re.sub(r"\s+", " ", re.sub(r"[\x00-\x1f]", " ", text)).strip().lstrip("-").strip() or "silence"


def _run(args: list[str]) -> str:
    return subprocess.run(args, capture_output=True, text=True, timeout=30, check=False).stdout


def espeak_voices(language: str) -> list[str]:
    """Installed espeak-ng voices of ``language`` (e.g. en-us, en-gb-scotland); MBROLA voices (need the
    mbrola binary) and variants listed as voices left out."""
    voices = []
    for line in _run(["espeak-ng", f"--voices={language}"]).splitlines()[1:]:
        parts = line.split()
        # columns: priority, language, age/gender, name, file, other languages
        if len(parts) >= 5 and not parts[4].startswith(("mb/", "!v/")) and parts[1] not in voices:
            voices.append(parts[1])
    return voices


def espeak_variants() -> list[str]:
    """Installed voice variants (m1..m8, f1..f5, named speakers), minus the ones in ``EXCLUDED_VARIANTS``."""
    match = re.search(r"Data at:\s*(\S+)", _run(["espeak-ng", "--version"]))
    folder = Path(match.group(1)) / "voices" / "!v" if match else None
    if folder is None or not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir()
                  if p.is_file() and " " not in p.name and not EXCLUDED_VARIANTS.search(p.name))


def flite_voices() -> list[str]:
    """flite's built-in voices, limited-domain ones left out."""
    out = _run(["flite", "-lv"])
    names = out.split(":", 1)[1].split() if ":" in out else []
    return [v for v in names if v not in FLITE_LIMITED]
