"""Size the fixed DS-CNN student to the target: the widest one that fits every budget.

The hardware-aware search (NAS) replaces this ladder; the contract stays: a typed
StudentConfig that fits, or a NanofactoryError that names the smallest cost found.
"""

from __future__ import annotations

from knowledge.devices import Device
from knowledge.errors import NanofactoryError


class DoesNotFit(NanofactoryError):
    """No candidate meets the budget; carries the numbers a planner re-plans on."""

    def __init__(self, message: str, smallest: Cost, flash: int, sram: int, latency_ms: float | None):
        super().__init__(message)
        self.smallest, self.flash, self.sram, self.latency_ms = smallest, flash, sram, latency_ms

    def shortfalls(self) -> list[str]:
        """E.g. ["needs 16.6 KB SRAM (arena 16.1 KB + stack 0.5 KB), the budget is 8.0 KB"]."""
        s, out = self.smallest, []
        if s.ram_bytes > self.sram:
            out.append(f"needs {s.ram_text()}, the budget is {self.sram / 1024:.1f} KB")
        if s.weight_bytes > self.flash:
            out.append(f"needs {s.weight_bytes / 1024:.1f} KB flash, the budget is {self.flash / 1024:.1f} KB")
        if self.latency_ms is not None and s.latency_bound_ms > self.latency_ms:
            out.append(f"needs {s.latency_bound_ms:.1f} ms, the budget is {self.latency_ms:g} ms")
        return out
from tools.cost import Cost, estimate_cost
from tools.student import WIDTHS, StudentConfig, ds_cnn

# Training time on a 2-core CPU grows with MACs; about 1 M MACs per 28x28 sample trains an
# epoch of 54k Fashion-MNIST images in ~23 s. Wider students are allowed when asked for.
DEFAULT_MAX_MACS = 1_500_000


def budget_limits(device: Device, flash_bytes: int | None, sram_bytes: int | None) -> tuple[int, int]:
    """Flash and SRAM the model may use: the user's budget, else (and at most) the device's capacity."""
    return min(flash_bytes or device.flash_bytes, device.flash_bytes), min(sram_bytes or device.sram_bytes, device.sram_bytes)


def fits(cost: Cost, flash: int, sram: int, latency_ms: float | None) -> bool:
    return cost.weight_bytes <= flash and cost.ram_bytes <= sram and (latency_ms is None or cost.latency_bound_ms <= latency_ms)


def size_student(
    device: Device,
    input_size: int,
    in_channels: int,
    num_classes: int,
    flash_bytes: int | None = None,
    sram_bytes: int | None = None,
    latency_ms: float | None = None,
    max_macs: int = DEFAULT_MAX_MACS,
) -> tuple[StudentConfig, Cost]:
    flash, sram = budget_limits(device, flash_bytes, sram_bytes)
    candidates = [(c, estimate_cost(c, device)) for c in
                  (ds_cnn(w, input_size, in_channels, num_classes) for w in WIDTHS)]
    fitting = [(c, cost) for c, cost in candidates if fits(cost, flash, sram, latency_ms)]
    if not fitting:
        small = candidates[0][1]
        limits = f"flash {flash / 1024:.1f} KB, SRAM {sram / 1024:.1f} KB" + (
            f", latency {latency_ms:g} ms" if latency_ms else "")
        raise DoesNotFit(
            f"No student fits the budget ({limits}) on {device.name}: the smallest needs "
            f"{small.weight_bytes / 1024:.1f} KB flash, {small.ram_text()} and "
            f"{small.latency_text()}; raise the budget, lower the input size, or pick a larger device.",
            small, flash, sram, latency_ms,
        )
    affordable = [(c, cost) for c, cost in fitting if cost.macs <= max_macs] or fitting[:1]
    return affordable[-1]
