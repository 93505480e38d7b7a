"""PyTorch timing of the reference CTA->MBF generator (the ResNet generator of docs/design.md
§4: 3 stride-2 3^3 convolutions down, bottleneck residual blocks, 3 transposed convolutions up,
batch norm), the anchor `cta2mbf bench` is compared with.

    python3 scripts/torch_generator.py X Y Z [ngf] [reps] [train|eval|-] [cpu|cuda]

Times inference (no grad) and one training step (L1 to a random target, Adam), in the given
norm mode for both (default `-`: eval for inference, train for the step), on the CPU (default;
set the threads with OMP_NUM_THREADS / torch's default) or on CUDA (synchronised, and the peak
GPU memory PyTorch allocated is printed).
"""

import sys
import time

import torch
import torch.nn as nn


def conv_norm_relu(cin, cout, k, stride=1, pad=0):
    return [nn.Conv3d(cin, cout, k, stride=stride, padding=pad, bias=False), nn.BatchNorm3d(cout), nn.ReLU(True)]


class Bottleneck(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.f = nn.Sequential(*conv_norm_relu(d, d // 2, 1), *conv_norm_relu(d // 2, d // 2, 3, pad=1), *conv_norm_relu(d // 2, d, 1))

    def forward(self, x):
        return x + self.f(x)


def generator(ngf=32, blocks=6):
    layers = conv_norm_relu(1, ngf, 7, pad=3)
    for i in range(3):
        layers += conv_norm_relu(ngf << i, ngf << (i + 1), 3, stride=2, pad=1)
    d = ngf << 3
    layers += [Bottleneck(d) for _ in range(blocks)]
    for i in range(3):
        c = d >> i
        layers += [nn.ConvTranspose3d(c, c // 2, 3, stride=2, padding=1, output_padding=1, bias=False), nn.BatchNorm3d(c // 2), nn.ReLU(True)]
    layers.append(nn.Conv3d(ngf, 1, 7, padding=3))
    return nn.Sequential(*layers)


def timed(f, reps, cuda):
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    f()
    sync()
    t = time.perf_counter()
    for _ in range(reps):
        f()
    sync()
    return (time.perf_counter() - t) / reps


def time_network(g, x, y, reps, mode, cuda):
    """Seconds of one inference (no grad) and of one training step (L1 to y, Adam lr 1e-4,
    beta1 0.5) of g on x, in norm mode `mode` (None: eval for inference, train for the step)."""
    opt = torch.optim.Adam(g.parameters(), lr=1e-4, betas=(0.5, 0.999))
    g.train(mode == "train")

    def infer():
        with torch.no_grad():
            g(x)

    fwd = timed(infer, reps, cuda)
    g.train(mode != "eval")

    def step():
        opt.zero_grad()
        loss = (g(x) - y).abs().mean()
        loss.backward()
        opt.step()

    if cuda:
        torch.cuda.reset_peak_memory_stats()
    return fwd, timed(step, reps, cuda)


def main():
    x_, y_, z_ = map(int, sys.argv[1:4])
    ngf = int(sys.argv[4]) if len(sys.argv) > 4 else 32
    reps = int(sys.argv[5]) if len(sys.argv) > 5 else 3
    mode = sys.argv[6] if len(sys.argv) > 6 and sys.argv[6] != "-" else None
    dev = torch.device(sys.argv[7] if len(sys.argv) > 7 else "cpu")
    cuda = dev.type == "cuda"
    torch.manual_seed(0)
    g = generator(ngf).to(dev)
    x = torch.randn(1, 1, x_, y_, z_, device=dev)
    y = torch.randn(1, 1, x_, y_, z_, device=dev)
    fwd, tr = time_network(g, x, y, reps, mode, cuda)
    where = torch.cuda.get_device_name() if cuda else f"cpu threads={torch.get_num_threads()}"
    peak = f"  peak allocated {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB" if cuda else ""
    print(f"torch {torch.__version__} {where} size={x_}x{y_}x{z_} ngf={ngf} mode={mode or 'eval/train'}: "
          f"infer {fwd:.3f} s  train_step {tr:.3f} s{peak}")


if __name__ == "__main__":
    main()
