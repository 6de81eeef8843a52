"""The Wav2Lip generator (96x96) in torch, with the original parameter names.

Written from the architecture of Rudrabha/Wav2Lip ``models/wav2lip.py``/``conv.py`` so
that the released ``wav2lip.pth`` / ``wav2lip_gan.pth`` state dicts load with
``strict=True`` (e.g. ``face_encoder_blocks.1.0.conv_block.1.running_mean``). Imported
only by the converter and the tests: at run time the engine uses the OpenVINO IR.

Inputs: mel ``(B, 1, 80, 16)`` and face ``(B, 6, 96, 96)`` (masked crop, crop; BGR, 0..1).
Output: ``(B, 3, 96, 96)`` BGR in 0..1 (sigmoid).
"""

from __future__ import annotations

import torch
from torch import nn


class Conv2d(nn.Module):
    """Conv + BatchNorm + ReLU, optionally adding the input back before the ReLU."""

    def __init__(self, cin: int, cout: int, kernel_size: int, stride: int | tuple[int, int],
                 padding: int, residual: bool = False) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(nn.Conv2d(cin, cout, kernel_size, stride, padding),
                                        nn.BatchNorm2d(cout))
        self.act = nn.ReLU()
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block."""
        out = self.conv_block(x)
        if self.residual:
            out = out + x
        return self.act(out)


class Conv2dTranspose(nn.Module):
    """Transposed conv + BatchNorm + ReLU (the decoder's upsampling)."""

    def __init__(self, cin: int, cout: int, kernel_size: int, stride: int, padding: int,
                 output_padding: int = 0) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ConvTranspose2d(cin, cout, kernel_size, stride, padding, output_padding),
            nn.BatchNorm2d(cout))
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block."""
        return self.act(self.conv_block(x))


def _res(ch: int, n: int) -> list[Conv2d]:
    """``n`` residual 3x3 blocks keeping ``ch`` channels."""
    return [Conv2d(ch, ch, 3, 1, 1, residual=True) for _ in range(n)]


def _down(cin: int, cout: int, n_res: int) -> nn.Sequential:
    """A stride-2 3x3 block followed by ``n_res`` residual blocks."""
    return nn.Sequential(Conv2d(cin, cout, 3, 2, 1), *_res(cout, n_res))


def _up(cin: int, cout: int, n_res: int) -> nn.Sequential:
    """A stride-2 transposed block (x2 size) followed by ``n_res`` residual blocks."""
    return nn.Sequential(Conv2dTranspose(cin, cout, 3, 2, 1, output_padding=1), *_res(cout, n_res))


class Wav2Lip(nn.Module):
    """The 96x96 Wav2Lip generator (36.3 M parameters)."""

    def __init__(self) -> None:
        super().__init__()
        # face encoder: 96 -> 48 -> 24 -> 12 -> 6 -> 3 -> 1, features kept for the skips
        self.face_encoder_blocks = nn.ModuleList([
            nn.Sequential(Conv2d(6, 16, 7, 1, 3)),
            _down(16, 32, 2),
            _down(32, 64, 3),
            _down(64, 128, 2),
            _down(128, 256, 2),
            _down(256, 512, 1),
            nn.Sequential(Conv2d(512, 512, 3, 1, 0), Conv2d(512, 512, 1, 1, 0)),
        ])
        # audio encoder: (1, 80, 16) -> (512, 1, 1)
        self.audio_encoder = nn.Sequential(
            Conv2d(1, 32, 3, 1, 1), *_res(32, 2),
            Conv2d(32, 64, 3, (3, 1), 1), *_res(64, 2),
            Conv2d(64, 128, 3, 3, 1), *_res(128, 2),
            Conv2d(128, 256, 3, (3, 2), 1), *_res(256, 1),
            Conv2d(256, 512, 3, 1, 0), Conv2d(512, 512, 1, 1, 0),
        )
        # face decoder: each stage's output is concatenated with the matching encoder feature
        self.face_decoder_blocks = nn.ModuleList([
            nn.Sequential(Conv2d(512, 512, 1, 1, 0)),
            nn.Sequential(Conv2dTranspose(1024, 512, 3, 1, 0), *_res(512, 1)),   # 3x3
            _up(1024, 512, 2),   # 6x6
            _up(768, 384, 2),    # 12x12
            _up(512, 256, 2),    # 24x24
            _up(320, 128, 2),    # 48x48
            _up(160, 64, 2),     # 96x96
        ])
        self.output_block = nn.Sequential(Conv2d(80, 32, 3, 1, 1),
                                          nn.Conv2d(32, 3, kernel_size=1, stride=1, padding=0),
                                          nn.Sigmoid())

    def forward(self, mel: torch.Tensor, face: torch.Tensor) -> torch.Tensor:
        """``(B,1,80,16)`` mel and ``(B,6,96,96)`` face -> ``(B,3,96,96)`` BGR in 0..1."""
        x = face
        feats = []
        for block in self.face_encoder_blocks:
            x = block(x)
            feats.append(x)
        x = self.audio_encoder(mel)
        for block in self.face_decoder_blocks:
            x = torch.cat((block(x), feats.pop()), dim=1)
        return self.output_block(x)


def load_state(model: Wav2Lip, checkpoint: dict) -> None:
    """Load a checkpoint dict (``{"state_dict": ...}`` or a bare state dict) strictly.

    The ``module.`` prefix left by DataParallel training is stripped.
    """
    state = checkpoint.get("state_dict", checkpoint)
    state = {k.removeprefix("module."): v for k, v in state.items()}
    model.load_state_dict(state, strict=True)
