"""The reference CTA->MBF generator of docs/design.md §4 in PyTorch, with the reference's state-dict
layout (`model.<i>.*`, residual blocks `model.<i>.conv_block.<j>.*`).

Imported by the other scripts; `python scripts/reference_generator.py` prints the state-dict
names and shapes for ngf 4 and 6 blocks.
"""
import torch
import torch.nn as nn


def _conv_norm_relu(c_in, c_out, k, stride, pad, norm):
    bias = norm is not nn.BatchNorm3d  # pix2pix: no conv bias under batch norm
    layers = [nn.Conv3d(c_in, c_out, k, stride, pad, bias=bias)]
    layers += [norm(c_out)] if norm is not None else [nn.Identity()]
    return layers + [nn.ReLU(True)]


class ResnetBlock(nn.Module):
    """Bottleneck residual block: x + f(x), f = 1^3 (d->d/2), 3^3, 1^3 (d/2->d), each + norm + ReLU."""

    def __init__(self, d, norm):
        super().__init__()
        h = d // 2
        self.conv_block = nn.Sequential(
            *_conv_norm_relu(d, h, 1, 1, 0, norm), *_conv_norm_relu(h, h, 3, 1, 1, norm), *_conv_norm_relu(h, d, 1, 1, 0, norm)
        )

    def forward(self, x):
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """conv 7^3, 3 stride-2 convs, n_blocks bottleneck blocks, 3 transposed convs (or trilinear
    x2 + conv 3^3), conv 7^3 with bias; input and output (batch, 1, x, y, z). `n_down` other
    than 3 (not docs/design.md §4's layout) is for experiments only."""

    def __init__(self, ngf=32, n_blocks=6, norm="batch", upsample="transposed", n_down=3):
        super().__init__()
        nl = {"batch": nn.BatchNorm3d, "instance": nn.InstanceNorm3d, "none": None}[norm]
        layers = _conv_norm_relu(1, ngf, 7, 1, 3, nl)
        for i in range(n_down):
            layers += _conv_norm_relu(ngf << i, ngf << (i + 1), 3, 2, 1, nl)
        d = ngf << n_down
        layers += [ResnetBlock(d, nl) for _ in range(n_blocks)]
        for i in range(n_down):
            c = d >> i
            if upsample == "transposed":
                layers += [nn.ConvTranspose3d(c, c // 2, 3, 2, 1, 1, bias=nl is not nn.BatchNorm3d)]
            else:
                layers += [nn.Upsample(scale_factor=2, mode="trilinear"), nn.Conv3d(c, c // 2, 3, 1, 1, bias=nl is not nn.BatchNorm3d)]
            layers += [nl(c // 2) if nl is not None else nn.Identity(), nn.ReLU(True)]
        layers += [nn.Conv3d(ngf, 1, 7, 1, 3, bias=True)]
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x)


def init_weights(net, gain=0.02):
    """docs/design.md §4: conv weights N(0, gain), norm weights N(1, gain), biases 0."""
    for m in net.modules():
        if isinstance(m, (nn.Conv3d, nn.ConvTranspose3d)):
            nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm3d):
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)


if __name__ == "__main__":
    g = ResnetGenerator(4, 6)
    for k, v in g.state_dict().items():
        print(k, tuple(v.shape), v.dtype)
