"""The MLPerf Tiny reference architectures in torch, with random weights, for compiler benchmarks.

Weights are random (seeded); BatchNorm gets randomized affine parameters and running statistics
so that folding BatchNorm into the convolutions at export is exercised, not a no-op.
Shapes follow the MLPerf Tiny reference models (mlcommons/tiny, v1.x):

* ``resnet8``    CIFAR-10 3x32x32, 12.5 M MACs
* ``ds_cnn``     KWS MFCC 1x49x10, 2.7 M MACs. The reference pads the 10x4 stride-2 stem
                 TF-"same" (rows 4 top / 5 bottom, columns 1 / 1); torch pads symmetrically
                 (5 rows, 1 column): the same 25x5 output and MACs, windows one row higher.
* ``mobilenet_v1_025``  VWW 3x96x96, width 0.25, 7.5 M MACs
"""

from __future__ import annotations

# name -> (builder, input (C, H, W)); filled by @register
MODELS: dict[str, tuple] = {}


def register(name: str, input_shape: tuple[int, int, int]):
    def wrap(fn):
        MODELS[name] = (fn, input_shape)
        return fn

    return wrap


def create_model(name: str, seed: int = 0):
    """The eval-mode torch module ``name`` with seeded random weights and BatchNorm statistics."""
    import torch

    if name not in MODELS:
        raise ValueError(f"Unknown MLPerf Tiny model {name!r}; choose one of: {', '.join(MODELS)}.")
    torch.manual_seed(seed)
    model = MODELS[name][0]()
    randomize_batchnorm(model, seed)
    return model.eval()


def randomize_batchnorm(model, seed: int) -> None:
    import torch
    from torch import nn

    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(0.5 + torch.rand(n, generator=gen))  # gamma in [0.5, 1.5)
                m.bias.copy_(0.1 * torch.randn(n, generator=gen))
                m.running_mean.copy_(0.1 * torch.randn(n, generator=gen))
                m.running_var.copy_(0.5 + 1.5 * torch.rand(n, generator=gen))  # var in [0.5, 2)


def conv_bn(cin: int, cout: int, k, stride: int = 1, padding=None, groups: int = 1, act=None) -> list:
    from torch import nn

    padding = (k // 2 if isinstance(k, int) else (k[0] // 2, k[1] // 2)) if padding is None else padding
    layers = [nn.Conv2d(cin, cout, k, stride, padding, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    return layers + ([act()] if act is not None else [])


@register("resnet8", (3, 32, 32))
def resnet8():
    from torch import nn

    class Residual(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int):
            super().__init__()
            self.body = nn.Sequential(*conv_bn(cin, cout, 3, stride, act=nn.ReLU), *conv_bn(cout, cout, 3))
            # the reference's shortcut is a plain 1x1 convolution when the shape changes
            self.shortcut = nn.Conv2d(cin, cout, 1, stride) if (stride, cin) != (1, cout) else nn.Identity()
            self.relu = nn.ReLU()

        def forward(self, x):
            return self.relu(self.body(x) + self.shortcut(x))

    return nn.Sequential(
        *conv_bn(3, 16, 3, act=nn.ReLU),
        Residual(16, 16, 1), Residual(16, 32, 2), Residual(32, 64, 2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10),
    )


@register("ds_cnn", (1, 49, 10))
def ds_cnn():
    from torch import nn

    layers = conv_bn(1, 64, (10, 4), 2, padding=(5, 1), act=nn.ReLU)  # 49x10 -> 25x5
    for _ in range(4):
        layers += conv_bn(64, 64, 3, groups=64, act=nn.ReLU) + conv_bn(64, 64, 1, act=nn.ReLU)
    return nn.Sequential(*layers, nn.AvgPool2d((25, 5)), nn.Flatten(), nn.Linear(64, 12))


@register("mobilenet_v1_025", (3, 96, 96))
def mobilenet_v1_025():
    from torch import nn

    # (out channels, stride) of the 13 depthwise-separable blocks of MobileNetV1, at width 0.25
    blocks = [(16, 1), (32, 2), (32, 1), (64, 2), (64, 1), (128, 2)] + [(128, 1)] * 5 + [(256, 2), (256, 1)]
    layers, cin = conv_bn(3, 8, 3, 2, act=nn.ReLU6), 8  # 96x96 -> 48x48
    for cout, stride in blocks:
        layers += conv_bn(cin, cin, 3, stride, groups=cin, act=nn.ReLU6) + conv_bn(cin, cout, 1, act=nn.ReLU6)
        cin = cout
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, 2))
