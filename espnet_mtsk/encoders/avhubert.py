"""An AV-HuBERT-shaped video encoder in plain PyTorch (no fairseq).

The module names follow fairseq's AV-HuBERT (``feature_extractor_video``,
``post_extract_proj``, ``encoder.pos_conv``, ``encoder.layers.N.self_attn.
{q,k,v,out}_proj``, ``fc1``, ``fc2``, ``*_layer_norm``), so an official
checkpoint maps onto it key by key (``avhubert_checkpoint.py``; build with
``modality_fuse="concat"`` for that). Defaults are AV-HuBERT Large.
"""

import math
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from espnet.nets.pytorch_backend.nets_utils import make_pad_mask
from espnet2.asr.encoder.abs_encoder import AbsEncoder
from typeguard import typechecked

from espnet_mtsk.encoders.avhubert_checkpoint import load_avhubert_checkpoint


class BasicBlock(torch.nn.Module):
    """ResNet basic block with PReLU, as in AV-HuBERT's visual front end."""

    def __init__(self, inplanes: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(planes)
        self.relu1 = torch.nn.PReLU(planes)
        self.conv2 = torch.nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = torch.nn.BatchNorm2d(planes)
        self.relu2 = torch.nn.PReLU(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = torch.nn.Sequential(
                torch.nn.Conv2d(inplanes, planes, 1, stride, bias=False),
                torch.nn.BatchNorm2d(planes),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu1(self.bn1(self.conv1(x)))
        return self.relu2(self.bn2(self.conv2(out)) + residual)


class ResNet(torch.nn.Module):
    """ResNet-18 trunk (2 blocks per stage) with a global average pool."""

    def __init__(self, inplanes: int, channels: Sequence[int]):
        super().__init__()
        strides = [1, 2, 2, 2]
        for i, (planes, stride) in enumerate(zip(channels, strides), 1):
            blocks = [BasicBlock(inplanes, planes, stride), BasicBlock(planes, planes, 1)]
            setattr(self, f"layer{i}", torch.nn.Sequential(*blocks))
            inplanes = planes
        self.num_layers = len(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(1, self.num_layers + 1):
            x = getattr(self, f"layer{i}")(x)
        return x.mean(dim=(2, 3))


class VideoFrontEnd(torch.nn.Module):
    """(B, 1, T, H, W) -> (B, T, channels[-1]): 3-D conv stem + per-frame ResNet."""

    def __init__(self, stem_channels: int, channels: Sequence[int]):
        super().__init__()
        self.frontend3D = torch.nn.Sequential(
            torch.nn.Conv3d(1, stem_channels, (5, 7, 7), (1, 2, 2), (2, 3, 3), bias=False),
            torch.nn.BatchNorm3d(stem_channels),
            torch.nn.PReLU(stem_channels),
            torch.nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),
        )
        self.trunk = ResNet(stem_channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(self.stem(x)).view(x.shape[0], x.shape[2], -1)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, T, H, W) -> (B T, C, H', W'): ``frontend3D`` frame by frame.

        The 3-D convolution over one input channel is a 2-D one over each
        frame stacked with its neighbours (the kernel's time taps as input
        channels, zeros past either end), equal to it and a third of its
        CPU time with its weight gradient; the rest of the stem sees each
        frame as a clip of one frame, as its (1, k, k) kernels do."""
        conv = self.frontend3D[0]
        taps = conv.kernel_size[0]
        bsz, _, time, height, width = x.shape
        padded = F.pad(x[:, 0], (0, 0, 0, 0, conv.padding[0], conv.padding[0]))
        stacked = padded.unfold(1, taps, 1).permute(0, 1, 4, 2, 3).reshape(bsz * time, taps, height, width)
        frames = F.conv2d(stacked, conv.weight[:, 0], None, conv.stride[1:], conv.padding[1:])
        return self.frontend3D[1:](frames.unsqueeze(2)).squeeze(2)


class SelfAttention(torch.nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.q_proj = torch.nn.Linear(dim, dim)
        self.k_proj = torch.nn.Linear(dim, dim)
        self.v_proj = torch.nn.Linear(dim, dim)
        self.out_proj = torch.nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        bsz, time, dim = x.shape
        split = lambda t: t.view(bsz, time, self.heads, -1).transpose(1, 2)  # noqa: E731
        out = F.scaled_dot_product_attention(
            split(self.q_proj(x)),
            split(self.k_proj(x)),
            split(self.v_proj(x)),
            attn_mask=keep[:, None, None, :],
            dropout_p=self.dropout if self.training else 0.0,
        )
        return self.out_proj(out.transpose(1, 2).reshape(bsz, time, dim))


class EncoderLayer(torch.nn.Module):
    """Pre-LN transformer layer ("layer_norm_first", as in AV-HuBERT Large)."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout: float):
        super().__init__()
        self.self_attn = SelfAttention(dim, heads, dropout)
        self.self_attn_layer_norm = torch.nn.LayerNorm(dim)
        self.fc1 = torch.nn.Linear(dim, ffn_dim)
        self.fc2 = torch.nn.Linear(ffn_dim, dim)
        self.final_layer_norm = torch.nn.LayerNorm(dim)
        self.dropout = torch.nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        x = x + self.dropout(self.self_attn(self.self_attn_layer_norm(x), keep))
        h = self.fc2(self.dropout(F.gelu(self.fc1(self.final_layer_norm(x)))))
        return x + self.dropout(h)


class TransformerEncoder(torch.nn.Module):
    def __init__(self, dim, heads, ffn_dim, layers, pos_conv_kernel, pos_conv_groups, dropout):
        super().__init__()
        self.pos_conv = torch.nn.Conv1d(
            dim, dim, pos_conv_kernel, padding=pos_conv_kernel // 2, groups=pos_conv_groups
        )
        std = math.sqrt(4 / (pos_conv_kernel * dim))
        torch.nn.init.normal_(self.pos_conv.weight, mean=0, std=std)
        torch.nn.init.zeros_(self.pos_conv.bias)
        self.even_kernel = pos_conv_kernel % 2 == 0
        self.layers = torch.nn.ModuleList(
            EncoderLayer(dim, heads, ffn_dim, dropout) for _ in range(layers)
        )
        self.layer_norm = torch.nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        x = x * keep.unsqueeze(-1)
        pos = self.pos_conv(x.transpose(1, 2))
        if self.even_kernel:
            # An even kernel with padding k//2 yields one extra frame.
            pos = pos[:, :, :-1]
        x = x + F.gelu(pos).transpose(1, 2)
        for layer in self.layers:
            x = layer(x, keep)
        return self.layer_norm(x)


class AVHubertVideoEncoder(AbsEncoder):
    """Mouth-ROI video -> contextual frame features, at the input frame rate.

    Input ``xs_pad`` (B, T, H, W) grayscale crops with pixel values 0..255
    (88x88 at 25 fps for LRS3; any size works), ``ilens`` (B,) frame counts;
    output (B, T, d_model), ``ilens``, None. Padded frames are masked in
    attention and zeroed before the positional convolution, so they never
    change the real frames' outputs.

    Args:
        input_size: unused (ESPnet passes a frontend size; video has none).
        mean, std: pixel normalisation after scaling to 0..1 (LRS3 values).
        stem_channels, resnet_channels: 3-D stem and ResNet-18 stage widths.
        d_model, num_heads, ffn_dim, num_layers: the transformer.
        pos_conv_kernel, pos_conv_groups: convolutional positional embedding.
        modality_fuse: None (default): ``layer_norm`` and ``post_extract_proj``
            act on the ResNet features directly. "concat": AV-HuBERT's own
            video-only path, needed for its checkpoints: the ResNet features go
            through ``feature_extractor_video.proj`` to d_model and are put
            after an all-zero audio half, so ``layer_norm`` and
            ``post_extract_proj`` see 2 * d_model features.
        checkpoint: an official fairseq AV-HuBERT checkpoint (pre-trained or
            fine-tuned) whose video path is loaded after building; the sizes
            must match it (``encoder_kwargs_from_checkpoint`` gives them).
    """

    @typechecked
    def __init__(
        self,
        input_size: int = 0,
        mean: float = 0.421,
        std: float = 0.165,
        stem_channels: int = 64,
        resnet_channels: Sequence[int] = (64, 128, 256, 512),
        d_model: int = 1024,
        num_heads: int = 16,
        ffn_dim: int = 4096,
        num_layers: int = 24,
        pos_conv_kernel: int = 128,
        pos_conv_groups: int = 16,
        dropout: float = 0.0,
        modality_fuse: Optional[str] = None,
        checkpoint: Optional[str] = None,
    ):
        super().__init__()
        if modality_fuse not in (None, "concat"):
            raise ValueError(f"modality_fuse must be None or 'concat', got {modality_fuse!r}")
        self.mean = mean
        self.std = std
        self.modality_fuse = modality_fuse
        self.feature_extractor_video = torch.nn.Module()
        self.feature_extractor_video.resnet = VideoFrontEnd(stem_channels, resnet_channels)
        fused = resnet_channels[-1]
        if modality_fuse == "concat":
            self.feature_extractor_video.proj = torch.nn.Linear(resnet_channels[-1], d_model)
            fused = 2 * d_model
        self.layer_norm = torch.nn.LayerNorm(fused)
        self.post_extract_proj = torch.nn.Linear(fused, d_model)
        self.encoder = TransformerEncoder(
            d_model, num_heads, ffn_dim, num_layers, pos_conv_kernel, pos_conv_groups, dropout
        )
        self._output_size = d_model
        if checkpoint is not None:
            load_avhubert_checkpoint(checkpoint, self)

    def output_size(self) -> int:
        return self._output_size

    def forward(
        self,
        xs_pad: torch.Tensor,
        ilens: torch.Tensor,
        prev_states: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor, None]:
        if xs_pad.dim() != 4:
            raise ValueError(
                f"video must be (batch, frames, height, width), got {tuple(xs_pad.shape)}"
            )
        keep = ~make_pad_mask(ilens, maxlen=xs_pad.size(1)).to(xs_pad.device)
        x = (xs_pad / 255.0 - self.mean) / self.std
        x = x * keep[:, :, None, None]
        feats = self.feature_extractor_video.resnet(x.unsqueeze(1))
        if self.modality_fuse == "concat":
            # The zero audio half still counts in layer_norm's mean and variance.
            feats = self.feature_extractor_video.proj(feats)
            feats = torch.cat([torch.zeros_like(feats), feats], dim=-1)
        feats = self.post_extract_proj(self.layer_norm(feats))
        return self.encoder(feats, keep), ilens, None
