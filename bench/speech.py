"""Keyword clips per second from the speech generator (espeak-ng + flite, augmented, 16 kHz mono WAV).

    .venv/bin/python bench/speech.py [--clips 1000] [--keywords yes no up down left right on off stop go]

Synthesizes ``--clips`` clips spread evenly over the keywords into a temporary folder and prints
the wall time, clips per second, the engine split and the number of distinct voices. The target
is 1,000 clips in 60 s or less on a 2-core machine.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections import Counter
from pathlib import Path

from generators import GenerateRequest, create_generator
from generators.audio import read_wav
from generators.speech import SpeechConfig

KEYWORDS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]  # the Speech Commands ten


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=1000)
    parser.add_argument("--keywords", nargs="+", default=KEYWORDS)
    parser.add_argument("--workers", type=int, help="parallel engine processes (default: 2 per core)")
    args = parser.parse_args()

    generator = create_generator(SpeechConfig(workers=args.workers))
    started = time.perf_counter()
    generator.load()
    voices = generator.voices
    files = []
    with tempfile.TemporaryDirectory() as tmp:
        per = [args.clips // len(args.keywords) + (i < args.clips % len(args.keywords)) for i in range(len(args.keywords))]
        for i, (keyword, count) in enumerate(zip(args.keywords, per)):
            if count:
                result = generator.generate(GenerateRequest(class_name=keyword, count=count, seed=i), Path(tmp))
                files += result.files
        seconds = time.perf_counter() - started
        samples, rate = read_wav(files[0].path)
    engines = Counter(f.provenance["engine"] for f in files)
    used = len({(f.provenance["engine"], f.provenance["voice"]) for f in files})
    print(f"{len(files)} clips of {len(args.keywords)} keywords in {seconds:.1f} s ({len(files) / seconds:.0f} clips/s) "
          f"on {os.cpu_count()} cores; {rate} Hz mono, {len(samples) / rate:.2f} s each")
    print(f"engines: {', '.join(f'{e} {n}' for e, n in sorted(engines.items()))}; voices available: "
          f"{', '.join(f'{e} {len(v)}' for e, v in sorted(voices.items()))}; distinct voices used: {used}")


if __name__ == "__main__":
    main()
