"""A straightforward PyTorch (CPU) BVLC GoogLeNet, for benchmarking only.

Dev-only: PyTorch is not an atlasjax dependency (``pip install torch==2.13.0``
to run ``bench/forward_bench.py``). The network is written directly from
``deploy.prototxt`` with stock ``torch.nn.functional`` ops in PyTorch's default
NCHW layout -- no fusion or other tricks -- and takes the same weights as the
JAX model (the numpy arrays of :func:`atlasjax.models.weights.load_raw`), so the
two can be checked to produce the same logits before they are timed.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

# (name, source, 1x1, 3x3_reduce, 3x3, 5x5_reduce, 5x5, pool_proj), then the
# max pool that follows (if any), exactly as in deploy.prototxt.
BLOCKS = (
    ("mixed3a", "inception_3a", False), ("mixed3b", "inception_3b", True),
    ("mixed4a", "inception_4a", False), ("mixed4b", "inception_4b", False),
    ("mixed4c", "inception_4c", False), ("mixed4d", "inception_4d", False),
    ("mixed4e", "inception_4e", True),
    ("mixed5a", "inception_5a", False), ("mixed5b", "inception_5b", False),
)
MEAN_BGR = (104.0, 117.0, 123.0)


def _conv_params(entry, device):
  """HWIO kernel + bias (numpy) -> OIHW torch tensors."""
  kernel = torch.from_numpy(np.ascontiguousarray(
      np.asarray(entry["kernel"], np.float32).transpose(3, 2, 0, 1)))
  bias = torch.from_numpy(np.asarray(entry["bias"], np.float32).copy())
  return kernel.to(device), bias.to(device)


class GoogLeNet(torch.nn.Module):
  """``forward(images_nhwc_rgb01, stop=None)``; ``stop`` is "mixed4c" or None."""

  def __init__(self, raw_params: dict, device="cpu",
               memory_format=torch.contiguous_format):
    super().__init__()
    self.memory_format = memory_format
    self.convs = {}
    for source, entry in raw_params.items():
      if source == "loss3/classifier":
        self.fc_w = torch.from_numpy(
            np.ascontiguousarray(np.asarray(entry["kernel"], np.float32).T)).to(device)
        self.fc_b = torch.from_numpy(np.asarray(entry["bias"], np.float32).copy()).to(device)
      elif "kernel" in entry:
        self.convs[source] = _conv_params(entry, device)
      else:
        for branch, e in entry.items():
          self.convs[f"{source}/{branch}"] = _conv_params(e, device)
    if memory_format is torch.channels_last:
      self.convs = {k: (w.contiguous(memory_format=torch.channels_last), b)
                    for k, (w, b) in self.convs.items()}
    self.mean = torch.tensor(MEAN_BGR, device=device).view(1, 3, 1, 1)

  def _conv(self, x, name, stride=1, padding=0):
    w, b = self.convs[name]
    return F.relu(F.conv2d(x, w, b, stride=stride, padding=padding))

  def _inception(self, x, src):
    b1 = self._conv(x, f"{src}/1x1")
    b3 = self._conv(self._conv(x, f"{src}/3x3_reduce"), f"{src}/3x3", padding=1)
    b5 = self._conv(self._conv(x, f"{src}/5x5_reduce"), f"{src}/5x5", padding=2)
    bp = self._conv(F.max_pool2d(x, 3, 1, padding=1, ceil_mode=True),
                    f"{src}/pool_proj")
    return torch.cat([b1, b3, b5, bp], dim=1)

  def forward(self, images: torch.Tensor, stop: str | None = None):
    # NHWC RGB [0, 1] -> NCHW BGR 0..255 minus mean (Caffe input convention).
    x = images.permute(0, 3, 1, 2).flip(1) * 255.0 - self.mean
    x = x.contiguous(memory_format=self.memory_format)
    x = self._conv(x, "conv1/7x7_s2", stride=2, padding=3)
    x = F.max_pool2d(x, 3, 2, ceil_mode=True)
    x = F.local_response_norm(x, 5, alpha=1e-4, beta=0.75, k=1.0)
    x = self._conv(x, "conv2/3x3_reduce")
    x = self._conv(x, "conv2/3x3", padding=1)
    x = F.local_response_norm(x, 5, alpha=1e-4, beta=0.75, k=1.0)
    x = F.max_pool2d(x, 3, 2, ceil_mode=True)
    for name, src, pool_after in BLOCKS:
      x = self._inception(x, src)
      if name == stop:
        return x
      if pool_after:
        x = F.max_pool2d(x, 3, 2, ceil_mode=True)
    x = x.mean(dim=(2, 3))  # = Caffe's 7x7 average pool at 224 px
    return F.linear(x, self.fc_w, self.fc_b)
