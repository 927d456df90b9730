"""Student cost model (tools.cost) checked against the torch module, and student sizing (tools.sizing)."""

from __future__ import annotations

import pytest

from knowledge.devices import get_device
from knowledge.errors import NanofactoryError
from tools.cost import estimate_cost
from tools.sizing import size_student
from tools.student import WIDTHS, Block, StudentConfig, build_student, ds_cnn

M4 = get_device("STM32F446RE")


def torch_macs(config: StudentConfig) -> int:
    """MACs counted from the module itself: forward hooks on every conv, pool and linear layer."""
    import torch
    import torch.nn as nn

    model = build_student(config).eval()
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            total += output.numel() * (module.in_channels // module.groups) * k
        elif isinstance(module, nn.AdaptiveAvgPool2d):
            total += inputs[0].numel()
        elif isinstance(module, nn.Linear):
            total += module.in_features * module.out_features

    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.AdaptiveAvgPool2d, nn.Linear)):
            m.register_forward_hook(hook)
    with torch.no_grad():
        model(torch.zeros(1, config.in_channels, config.input_size, config.input_size))
    return total


CONFIGS = [
    ds_cnn(4, 28, 1, 10),
    ds_cnn(8, 28, 1, 5),
    ds_cnn(16, 64, 3, 3),  # stride-2 stem above 48 px
    ds_cnn(6, 64, 3, 2),
    ds_cnn(12, 33, 3, 4),  # odd size: every stride rounds up
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.name)
def test_params_match_torch(config: StudentConfig):
    model = build_student(config)
    assert estimate_cost(config, M4).params == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.name)
def test_macs_match_torch(config: StudentConfig):
    assert estimate_cost(config, M4).macs == torch_macs(config)


def test_hand_computed_tiny_config():
    """8x8x1 input, 2-channel stem, one block to 4 channels at stride 2, 2 classes."""
    config = StudentConfig(input_size=8, in_channels=1, num_classes=2, stem_channels=2,
                           blocks=[Block(out_channels=4, stride=2)])
    cost = estimate_cost(config, M4)
    stem = 8 * 8 * (2 * 1 * 9)  # 8x8 outputs, 2 filters of 3x3x1
    depthwise = 4 * 4 * (2 * 1 * 9)  # stride 2 -> 4x4, 2 filters of 3x3x1
    pointwise = 4 * 4 * (4 * 2)  # 4 filters of 1x1x2
    pool, fc = 4 * 4 * 4, 4 * 2
    assert cost.macs == stem + depthwise + pointwise + pool + fc == 1640
    # 18 + 18 + 8 conv weights, 2 per BatchNorm channel (2 + 2 + 4), 4 * 2 + 2 in the classifier
    assert cost.params == 18 + 18 + 8 + 2 * (2 + 2 + 4) + 4 * 2 + 2 == 70
    # the planned arena: the stem's input (64) and output (128) are alive together; nothing is larger
    assert cost.sram_bytes == 64 + 128
    # int8 weights + 12 bytes (int32 bias, multiplier, shift) per output channel, classifier included
    assert cost.weight_bytes == (18 + 24) + (18 + 24) + (8 + 48) + (8 + 24)


@pytest.mark.parametrize("device_name", ["STM32F446RE", "STM32F746NG", "RP2040", "ESP32-S3"])
def test_latency_is_macs_over_throughput(device_name: str):
    device = get_device(device_name)
    cost = estimate_cost(ds_cnn(8, 28, 1, 5), device)
    expected_ms = cost.macs / (device.macs_per_cycle * device.clock_mhz * 1e6) * 1e3
    assert cost.latency_ms == pytest.approx(expected_ms, rel=1e-9)
    assert cost.latency_ms > 0


def test_costs_grow_with_width_and_input():
    costs = [estimate_cost(ds_cnn(w, 28, 1, 5), M4) for w in WIDTHS]
    for a, b in zip(costs, costs[1:]):
        assert b.params > a.params and b.macs > a.macs and b.sram_bytes > a.sram_bytes
        assert b.weight_bytes > a.weight_bytes
    assert estimate_cost(ds_cnn(8, 40, 1, 5), M4).macs > estimate_cost(ds_cnn(8, 28, 1, 5), M4).macs


# ---- sizing --------------------------------------------------------------------------------


def test_bigger_budget_gives_wider_student():
    widths = []
    for sram_kb in (8, 24, 64, 256):
        config, cost = size_student(M4, 28, 1, 5, sram_bytes=sram_kb * 1024, max_macs=10**12)
        assert cost.ram_bytes <= sram_kb * 1024 and cost.weight_bytes <= M4.flash_bytes
        assert cost == estimate_cost(config, M4)
        widths.append(config.stem_channels)
    assert widths == sorted(widths) and widths[0] < widths[-1], widths


def test_sizing_picks_the_widest_that_fits():
    sram = 20 * 1024
    config, cost = size_student(M4, 28, 1, 5, sram_bytes=sram, max_macs=10**12)
    wider = [w for w in WIDTHS if w > config.stem_channels]
    assert wider, "budget chosen so the ladder does not top out"
    assert estimate_cost(ds_cnn(wider[0], 28, 1, 5), M4).sram_bytes > sram


def test_latency_budget_is_respected():
    config, cost = size_student(M4, 28, 1, 5, latency_ms=10.0, max_macs=10**12)
    assert cost.latency_ms <= cost.latency_bound_ms <= 10.0
    loose, _ = size_student(M4, 28, 1, 5, latency_ms=500.0, max_macs=10**12)
    assert loose.stem_channels > config.stem_channels


def test_a_latency_budget_counts_the_c_librarys_floor():
    """On a core verify emulates, the budget must hold for the library's predicted floor too: the demo's
    w16 student is estimated at 13.7 ms on the STM32F446 but its instructions take at least 23 ms, so a
    20 ms budget gets a narrower one; the estimate alone would have let w16 through."""
    wide = estimate_cost(ds_cnn(16, 28, 1, 5), M4)
    assert wide.latency_ms < 20.0 < wide.floor_ms and wide.latency_bound_ms == wide.floor_ms
    config, cost = size_student(M4, 28, 1, 5, latency_ms=20.0, max_macs=10**12)
    assert config.stem_channels < 16 and cost.floor_ms <= 20.0
    with pytest.raises(NanofactoryError, match=r"ms \(this C library at least [0-9.]+ ms\)"):
        size_student(M4, 28, 1, 5, latency_ms=0.5)
    assert estimate_cost(ds_cnn(16, 28, 1, 5), get_device("ESP32-S3")).floor_ms is None  # a core it does not model


def test_an_sram_budget_counts_the_c_librarys_stack():
    """On a core verify emulates the arena shares SRAM with the library's stack: at 8 KB the w8 DS-CNN's
    7,840 B arena fits alone but not with the 0.5 KB of stack an inference takes, so sizing takes a
    narrower student; on a core the stack is not modeled for, the arena alone is checked."""
    w8 = estimate_cost(ds_cnn(8, 28, 1, 5), M4)
    assert w8.sram_bytes <= 8192 < w8.ram_bytes and w8.ram_bytes == w8.sram_bytes + w8.stack_bytes
    config, cost = size_student(M4, 28, 1, 5, sram_bytes=8192, max_macs=10**12)
    assert config.stem_channels < 8 and cost.ram_bytes <= 8192
    esp = get_device("ESP32-S3")
    assert estimate_cost(ds_cnn(8, 28, 1, 5), esp).stack_bytes is None
    assert size_student(esp, 28, 1, 5, sram_bytes=8192, max_macs=10**12)[0].stem_channels == 8


def test_max_macs_caps_width():
    config, cost = size_student(get_device("STM32H743"), 28, 1, 5, max_macs=1_000_000)
    assert cost.macs <= 1_000_000
    assert size_student(get_device("STM32H743"), 28, 1, 5, max_macs=10**12)[0].stem_channels > config.stem_channels


def test_too_small_budget_names_the_smallest_student():
    smallest = estimate_cost(ds_cnn(WIDTHS[0], 28, 1, 5), M4)
    with pytest.raises(NanofactoryError) as info:
        size_student(M4, 28, 1, 5, sram_bytes=1000)
    message = str(info.value)
    assert f"{smallest.weight_bytes / 1024:.1f} KB flash" in message
    assert smallest.ram_text() in message and f"arena {smallest.sram_bytes / 1024:.1f} KB + stack" in message
    assert "STM32F446RE" in message


def test_too_small_flash_raises():
    with pytest.raises(NanofactoryError, match="flash 0.5 KB"):
        size_student(M4, 28, 1, 5, flash_bytes=512)


def test_latency_floor_is_instructions_at_the_cores_best_issue_rate():
    """What verify measures on an emulated core turns into a floor on the device: one instruction per
    cycle on a Cortex-M4 and M0+, two on an M7 (dual issue); no floor for cores verify does not emulate."""
    assert get_device("STM32F446RE").emulated_core == "cortex-m4"
    assert get_device("STM32F446RE").latency_floor_ms(180_000_000) == pytest.approx(1000.0)
    assert get_device("nRF52840").latency_floor_ms(64_000) == pytest.approx(1.0)
    assert get_device("STM32F746NG").emulated_core == "cortex-m7" and get_device("STM32F746NG").issue_width == 2
    assert get_device("STM32F746NG").latency_floor_ms(432_000_000) == pytest.approx(1000.0)
    assert get_device("RP2040").emulated_core == "cortex-m0plus"
    assert get_device("RP2040").latency_floor_ms(133_000) == pytest.approx(1.0)
    for name in ("ESP32-S3", "Raspberry Pi Zero 2 W"):
        assert get_device(name).emulated_core is None and get_device(name).latency_floor_ms(10**6) is None


def test_budgets_never_exceed_the_device():
    from knowledge.devices import get_device
    from tools.sizing import budget_limits

    device = get_device("nRF52840")
    assert budget_limits(device, None, None) == (device.flash_bytes, device.sram_bytes)
    assert budget_limits(device, 10 * device.flash_bytes, 64 * 1024) == (device.flash_bytes, 64 * 1024)
