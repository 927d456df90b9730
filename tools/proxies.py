"""Zero-cost proxies (a registry): a score for an untrained network that should rank
architectures like their trained accuracy, from one or two passes over a small batch.

* ``synflow`` (Tanaka et al. 2020): sum of |theta * dR/dtheta| with R the output sum of the
  network with |weights| on an all-ones input; computed in float64, eval-mode BatchNorm.
* ``naswot`` (Mellor et al. 2021): log-determinant of the Hamming-similarity kernel of the
  ReLU activation patterns of a batch of real images.
* ``zen`` (Lin et al. 2021): log of the feature-map change under a small Gaussian input
  perturbation before the global pool, plus the BatchNorm scale terms.
* ``grad_norm`` (Abdelfattah et al. 2021): norm of the cross-entropy gradient on a batch.
* ``params`` and ``macs``: the baselines a proxy has to beat.

Every proxy takes (config, module, batch) and returns a float; higher should mean better.
The data-dependent ones use the first ``PROXY_BATCH`` images: on a 2-core CPU the search
scores 1000 candidates in about a minute only with small batches.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from knowledge.registry import Registry

PROXIES: Registry = Registry("zero-cost proxy")
PROXY_BATCH = 16


def register_proxy(name: str):
    return PROXIES.register(name)


def create_proxy(name: str) -> Callable:
    return PROXIES.get(name)


def list_proxies() -> list[str]:
    return PROXIES.names()


@dataclass
class Batch:
    """A few real training images (float NCHW tensor) and their (auto-)labels."""

    x: object  # torch.Tensor
    y: object  # torch.Tensor (int64)


@register_proxy("params")
def params_proxy(config, model, batch: Batch) -> float:
    return float(sum(p.numel() for p in model.parameters()))


@register_proxy("macs")
def macs_proxy(config, model, batch: Batch) -> float:
    from tools.spaces import model_graph

    graph = model_graph(config)
    return float(sum(graph.macs(op) for op in graph.ops))


@register_proxy("synflow")
def synflow(config, model, batch: Batch) -> float:
    import torch

    model = model.double().eval()
    signs = {}
    with torch.no_grad():
        for name, p in model.state_dict().items():
            if p.is_floating_point():
                signs[name] = torch.sign(p)
                p.abs_()
    model.zero_grad()
    x = torch.ones((1, *batch.x.shape[1:]), dtype=torch.float64)
    model(x).sum().backward()
    score = sum(float((p.detach() * p.grad).abs().sum()) for p in model.parameters() if p.grad is not None)
    with torch.no_grad():
        for name, p in model.state_dict().items():
            if name in signs:
                p.mul_(signs[name])
    model.float()
    return math.log(score + 1e-30)


@register_proxy("naswot")
def naswot(config, model, batch: Batch) -> float:
    import torch

    codes: list = []

    def hook(_module, _inputs, output):
        codes.append((output.detach().flatten(1) > 0).float())

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, torch.nn.ReLU)]
    model.train()
    with torch.no_grad():
        model(batch.x[:PROXY_BATCH])
    for h in handles:
        h.remove()
    c = torch.cat(codes, dim=1)
    k = (c @ c.T + (1 - c) @ (1 - c).T).double()
    sign, logdet = torch.linalg.slogdet(k)
    return float(logdet) if float(sign) > 0 else -1e9


@register_proxy("zen")
def zen(config, model, batch: Batch) -> float:
    import torch

    pooled: list = []
    pool = next(m for m in model.modules() if isinstance(m, torch.nn.AdaptiveAvgPool2d))
    handle = pool.register_forward_hook(lambda _m, inputs, _o: pooled.append(inputs[0]))
    gen = torch.Generator().manual_seed(0)
    shape = (PROXY_BATCH, *batch.x.shape[1:])
    x = torch.randn(shape, generator=gen)
    eps = torch.randn(shape, generator=gen)
    model.train()
    with torch.no_grad():
        model(x)
        model(x + 0.01 * eps)
    handle.remove()
    delta = float((pooled[0] - pooled[1]).abs().mean())
    bn_term = sum(math.log(float(m.running_var.mean().sqrt()) + 1e-8) for m in model.modules()
                  if isinstance(m, torch.nn.BatchNorm2d))
    model.eval()
    return math.log(delta + 1e-30) + bn_term


@register_proxy("grad_norm")
def grad_norm(config, model, batch: Batch) -> float:
    import torch.nn.functional as F

    model.train()
    model.zero_grad()
    F.cross_entropy(model(batch.x[:PROXY_BATCH]), batch.y[:PROXY_BATCH]).backward()
    total = sum(float(p.grad.norm() ** 2) for p in model.parameters() if p.grad is not None)
    model.zero_grad()
    return math.log(math.sqrt(total) + 1e-30)


def score_all(config, batch: Batch, names: list[str], seed: int = 0) -> dict[str, float]:
    """Every named proxy on one freshly initialised network (the same weights for each)."""
    import torch

    from tools.spaces import build_model

    torch.manual_seed(seed)
    model = build_model(config)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    out = {}
    for name in names:
        model.load_state_dict(state)
        out[name] = float(create_proxy(name)(config, model, batch))
    return out


def rank_combination(scores: dict[str, np.ndarray], names: list[str]) -> np.ndarray:
    """The mean rank of several proxies (each ranked over the same candidates)."""
    from scipy.stats import rankdata

    return np.mean([rankdata(scores[n]) for n in names], axis=0)
