"""The networks of TD3 from pixels, shared by the trainer, the driver and the exporter.

Parameter names follow the documented checkpoint layout: NatureCNN `features.{0,3,6}` + `fc`,
Actor `fc1..fc3`, Critic `Q1.l1..l3` / `Q2.l1..l3`. Each conv block is Conv → activation →
Dropout2d, the dropout (p = 0 unless configured) keeping the layer indices of that layout. The
activations work in place: a convolution's backward does not need its output, and the update
saves one allocation and one pass over each large activation.

The architecture options reproduce the original system's encoders exactly (td3_core.legacy_formats):
LeakyReLU(0.01) instead of ReLU, LayerNorm `ln1..ln3` after each convolution and `ln4` after the
fc (before the activation), no activation or LeakyReLU after the fc, inputs in [-1, 1].
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from td3_core.preprocessing import INPUT_RANGES, scale_frames

CNN_ACTIVATIONS = ("relu", "leaky_relu")
FC_ACTIVATIONS = ("relu", "leaky_relu", "none")
LEAKY_SLOPE = 0.01  # the original system's LeakyReLU slope
_TEXT_FIELDS = ("cnn_activation", "fc_activation", "input_range")
# Fields a checkpoint's metadata sets and no parameter does: what its networks were trained as.
PROFILE_FIELDS = ("cnn_activation", "cnn_layer_norm", "fc_activation", "input_range")


@dataclass(frozen=True)
class Architecture:
    """Everything needed to rebuild the networks of a checkpoint."""

    frame_stack: int = 4
    image_size: int = 84
    feature_dim: int = 512
    vector_dim: int = 23
    action_dim: int = 2
    hidden_dim: int = 256
    cnn_dropout: float = 0.0
    cnn_activation: str = "relu"  # after each convolution: relu | leaky_relu
    cnn_layer_norm: bool = False  # LayerNorm after each conv and after the fc, before the activation
    fc_activation: str = "relu"  # after the fc (and its LayerNorm): relu | leaky_relu | none
    input_range: str = "unit"  # what the CNN reads: unit = [0, 1], symmetric = [-1, 1]

    def __post_init__(self) -> None:
        for name, allowed in (
            ("cnn_activation", CNN_ACTIVATIONS),
            ("fc_activation", FC_ACTIVATIONS),
            ("input_range", INPUT_RANGES),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")

    @property
    def state_dim(self) -> int:
        return self.feature_dim + self.vector_dim

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> Architecture:
        fields = cls.__dataclass_fields__
        return cls(**{k: _typed(k, v) for k, v in values.items() if k in fields})


def _typed(name: str, value):
    if name == "cnn_dropout":
        return float(value)
    if name in _TEXT_FIELDS:
        return str(value)
    if name == "cnn_layer_norm":
        if not isinstance(value, bool):
            raise ValueError(f"cnn_layer_norm must be a bool, got {value!r}")
        return value
    return int(value)


def _conv_out(size: int, kernel: int, stride: int) -> int:
    return (size - kernel) // stride + 1


def _activation(name: str) -> nn.Module:
    if name == "leaky_relu":
        return nn.LeakyReLU(LEAKY_SLOPE, inplace=True)
    if name == "none":
        return nn.Identity()
    return nn.ReLU(inplace=True)


class NatureCNN(nn.Module):
    """Mnih et al. (2015) encoder: 32 8x8/4, 64 4x4/2, 64 3x3/1, fc to feature_dim."""

    def __init__(
        self,
        in_channels: int = 4,
        image_size: int = 84,
        feature_dim: int = 512,
        dropout: float = 0.0,
        activation: str = "relu",
        layer_norm: bool = False,
        fc_activation: str = "relu",
        input_range: str = "unit",
    ):
        super().__init__()
        self.input_range = input_range
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 32, kernel_size=8, stride=4),
            _activation(activation),
            nn.Dropout2d(dropout),
            nn.Conv2d(32, 64, kernel_size=4, stride=2),
            _activation(activation),
            nn.Dropout2d(dropout),
            nn.Conv2d(64, 64, kernel_size=3, stride=1),
            _activation(activation),
            nn.Dropout2d(dropout),
        )
        sides = [_conv_out(image_size, 8, 4)]
        sides += [_conv_out(sides[0], 4, 2)]
        sides += [_conv_out(sides[1], 3, 1)]
        side = sides[2]
        if side < 1:
            raise ValueError(f"image_size {image_size} is too small for NatureCNN")
        self.layer_norm = layer_norm
        if layer_norm:
            # Registered before fc, so parameters() runs conv1..3, ln1..3, fc, ln4: the original order.
            self.ln1 = nn.LayerNorm([32, sides[0], sides[0]])
            self.ln2 = nn.LayerNorm([64, sides[1], sides[1]])
            self.ln3 = nn.LayerNorm([64, side, side])
        self.fc = nn.Linear(64 * side * side, feature_dim)
        if layer_norm:
            self.ln4 = nn.LayerNorm(feature_dim)
        self.fc_activation = _activation(fc_activation)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """frames: float (B, C, H, W) in the input range → (B, feature_dim) features."""
        if not self.layer_norm:
            return self.fc_activation(self.fc(self.features(frames).flatten(1)))
        x = frames
        for block, norm in enumerate((self.ln1, self.ln2, self.ln3)):
            conv, activation, dropout = self.features[3 * block : 3 * block + 3]
            x = dropout(activation(norm(conv(x))))
        return self.fc_activation(self.ln4(self.fc(x.flatten(1))))


class Actor(nn.Module):
    def __init__(self, state_dim: int, action_dim: int = 2, hidden_dim: int = 256):
        super().__init__()
        self.fc1 = nn.Linear(state_dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, hidden_dim)
        self.fc3 = nn.Linear(hidden_dim, action_dim)

    def preactivation(self, state: torch.Tensor) -> torch.Tensor:
        """The output before its tanh (what a saturation penalty reads)."""
        return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(state)))))

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.preactivation(state))


class QHead(nn.Module):
    def __init__(self, input_dim: int, hidden_dim: int = 256):
        super().__init__()
        self.l1 = nn.Linear(input_dim, hidden_dim)
        self.l2 = nn.Linear(hidden_dim, hidden_dim)
        self.l3 = nn.Linear(hidden_dim, 1)

    def forward(self, state_action: torch.Tensor) -> torch.Tensor:
        return self.l3(torch.relu(self.l2(torch.relu(self.l1(state_action)))))


class Critic(nn.Module):
    """Twin Q networks (TD3's clipped double Q)."""

    def __init__(self, state_dim: int, action_dim: int = 2, hidden_dim: int = 256):
        super().__init__()
        self.Q1 = QHead(state_dim + action_dim, hidden_dim)
        self.Q2 = QHead(state_dim + action_dim, hidden_dim)

    def forward(self, state: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        state_action = torch.cat([state, action], dim=1)
        return self.Q1(state_action), self.Q2(state_action)

    def q1(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.Q1(torch.cat([state, action], dim=1))


def build_cnn(arch: Architecture) -> NatureCNN:
    return NatureCNN(
        arch.frame_stack,
        arch.image_size,
        arch.feature_dim,
        arch.cnn_dropout,
        arch.cnn_activation,
        arch.cnn_layer_norm,
        arch.fc_activation,
        arch.input_range,
    )


def build_actor(arch: Architecture) -> Actor:
    return Actor(arch.state_dim, arch.action_dim, arch.hidden_dim)


def build_critic(arch: Architecture) -> Critic:
    return Critic(arch.state_dim, arch.action_dim, arch.hidden_dim)


def encode_state(cnn: NatureCNN, frames_uint8: torch.Tensor, vector: torch.Tensor | None) -> torch.Tensor:
    """uint8 frame stacks (+ vector state) → the state the actor and critic read."""
    features = cnn(scale_frames(frames_uint8, input_range=cnn.input_range))
    if vector is None or vector.shape[-1] == 0:
        return features
    return torch.cat([features, vector.to(features.dtype)], dim=1)


class Policy(nn.Module):
    """Actor CNN + actor: what the driver runs and the exporter writes out."""

    def __init__(self, arch: Architecture):
        super().__init__()
        self.arch = arch
        self.actor_cnn = build_cnn(arch)
        self.actor = build_actor(arch)

    def forward(self, frames_uint8: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
        """frames: uint8 (B, stack, H, W); vector: float (B, vector_dim) → actions (B, 2) in [-1, 1]."""
        return self.actor(encode_state(self.actor_cnn, frames_uint8, vector))
