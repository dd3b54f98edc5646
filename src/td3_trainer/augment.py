"""DrQ random shift (Kostrikov et al. 2020): replicate-pad by `pad` pixels, crop back at random.

Done as a clamped index gather on the uint8 stacks, which equals pad-then-crop exactly, works on
any device and dtype, and moves every frame of a stack by the same shift.
"""

from __future__ import annotations

import torch


def random_shift(frames: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """frames (B, C, H, W) → same shape, each sample shifted by (dy, dx) in [-pad, pad]."""
    if pad <= 0:
        return frames
    batch, channels, height, width = frames.shape
    device = frames.device
    shifts = torch.randint(0, 2 * pad + 1, (batch, 2), generator=generator, device=generator.device).to(device)
    rows = (torch.arange(height, device=device)[None, :] + shifts[:, :1] - pad).clamp_(0, height - 1)
    cols = (torch.arange(width, device=device)[None, :] + shifts[:, 1:] - pad).clamp_(0, width - 1)
    batch_index = torch.arange(batch, device=device)[:, None, None, None]
    channel_index = torch.arange(channels, device=device)[None, :, None, None]
    return frames[batch_index, channel_index, rows[:, None, :, None], cols[:, None, None, :]]
