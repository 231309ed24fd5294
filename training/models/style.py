"""A style-based generator after Karras et al. (StyleGAN 2019, StyleGAN2 2020), sized for a CPU.

Two noise sources:
- z (N, latent_dim), normalised and (when conditional) joined by the normalised label embedding,
  goes through the mapping network, an MLP with a learning-rate multiplier (0.01), to one style
  w (N, w_dim). The synthesis network takes one copy of w per layer, ws (N, num_ws, w_dim), so
  different layers can take different styles (style mixing).
- one noise image per convolution layer, (N, 1, r, r) at that layer's resolution r, scaled by a
  learned per-channel weight, adds stochastic detail.

Each convolution is StyleGAN2's modulated convolution with demodulation rather than StyleGAN's
AdaIN: AdaIN normalises each feature map by its own statistics, which lets G smuggle signal
through the magnitudes and shows as blob ("droplet") artefacts; demodulation scales the weights
by the expected statistics instead. It is written as style-scaled input, a plain convolution and
a demodulation scale on the output (StyleGAN2's non-fused form), so the ONNX graph is ordinary
Conv nodes whatever the batch size. The image is built by StyleGAN2's toRGB skips: each
resolution adds its RGB to the upsampled sum of the coarser ones, which keeps the coarse layers in
charge of the layout, as style mixing assumes.

Every weight uses the equalised learning rate (stored N(0, 1), scaled by 1/sqrt(fan_in) at run
time), as in both papers.

The running mean of w (`w_avg`, one per class for a conditional G) is tracked while training, for
the truncation trick: w' = w_avg + psi (w - w_avg).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from model_repository.styles import STYLE_GROUPS
from training.models.common import ProjectionHead

LRELU_GAIN = math.sqrt(2.0)  # keeps the activations' scale through leaky ReLU(0.2)


@dataclass
class StyleGeneratorConfig:
    latent_dim: int = 64  # z
    w_dim: int = 128
    mapping_layers: int = 4
    mapping_lr_mul: float = 0.01
    channels: int = 1
    resolution: int = 32
    channel_base: int = 2048  # channels at resolution r: min(channel_max, channel_base // r)
    channel_max: int = 128
    num_classes: int = 0
    embed_dim: int = 32  # label embedding, joined with z before the mapping
    w_avg_beta: float = 0.995  # decay of the running mean of w


@dataclass
class StyleDiscriminatorConfig:
    channels: int = 1
    resolution: int = 32
    channel_base: int = 2048
    channel_max: int = 128
    num_classes: int = 0
    mbstd_group: int = 4  # minibatch standard deviation over groups of this size (0 = off)


def _levels(resolution: int) -> int:
    levels = int(math.log2(resolution)) - 2
    if resolution < 8 or 2 ** (levels + 2) != resolution:
        raise ValueError(f"resolution must be a power of two >= 8, got {resolution}")
    return levels


def _width(base: int, most: int, resolution: int) -> int:
    return max(1, min(most, base // resolution))


def normalize_2nd_moment(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """x (N, F) scaled so that each row has mean square 1."""
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


class EqualLinear(nn.Module):
    """A fully connected layer with the equalised learning rate; lr_mul slows it further."""

    def __init__(
        self, cin: int, cout: int, bias_init: float = 0.0, lr_mul: float = 1.0, activate: bool = False
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin) / lr_mul)
        self.bias = nn.Parameter(torch.full((cout,), float(bias_init)))
        self.gain = lr_mul / math.sqrt(cin)
        self.lr_mul = lr_mul
        self.activate = activate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.linear(x, self.weight * self.gain, self.bias * self.lr_mul)
        return F.leaky_relu(x, 0.2) * LRELU_GAIN if self.activate else x


class EqualConv(nn.Module):
    """A plain convolution with the equalised learning rate (the discriminator's)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, activate: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.gain = 1 / math.sqrt(cin * kernel * kernel)
        self.stride, self.activate = stride, activate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # padding (k - 1) // 2: same size at stride 1; half the size for the 4x4 stride-2 convs
        padding = (self.weight.shape[-1] - 1) // 2 if self.stride == 1 else 1
        x = F.conv2d(x, self.weight * self.gain, self.bias, stride=self.stride, padding=padding)
        return F.leaky_relu(x, 0.2) * LRELU_GAIN if self.activate else x


class ModulatedConv(nn.Module):
    """StyleGAN2's modulated (and optionally demodulated) convolution, in the non-fused form.

    x (N, cin, r, r), w (N, w_dim) -> (N, cout, r', r') with r' = 2r when `up`.
    """

    def __init__(
        self, cin: int, cout: int, w_dim: int, kernel: int, demodulate: bool, up: bool = False
    ) -> None:
        super().__init__()
        self.affine = EqualLinear(w_dim, cin, bias_init=1.0)  # w -> per-input-channel style s
        # Upsampling is a stride-2 transposed convolution (as in StyleGAN2), 4x4 so that every
        # output pixel gets the same number of taps (no checkerboard); it costs a third less
        # than upsampling and then convolving at the doubled resolution.
        kernel = 4 if up else kernel
        self.weight = nn.Parameter(torch.randn(cout, cin, kernel, kernel))
        self.gain = 1 / math.sqrt(cin * kernel * kernel)
        self.demodulate, self.up = demodulate, up

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        styles = self.affine(w)  # (N, cin)
        weight = self.weight * self.gain  # (cout, cin, k, k)
        x = x * styles[:, :, None, None]
        if self.up:  # (N, cin, r, r) -> (N, cout, 2r, 2r)
            x = F.conv_transpose2d(x, weight.transpose(0, 1), stride=2, padding=1)
        else:
            x = F.conv2d(x, weight, padding=weight.shape[-1] // 2)
        if self.demodulate:
            # 1 / sqrt(sum over cin, k, k of (w_oik * s_i)^2): (N, cout)
            energy = weight.square().sum(dim=(2, 3))  # (cout, cin)
            demod = (styles.square() @ energy.t() + 1e-8).rsqrt()
            x = x * demod[:, :, None, None]
        return x


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv, then the layer's noise image times a learned per-channel weight, bias,
    leaky ReLU. x (N, cin, r, r) -> (N, cout, r', r'); noise (N, 1, r', r')."""

    def __init__(self, cin: int, cout: int, w_dim: int, up: bool = False) -> None:
        super().__init__()
        self.conv = ModulatedConv(cin, cout, w_dim, 3, demodulate=True, up=up)
        self.noise_strength = nn.Parameter(torch.zeros(cout))  # StyleGAN starts it at 0
        self.bias = nn.Parameter(torch.zeros(cout))

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        x = self.conv(x, w)
        x = x + noise * self.noise_strength[None, :, None, None]
        return F.leaky_relu(x + self.bias[None, :, None, None], 0.2) * LRELU_GAIN


class ToRGB(nn.Module):
    """Modulated 1x1 conv without demodulation: features (N, c, r, r) -> image (N, channels, r, r)."""

    def __init__(self, cin: int, channels: int, w_dim: int) -> None:
        super().__init__()
        self.conv = ModulatedConv(cin, channels, w_dim, 1, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self.conv(x, w) + self.bias[None, :, None, None]


class MappingNetwork(nn.Module):
    """z (N, latent_dim) [+ labels (N,)] -> w (N, w_dim)."""

    def __init__(self, c: StyleGeneratorConfig) -> None:
        super().__init__()
        # The label embedding: an equalised linear layer on the one-hot label, as in StyleGAN2-ADA.
        self.embed = EqualLinear(c.num_classes, c.embed_dim) if c.num_classes > 0 else None
        widths = [c.latent_dim + (c.embed_dim if c.num_classes > 0 else 0)] + [c.w_dim] * c.mapping_layers
        self.layers = nn.Sequential(
            *(
                EqualLinear(a, b, lr_mul=c.mapping_lr_mul, activate=True)
                for a, b in itertools.pairwise(widths)
            )
        )
        self.num_classes = c.num_classes

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        x = normalize_2nd_moment(z)
        if self.embed is not None:
            if labels is None:
                raise ValueError("a conditional generator needs labels")
            onehot = F.one_hot(labels, self.num_classes).to(z.dtype)
            x = torch.cat([x, normalize_2nd_moment(self.embed(onehot))], dim=1)
        return self.layers(x)


class SynthesisNetwork(nn.Module):
    """ws (N, num_ws, w_dim) and one noise image per layer -> image (N, channels, R, R) in about
    [-1, 1] (no tanh, as in StyleGAN; the pixels are clamped when converted).

    Layer order, which is the order of the ws and of the noise inputs: the 4x4 conv, then two
    convs per resolution 8 .. R. The toRGB of a resolution takes the w of the next conv (StyleGAN2's
    sharing), and the last toRGB the last w: num_ws = number of convs + 1.
    """

    def __init__(self, c: StyleGeneratorConfig) -> None:
        super().__init__()
        levels = _levels(c.resolution)
        width = [_width(c.channel_base, c.channel_max, 4 * 2**i) for i in range(levels + 1)]
        self.const = nn.Parameter(torch.randn(width[0], 4, 4))
        self.convs = nn.ModuleList([SynthesisLayer(width[0], width[0], c.w_dim)])
        self.torgbs = nn.ModuleList([ToRGB(width[0], c.channels, c.w_dim)])
        self.noise_resolutions = [4]  # each conv's output resolution, in order
        for i in range(1, levels + 1):
            r = 4 * 2**i
            self.convs.append(SynthesisLayer(width[i - 1], width[i], c.w_dim, up=True))
            self.convs.append(SynthesisLayer(width[i], width[i], c.w_dim))
            self.torgbs.append(ToRGB(width[i], c.channels, c.w_dim))
            self.noise_resolutions += [r, r]
        self.num_ws: int = len(self.convs) + 1

    def forward(self, ws: torch.Tensor, noise: list[torch.Tensor]) -> torch.Tensor:
        if len(noise) != len(self.convs):
            raise ValueError(f"{len(self.convs)} noise images expected, got {len(noise)}")
        x = self.const[None].expand(ws.shape[0], -1, -1, -1)  # (N, c4, 4, 4)
        x = self.convs[0](x, ws[:, 0], noise[0])
        img = self.torgbs[0](x, ws[:, 1])  # (N, channels, 4, 4)
        for level in range(1, len(self.torgbs)):
            i = 2 * level - 1  # this resolution's first conv
            x = self.convs[i](x, ws[:, i], noise[i])  # (N, c_r, r, r): upsampled
            x = self.convs[i + 1](x, ws[:, i + 1], noise[i + 1])
            img = F.interpolate(img, scale_factor=2.0, mode="bilinear", align_corners=False)
            img = img + self.torgbs[level](x, ws[:, i + 2])
        return img


class StyleGenerator(nn.Module):
    """G(z, labels) -> image (N, channels, R, R), with the mapping and synthesis networks also
    usable on their own (what export and the server use)."""

    def __init__(self, config: StyleGeneratorConfig) -> None:
        super().__init__()
        self.config = config
        self.mapping = MappingNetwork(config)
        self.synthesis = SynthesisNetwork(config)
        self.num_ws: int = self.synthesis.num_ws
        # The running mean of w: one row per class (conditional), else one row.
        self.w_avg: torch.Tensor
        self.register_buffer("w_avg", torch.zeros(max(config.num_classes, 1), config.w_dim))

    @property
    def noise_shapes(self) -> list[tuple[int, int, int]]:
        """One noise image per synthesis layer: (1, r, r)."""
        return [(1, r, r) for r in self.synthesis.noise_resolutions]

    def style_groups(self) -> dict[str, tuple[int, int]]:
        """The ws' layer ranges [start, stop) that StyleGAN calls coarse (4x4 and 8x8), fine (the
        last resolution) and middle (between; empty at 16x16)."""
        fine_start = self.num_ws - 2  # the last resolution's second conv and its toRGB
        coarse_end = min(4, fine_start)  # ws 0..3: the 4x4 and 8x8 convs and their toRGBs
        ranges = ((0, coarse_end), (coarse_end, fine_start), (fine_start, self.num_ws))
        return dict(zip(STYLE_GROUPS, ranges, strict=True))

    def random_noise(self, n: int, generator: torch.Generator | None = None) -> list[torch.Tensor]:
        device = self.const_device
        return [torch.randn((n, *shape), generator=generator).to(device) for shape in self.noise_shapes]

    @property
    def const_device(self) -> torch.device:
        return self.synthesis.const.device

    def truncate(self, w: torch.Tensor, labels: torch.Tensor | None, psi: float) -> torch.Tensor:
        """w (N, w_dim) pulled toward its class's mean style: w_avg + psi (w - w_avg)."""
        if psi == 1.0:
            return w
        center = self.w_avg[labels] if (labels is not None and self.config.num_classes > 0) else self.w_avg[0]
        return center.lerp(w, psi)

    @torch.no_grad()
    def _track_w_avg(self, w: torch.Tensor, labels: torch.Tensor | None) -> None:
        beta = self.config.w_avg_beta
        if labels is None or self.config.num_classes == 0:
            self.w_avg[0].lerp_(w.mean(dim=0).to(self.w_avg.dtype), 1 - beta)
            return
        rows = torch.zeros_like(self.w_avg).index_add_(0, labels, w.detach().to(self.w_avg.dtype))
        counts = torch.bincount(labels, minlength=self.w_avg.shape[0]).to(self.w_avg.dtype)
        seen = counts > 0
        means = rows[seen] / counts[seen, None]
        self.w_avg[seen] = self.w_avg[seen].lerp(means, 1 - beta)

    def forward(
        self,
        z: torch.Tensor,
        labels: torch.Tensor | None = None,
        *,
        psi: float = 1.0,
        noise: list[torch.Tensor] | None = None,
        noise_generator: torch.Generator | None = None,
        mix_z: torch.Tensor | None = None,
        mix_cutoff: int | None = None,
    ) -> torch.Tensor:
        """z (N, latent_dim) -> image (N, channels, R, R).

        noise: the per-layer noise images; by default random (from `noise_generator`, else the
        global RNG). mix_z, mix_cutoff: style mixing, ws[:, mix_cutoff:] from mix_z's w (training
        uses it as a regulariser). While training, the running mean of w is updated.
        """
        w = self.mapping(z, labels)  # (N, w_dim)
        if self.training:
            self._track_w_avg(w, labels)
        w = self.truncate(w, labels, psi)
        ws = w[:, None, :].repeat(1, self.num_ws, 1)  # (N, num_ws, w_dim)
        if mix_z is not None and mix_cutoff is not None:
            w2 = self.truncate(self.mapping(mix_z, labels), labels, psi)
            ws[:, mix_cutoff:] = w2[:, None, :]
        if noise is None:
            noise = self.random_noise(z.shape[0], noise_generator)
        return self.synthesis(ws, noise)


class StyleDiscriminator(nn.Module):
    """StyleGAN2's discriminator head (minibatch standard deviation, a 3x3 conv, a fully
    connected layer) on a DCGAN-like body of strided 4x4 convolutions, all with the equalised
    learning rate, conditioned by projection as the DCGAN D is. StyleGAN2's residual body (two
    3x3 convs at each resolution before pooling) costs 3.7x as much on a CPU (forward and
    backward of 128 32x32 images at width 16: 187 ms against 51 ms on 2 cores).

    x (N, C, R, R) -> fromRGB (N, c_R, R, R) -> strided convs down to (N, c_4, 4, 4) -> mbstd
    (N, c_4 + 1, 4, 4) -> conv -> fc (N, c_4) -> (N,) logits.
    """

    def __init__(self, config: StyleDiscriminatorConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        levels = _levels(c.resolution)
        widths = {r: _width(c.channel_base, c.channel_max, r) for r in (4 * 2**i for i in range(levels + 1))}
        self.from_rgb = EqualConv(c.channels, widths[c.resolution], 1)
        self.blocks = nn.Sequential(
            *(
                EqualConv(widths[r], widths[r // 2], 4, stride=2)
                for r in sorted(widths, reverse=True)
                if r > 4
            )
        )
        c4 = widths[4]
        self.conv = EqualConv(c4 + (1 if c.mbstd_group else 0), c4, 3)
        self.fc = EqualLinear(c4 * 16, c4, activate=True)
        self.head = ProjectionHead(c4, c.num_classes, sn=False)

    def _mbstd(self, x: torch.Tensor) -> torch.Tensor:
        """One more feature map: the std over a group of samples, averaged (StyleGAN). Groups are
        consecutive samples, so a batch of real then fake images never mixes the two in a group
        when each half is a multiple of the group size."""
        n, c, h, w = x.shape
        g = min(self.config.mbstd_group, n)
        if n % g:
            g = 1
        y = x.reshape(n // g, g, c, h, w)  # groups of g consecutive samples
        y = y - y.mean(dim=1, keepdim=True)  # (written out: Tensor.var is slow here on a CPU)
        std = (y.square().mean(dim=1) + 1e-8).sqrt().mean(dim=(1, 2, 3))  # (N/g,)
        feature = std.repeat_interleave(g)[:, None, None, None].expand(n, 1, h, w)
        return torch.cat([x, feature], dim=1)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        h = self.blocks(self.from_rgb(x))  # (N, c4, 4, 4)
        if self.config.mbstd_group:
            h = self._mbstd(h)
        h = self.fc(self.conv(h).flatten(1))  # (N, c4)
        return self.head(h, labels)
