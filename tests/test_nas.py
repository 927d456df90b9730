"""Search spaces, cost model, proxies, aging evolution and QAT on tiny seeded inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from knowledge.devices import get_device
from tools.cost import estimate_cost
from tools.proxies import Batch, list_proxies, score_all
from tools.search import SearchConfig, pareto_front, pareto_png, search
from tools.sizing import DoesNotFit
from tools.spaces import build_model, create_space, list_spaces, model_graph

M4 = get_device("STM32F446RE")


@pytest.fixture(scope="module")
def batch():
    import torch

    gen = torch.Generator().manual_seed(0)
    return Batch(x=torch.randn(16, 1, 16, 16, generator=gen), y=torch.randint(0, 3, (16,), generator=gen))


@pytest.mark.parametrize("name", list_spaces())
def test_space_contract(name):
    """Every space samples and mutates seeded, decodes to a config whose module runs and whose graph matches it."""
    import torch

    space = create_space(name, in_channels=1, num_classes=3, resolutions=[16])
    rng = np.random.default_rng(0)
    genome = space.sample(rng)
    assert space.sample(np.random.default_rng(0)) == genome  # seeded
    child = space.mutate(genome, rng)
    for g in (genome, child):
        config = space.decode(g)
        out = build_model(config).eval()(torch.zeros(2, 1, 16, 16))
        assert out.shape == (2, 3)
        graph = model_graph(config)
        assert graph.output_shape == (1, 3) and graph.input_shape == (1, 16, 16, 1)


@pytest.mark.slow
@pytest.mark.parametrize("name", list_spaces())
def test_cost_is_the_compiled_library(name, tmp_path):
    """The search's SRAM/MACs/weight bytes are those of the compiled C library, to the byte."""
    from compilers.build import CompileConfig, compile_onnx
    from compilers.onnx_export import export_onnx

    space = create_space(name, in_channels=1, num_classes=3, resolutions=[16])
    rng = np.random.default_rng(1)
    for i in range(2):
        config = space.decode(space.mutate(space.sample(rng), rng))
        model = build_model(config).eval()
        path = export_onnx(model, (1, 16, 16), tmp_path / f"{i}.onnx")
        calib = np.random.default_rng(2).standard_normal((8, 1, 16, 16)).astype(np.float32)
        compiled = compile_onnx(path, calib, tmp_path / str(i), config=CompileConfig(backends=[]))
        cost = estimate_cost(config, M4)
        assert cost.sram_bytes == compiled.plan.arena_bytes
        assert cost.macs == compiled.summary["macs"]
        assert cost.weight_bytes == compiled.summary["weight_bytes"]
        assert cost.params == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("proxy", list_proxies())
def test_proxy_contract(proxy, batch):
    """Each proxy scores a fresh network with a finite number, the same for the same seed."""
    space = create_space("mbnet", in_channels=1, num_classes=3, resolutions=[16])
    config = space.decode(space.sample(np.random.default_rng(3)))
    a = score_all(config, batch, [proxy], seed=0)[proxy]
    b = score_all(config, batch, [proxy], seed=0)[proxy]
    assert math.isfinite(a) and a == pytest.approx(b)


def test_search_respects_budgets_and_repeats(batch):
    space = create_space("mbnet", in_channels=1, num_classes=3, resolutions=[16])
    config = SearchConfig(candidates=12, population=6, sample_size=3, max_macs=400_000)
    sram = 24 * 1024
    first = search(space, M4, 64 * 1024, sram, 10.0, batch, config, seed=0, progress=False)
    again = search(space, M4, 64 * 1024, sram, 10.0, batch, config, seed=0, progress=False)
    assert len(first.candidates) == 12
    assert all(c.cost.sram_bytes <= sram and c.cost.weight_bytes <= 64 * 1024 and c.cost.latency_ms <= 10.0
               and c.cost.macs <= 400_000 for c in first.candidates)
    assert first.best.config.name == again.best.config.name  # seeded, reproducible
    assert [c.config.name for c in first.candidates] == [c.config.name for c in again.candidates]


def test_pareto_front_and_plot(batch):
    """The front keeps each point better than every cheaper one; the plot draws the fixed student too."""
    import base64
    from dataclasses import replace

    xs, ys = np.array([3.0, 1.0, 2.0, 2.0, 4.0, 5.0]), np.array([0.5, 0.2, 0.1, 0.6, 0.4, 0.9])
    fx, fy = pareto_front(xs, ys)
    assert fx.tolist() == [1.0, 2.0, 5.0] and fy.tolist() == [0.2, 0.6, 0.9]
    space = create_space("mbnet", in_channels=1, num_classes=3, resolutions=[16])
    result = search(space, M4, 64 * 1024, 24 * 1024, None, batch,
                    SearchConfig(candidates=10, population=4, sample_size=2), progress=False)
    result.best.val_accuracy = 0.8
    fixed = replace(result.candidates[-1], val_accuracy=0.7)
    png = base64.b64decode(pareto_png(result, M4, fixed=fixed))
    assert png.startswith(b"\x89PNG") and len(png) > 10_000


def test_the_search_space_fits_where_the_fixed_student_does():
    """An 8 KB STM32F446 build (the README's tight budget): the sizing ladder fits a DS-CNN there
    (w6), so the mbnet space's smallest network must fit too, the library's stack included; with
    an 8-channel stem at 28 px it needed 8.1 KB and the search had nothing to offer."""
    from tools.sizing import size_student

    _, fixed_cost = size_student(M4, 28, 1, 5, sram_bytes=8 * 1024)
    space = create_space("mbnet", in_channels=1, num_classes=5, resolutions=[28])
    smallest = space.decode({"size": 28, "stem": min(space.STEMS),
                             "stages": [[1, min(w), 1, 3] for w in space.WIDTHS]})
    cost = estimate_cost(smallest, M4)
    assert cost.ram_bytes <= fixed_cost.ram_bytes <= 8 * 1024, (cost.ram_text(), fixed_cost.ram_text())


def test_impossible_budget_names_the_smallest(batch):
    space = create_space("mbnet", in_channels=1, num_classes=3, resolutions=[16])
    with pytest.raises(DoesNotFit) as info:
        search(space, M4, 64 * 1024, 512, None, batch, SearchConfig(candidates=10, population=4, sample_size=2),
               progress=False)
    message = str(info.value)
    assert "smallest found needs" in message and "SRAM" in message and "flash" in message and "ms" in message
    assert info.value.shortfalls()  # the planner re-plans on these


@pytest.mark.slow
def test_qat_keeps_the_network_and_exports(tmp_path):
    """QAT folds BatchNorm, trains with fake quantization, and leaves an exportable network whose
    weights are exactly int8-representable per channel."""
    import torch

    from compilers.onnx_export import export_onnx
    from tools.qat import QATConfig, qat_finetune
    from tools.student import ds_cnn
    from tools.train import TrainConfig

    config = ds_cnn(4, 16, 1, 3)
    model = build_model(config).eval()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (64, 16, 16, 1), dtype=np.uint8)
    labels = rng.integers(0, 3, 64)
    tuned = qat_finetune(model, images, labels, None, QATConfig(epochs=1), TrainConfig(augment=None),
                         progress=False)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in tuned.modules())
    for m in tuned.modules():
        if isinstance(m, torch.nn.Conv2d):
            w = m.weight.detach()
            scale = w.abs().amax(dim=(1, 2, 3), keepdim=True) / 127
            q = w / scale
            assert torch.allclose(q, q.round(), atol=1e-3)  # on the int8 grid
    export_onnx(tuned, (1, 16, 16), tmp_path / "qat.onnx")
    assert tuned(torch.zeros(1, 1, 16, 16)).shape == (1, 3)
