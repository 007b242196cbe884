"""Device-resident CIFAR batches with batched, per-sample random augmentation.

The whole uint8 split lives on the device (150 MB for CIFAR train); each batch is gathered,
augmented and normalized there, so a GPU never waits for PIL workers. Each op mirrors its
torchvision counterpart in :func:`mbt.data.transforms.train_transform`, with independent
random parameters per sample, in the same order, so batches match the DataLoader path in
distribution. Where they are not bit-identical:

* rotations use ``grid_sample(mode="nearest")``, which reproduces torchvision's tensor
  ``rotate`` exactly and PIL's nearest resampling up to rounding ties (~0.02% of pixels on
  real CIFAR). RandomAffine(10) and RandomRotation(20) stay two successive rotations (not one
  composed matrix), so corners cut by the first stay black after the second, as with PIL;
* colour jitter computes each op in float with torchvision's tensor formulas: brightness,
  contrast (blend with the mean grey level), saturation (blend with the grey image) and hue
  (exact RGB->HSV hue rotation, the same maps as torchvision's tensor backend), applied in an
  order drawn per sample as ColorJitter draws it per image. PIL instead works in uint8: we
  emulate its storage (truncate after blends, round after hue, see ``color_jitter``) but not
  its integer grey level and 256-step hue, so single pixels can differ by a level or two.

Nothing here waits for the device: no ``nonzero()``, ``.item()`` or host-to-device copy per
batch or per op (on CUDA, colour jitter's hue goes to every sample and a ``where`` keeps the
right ones, instead of indexing the drawn quarter), and the constant tensors (index ranges,
the rotation's base grid, the HSV sector table) are built on the device once and cached.
On CPU the batches are bit for bit those of the first, per-call version
(tests/test_data.py keeps a frozen copy of it).
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

from . import transforms as tf
from .cifar import epoch_seed

# rgb -> grey weights of torchvision's tensor backend (PIL's "L" uses 0.299, in integers).
_GREY = (0.2989, 0.587, 0.114)


def _uniform(n: int, lo: float, hi: float, gen: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=gen, device=gen.device) * (hi - lo) + lo


@functools.lru_cache(maxsize=16)
def _ranges(n: int, h: int, w: int, device: torch.device):
    """crop_flip's constant indices on ``device``: batch (N,1,1), 0..H-1, 0..W-1, W-1..0."""
    ar_w = torch.arange(w, device=device)
    return (torch.arange(n, device=device)[:, None, None], torch.arange(h, device=device),
            ar_w, w - 1 - ar_w)


def crop_flip(x: torch.Tensor, padding: int, flip_p: float, gen: torch.Generator) -> torch.Tensor:
    """RandomCrop(size, padding) + RandomHorizontalFlip(flip_p) on uint8/float (N, C, H, W).

    One gather from the zero-padded batch: row/column indices are the per-sample crop offset
    plus 0..H-1 (columns reversed for flipped samples).
    """
    n, _, h, w = x.shape
    dev = x.device
    xp = F.pad(x, (padding, padding, padding, padding)) if padding else x
    oy = torch.randint(0, 2 * padding + 1, (n,), generator=gen, device=dev)
    ox = torch.randint(0, 2 * padding + 1, (n,), generator=gen, device=dev)
    flip = torch.rand(n, generator=gen, device=dev) < flip_p
    batch, ar_h, ar_w, ar_w_rev = _ranges(n, h, w, dev)
    rows = oy[:, None] + ar_h  # (N, H)
    cols = ox[:, None] + torch.where(flip[:, None], ar_w_rev, ar_w)  # (N, W)
    out = xp[batch, :, rows[:, :, None], cols[:, None, :]]  # (N, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()


@functools.lru_cache(maxsize=16)
def _base_grid(n: int, h: int, w: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(N, H*W, 3) rows (x, y, 1) of pixel centres in [-1, 1]: what ``F.affine_grid`` builds
    on every call (ATen's make_base_grid_4D, ``align_corners=False``), built once."""

    def centres(steps: int) -> torch.Tensor:
        return torch.linspace(-1, 1, steps, dtype=dtype, device=device) * (steps - 1) / steps

    base = torch.empty(n, h, w, 3, dtype=dtype, device=device)
    base[..., 0] = centres(w)
    base[..., 1] = centres(h).unsqueeze(-1)
    base[..., 2] = 1
    return base.view(n, h * w, 3)


def rotate(x: torch.Tensor, degrees: float, gen: torch.Generator) -> torch.Tensor:
    """RandomRotation(degrees) per sample: nearest neighbour, zero fill, about the centre.

    With ``align_corners=False`` the normalized grid spans pixel edges, so the centre is the
    image centre as in torchvision; H == W keeps the normalized rotation a true rotation.
    The grid is ``F.affine_grid``'s product (base grid @ theta^T) on a cached base grid.
    """
    n, _, h, w = x.shape
    a = _uniform(n, -degrees, degrees, gen) * (math.pi / 180)
    cos, sin = torch.cos(a), torch.sin(a)
    zero = torch.zeros_like(a)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = _base_grid(n, h, w, theta.dtype, x.device).bmm(theta.transpose(1, 2)).view(n, h, w, 2)
    return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)


def _grey(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x.unbind(1)
    return (_GREY[0] * r + _GREY[1] * g + _GREY[2] * b).unsqueeze(1)


def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB in [0, 1] -> HSV in [0, 1] (hue as a fraction of the circle)."""
    r, g, b = x.unbind(1)
    maxc = x.amax(1)
    minc = x.amin(1)
    eqc = maxc == minc  # grey pixels: hue and saturation are 0, avoid 0/0
    cr = maxc - minc
    ones = torch.ones_like(maxc)
    s = cr / torch.where(eqc, ones, maxc)
    crd = torch.where(eqc, ones, cr)
    rc, gc, bc = (maxc - r) / crd, (maxc - g) / crd, (maxc - b) / crd
    is_r = maxc == r
    is_g = (maxc == g) & ~is_r
    is_b = ~is_r & ~is_g
    h = is_r * (bc - gc) + is_g * (2.0 + rc - bc) + is_b * (4.0 + gc - rc)
    h = torch.fmod(h / 6.0 + 1.0, 1.0)
    return torch.stack([h, s, maxc], 1)


# Which of (v, q, p, t) is R, G, B in each of the six hue sectors.
_SECTOR = torch.tensor([[0, 1, 2, 2, 3, 0], [3, 0, 0, 1, 2, 2], [2, 2, 3, 0, 0, 1]])


@functools.lru_cache(maxsize=8)
def _sector(device: torch.device) -> torch.Tensor:
    return _SECTOR.to(device)  # once: a host-to-device copy per call would sync the host


def hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`rgb_to_hsv`."""
    h, s, v = x.unbind(1)
    h6 = h * 6.0
    i = torch.floor(h6)
    f = h6 - i
    sector = i.long() % 6
    p = (v * (1.0 - s)).clamp(0.0, 1.0)
    q = (v * (1.0 - s * f)).clamp(0.0, 1.0)
    t = (v * (1.0 - s * (1.0 - f))).clamp(0.0, 1.0)
    comps = torch.stack([v, q, p, t], 1)  # (N, 4, H, W)
    idx = _sector(x.device)[:, sector].permute(1, 0, 2, 3)  # (N, 3, H, W)
    return comps.gather(1, idx)


def adjust_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the hue of each sample by ``shift`` (N,) turns (ColorJitter's hue factor)."""
    hsv = rgb_to_hsv(x)
    h = torch.remainder(hsv[:, 0] + shift.view(-1, 1, 1), 1.0)
    return hsv_to_rgb(torch.stack([h, hsv[:, 1], hsv[:, 2]], 1))


def color_jitter(
    x: torch.Tensor,
    brightness: float,
    contrast: float,
    saturation: float,
    hue: float,
    gen: torch.Generator,
    pil_rounding: bool = True,
    static_shapes: bool | None = None,
) -> torch.Tensor:
    """ColorJitter on float (N, 3, H, W) in [0, 1], parameters and op order drawn per sample.

    Brightness/contrast/saturation are blends ``f*x + (1-f)*d`` with d = 0, the mean grey
    level, the grey image; at each of the 4 steps every sample gets exactly one op, so one
    blend (identity, f = 1, for samples whose op at this step is hue) plus hue on the rest.

    ``pil_rounding`` stores the image on the uint8 grid after each op as the PIL path does:
    PIL's ``Image.blend`` truncates, which darkens by ~0.5 level per blend (~0.03 in
    normalized units over three blends, measurable in batch means), and hue comes back
    rounded. Without it the ops equal torchvision's float tensor ColorJitter.

    ``static_shapes`` (default: on any device but the CPU) computes hue for every sample at
    each step and keeps it where the step's op is hue: 4x the hue arithmetic, but no
    ``nonzero()``, whose data-dependent size makes the host wait for the device. Both ways
    give the same values bit for bit (every op is per pixel).
    """
    if static_shapes is None:
        static_shapes = x.device.type != "cpu"
    n = x.shape[0]
    b = _uniform(n, 1 - brightness, 1 + brightness, gen).view(n, 1, 1, 1)
    c = _uniform(n, 1 - contrast, 1 + contrast, gen).view(n, 1, 1, 1)
    s = _uniform(n, 1 - saturation, 1 + saturation, gen).view(n, 1, 1, 1)
    h = _uniform(n, -hue, hue, gen)
    order = torch.rand(n, 4, generator=gen, device=gen.device).argsort(1)  # like randperm(4)
    for k in range(4):
        op = order[:, k].view(n, 1, 1, 1)
        is_b, is_c, is_s = (op == 0), (op == 1), (op == 2)
        grey = _grey(x)
        f = torch.where(is_b, b, torch.where(is_c, c, torch.where(is_s, s, 1.0)))
        d = torch.where(is_c, grey.mean((2, 3), keepdim=True), torch.where(is_s, grey, 0.0))
        blended = (f * x + (1 - f) * d).clamp(0.0, 1.0)
        if pil_rounding:
            # +1e-3: values already on the grid must not drop a level through float error.
            blended = torch.floor(blended * 255 + 1e-3) / 255
        # Hue on the samples whose op at this step it is; for them f = 1, so `blended`
        # still holds their input. On the CPU only those ~N/4 (hue is the costly op).
        if static_shapes:
            hued = adjust_hue(blended, h)
            if pil_rounding:
                hued = torch.round(hued * 255) / 255
            x = torch.where(op == 3, hued, blended)
        else:
            sel = order[:, k].eq(3).nonzero().squeeze(1)
            hued = adjust_hue(blended[sel], h[sel])
            if pil_rounding:
                hued = torch.round(hued * 255) / 255
            x = blended.index_copy(0, sel, hued)
    return x


def augment_batch(x: torch.Tensor, augment: str, gen: torch.Generator) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> float32 in [0, 1], augmented as ``augment`` (paper|standard|none;
    checked by :class:`DeviceLoader`, which calls this per batch)."""
    if augment != "none":
        x = crop_flip(x, tf.CROP_PADDING, tf.FLIP_P, gen)
    x = x.float().div_(255)
    if augment == "paper":
        x = rotate(x, tf.AFFINE_DEGREES, gen)
        x = rotate(x, tf.ROTATION_DEGREES, gen)
        x = color_jitter(x, **tf.JITTER, gen=gen)
    return x


class DeviceLoader:
    """Batches (x float32 NCHW normalized, y int64) from a split held on ``device``.

    Same interface as :class:`mbt.data.cifar.TorchLoader`: ``len()`` is batches per epoch,
    ``num_samples``, ``set_epoch(e)``. Each ``iter()`` seeds a generator from (seed, epoch)
    and then advances the epoch, so shuffling and augmentation are reproducible per epoch.
    """

    def __init__(
        self,
        images,
        labels,
        *,
        batch_size: int,
        mean,
        std,
        augment: str = "none",
        shuffle: bool = False,
        seed: int = 0,
        device: str | torch.device = "cpu",
        channels_last: bool = False,
        drop_last: bool = False,
    ):
        tf.check_augment(augment)
        self.device = torch.device(device)
        if self.device.type == "cuda" and self.device.index is None:
            # Tensors land on cuda:<current>; the generator must name the same device.
            self.device = torch.device("cuda", torch.cuda.current_device())
        # HWC uint8 as read from the pickles -> NCHW uint8 on the device.
        self.images = torch.as_tensor(images).permute(0, 3, 1, 2).contiguous().to(self.device)
        self.labels = torch.as_tensor(labels, dtype=torch.int64).to(self.device)
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self.batch_size = batch_size
        self.augment = augment
        self.shuffle = shuffle
        self.seed = seed
        self.channels_last = channels_last
        self.drop_last = drop_last
        self.epoch = 0

    @property
    def num_samples(self) -> int:
        return len(self.labels)

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_samples // self.batch_size
        return math.ceil(self.num_samples / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        gen = torch.Generator(device=self.device).manual_seed(epoch_seed(self.seed, self.epoch))
        self.epoch += 1
        return self._batches(gen)

    def _batches(self, gen: torch.Generator):
        n = self.num_samples
        if self.shuffle:
            order = torch.randperm(n, generator=gen, device=self.device)
        else:
            order = torch.arange(n, device=self.device)
        for i in range(len(self)):
            idx = order[i * self.batch_size : (i + 1) * self.batch_size]
            x = augment_batch(self.images[idx], self.augment, gen)
            x = (x - self.mean) / self.std
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, self.labels[idx]
