"""Catalog of target microcontrollers and small boards.

Memory sizes are from the vendors' datasheets. ``macs_per_cycle`` is the int8
multiply-accumulate throughput a good runtime reaches on the core; it turns a
model's MAC count into a latency estimate (``macs / (macs_per_cycle * clock)``).
The Cortex-M figures are derived from MLPerf Tiny v1.x closed-division results
(ResNet-8 12.5 M MACs, DS-CNN 2.7 M, MobileNetV1-0.25 VWW 7.5 M):

* Cortex-M4 @120 MHz (STM32L4R5, optimized engine): ResNet-8 170-230 ms,
  DS-CNN 72-75 ms, VWW 209-231 ms -> 0.27-0.61 MAC/cycle; we use 0.40.
* Cortex-M7 @216 MHz (STM32F746): 65, 19 and 57 ms -> 0.61-0.89 MAC/cycle;
  we use 0.70.

A board that is not here is described in a YAML file named by ``$NANOFACTORY_DEVICES`` (the
CLI's ``--devices FILE`` sets it): name, core, clock, SRAM and flash, and the MAC/cycle where the
core is not a Cortex-M0+, M4 or M7. Every run records its device in design.json, so a run made
for such a board resumes and replays without the file.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from knowledge.errors import NanofactoryError

KiB = 1024
MiB = 1024 * 1024

_M4_SOURCE = (
    "MLPerf Tiny v1.x, Cortex-M4 @120 MHz (STM32L4R5): 0.27-0.61 MAC/cycle across "
    "ResNet-8, DS-CNN and VWW with CMSIS-NN class kernels; 0.40 taken as typical"
)
_M0_SOURCE = (
    "Cortex-M0+ has no SIMD/DSP extension; CMSIS-NN's pure-C kernels reach roughly a "
    "quarter of a Cortex-M4's throughput: 0.10 MAC/cycle, one core"
)
_M7_SOURCE = (
    "MLPerf Tiny v1.x, Cortex-M7 @216 MHz (STM32F746): 0.61-0.89 MAC/cycle across "
    "ResNet-8, DS-CNN and VWW; 0.70 taken as typical"
)


@dataclass(frozen=True)
class Device:
    name: str
    core: str
    clock_mhz: float
    sram_bytes: int
    flash_bytes: int
    macs_per_cycle: float
    macs_per_cycle_source: str
    aliases: tuple[str, ...] = field(default=())
    notes: str = ""
    origin: str = ""  # where a device not in the catalog was described: a devices file, a run's design.json

    def latency_ms(self, macs: int) -> float:
        """Estimated inference time of ``macs`` int8 multiply-accumulates on this device."""
        return macs / (self.macs_per_cycle * self.clock_mhz * 1e6) * 1e3

    @property
    def emulated_core(self) -> str | None:
        """The core verify runs the C library on (QEMU, compilers.verify.QEMU_CORES), if it is this one's."""
        for core in ("cortex-m4", "cortex-m7", "cortex-m0+"):
            if self.core.lower().startswith(core):
                return core.replace("+", "plus")
        return None

    @property
    def issue_width(self) -> int | None:
        """Instructions the emulated core issues per cycle at most: 1 on a Cortex-M4 and M0+, 2 on an M7."""
        return {"cortex-m4": 1, "cortex-m7": 2, "cortex-m0plus": 1}.get(self.emulated_core or "")

    def latency_floor_ms(self, instructions: int) -> float | None:
        """The least time ``instructions`` take on this device's core, at its issue width; memory wait
        states and multi-cycle loads only add."""
        width = self.issue_width
        return instructions / (width * self.clock_mhz * 1e6) * 1e3 if width else None


def core_name(core: str) -> str:
    """An emulated core's name as people write it: 'cortex-m0plus' -> 'Cortex-M0+'."""
    return core.replace("cortex-m", "Cortex-M").replace("plus", "+")


DEVICES: tuple[Device, ...] = (
    Device("STM32F446RE", "Cortex-M4F", 180, 128 * KiB, 512 * KiB, 0.40, _M4_SOURCE,
           aliases=("stm32f446", "f446", "nucleo-f446re")),
    Device("STM32F746NG", "Cortex-M7", 216, 320 * KiB, 1 * MiB, 0.70, _M7_SOURCE,
           aliases=("stm32f746", "f746", "stm32f746g-disco")),
    Device("STM32H743", "Cortex-M7", 480, 1 * MiB, 2 * MiB, 0.70, _M7_SOURCE,
           aliases=("stm32h743zi", "stm32h743vi", "h743", "nucleo-h743zi"),
           notes="1 MB SRAM in several banks; the largest contiguous block (AXI SRAM) is 512 KB"),
    Device("STM32L4R5", "Cortex-M4F", 120, 640 * KiB, 2 * MiB, 0.40, _M4_SOURCE,
           aliases=("stm32l4r5zi", "l4r5", "nucleo-l4r5zi")),
    Device("nRF52840", "Cortex-M4F", 64, 256 * KiB, 1 * MiB, 0.40, _M4_SOURCE,
           aliases=("nrf52", "nrf52840dk", "nrf52840-dk", "arduino nano 33 ble")),
    Device("ESP32-S3", "Xtensa LX7 (dual core)", 240, 512 * KiB, 8 * MiB, 0.50,
           "Espressif ESP-NN on the LX7's 128-bit SIMD: about 0.5 int8 MAC/cycle on one core "
           "for depthwise-separable CNNs (vendor benchmarks); one core assumed",
           aliases=("esp32s3", "esp32-s3-devkitc", "esp32 s3"),
           notes="flash is external (8 MB on the common N8 modules)"),
    Device("RP2040", "Cortex-M0+ (dual core)", 133, 264 * KiB, 2 * MiB, 0.10, _M0_SOURCE,
           aliases=("raspberry pi pico", "pico", "rp2040 pico"),
           notes="flash is external QSPI (2 MB on the Pico)"),
    Device("Raspberry Pi Zero 2 W", "Cortex-A53 (quad core)", 1000, 512 * MiB, 16 * 1024 * MiB, 2.0,
           "Cortex-A53 NEON int8 (TFLite/XNNPACK): about 2 MAC/cycle on one core for small CNNs",
           aliases=("pi zero 2", "pi zero 2 w", "rpi zero 2", "raspberry pi zero 2",
                    "raspberry pi zero 2w", "zero 2 w"),
           notes="flash is the microSD card (16 GB assumed); SRAM is the 512 MB LPDDR2"),
)


def normalize_device_name(text: str) -> str:
    """Lowercase alphanumerics only: "STM32-F446 RE" -> "stm32f446re"."""
    return re.sub(r"[^a-z0-9]", "", text.lower())


DEVICES_ENV = "NANOFACTORY_DEVICES"
# a core's int8 MAC/cycle where a devices file leaves it out: the catalog's figures for the cores verify emulates
CORE_MACS = {"cortex-m0": (0.10, _M0_SOURCE), "cortex-m4": (0.40, _M4_SOURCE), "cortex-m7": (0.70, _M7_SOURCE)}
_UNITS = {"": 1, "b": 1, "byte": 1, "bytes": 1, "k": KiB, "kb": KiB, "kib": KiB, "m": MiB, "mb": MiB, "mib": MiB,
          "g": 1024 * MiB, "gb": 1024 * MiB, "gib": 1024 * MiB}
_FIELDS = ("name", "core", "clock_mhz", "sram", "flash", "macs_per_cycle", "macs_per_cycle_source", "aliases", "notes")
_loaded: dict[tuple[str, float], tuple[Device, ...]] = {}  # a devices file's boards, by (path, mtime)
_remembered: dict[str, Device] = {}  # boards read back from runs' design.json


def _bytes(value, what: str) -> int:
    """A size as a devices file gives it: 262144, "256 KB", "256K", "1 MB" (1 KB = 1024 bytes)."""
    m = re.fullmatch(r"\s*([\d,]*\.?\d+)\s*([a-z]*)\s*", str(value).lower()) if not isinstance(value, bool) else None
    if m is None or m.group(2) not in _UNITS or float(m.group(1).replace(",", "")) <= 0:
        raise ValueError(f"{what} is {value!r}; give a size such as 256 KB or 1 MB")
    return round(float(m.group(1).replace(",", "")) * _UNITS[m.group(2)])


def _device(entry, origin: str) -> Device:
    """A Device from a devices file's entry (or a run's record of one); ValueError says what is wrong."""
    if not isinstance(entry, dict):
        raise ValueError("each device is a mapping of name, core, clock_mhz, sram, flash")
    unknown = sorted(set(map(str, entry)) - set(_FIELDS))
    missing = [k for k in ("name", "core", "clock_mhz", "sram", "flash") if entry.get(k) in (None, "")]
    if unknown or missing:
        raise ValueError(f"unknown field {unknown[0]!r} (the fields: {', '.join(_FIELDS)})" if unknown else
                         f"{entry.get('name') or 'a device'} has no {missing[0]}")
    name, core = str(entry["name"]).strip(), re.sub(r"(?i)^cortex[\s_-]*m", "Cortex-M", str(entry["core"]).strip())
    clock = entry["clock_mhz"]
    if isinstance(clock, bool) or not isinstance(clock, (int, float)) or not 0 < clock < 1e5:
        raise ValueError(f"{name}: clock_mhz is {clock!r}; give the core clock in MHz, such as 64")
    macs, source = entry.get("macs_per_cycle"), entry.get("macs_per_cycle_source")
    if macs is None:
        family = next((k for k in CORE_MACS if core.lower().startswith(k)), None)
        if family is None:
            raise ValueError(f"{name}: give macs_per_cycle for a {core} core, the int8 multiply-accumulates per "
                             "cycle a good runtime reaches on it (0.4 on a Cortex-M4, 0.7 on an M7)")
        macs, source = CORE_MACS[family]
    if isinstance(macs, bool) or not isinstance(macs, (int, float)) or not 0 < macs <= 64:
        raise ValueError(f"{name}: macs_per_cycle is {macs!r}; give a number above 0, such as 0.4")
    aliases = entry.get("aliases") or []
    if isinstance(aliases, str) or not isinstance(aliases, list):
        raise ValueError(f"{name}: aliases is a list of other names, such as [teensy41, teensy 4.1]")
    return Device(name, core, float(clock), _bytes(entry["sram"], f"{name}: sram"), _bytes(entry["flash"], f"{name}: flash"),
                  float(macs), str(source or f"given in {origin}"), tuple(str(a) for a in aliases),
                  str(entry.get("notes") or ""), origin)


def load_device_file(path: Path | str) -> tuple[Device, ...]:
    """The boards a devices file describes (``devices:`` a list, or the list alone); one sentence when not."""
    import yaml

    path = Path(path).expanduser()
    where = f"The devices file {path}"
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise NanofactoryError(f"{where} does not exist; pass the path of a YAML file describing your boards "
                               f"(or unset {DEVICES_ENV}).") from None
    except (OSError, UnicodeDecodeError) as e:
        raise NanofactoryError(f"{where} cannot be read ({getattr(e, 'strerror', None) or e}); pass a YAML text "
                               "file.") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise NanofactoryError(f"{where} is not valid YAML{at}; fix the syntax and retry.") from None
    entries = data.get("devices") if isinstance(data, dict) else data
    if not isinstance(entries, list) or not entries:
        raise NanofactoryError(f"{where} lists no devices; write `devices:` followed by a list of boards, each with "
                               "name, core, clock_mhz, sram and flash.")
    devices: list[Device] = []
    for i, entry in enumerate(entries, 1):
        try:
            device = _device(entry, str(path))
        except ValueError as e:
            raise NanofactoryError(f"{where}, device {i}: {e}.") from None
        for name in (device.name, *device.aliases):
            taken = _match(name, DEVICES + tuple(devices))
            if taken is not None:
                raise NanofactoryError(f"{where}, device {i}: {name!r} already names {taken.name}"
                                       f"{' in the catalog' if not taken.origin else ''}; give it another name.")
        devices.append(device)
    return tuple(devices)


def file_devices() -> tuple[Device, ...]:
    """The boards of the devices file ``$NANOFACTORY_DEVICES`` names (none when unset); read again when it changes."""
    path = os.environ.get(DEVICES_ENV, "").strip()
    if not path:
        return ()
    try:
        key = (str(Path(path).expanduser().resolve()), Path(path).expanduser().stat().st_mtime)
    except OSError:
        key = (path, -1.0)
    if key not in _loaded:
        _loaded.clear()
        _loaded[key] = load_device_file(path)
    return _loaded[key]


def device_record(device: Device) -> dict:
    """A device as a run's design.json keeps it, so the run resumes and replays without the devices file."""
    d = dataclasses.asdict(device)
    return {"name": d["name"], "core": d["core"], "clock_mhz": d["clock_mhz"], "sram": d["sram_bytes"],
            "flash": d["flash_bytes"], "macs_per_cycle": d["macs_per_cycle"],
            "macs_per_cycle_source": d["macs_per_cycle_source"], "aliases": list(d["aliases"]), "notes": d["notes"]}


def remember_device(record, origin: str) -> None:
    """Make a run's recorded device known when neither the catalog nor the devices file has it (any more)."""
    if not isinstance(record, dict) or not record.get("name") or find_device(str(record["name"])) is not None:
        return
    try:
        device = _device(record, origin)
    except ValueError as e:
        raise NanofactoryError(f"{origin} records a device that does not read: {e}.") from None
    _remembered[device.name] = device


def list_devices() -> list[Device]:
    """The catalog, then the boards of the devices file, then those read back from runs."""
    own = file_devices()
    names = {normalize_device_name(d.name) for d in own}
    return [*DEVICES, *own, *(d for d in _remembered.values() if normalize_device_name(d.name) not in names)]


def _match(name: str, devices) -> Device | None:
    key = normalize_device_name(name)
    return next((d for d in devices if key and (key == normalize_device_name(d.name) or
                                               key in {normalize_device_name(a) for a in d.aliases})), None)


def find_device(name: str) -> Device | None:
    """The device whose name or alias matches ``name`` (case, spaces and dashes ignored)."""
    key = normalize_device_name(name)
    if not key:
        return None
    devices = list_devices()
    if (device := _match(name, devices)) is not None:
        return device
    # a name that starts the full part number ("stm32l4r5" for STM32L4R5ZI) or extends it
    for device in devices:
        full = normalize_device_name(device.name)
        # a part-number prefix must carry a digit, so "raspberry" alone matches nothing
        if len(key) >= 6 and any(ch.isdigit() for ch in key) and (full.startswith(key) or key.startswith(full)):
            return device
    return None


def get_device(name: str) -> Device:
    device = find_device(name)
    if device is None:
        raise NanofactoryError(
            f"Unknown device {name!r}; choose one of: {', '.join(d.name for d in list_devices())}, or describe your "
            f"board in a YAML file and pass it with --devices FILE (or set {DEVICES_ENV}; README: \"Your own board\")."
        )
    return device
