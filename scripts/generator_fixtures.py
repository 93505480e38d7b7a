"""Writes the PyTorch parity fixtures of `tests/it/checkpoint_interop.rs` into
tests/fixtures/torch_generator/ (committed; the tests do not need torch):

- `net_G.pth`        state dict of the reference generator (ngf 4, 6 blocks, batch norm) with
                     non-trivial affine values and running statistics, saved by torch.save;
- `input.nii.gz`     a random 32^3 input (float32, voxel (x, y, z) = tensor [0, 0, x, y, z]);
- `fake_eval.nii.gz` its output in eval mode (running statistics);
- `fake_train.nii.gz` its output in train mode (statistics of the input itself);
- `other_net.pth`    the state dict of another network (a small 2-D CNN), for the error test.

usage: python scripts/generator_fixtures.py [OUT_DIR]     (needs: pip install torch nibabel)
"""
import copy
import os
import sys

import nibabel as nib
import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference_generator import ResnetGenerator, init_weights  # noqa: E402

out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "torch_generator")
os.makedirs(out, exist_ok=True)
torch.manual_seed(7)

g = ResnetGenerator(ngf=4, n_blocks=6, norm="batch")
init_weights(g)
with torch.no_grad():
    for m in g.modules():
        if isinstance(m, nn.BatchNorm3d):
            c = m.num_features
            m.weight.copy_(1.0 + 0.3 * torch.randn(c))
            m.bias.copy_(0.2 * torch.randn(c))
            m.running_mean.copy_(0.05 * torch.randn(c))
            m.running_var.copy_(0.5 + torch.rand(c))
            m.num_batches_tracked.fill_(123)
        elif isinstance(m, (nn.Conv3d, nn.ConvTranspose3d)):
            fan_in = m.weight[0].numel() if isinstance(m, nn.Conv3d) else m.weight[:, 0].numel()
            m.weight.normal_(0.0, (2.0 / fan_in) ** 0.5)
            if m.bias is not None:
                m.bias.normal_(0.0, 0.1)
torch.save(g.state_dict(), os.path.join(out, "net_G.pth"))

x = torch.randn(1, 1, 32, 32, 32)
affine = np.diag([1.5, 1.25, 2.0, 1.0])
affine[:3, 3] = [-20.0, 10.0, -150.0]


def save(t, name):
    nib.save(nib.Nifti1Image(t[0, 0].detach().numpy().astype(np.float32), affine), os.path.join(out, name))


save(x, "input.nii.gz")
with torch.no_grad():
    g.eval()
    save(g(x), "fake_eval.nii.gz")
    trained = copy.deepcopy(g)
    trained.train()
    save(trained(x), "fake_train.nii.gz")

other = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 2, 1))
torch.save(other.state_dict(), os.path.join(out, "other_net.pth"))
print("wrote", sorted(os.listdir(out)))
