"""PyTorch timing of the demo's U-Net generator (docs/design.md §4: per level two 3^3
convolution + batch norm + ReLU, stride 2 down from the second level on, the first convolution
un-normalized; up by a 2^3 stride-2 transposed convolution + batch norm + ReLU, concatenated with
the skip, two 3^3 stages; a 1^3 head), the anchor of `cta2mbf bench --generator unet`.
    python3 scripts/torch_unet.py X Y Z [ngf] [reps] [train|eval|-] [levels]
Times inference (no grad) and one training step (L1 to a random target, Adam) as
scripts/torch_generator.py does, on the CPU (threads from OMP_NUM_THREADS / torch's default).
"""
import sys
import torch
import torch.nn as nn
from torch_generator import time_network


def stage(cin, cout, stride, norm=True):
    layers = [nn.Conv3d(cin, cout, 3, stride=stride, padding=1, bias=not norm)]
    if norm:
        layers.append(nn.BatchNorm3d(cout))
    return nn.Sequential(*layers, nn.ReLU(True))


class Unet(nn.Module):
    def __init__(self, ngf=8, levels=4):
        super().__init__()
        ch = [ngf << i for i in range(levels)]
        self.encoder = nn.ModuleList(
            nn.Sequential(stage(1 if i == 0 else ch[i - 1], c, 1 if i == 0 else 2, norm=i > 0), stage(c, c, 1)) for i, c in enumerate(ch))
        self.up = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for i in reversed(range(levels - 1)):
            self.up.append(nn.Sequential(nn.ConvTranspose3d(ch[i + 1], ch[i], 2, stride=2, bias=False), nn.BatchNorm3d(ch[i]), nn.ReLU(True)))
            self.decoder.append(nn.Sequential(stage(2 * ch[i], ch[i], 1), stage(ch[i], ch[i], 1)))
        self.head = nn.Conv3d(ch[0], 1, 1)

    def forward(self, x):
        skips = []
        for level in self.encoder:
            x = level(x)
            skips.append(x)
        skips.pop()
        for up, dec in zip(self.up, self.decoder):
            x = dec(torch.cat([up(x), skips.pop()], 1))
        return self.head(x)


def main():
    x_, y_, z_ = map(int, sys.argv[1:4])
    ngf = int(sys.argv[4]) if len(sys.argv) > 4 else 8
    reps = int(sys.argv[5]) if len(sys.argv) > 5 else 3
    mode = sys.argv[6] if len(sys.argv) > 6 and sys.argv[6] != "-" else None
    levels = int(sys.argv[7]) if len(sys.argv) > 7 else 4
    torch.manual_seed(0)
    g = Unet(ngf, levels)
    x = torch.randn(1, 1, x_, y_, z_)
    y = torch.randn(1, 1, x_, y_, z_)
    fwd, tr = time_network(g, x, y, reps, mode, False)
    print(f"torch {torch.__version__} cpu threads={torch.get_num_threads()} unet levels={levels} size={x_}x{y_}x{z_} ngf={ngf} mode={mode or 'eval/train'}: "
          f"infer {fwd:.3f} s  train_step {tr:.3f} s")


if __name__ == "__main__":
    main()
