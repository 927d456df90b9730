"""Offline request parsing (agent.parse) and the device catalog lookups it relies on."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.parse import parse_request, singular, spec_from_request
from agent.spec import DataSpec, DesignSpec, PoolSource
from knowledge.devices import find_device, get_device, list_devices
from knowledge.errors import MissingInformation, NanofactoryError

KiB = 1024
MiB = 1024 * 1024
DATA = DataSpec(pool=[PoolSource(kind="fashion-mnist")])
CATALOG_NAMES = [d.name for d in list_devices()]

# (request, device, classes, other)
REQUESTS = [
    ("a smart-closet camera that sorts shirts, trousers, sneakers, bags and everything else, "
     "on an STM32F446 with 128 KB RAM",
     "STM32F446RE", ["shirt", "trousers", "sneaker", "bag"], True),
    ("tells apart cats and dogs on an nRF52840", "nRF52840", ["cat", "dog"], False),
    ("classify images into apples, bananas or oranges on an ESP32-S3 with 0.5 MB flash",
     "ESP32-S3", ["apple", "banana", "orange"], False),
    ("a person detector on a Raspberry Pi Pico, under 50 ms", "RP2040", ["person"], True),
    ("a pet-door recognizer on nrf52", "nRF52840", ["pet door"], True),
    ("I want a cat-or-dog classifier running on the Pi Zero 2 W at 10 fps",
     "Raspberry Pi Zero 2 W", ["cat", "dog"], False),
    ("an image classifier for cats, dogs and birds on stm32l4r5 with RAM of 256K and 1MB flash",
     "STM32L4R5", ["cat", "dog", "bird"], False),
    ("detect ankle boots, sandals and everything else using a STM32H743, 96x96 grayscale, at least 90% accuracy",
     "STM32H743", ["ankle boot", "sandal"], True),
    ("recognises berries, knives, boxes, dresses and glasses on the esp32s3 within 0.2 s",
     "ESP32-S3", ["berry", "knife", "box", "dress", "glass"], False),
    ("a camera on an rp2040 with under 64 kB of memory and 2 MB storage that spots people, mice and the rest",
     "RP2040", ["person", "mouse"], True),
    ("distinguish cats from dogs on stm32f746, accuracy of 0.85, 100 milliseconds",
     "STM32F746NG", ["cat", "dog"], False),
    ("tell shoes and tomatoes apart on f446, 512 KiB of flash, IR camera at 64 px",
     "STM32F446RE", ["shoe", "tomato"], False),
    ("a doorbell that identifies between couriers and neighbours on an STM32F446RE; 90 % accurate",
     "STM32F446RE", ["courier", "neighbour"], False),
    ("recognize hand gestures: thumbs up, thumbs down, and none of these, on an Arduino Nano 33 BLE",
     "nRF52840", ["thumbs up", "thumbs down"], True),
    ("stm32h743zit6 that classifies frames as empty or occupied, black-and-white, 48x48",
     "STM32H743", ["empty", "occupied"], False),
    ("flash 1 MB, RAM 128 KB on stm32f446re that detects cars vs trucks", "STM32F446RE", ["car", "truck"], False),
    ("tells apart cats and dogs from each other on rp2040", "RP2040", ["cat", "dog"], False),
    ("Sorts Socks, Gloves or Anything Else on a NUCLEO-F446RE", "STM32F446RE", ["sock", "glove"], True),
]


@pytest.mark.parametrize("text, device, classes, other", REQUESTS, ids=[r[0][:40] for r in REQUESTS])
def test_request_device_classes_other(text: str, device: str, classes: list[str], other: bool) -> None:
    parsed = parse_request(text)
    assert parsed.device == device
    assert parsed.classes == classes
    assert parsed.other is other


@pytest.mark.parametrize(
    "text, flash, sram",
    [
        ("on rp2040 with 128 KB RAM", None, 128 * KiB),
        ("on rp2040 with 128KB of SRAM", None, 128 * KiB),
        ("on rp2040 with 256K RAM", None, 256 * KiB),
        ("on rp2040 with 0.5 MB flash", MiB // 2, None),
        ("on rp2040 with 1MB flash", MiB, None),
        ("on rp2040 with 512 KiB of flash", 512 * KiB, None),
        ("on rp2040, under 64 kB of memory", None, 64 * KiB),
        ("on rp2040 with 2 MB storage and a RAM of 100 KB", 2 * MiB, 100 * KiB),
        ("on rp2040, ROM: 300 KB, RAM 96 KiB", 300 * KiB, 96 * KiB),
        ("on rp2040 with a 4K camera", None, None),  # an amount with no memory word is not a budget
        ("on rp2040 with 1,024 KB flash", MiB, None),  # read as 24 KB once
        ("on rp2040 with 2048 bytes of RAM", None, 2048),  # bytes were dropped
        ("on rp2040, 65536 B RAM and 1,000,000 bytes flash", 1_000_000, 65536),
        ("on rp2040 with 64 KB RAM,128 KB flash", 128 * KiB, 64 * KiB),  # a comma without a space still parts them
        ("on rp2040 with 1e3 KB flash", 1000 * KiB, None),  # was not read at all
    ],
)
def test_memory_units(text: str, flash: int | None, sram: int | None) -> None:
    parsed = parse_request(text)
    assert (parsed.flash_bytes, parsed.sram_bytes) == (flash, sram)


@pytest.mark.parametrize(
    "text, latency",
    [("under 50 ms", 50.0), ("50ms latency", 50.0), ("within 0.2 s", 200.0),
     ("100 milliseconds", 100.0), ("at 20 fps", 50.0), ("on an ESP32-S3", None),
     ("under 500 us", 0.5), ("in 800 µs", 0.8), ("within 250 microseconds", 0.25), ("within 1,500 ms", 1500.0)],
)
def test_latency(text: str, latency: float | None) -> None:
    assert parse_request(text).latency_ms == (pytest.approx(latency) if latency else None)


def test_zero_fps_and_negative_budgets_are_one_sentence() -> None:
    from knowledge.errors import NanofactoryError

    with pytest.raises(NanofactoryError, match="asks for 0 kb of RAM; a memory budget is a size above 0"):
        parse_request("sort cats on an nRF52840 with 0 KB RAM")
    with pytest.raises(NanofactoryError, match="asks for 0 ms; a latency budget is a time above 0"):
        parse_request("sort cats on an nRF52840 under 0 ms")

    with pytest.raises(NanofactoryError, match="0 fps"):
        parse_request("sort shirts on an STM32F446 at 0 fps")
    with pytest.raises(NanofactoryError, match="-5 ms"):  # it was read as 5 ms
        parse_request("sort shirts on an STM32F446 within -5 ms")
    with pytest.raises(NanofactoryError, match="-64 kb"):  # and this as 64 KB
        parse_request("sort shirts on an STM32F446 with -64 KB RAM")
    assert parse_request("sort shirts on an STM32F446 in 5-10 ms").latency_ms == 10.0  # a range: its bound, no sign


@pytest.mark.parametrize(
    "text, floor",
    [("at least 90% accuracy", 0.90), ("accuracy of 0.85", 0.85), ("90 % accurate", 0.90),
     ("an accuracy of at least 75 percent", 0.75), ("sorts shirts", None)],
)
def test_accuracy_floor(text: str, floor: float | None) -> None:
    assert parse_request(text).accuracy_floor == (pytest.approx(floor) if floor else None)


@pytest.mark.parametrize(
    "text, grayscale, size",
    [("96x96 grayscale", True, 96), ("greyscale at 64 px", True, 64), ("a monochrome camera", True, None),
     ("black-and-white frames", True, None), ("an IR sensor, 32 x 32", True, 32), ("a color camera", False, None)],
)
def test_input_hints(text: str, grayscale: bool, size: int | None) -> None:
    parsed = parse_request(text)
    assert (parsed.grayscale, parsed.image_size) == (grayscale, size)


@pytest.mark.parametrize(
    "plural, single",
    [("shirts", "shirt"), ("trousers", "trousers"), ("pliers", "pliers"), ("boxes", "box"), ("berries", "berry"), ("knives", "knife"),
     ("people", "person"), ("mice", "mouse"), ("dresses", "dress"), ("glasses", "glass"), ("horses", "horse"),
     ("hoodies", "hoodie"), ("shoes", "shoe"), ("potatoes", "potato"), ("watches", "watch"), ("glass", "glass"),
     ("bus", "bus"), ("cat", "cat")],
)
def test_singular(plural: str, single: str) -> None:
    assert singular(plural) == single


def test_unknown_board_is_not_guessed() -> None:
    """A Raspberry Pi 4 is not in the catalog; "raspberry" alone must not match the Pi Zero 2 W."""
    assert parse_request("sorts socks and shoes on a Raspberry Pi 4").device is None
    assert parse_request("sorts socks and shoes on an ESP32").device is None


# ---- spec_from_request -------------------------------------------------------------------


def test_spec_from_request_builds_valid_spec() -> None:
    text = ("a smart-closet camera that sorts shirts, trousers, sneakers, bags and everything else, on an "
            "STM32F446 with 128 KB RAM and 0.5 MB flash, under 80 ms, at least 85% accuracy, 64x64 grayscale")
    spec = spec_from_request(text, DATA)
    assert isinstance(spec, DesignSpec)
    assert spec.device == "STM32F446RE"
    assert spec.label_names == ["shirt", "trousers", "sneaker", "bag", "other"]
    assert spec.budgets.sram_bytes == 128 * KiB
    assert spec.budgets.flash_bytes == 512 * KiB
    assert spec.budgets.latency_ms == pytest.approx(80.0)
    assert spec.budgets.accuracy_floor == pytest.approx(0.85)
    assert (spec.input.size, spec.input.channels) == (64, 1)
    assert spec.request == text
    assert spec.data == DATA
    assert DesignSpec.model_validate_json(spec.to_json()) == spec  # the spec round-trips as data


def test_spec_from_request_defaults_and_examples_dir(tmp_path: Path) -> None:
    spec = spec_from_request("tells apart cats and dogs on an RP2040", DATA, examples_dir=tmp_path)
    assert spec.label_names == ["cat", "dog"]
    assert spec.budgets.model_dump() == {"flash_bytes": None, "sram_bytes": None,
                                         "latency_ms": None, "accuracy_floor": None}
    assert spec.input is None  # decided from the pool by the planner
    assert spec.data.examples_dir == tmp_path
    assert DATA.examples_dir is None  # the caller's DataSpec is not mutated


def test_spec_from_request_single_class_gets_other() -> None:
    spec = spec_from_request("a person detector on a Raspberry Pi Pico", DATA)
    assert spec.label_names == ["person", "other"]


def test_impossible_budget_is_a_nanofactory_error() -> None:
    with pytest.raises(NanofactoryError, match="accuracy_floor"):
        spec_from_request("sorts cats and dogs on an RP2040 with accuracy of 150%", DATA)


def test_missing_device_lists_every_catalog_name() -> None:
    with pytest.raises(MissingInformation) as err:
        spec_from_request("a camera that sorts shirts, trousers and everything else", DATA)
    message = str(err.value)
    assert "device" in message.lower() and message.rstrip(".").endswith(CATALOG_NAMES[-1])
    for name in CATALOG_NAMES:
        assert name in message


def test_missing_classes_asks_for_classes() -> None:
    with pytest.raises(MissingInformation) as err:
        spec_from_request("build me something for an STM32F446 with 128 KB RAM", DATA)
    message = str(err.value)
    assert "classes" in message and "tells apart" in message and "STM32F446RE" in message
    assert "one of" not in message  # the device is known; only classes are asked for


def test_missing_both_asks_once_about_both() -> None:
    with pytest.raises(MissingInformation) as err:
        spec_from_request("make me something cool", DATA)
    message = str(err.value)
    assert "device" in message and "classes" in message
    assert all(name in message for name in CATALOG_NAMES)
    assert message.count("?") == 1


def test_missing_information_is_a_nanofactory_error() -> None:
    with pytest.raises(NanofactoryError):
        spec_from_request("an object detector on a pico", DATA)  # "object" names no class


# ---- knowledge.devices -------------------------------------------------------------------

NAMES_AND_ALIASES = [(d.name, d.name) for d in list_devices()] + [
    (alias, d.name) for d in list_devices() for alias in d.aliases
]


@pytest.mark.parametrize("spelling, name", NAMES_AND_ALIASES)
def test_every_device_found_by_name_and_alias(spelling: str, name: str) -> None:
    assert find_device(spelling).name == name
    assert find_device(spelling.upper()).name == name
    assert get_device(spelling.replace("-", " ")).name == name


@pytest.mark.parametrize("spelling, name", NAMES_AND_ALIASES)
def test_every_device_found_inside_a_request(spelling: str, name: str) -> None:
    assert parse_request(f"sorts cats and dogs on the {spelling} please").device == name


def test_unknown_device_lists_valid_names() -> None:
    with pytest.raises(NanofactoryError) as err:
        get_device("atmega328p")
    assert "atmega328p" in str(err.value)
    for name in CATALOG_NAMES:
        assert name in str(err.value)
    assert find_device("atmega328p") is None


@pytest.mark.parametrize("text, classes, other", [
    ("Need a classifier for the STM32F746 that separates good welds from bad welds.", ["good weld", "bad weld"], False),
    ("Something to tell mice apart from rats in the barn, on a raspberry pi pico", ["mouse", "rat"], False),
    ("Target: ESP32S3, 512 KB RAM. Classes: forklift, pallet, person.", ["forklift", "pallet", "person"], False),
    ("On the F446 nucleo, detect whether the door is open or closed, 20 ms budget.", ["open", "closed"], False),
    ("Leaf disease sorter: healthy, blight, rust, or other. ESP32-S3 at 4 fps.", ["healthy", "blight", "rust"], True),
    ("Sorting recyclables on a nucleo-l4r5zi — plastic bottles, cans, glass jars and other stuff.",
     ["plastic bottle", "can", "glass jar"], True),
    ("sorts clothes on an ESP32-S3 - fast, small and cheap", ["clothes"], True),  # a dash listing qualities
    ("a shirt sorter on an ESP32-S3 - fast, small, cheap", ["shirt"], True),
    # the words before "recognizer" name the task where a list follows; before, both gave one class, "pet door"
    ("a pet-door recognizer – cats, dogs and everything else – on nrf52", ["cat", "dog"], True),
    ("a pet-door recognizer for cats, dogs and everything else on an nRF52840", ["cat", "dog"], True),
    ("a person detector for shops, offices and homes on an nRF52840", ["person"], True),  # a "for" list of places
    ("a pet door camera: cats, dogs or nothing, on nrf52840", ["cat", "dog"], True),
    ("pet door camera (cats, dogs, other) on nrf52840", ["cat", "dog"], True),
    ("a shirt sorter (fast and cheap) on an nRF52840", ["shirt"], True),
    ("a person detector (esp32-s3 or rp2040)", ["person"], True),  # a list of devices names no classes
])
def test_contrast_and_labeled_lists(text, classes, other):
    parsed = parse_request(text)
    assert parsed.classes == classes and parsed.other is other


@pytest.mark.parametrize("text, classes, other", [
    ("detect people with hats, people without hats on an ESP32-S3", ["person with hat", "person without hat"], False),
    ("a mask detector for faces with and without masks on an RP2040", ["face with mask", "face without mask"], False),
    ("detect faces with and without masks on an RP2040", ["face with mask", "face without mask"], False),
    ("classify people with or without helmets", ["person with helmet", "person without helmet"], False),
    ("recognise people with hats and without hats on nrf52840", ["person with hat", "person without hat"], False),
    ("tell apart cats with a collar from cats without, on rp2040", ["cat with collar", "cat without collar"], False),
    ("sort shirts with long sleeves and shirts with short sleeves, and everything else, on stm32f446",
     ["shirt with long sleeve", "shirt with short sleeve"], True),
    ("Classes: person with helmet, person without helmet, background. Target ESP32S3",
     ["person with helmet", "person without helmet", "background"], False),
    # one "with" is not an attribute list: the camera and the RAM stay out of the classes
    ("detect cats and dogs with a camera on an rp2040 with 64 KB RAM", ["cat", "dog"], False),
    ("sorts parcels with barcodes, with a camera on an STM32F446", ["parcel"], True),
    ("detect cars with lights on and cars with lights off, on an esp32-s3",  # "on" ended the list
     ["car with lights on", "car with lights off"], False),
])
def test_classes_that_differ_by_what_they_have(text, classes, other):
    """Before, "with" ended every list: "people with hats, people without hats" became one class, "person"."""
    parsed = parse_request(text)
    assert parsed.classes == classes and parsed.other is other


def test_two_budgets_of_one_kind_say_which_is_built_for(caplog) -> None:
    """Two RAM figures keep the smaller, as a limit should, and say so instead of dropping one silently."""
    with caplog.at_level("WARNING", logger="agent.parse"):
        parsed = parse_request("a shirt sorter on nRF52840 with 64 KB RAM and 32 KB RAM, 1 MB flash")
    assert parsed.sram_bytes == 32 * KiB and parsed.flash_bytes == MiB
    assert "2 RAM budgets (64 KB, 32 KB); the smallest, 32 KB, is the one built for" in caplog.text
    assert "flash" not in caplog.text
