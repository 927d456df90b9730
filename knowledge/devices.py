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
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from knowledge.errors import NanofactoryError

KiB = 1024
MiB = 1024 * 1024

_M4_SOURCE = (
    "MLPerf Tiny v1.x, Cortex-M4 @120 MHz (STM32L4R5): 0.27-0.61 MAC/cycle across "
    "ResNet-8, DS-CNN and VWW with CMSIS-NN class kernels; 0.40 taken as typical"
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
    Device("RP2040", "Cortex-M0+ (dual core)", 133, 264 * KiB, 2 * MiB, 0.10,
           "Cortex-M0+ has no SIMD/DSP extension; CMSIS-NN's pure-C kernels reach roughly a "
           "quarter of a Cortex-M4's throughput: 0.10 MAC/cycle, one core",
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


def list_devices() -> list[Device]:
    return list(DEVICES)


def find_device(name: str) -> Device | None:
    """The device whose name or alias matches ``name`` (case, spaces and dashes ignored)."""
    key = normalize_device_name(name)
    if not key:
        return None
    for device in DEVICES:
        if key == normalize_device_name(device.name) or key in {normalize_device_name(a) for a in device.aliases}:
            return device
    # a name that starts the full part number ("stm32l4r5" for STM32L4R5ZI) or extends it
    for device in DEVICES:
        full = normalize_device_name(device.name)
        # a part-number prefix must carry a digit, so "raspberry" alone matches nothing
        if len(key) >= 6 and any(ch.isdigit() for ch in key) and (full.startswith(key) or key.startswith(full)):
            return device
    return None


def get_device(name: str) -> Device:
    device = find_device(name)
    if device is None:
        raise NanofactoryError(
            f"Unknown device {name!r}; choose one of: {', '.join(d.name for d in DEVICES)}."
        )
    return device
