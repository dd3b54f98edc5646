"""The original system (av_td3_system), written here from ../shared/reference/av-td3-system-checkpoints.md
and its source, independently of td3_core: its checkpoint files per layout variant, its networks'
forward passes, its image pipeline and its vector state. Tests compare td3_core against these.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np
import torch
from torch.nn import functional

VARIANTS = ("B", "C1", "C2", "C3", "C4", "C5", "C6")
LAYER_NORM = ("C5", "C6")
RELU = ("B", "C1")  # the CNN activation; LeakyReLU(0.01) from C2 (0005912)
FOLDED = ("C4", "C5", "C6")  # CNN parameters inside the actor/critic Adams, CNN optimizers None
CNN_SHAPES = {
    "conv1.weight": (32, 4, 8, 8),
    "conv1.bias": (32,),
    "conv2.weight": (64, 32, 4, 4),
    "conv2.bias": (64,),
    "conv3.weight": (64, 64, 3, 3),
    "conv3.bias": (64,),
    "ln1.weight": (32, 20, 20),
    "ln1.bias": (32, 20, 20),
    "ln2.weight": (64, 9, 9),
    "ln2.bias": (64, 9, 9),
    "ln3.weight": (64, 7, 7),
    "ln3.bias": (64, 7, 7),
    "fc.weight": (512, 3136),
    "fc.bias": (512,),
    "ln4.weight": (512,),
    "ln4.bias": (512,),
}


def state_dim(variant: str) -> int:
    return 565 if variant in ("C3", "C4", "C5", "C6") else 535


def _tensor(shape: tuple[int, ...], generator: torch.Generator, name: str) -> torch.Tensor:
    if name.startswith("ln") and name.endswith("weight"):
        return 1.0 + 0.1 * torch.randn(shape, generator=generator)
    fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    return torch.randn(shape, generator=generator) / math.sqrt(fan_in if len(shape) > 1 else 16)


def cnn_names(variant: str) -> list[str]:
    """Registration order (cnn_extractor.py): conv1..3, then ln1..3, fc, ln4 when there is LayerNorm."""
    convs = [f"conv{i}.{k}" for i in (1, 2, 3) for k in ("weight", "bias")]
    if variant in LAYER_NORM:
        return [
            *convs,
            *[f"ln{i}.{k}" for i in (1, 2, 3) for k in ("weight", "bias")],
            "fc.weight",
            "fc.bias",
            "ln4.weight",
            "ln4.bias",
        ]
    return [*convs, "fc.weight", "fc.bias"]


def cnn_state(variant: str, generator: torch.Generator) -> dict:
    return {name: _tensor(CNN_SHAPES[name], generator, name) for name in cnn_names(variant)}


def mlp_state(in_dim: int, out_dim: int, generator: torch.Generator, prefix: str = "") -> dict:
    shapes = {
        "fc1.weight": (256, in_dim),
        "fc1.bias": (256,),
        "fc2.weight": (256, 256),
        "fc2.bias": (256,),
        "fc3.weight": (out_dim, 256),
        "fc3.bias": (out_dim,),
    }
    return {prefix + name: _tensor(shape, generator, name) for name, shape in shapes.items()}


def adam_state(tensors: list[torch.Tensor], generator: torch.Generator, lr: float, weight_decay: float, steps: int):
    """torch.optim.Adam.state_dict() as the original saved it: one param group, ids in order."""
    state = {
        i: {
            "step": torch.tensor(float(steps)),
            "exp_avg": 1e-3 * torch.randn(t.shape, generator=generator),
            "exp_avg_sq": 1e-6 * torch.rand(t.shape, generator=generator),
        }
        for i, t in enumerate(tensors)
    }
    group = {
        "lr": lr,
        "betas": (0.9, 0.999),
        "eps": 1e-08,
        "weight_decay": weight_decay,
        "amsgrad": False,
        "maximize": False,
        "foreach": None,
        "capturable": False,
        "differentiable": False,
        "fused": None,
        "params": list(range(len(tensors))),
    }
    return {"state": state, "param_groups": [group]}


def checkpoint(variant: str, seed: int = 0, total_it: int = 1200) -> dict:
    """A checkpoint as TD3Agent.save_checkpoint wrote it in `variant` (keys in its order)."""
    g = torch.Generator().manual_seed(seed)
    s = state_dim(variant)
    actor = mlp_state(s, 2, g)
    critic = {**mlp_state(s + 2, 1, g, "Q1."), **mlp_state(s + 2, 1, g, "Q2.")}
    config = {
        "algorithm": {"learning_rate": 3e-4, "discount": 0.99},
        "networks": {"cnn": {"learning_rate": 1e-4}},
        "state": {"waypoints": {"num_waypoints": 10}},
        "seed": 42,
    }
    if variant == "A":
        return {
            "total_it": 0,
            "actor_state_dict": actor,
            "critic_state_dict": critic,
            "actor_optimizer_state_dict": {
                "state": {},
                "param_groups": [{"lr": 3e-4, "weight_decay": 0, "params": list(range(6))}],
            },
            "critic_optimizer_state_dict": {
                "state": {},
                "param_groups": [{"lr": 3e-4, "weight_decay": 0, "params": list(range(12))}],
            },
            "config": config,
        }
    weight_decay = 1e-4 if variant == "C6" else 0.0
    actor_cnn = cnn_state(variant, g)
    critic_cnn = cnn_state(variant, g)
    steps = total_it
    if variant in FOLDED:
        actor_opt = adam_state([*actor.values(), *actor_cnn.values()], g, 3e-4, weight_decay, steps // 2)
        critic_opt = adam_state([*critic.values(), *critic_cnn.values()], g, 3e-4, weight_decay, steps)
        actor_cnn_opt = critic_cnn_opt = None
    else:
        actor_opt = adam_state(list(actor.values()), g, 3e-4, 0.0, steps // 2)
        critic_opt = adam_state(list(critic.values()), g, 3e-4, 0.0, steps)
        actor_cnn_opt = adam_state(list(actor_cnn.values()), g, 1e-4, 0.0, steps // 2)
        critic_cnn_opt = adam_state(list(critic_cnn.values()), g, 1e-4, 0.0, steps)
    base = {
        "total_it": total_it,
        "actor_state_dict": actor,
        "critic_state_dict": critic,
        "actor_optimizer_state_dict": actor_opt,
        "critic_optimizer_state_dict": critic_opt,
        "config": config,
        "use_dict_buffer": True,
    }
    if variant == "B":
        return {**base, "cnn_state_dict": actor_cnn, "cnn_optimizer_state_dict": critic_cnn_opt}
    return {
        **base,
        "discount": 0.99,
        "tau": 0.005,
        "policy_freq": 2,
        "policy_noise": 0.2,
        "noise_clip": 0.5,
        "max_action": 1.0,
        "state_dim": s,
        "action_dim": 2,
        "actor_cnn_state_dict": actor_cnn,
        "critic_cnn_state_dict": critic_cnn,
        "actor_cnn_optimizer_state_dict": actor_cnn_opt,
        "critic_cnn_optimizer_state_dict": critic_cnn_opt,
    }


# --------------------------------------------------------------------------- networks (reference §2)


def cnn_forward(sd: dict, x: torch.Tensor, variant: str) -> torch.Tensor:
    """x: (B, 4, 84, 84) in [-1, 1]."""
    act = functional.relu if variant in RELU else (lambda t: functional.leaky_relu(t, 0.01))
    for i, stride in ((1, 4), (2, 2), (3, 1)):
        x = functional.conv2d(x, sd[f"conv{i}.weight"], sd[f"conv{i}.bias"], stride=stride)
        if variant in LAYER_NORM:
            x = functional.layer_norm(x, x.shape[1:], sd[f"ln{i}.weight"], sd[f"ln{i}.bias"])
        x = act(x)
    x = functional.linear(x.view(x.shape[0], -1), sd["fc.weight"], sd["fc.bias"])
    if variant in LAYER_NORM:
        x = act(functional.layer_norm(x, x.shape[1:], sd["ln4.weight"], sd["ln4.bias"]))
    return x  # no activation after the fc before 168403b


def actor_forward(sd: dict, state: torch.Tensor, prefix: str = "") -> torch.Tensor:
    h = functional.relu(functional.linear(state, sd[prefix + "fc1.weight"], sd[prefix + "fc1.bias"]))
    h = functional.relu(functional.linear(h, sd[prefix + "fc2.weight"], sd[prefix + "fc2.bias"]))
    return torch.tanh(functional.linear(h, sd[prefix + "fc3.weight"], sd[prefix + "fc3.bias"])) * 1.0


def q_forward(sd: dict, state: torch.Tensor, action: torch.Tensor, head: str) -> torch.Tensor:
    x = torch.cat([state, action], dim=1)
    h = functional.relu(functional.linear(x, sd[f"{head}.fc1.weight"], sd[f"{head}.fc1.bias"]))
    h = functional.relu(functional.linear(h, sd[f"{head}.fc2.weight"], sd[f"{head}.fc2.bias"]))
    return functional.linear(h, sd[f"{head}.fc3.weight"], sd[f"{head}.fc3.bias"])


def policy_forward(ckpt: dict, variant: str, frames: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
    cnn = ckpt["cnn_state_dict"] if variant == "B" else ckpt["actor_cnn_state_dict"]
    return actor_forward(ckpt["actor_state_dict"], torch.cat([cnn_forward(cnn, frames, variant), vector], dim=1))


# --------------------------------------------------------------------------- camera (reference §3)


def _rgb_to_gray(rgb: np.ndarray) -> np.ndarray:
    """cv2.cvtColor(RGB2GRAY) on uint8: fixed point 0.299/0.587/0.114 with 14 fraction bits."""
    r, g, b = (rgb[..., i].astype(np.int64) for i in range(3))
    return ((r * 4899 + g * 9617 + b * 1868 + (1 << 13)) >> 14).astype(np.uint8)


def _resize_area(gray: np.ndarray, size: int) -> np.ndarray:
    """cv2.resize(INTER_AREA) when shrinking: each output pixel the mean of the area it covers,
    computed by replicating pixels to a common multiple of both sizes and averaging blocks."""
    height, width = gray.shape
    rows, cols = math.lcm(height, size), math.lcm(width, size)
    big = np.repeat(np.repeat(gray.astype(np.float64), rows // height, axis=0), cols // width, axis=1)
    means = big.reshape(size, rows // size, size, cols // size).mean(axis=(1, 3))
    return np.clip(np.rint(means), 0, 255).astype(np.uint8)


def preprocess_frame(bgra: np.ndarray, unit_range: bool = False) -> np.ndarray:
    """sensors.py: drop alpha, reverse to RGB, gray, 84x84 INTER_AREA, /255, then (x-0.5)/0.5."""
    rgb = bgra[..., :3][..., ::-1]
    scaled = _resize_area(_rgb_to_gray(rgb), 84).astype(np.float32) / 255.0
    return scaled if unit_range else (scaled - 0.5) / 0.5


class ImageStack:
    """A deque of 4 zero frames; new frames on the right; returned oldest → newest."""

    def __init__(self) -> None:
        self.frames = deque([np.zeros((84, 84), np.float32)] * 4, maxlen=4)

    def push(self, frame: np.ndarray) -> np.ndarray:
        self.frames.append(frame)
        return np.stack(self.frames)


# --------------------------------------------------------------------------- vector state (reference §4)


def _wrap(angle: float) -> float:
    return math.atan2(math.sin(angle), math.cos(angle))


class WaypointManager:
    """waypoint_manager.py in CARLA coordinates (x forward/east, y right/south, yaw clockwise).

    `modern`: the code of 6e0eaa8 (C6): lateral = unsigned distance to the lane centre, target heading =
    lane direction at that point (the lane is the route polyline here). Otherwise the code of
    745ce79/168403b: signed distance from the line (previous waypoint → current waypoint), + right,
    and target heading = bearing from the car to the current waypoint."""

    def __init__(self, waypoints: np.ndarray, num_ahead: int, modern: bool, lookahead: float = 50.0) -> None:
        self.waypoints = waypoints
        self.num_ahead = num_ahead
        self.modern = modern
        self.lookahead = lookahead
        self.current_waypoint_idx = 0

    def _lane_point(self, vx: float, vy: float) -> tuple[float, float, float]:
        best = (math.inf, 0.0, 0.0, 0.0)
        for a, b in zip(self.waypoints[:-1], self.waypoints[1:], strict=True):
            d = b - a
            t = min(max(((vx - a[0]) * d[0] + (vy - a[1]) * d[1]) / float(d @ d), 0.0), 1.0)
            px, py = a[0] + t * d[0], a[1] + t * d[1]
            dist = math.hypot(vx - px, vy - py)
            if dist < best[0]:
                best = (dist, px, py, math.atan2(d[1], d[0]))
        return best[1], best[2], best[3]

    def lateral_deviation(self, vx: float, vy: float) -> float:
        if self.modern:
            px, py, _ = self._lane_point(vx, vy)
            return math.sqrt((vx - px) ** 2 + (vy - py) ** 2)
        i = self.current_waypoint_idx
        wp1 = self.waypoints[0] if i == 0 else self.waypoints[i - 1]
        wp2 = self.waypoints[i]
        route_dx, route_dy = wp2[0] - wp1[0], wp2[1] - wp1[1]
        route_length = math.sqrt(route_dx**2 + route_dy**2)
        if route_length < 0.001:
            return 0.0
        cross = route_dx * (vy - wp1[1]) - route_dy * (vx - wp1[0])
        return cross / route_length

    def target_heading(self, vx: float, vy: float) -> float:
        if self.modern:
            return self._lane_point(vx, vy)[2]
        wp = self.waypoints[self.current_waypoint_idx]
        return math.atan2(wp[1] - vy, wp[0] - vx)

    def next_waypoints(self, vx: float, vy: float, heading: float) -> np.ndarray:
        wpx, wpy = self.waypoints[self.current_waypoint_idx]
        if math.sqrt((vx - wpx) ** 2 + (vy - wpy) ** 2) < 5.0 and self.current_waypoint_idx < len(self.waypoints) - 1:
            self.current_waypoint_idx += 1
        out = []
        for i in range(self.num_ahead):
            idx = self.current_waypoint_idx + i
            if idx >= len(self.waypoints):
                out.append([0.0, 0.0])
                continue
            dx, dy = self.waypoints[idx][0] - vx, self.waypoints[idx][1] - vy
            local = [math.cos(heading) * dx + math.sin(heading) * dy, -math.sin(heading) * dx + math.cos(heading) * dy]
            out.append(local if math.hypot(*local) <= self.lookahead else [0.0, 0.0])
        return np.array(out, dtype=np.float32)


def observation_vector(manager: WaypointManager, x: float, y: float, yaw_deg: float, speed: float) -> np.ndarray:
    """carla_env._get_observation: the vehicle state first, then the waypoints (which advance the index)."""
    lateral = manager.lateral_deviation(x, y)
    heading_error = _wrap(math.radians(yaw_deg) - manager.target_heading(x, y))
    waypoints = manager.next_waypoints(x, y, math.radians(yaw_deg))
    return np.concatenate([[speed / 30.0, lateral / 3.5, heading_error / math.pi], (waypoints / 50.0).reshape(-1)])
