"""Writes the PyTorch parity fixtures of `tests/it/seg_reference.rs` into
tests/fixtures/torch_seg_unet/ (committed; the tests do not need torch):

- `seg_unet.pth`      state dict of the reference's chamber-segmentation network (docs/design.md
                      §5: Isensee et al.'s modified 3-D U-Net, `base_n_filter` 2, 1 input
                      channel, 8 classes) with seeded random weights, saved by torch.save;
- `logits.safetensors` `input` [1, 1, 32, 16, 16] (random normal, network units) and `logits`
                      [1, 8, 32, 16, 16], the network's `seg_layer` output on it (eval mode);
- `cta.nii.gz`        a small CTA in HU (int16, 40x36x20, anisotropic spacing);
- `cta_labels.nii.gz` what `cta2mbf segment` must write for it with the defaults of a `.pth`
                      (raw HU clamped to [-1024, 3071], trilinear align-corners resize to 256^3,
                      logits resized back the same way, argmax), computed here in PyTorch.

The network is written here from the layer list of the reference's definition; its module
names are the reference's, so its state dict has the reference's tensor names.

usage: python scripts/seg_reference_fixtures.py [OUT_DIR]      (needs: pip install torch nibabel)
       python scripts/seg_reference_fixtures.py --check-export FILE.safetensors
           loads a `cta2mbf export` of seg_unet.pth with load_state_dict(strict=True) and
           compares its logits with the fixture's (exit 1 above a relative L2 of 1e-5).
"""
import json
import os
import struct
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "..", "tests", "fixtures", "torch_seg_unet")
GRID = (256, 256, 256)
HU_CLAMP = (-1024.0, 3071.0)
HEADS = ("conv3d_l4.weight", "ds2_1x1_conv3d.weight", "ds3_1x1_conv3d.weight")


def conv(c_in, c_out, k, stride=1):
    return nn.Conv3d(c_in, c_out, kernel_size=k, stride=stride, padding=k // 2, bias=False)


def norm(c):
    return nn.InstanceNorm3d(c)


class ReferenceSegUNet(nn.Module):
    """The reference's network, module for module (so the state-dict names are its names)."""

    def __init__(self, in_channels, n_classes, base_n_filter):
        super().__init__()
        b = base_n_filter
        self.lrelu = nn.LeakyReLU()
        self.dropout3d = nn.Dropout3d(p=0.6)
        self.upscale = nn.Upsample(scale_factor=2, mode="nearest")
        self.conv3d_c1_1 = conv(in_channels, b, 3)
        self.conv3d_c1_2 = conv(b, b, 3)
        self.lrelu_conv_c1 = nn.Sequential(nn.LeakyReLU(), conv(b, b, 3))
        self.inorm3d_c1 = norm(b)
        for k in range(2, 6):
            c = b << (k - 1)
            setattr(self, f"conv3d_c{k}", conv(c // 2, c, 3, stride=2))
            setattr(self, f"norm_lrelu_conv_c{k}", nn.Sequential(norm(c), nn.LeakyReLU(), conv(c, c, 3)))
            if k < 5:
                setattr(self, f"inorm3d_c{k}", norm(c))
        self.norm_lrelu_upscale_conv_norm_lrelu_l0 = self.up_block(16 * b, 8 * b)
        self.conv3d_l0 = conv(8 * b, 8 * b, 1)
        self.inorm3d_l0 = norm(8 * b)
        for k, c in [(1, 16 * b), (2, 8 * b), (3, 4 * b)]:
            setattr(self, f"conv_norm_lrelu_l{k}", nn.Sequential(conv(c, c, 3), norm(c), nn.LeakyReLU()))
            setattr(self, f"conv3d_l{k}", conv(c, c // 2, 1))
            setattr(self, f"norm_lrelu_upscale_conv_norm_lrelu_l{k}", self.up_block(c // 2, c // 4))
        self.conv_norm_lrelu_l4 = nn.Sequential(conv(2 * b, 2 * b, 3), norm(2 * b), nn.LeakyReLU())
        self.conv3d_l4 = conv(2 * b, n_classes, 1)
        self.ds2_1x1_conv3d = conv(8 * b, n_classes, 1)
        self.ds3_1x1_conv3d = conv(4 * b, n_classes, 1)

    @staticmethod
    def up_block(c_in, c_out):
        return nn.Sequential(norm(c_in), nn.LeakyReLU(), nn.Upsample(scale_factor=2, mode="nearest"), conv(c_in, c_out, 3), norm(c_out), nn.LeakyReLU())

    def forward(self, x):
        """The logits (the reference's `seg_layer`)."""
        out = self.conv3d_c1_1(x)
        residual = out
        out = self.conv3d_c1_2(self.lrelu(out))
        out = self.lrelu_conv_c1(self.dropout3d(out))
        out = out + residual
        context = [self.lrelu(out)]
        out = self.lrelu(self.inorm3d_c1(out))
        for k in range(2, 6):
            out = getattr(self, f"conv3d_c{k}")(out)
            residual = out
            pair = getattr(self, f"norm_lrelu_conv_c{k}")  # applied twice: one set of weights
            out = pair(self.dropout3d(pair(out))) + residual
            if k < 5:
                out = self.lrelu(getattr(self, f"inorm3d_c{k}")(out))
                context.append(out)
        out = self.norm_lrelu_upscale_conv_norm_lrelu_l0(out)
        out = self.lrelu(self.inorm3d_l0(self.conv3d_l0(out)))
        supervision = []
        for k in range(1, 4):
            out = getattr(self, f"conv_norm_lrelu_l{k}")(torch.cat([out, context.pop()], dim=1))
            if k > 1:
                supervision.append(out)
            out = getattr(self, f"norm_lrelu_upscale_conv_norm_lrelu_l{k}")(getattr(self, f"conv3d_l{k}")(out))
        out = self.conv_norm_lrelu_l4(torch.cat([out, context.pop()], dim=1))
        out_pred = self.conv3d_l4(out)
        ds2, ds3 = supervision
        coarse = self.upscale(self.ds2_1x1_conv3d(ds2)) + self.ds3_1x1_conv3d(ds3)
        return out_pred + self.upscale(coarse)


def write_safetensors(path, tensors):
    """A safetensors file of float32 tensors (the format is a JSON header and raw LE bytes)."""
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        data = t.detach().numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8 : 8 + n])
    out = {}
    for name, h in header.items():
        if name == "__metadata__":
            continue
        a, b = h["data_offsets"]
        assert h["dtype"] == "F32", f"{name}: {h['dtype']}"
        out[name] = torch.from_numpy(np.frombuffer(raw[8 + n + a : 8 + n + b], dtype="<f4").copy()).reshape(h["shape"])
    return out, header.get("__metadata__", {})


def relative_l2(a, b):
    return float((a - b).norm() / b.norm())


def check_export(path):
    fixtures = os.path.normpath(DEFAULT_OUT)
    tensors, metadata = read_safetensors(path)
    print("metadata:", metadata)
    net = ReferenceSegUNet(1, 8, 2)
    net.load_state_dict(tensors, strict=True)
    net.eval()
    ref, _ = read_safetensors(os.path.join(fixtures, "logits.safetensors"))
    with torch.no_grad():
        err = relative_l2(net(ref["input"]), ref["logits"])
    print(f"load_state_dict(strict=True) ok; relative L2 against the fixture logits {err:.3e}")
    sys.exit(0 if err <= 1e-5 else 1)


def main(out):
    import nibabel as nib

    os.makedirs(out, exist_ok=True)
    torch.manual_seed(29)
    net = ReferenceSegUNet(1, 8, 2)
    with torch.no_grad():
        for name, p in net.named_parameters():
            # He-scaled weights with a larger spread on the 1x1x1 heads, so that the logits are
            # far from ties and every path (context skips, deep supervision) counts.
            std = 1.0 if name in HEADS else (2.0 / p[0].numel()) ** 0.5
            p.normal_(0.0, std)
    net.eval()
    torch.save(net.state_dict(), os.path.join(out, "seg_unet.pth"))

    x = torch.randn(1, 1, 32, 16, 16)
    with torch.no_grad():
        logits = net(x)
    top2 = logits.topk(2, dim=1).values
    margin = (top2[:, 0] - top2[:, 1]).flatten()
    print(f"logits: std {logits.std():.3f}, smallest top-2 margin {margin.min():.2e}, margins < 1e-3: {(margin < 1e-3).sum().item()}")
    write_safetensors(os.path.join(out, "logits.safetensors"), {"input": x, "logits": logits})

    # End to end: a CTA in HU through the defaults a .pth is run with.
    g = torch.Generator().manual_seed(3)
    coarse = torch.randn(1, 1, 6, 5, 4, generator=g)
    shape = (40, 36, 20)
    hu = F.interpolate(coarse, size=shape, mode="trilinear", align_corners=True) * 600.0 + 150.0
    hu = (hu + 40.0 * torch.randn(hu.shape, generator=g)).round().clamp(-2048, 3000)
    hu[..., :2] = -2048.0  # out-of-field padding, clamped to air by the default mapping
    affine = np.diag([0.7, 0.75, 2.5, 1.0])
    affine[:3, 3] = [-30.0, 12.0, -140.0]
    nib.save(nib.Nifti1Image(hu[0, 0].numpy().astype(np.int16), affine), os.path.join(out, "cta.nii.gz"))
    with torch.no_grad():
        v = hu.clamp(*HU_CLAMP)
        scores = net(F.interpolate(v, size=GRID, mode="trilinear", align_corners=True))
        labels = F.interpolate(scores, size=shape, mode="trilinear", align_corners=True).argmax(dim=1)[0]
    counts = np.bincount(labels.numpy().ravel(), minlength=8)
    print("cta labels per class:", counts.tolist())
    nib.save(nib.Nifti1Image(labels.numpy().astype(np.uint8), affine), os.path.join(out, "cta_labels.nii.gz"))
    print("wrote", sorted(os.listdir(out)))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--check-export":
        check_export(sys.argv[2])
    else:
        main(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_OUT)
