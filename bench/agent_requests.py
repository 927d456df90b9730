"""How well plain-language requests become specs: the offline parser, and optionally an LLM.

    .venv/bin/python bench/agent_requests.py [--llm]

Scores agent.parse.parse_request on a fixed set of requests written the way embedded
engineers write them, field by field: device, classes, other, flash_bytes, sram_bytes,
latency_ms and accuracy_floor. Prints the share of fields right, a per-field table and
every miss (request, field, expected, got).

--llm also scores an LLM extractor (langchain_openai structured output into the same
ParsedRequest) on the same requests. It needs an OpenAI-compatible endpoint:
NANOFACTORY_LLM_BASE_URL and NANOFACTORY_LLM_MODEL (NANOFACTORY_LLM_API_KEY optional).

Conventions of the expected values:
  device          canonical catalog name (knowledge.devices), None when the request names none
  classes         singular, lowercase, in the order mentioned; [] when none are named; plural-only
                  nouns stay as they are (trousers, scissors)
  other           True when the request names an "everything else" bucket, and for a
                  single-class request ("a person detector" is person vs everything else)
  flash/sram      bytes, 1 KB = 1 K = 1024 bytes, 1 MB = 1024 KB; the smallest figure stated
  latency_ms      per inference; "10 fps" is 100 ms
  accuracy_floor  a fraction: "at least 90%" is 0.9
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from agent.parse import ParsedRequest, parse_request
from knowledge.devices import list_devices

KiB = 1024
MiB = 1024 * KiB

F446, F746, H743, L4R5 = "STM32F446RE", "STM32F746NG", "STM32H743", "STM32L4R5"
NRF, S3, RP, ZERO = "nRF52840", "ESP32-S3", "RP2040", "Raspberry Pi Zero 2 W"


@dataclass(frozen=True)
class Case:
    text: str
    device: str | None
    classes: list[str] = field(default_factory=list)
    other: bool = False
    flash_bytes: int | None = None
    sram_bytes: int | None = None
    latency_ms: float | None = None
    accuracy_floor: float | None = None


# Written before the parser was run on them; not adjusted afterwards.
CASES: list[Case] = [
    Case("A smart-closet camera that sorts shirts, trousers, sneakers, bags and everything else, "
         "on an STM32F446 with 128 KB RAM",
         F446, ["shirt", "trousers", "sneaker", "bag"], other=True, sram_bytes=128 * KiB),
    Case("Person detector for the nRF52, 256K RAM, under 30 ms per frame please",
         NRF, ["person"], other=True, sram_bytes=256 * KiB, latency_ms=30),
    Case("Can you build a model that tells apart cats and dogs? It has to run on a Raspberry Pi Pico.",
         RP, ["cat", "dog"]),
    Case("I want to classify parcels into envelopes, boxes or tubes on an ESP32 S3 with 0.5 MB flash.",
         S3, ["envelope", "box", "tube"], flash_bytes=512 * KiB),
    Case("pi zero 2 camera at the bird feeder: detects squirrels. At least 90% accuracy would be nice.",
         ZERO, ["squirrel"], other=True, accuracy_floor=0.90),
    Case("STM32F746 discovery board, 1MB of flash and 320 KB SRAM. It should recognise apples, bananas, "
         "oranges and anything else.",
         F746, ["apple", "banana", "orange"], other=True, flash_bytes=1 * MiB, sram_bytes=320 * KiB),
    Case("Gesture camera on an STM32H743: classify hand poses into fist, open palm, peace sign or none "
         "of these. 10 fps minimum.",
         H743, ["fist", "open palm", "peace sign"], other=True, latency_ms=100),
    Case("Sorting recyclables on a nucleo-l4r5zi — plastic bottles, cans, glass jars and other stuff. "
         "Flash budget 1 MB, RAM 512 KB, under 200 ms.",
         L4R5, ["plastic bottle", "can", "glass jar"], other=True, flash_bytes=1 * MiB,
         sram_bytes=512 * KiB, latency_ms=200),
    Case("Build me a hard hat detector for a site camera on an STM32F446RE, 90% accuracy or better.",
         F446, ["hard hat"], other=True, accuracy_floor=0.90),
    Case("Classify leaves as healthy, rusty or mildewed.",
         None, ["healthy", "rusty", "mildewed"]),
    Case("Run it on the RP2040 with 200 KB of RAM and 1 MB flash, at 5 fps.",
         RP, [], flash_bytes=1 * MiB, sram_bytes=200 * KiB, latency_ms=200),
    Case("ESP32-S3 doorbell cam, distinguish between visitors, couriers and the cat.",
         S3, ["visitor", "courier", "cat"]),
    Case("I'd like a tiny model that spots wasps vs bees at the hive entrance. Arduino Nano 33 BLE, "
         "60 ms max.",
         NRF, ["wasp", "bee"], latency_ms=60),
    Case("Which is best for recognising coffee cups, mugs and glasses on a Pi Zero 2 W with at least "
         "95 % accuracy?",
         ZERO, ["coffee cup", "mug", "glass"], accuracy_floor=0.95),
    Case("Please make a parking-spot classifier: empty or occupied. STM32H743ZI, 512 KB RAM.",
         H743, ["empty", "occupied"], sram_bytes=512 * KiB),
    Case("On an nRF52840 DK, a presence sensor that detects people. Keep it under 64 KB of SRAM and "
         "256 KB flash.",
         NRF, ["person"], other=True, flash_bytes=256 * KiB, sram_bytes=64 * KiB),
    Case("Sort LEGO bricks by colour: red, blue, yellow and everything else. Pico, 50 ms.",
         RP, ["red", "blue", "yellow"], other=True, latency_ms=50),
    Case("Need a classifier for the STM32F746 that separates good welds from bad welds.",
         F746, ["good weld", "bad weld"]),
    Case("Target: ESP32S3, 8 MB flash, 512 KB RAM, 100 ms. Classes: forklift, pallet, person.",
         S3, ["forklift", "pallet", "person"], flash_bytes=8 * MiB, sram_bytes=512 * KiB, latency_ms=100),
    Case("A bird feeder camera that recognizes sparrows, finches, robins and other birds, ideally above "
         "85% accuracy.",
         None, ["sparrow", "finch", "robin"], other=True, accuracy_floor=0.85),
    Case("On the F446 nucleo, detect whether the door is open or closed, 20 ms budget.",
         F446, ["open", "closed"], latency_ms=20),
    Case("Build an image classifier for an STM32L4R5.",
         L4R5, []),
    Case("Tool-crib camera: identify hammers, wrenches, screwdrivers and pliers. Keep flash under "
         "0.5 MB and RAM under 128K.",
         None, ["hammer", "wrench", "screwdriver", "pliers"], flash_bytes=512 * KiB, sram_bytes=128 * KiB),
    Case("stm32h743 + OV2640, must hit 15 fps, sorts mail into letters, parcels and other.",
         H743, ["letter", "parcel"], other=True, latency_ms=1000 / 15),
    Case("Low-power wildlife trap on the nRF52: distinguish foxes from badgers, and anything else should "
         "be ignored. 1 s per image is fine.",
         NRF, ["fox", "badger"], other=True, latency_ms=1000),
    Case("We want people counting at a shop door, just a person detector on an esp32-s3, 300 KB RAM, "
         "2 MB flash.",
         S3, ["person"], other=True, flash_bytes=2 * MiB, sram_bytes=300 * KiB),
    Case("Differentiate between cracked eggs and intact eggs on the STM32F746NG, accuracy at least 0.92.",
         F746, ["cracked egg", "intact egg"], accuracy_floor=0.92),
    Case("Pi Zero 2 W: recognise cats, dogs, foxes. Under 50ms please.",
         ZERO, ["cat", "dog", "fox"], latency_ms=50),
    Case("Something to tell mice apart from rats in the barn, on a raspberry pi pico, ideally 10 fps.",
         RP, ["mouse", "rat"], latency_ms=100),
    Case("A crop-row camera that classifies weeds versus crop seedlings, on an STM32L4R5, 640K SRAM, "
         "2MB flash.",
         L4R5, ["weed", "crop seedling"], flash_bytes=2 * MiB, sram_bytes=640 * KiB),
    Case("Queue camera for the cafeteria that detects trays. nRF52840, 128 KB RAM, 0.5 MB flash, "
         "80% accuracy.",
         NRF, ["tray"], other=True, flash_bytes=512 * KiB, sram_bytes=128 * KiB, accuracy_floor=0.80),
    Case("Recognise road signs: stop, yield, speed limit and everything else, at 10 fps with 90% accuracy.",
         None, ["stop", "yield", "speed limit"], other=True, latency_ms=100, accuracy_floor=0.90),
    Case("ESP32 S3 in a beehive: varroa mite detector, 1MB of flash, 384 KB RAM.",
         S3, ["varroa mite"], other=True, flash_bytes=1 * MiB, sram_bytes=384 * KiB),
    Case("I'm after a classifier that separates apples from pears, running on whatever board you suggest.",
         None, ["apple", "pear"]),
    Case("On the STM32F746G-DISCO with 1 MB flash: classify screws, nuts, washers or unknown parts, at "
         "least 97% accurate, under 40 ms.",
         F746, ["screw", "nut", "washer"], other=True, flash_bytes=1 * MiB, latency_ms=40, accuracy_floor=0.97),
    Case("Rock-paper-scissors game on a Pico: classify the hand as rock, paper or scissors.",
         RP, ["rock", "paper", "scissors"]),
    Case("Smart bin: tell apart paper, plastic, metal and compost, under 2 MB flash and 256 KB RAM, "
         "target STM32H743VI.",
         H743, ["paper", "plastic", "metal", "compost"], flash_bytes=2 * MiB, sram_bytes=256 * KiB),
    Case("I need to detect falls in elderly care, 5 fps is enough, on a Raspberry Pi Zero 2.",
         ZERO, ["fall"], other=True, latency_ms=200),
    Case("Tell apart pedestrians, cyclists, and cars.",
         None, ["pedestrian", "cyclist", "car"]),
    Case("Make it run in under 0.05 s on the H743 with 90 percent accuracy; it should distinguish drones "
         "from birds.",
         H743, ["drone", "bird"], latency_ms=50, accuracy_floor=0.90),
    Case("An STM32F446 with 96 KB of RAM free and 384 KB flash left, detecting empty shelves.",
         F446, ["empty shelf"], other=True, flash_bytes=384 * KiB, sram_bytes=96 * KiB),
    Case("Leaf disease sorter: healthy, blight, rust, or other. ESP32-S3 at 4 fps.",
         S3, ["healthy", "blight", "rust"], other=True, latency_ms=250),
    Case("No device chosen yet. Want to tell apart forks, spoons and knives with under 100 KB RAM.",
         None, ["fork", "spoon", "knife"], sram_bytes=100 * KiB),
]

FIELDS = ("device", "classes", "other", "flash_bytes", "sram_bytes", "latency_ms", "accuracy_floor")


def field_right(name: str, expected, got) -> bool:
    if name == "classes":
        return [c.lower() for c in expected] == [c.lower() for c in (got or [])]
    if name in ("latency_ms", "accuracy_floor"):
        if expected is None or got is None:
            return expected is None and got is None
        return abs(float(expected) - float(got)) <= 1e-6
    return expected == got


def score(extract: Callable[[str], ParsedRequest], title: str) -> float:
    """Print the per-field table and the misses for one extractor; return the overall share right."""
    right = {name: 0 for name in FIELDS}
    misses: list[tuple[str, str, object, object]] = []
    started = time.perf_counter()
    for case in CASES:
        got = extract(case.text)
        for name in FIELDS:
            expected, value = getattr(case, name), getattr(got, name)
            if field_right(name, expected, value):
                right[name] += 1
            else:
                misses.append((case.text, name, expected, value))
    seconds = time.perf_counter() - started

    total = len(CASES) * len(FIELDS)
    overall = sum(right.values()) / total
    print(f"\n== {title}: {len(CASES)} requests, {total} fields, {seconds:.2f} s")
    print(f"overall: {sum(right.values())}/{total} fields right ({overall:.1%})")
    print(f"{'field':<15} {'right':>7} {'accuracy':>9}")
    for name in FIELDS:
        print(f"{name:<15} {right[name]:>3}/{len(CASES):<3} {right[name] / len(CASES):>9.1%}")
    print(f"misses ({len(misses)}):")
    for text, name, expected, value in misses:
        print(f"  [{name}] expected {expected!r}, got {value!r}\n      {text}")
    return overall


def llm_extractor() -> Callable[[str], ParsedRequest]:
    """An extractor backed by an OpenAI-compatible endpoint; exits 2 when none is configured."""
    base_url = os.environ.get("NANOFACTORY_LLM_BASE_URL")
    model = os.environ.get("NANOFACTORY_LLM_MODEL")
    if not base_url or not model:
        print("--llm needs an OpenAI-compatible endpoint: set NANOFACTORY_LLM_BASE_URL and "
              "NANOFACTORY_LLM_MODEL (and NANOFACTORY_LLM_API_KEY if it needs one).", file=sys.stderr)
        sys.exit(2)
    from langchain_openai import ChatOpenAI  # only this path needs it

    llm = ChatOpenAI(base_url=base_url, model=model, api_key=os.environ.get("NANOFACTORY_LLM_API_KEY") or "none",
                     temperature=0).with_structured_output(ParsedRequest)
    system = (
        "Extract the design request of a tiny image classifier. device: one of "
        + ", ".join(d.name for d in list_devices())
        + " (its canonical name) or null when none is named. classes: the class names, singular, lowercase, "
        "in the order mentioned; [] when none. other: true when the request names an 'everything else' "
        "bucket or a single class. flash_bytes, sram_bytes: bytes with 1 KB = 1024 bytes. latency_ms: "
        "milliseconds per image (10 fps = 100). accuracy_floor: a fraction (90% = 0.9). Leave unstated "
        "fields null."
    )

    def extract(text: str) -> ParsedRequest:
        try:
            return llm.invoke([("system", system), ("human", text)])
        except Exception as error:  # one bad answer scores as empty, not as a crashed benchmark
            print(f"  LLM failed on {text[:60]!r}: {error}", file=sys.stderr)
            return ParsedRequest()

    return extract


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--llm", action="store_true", help="also score an LLM extractor (needs env vars)")
    args = parser.parse_args()
    extract_llm = llm_extractor() if args.llm else None  # fail on missing settings before any work

    score(parse_request, "offline parser (agent.parse.parse_request)")
    if extract_llm is not None:
        score(extract_llm, f"LLM extractor ({os.environ['NANOFACTORY_LLM_MODEL']})")


if __name__ == "__main__":
    main()
