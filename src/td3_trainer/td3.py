"""TD3 (Fujimoto et al. 2018) from camera frames: separate NatureCNN encoders for actor and critic.

Gradient flow (docs/learner.md): the critic loss trains the critic CNN and both Q heads; the
actor loss trains the actor MLP only. With actor_encoder "critic" (default) the actor reads the
critic CNN's features without gradient and the actor CNN mirrors the critic CNN after every
update (so a checkpoint's actor CNN + actor is the trained policy); with "own" the actor loss
also trains the actor's own CNN (the original design, which saturates the actions early on).
Either way the actor never shapes the critic's encoder (SAC-AE, DrQ).

Speed: each batch is scaled to float once per update, into buffers reused every update, and
shared by every encoder that reads it; convolutions run channels_last (several times faster
weight gradients on CPU); Adam is fused; target updates are one foreach lerp; metrics are read
back with one transfer.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.functional import mse_loss

from td3_core.checkpoint import NETWORK_KEYS, OPTIMIZER_KEYS, TARGET_KEYS, TrainingState
from td3_core.device import select_device
from td3_core.networks import Architecture, NatureCNN, build_actor, build_cnn, build_critic, encode_state
from td3_core.preprocessing import scale_frames
from td3_trainer.augment import random_shift
from td3_trainer.config import TD3Config
from td3_trainer.replay_buffer import Batch


def _adam(module: nn.Module, lr: float, device: torch.device) -> torch.optim.Adam:
    """Fused Adam (one kernel for all parameters) where this torch build has it for the device."""
    from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

    fused = device.type in _get_fused_kernels_supported_devices()
    return torch.optim.Adam(module.parameters(), lr=lr, fused=fused or None, foreach=None if fused else True)


def _to_cpu(value: Any) -> Any:
    """Detached CPU copies of every tensor in nested dicts/lists (a payload that later updates
    cannot change); conv weights go back to the default layout."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True).contiguous()
    if isinstance(value, Mapping):
        return {key: _to_cpu(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_to_cpu(item) for item in value)
    return value


def _match_parameters(optimizer: torch.optim.Optimizer) -> None:
    """Loaded optimizer state laid out like its parameter (channels_last convs), the step
    counter on the parameter's device (what fused kernels expect)."""
    for group in optimizer.param_groups:
        for param in group["params"]:
            state = optimizer.state.get(param, {})
            for key, value in state.items():
                if not isinstance(value, torch.Tensor):
                    continue
                if key == "step":
                    if group.get("fused"):
                        state[key] = value.to(param.device, torch.float32)
                elif value.shape == param.shape:
                    state[key] = torch.empty_like(param).copy_(value)


class TD3Agent:
    def __init__(self, arch: Architecture, config: TD3Config, device: str | torch.device | None = "cpu") -> None:
        self.arch = arch
        self.config = config
        self.device = torch.device(device) if device is not None else select_device("auto")
        # Initial weights depend on config.seed only, not on whatever used the global RNG before.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.actor_cnn = build_cnn(arch)
            self.critic_cnn = build_cnn(arch)
            self.actor = build_actor(arch)
            self.critic = build_critic(arch)
        # channels_last: on CPU the convolutions' weight gradients are several times faster.
        self.memory_format = torch.channels_last
        self._input_buffers: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
        for cnn in (self.actor_cnn, self.critic_cnn):
            cnn.to(self.device, memory_format=self.memory_format)
        self.actor.to(self.device)
        self.critic.to(self.device)
        self.actor_cnn_target = self._target_of(self.actor_cnn)
        self.critic_cnn_target = self._target_of(self.critic_cnn)
        self.actor_target = self._target_of(self.actor)
        self.critic_target = self._target_of(self.critic)

        self.actor_cnn_optimizer = _adam(self.actor_cnn, config.actor_cnn_lr, self.device)
        self.critic_cnn_optimizer = _adam(self.critic_cnn, config.critic_cnn_lr, self.device)
        self.actor_optimizer = _adam(self.actor, config.actor_lr, self.device)
        self.critic_optimizer = _adam(self.critic, config.critic_lr, self.device)

        online = (self.actor_cnn, self.actor, self.critic_cnn, self.critic)
        targets = (self.actor_cnn_target, self.actor_target, self.critic_cnn_target, self.critic_target)
        self._online_params = [p for module in online for p in module.parameters()]
        self._target_params = [p for module in targets for p in module.parameters()]
        # What the actor loss trains: the actor MLP, and its own CNN unless it mirrors the critic's.
        self._actor_params = [*self.actor.parameters()]
        if config.actor_encoder == "critic":
            self.mirror_actor_encoder()
        else:
            self._actor_params += [*self.actor_cnn.parameters()]

        # The agent's own random streams: target smoothing noise and augmentation (torch, on the
        # device), exploration noise when act() gets no generator (numpy).
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(config.seed)
        self.np_rng = np.random.default_rng(config.seed)
        self.total_it = 0

    def use_memory_format(self, memory_format: torch.memory_format) -> None:
        """Lay out the CNNs (online, target) and their optimizer state for `memory_format`
        (channels_last by default; contiguous_format for comparisons)."""
        self.memory_format = memory_format
        self._input_buffers.clear()
        for cnn in (self.actor_cnn, self.critic_cnn, self.actor_cnn_target, self.critic_cnn_target):
            cnn.to(memory_format=memory_format)
        for optimizer in (self.actor_cnn_optimizer, self.critic_cnn_optimizer):
            _match_parameters(optimizer)

    @staticmethod
    def _target_of(module: nn.Module) -> nn.Module:
        target = copy.deepcopy(module)
        target.requires_grad_(False)
        return target.eval()  # deterministic targets even with cnn_dropout > 0

    # ------------------------------------------------------------------ acting

    def act(
        self,
        frames: np.ndarray,
        vector: np.ndarray,
        noise_std: float = 0.0,
        rng: np.random.Generator | None = None,
    ) -> np.ndarray:
        """(stack, H, W) uint8 frames + vector → action (action_dim,) float32 in [-1, 1]."""
        frames_t = torch.as_tensor(np.asarray(frames, dtype=np.uint8), device=self.device)
        frames_t = frames_t.reshape(1, self.arch.frame_stack, *frames_t.shape[-2:])
        vector_t = torch.as_tensor(np.asarray(vector, dtype=np.float32), device=self.device).reshape(1, -1)
        modes = (self.actor_cnn.training, self.actor.training)
        self.actor_cnn.eval()
        self.actor.eval()
        try:
            with torch.inference_mode():
                action = self.actor(encode_state(self.actor_cnn, frames_t, vector_t))[0].float().cpu().numpy()
        finally:
            self.actor_cnn.train(modes[0])
            self.actor.train(modes[1])
        if noise_std > 0.0:
            action = action + (rng if rng is not None else self.np_rng).normal(0.0, noise_std, action.shape)
        return np.clip(action, -1.0, 1.0).astype(np.float32)

    # ------------------------------------------------------------------ learning

    def _scale(self, frames: torch.Tensor, role: str) -> torch.Tensor:
        """uint8 stacks → float in the CNNs' input range and layout, done once per batch for all encoders.

        Written into buffers kept per role ("obs", "next_obs") and reused every update: a fresh
        30 MB tensor per batch costs page faults on every allocation (measured: 9% of the
        update's time at batch 256 on CPU). The values are scale_frames' exactly. A buffer is
        free again when the update that wrote it returns (its graph is gone after backward)."""
        frames = frames.to(self.device)
        key = (role, tuple(frames.shape))
        if key not in self._input_buffers:
            shape, layout = frames.shape, self.memory_format
            as_uint8 = torch.empty(shape, dtype=torch.uint8, device=self.device).contiguous(memory_format=layout)
            as_float = torch.empty(shape, dtype=torch.float32, device=self.device).contiguous(memory_format=layout)
            self._input_buffers[key] = (as_uint8, as_float)
        as_uint8, as_float = self._input_buffers[key]
        as_uint8.copy_(frames)  # the layout change on bytes: cheaper than on floats
        return scale_frames(as_uint8, out=as_float, input_range=self.arch.input_range)

    def _state(self, cnn: NatureCNN, scaled: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
        """encode_state on already scaled frames."""
        features = cnn(scaled)
        if self.arch.vector_dim == 0:
            return features
        return torch.cat([features, vector.to(features.dtype)], dim=1)

    def update(self, batch: Batch) -> dict[str, float]:
        """One TD3 iteration: a critic step; every policy_delay-th call an actor step and the
        soft update of all four targets. Returns the losses and mean Q values."""
        cfg = self.config
        self.total_it += 1
        frames, next_frames = batch.frames, batch.next_frames
        if cfg.augment:
            frames = random_shift(frames.to(self.device), cfg.augment_pad, self.generator)
            next_frames = random_shift(next_frames.to(self.device), cfg.augment_pad, self.generator)
        obs, next_obs = self._scale(frames, "obs"), self._scale(next_frames, "next_obs")
        vectors, next_vectors = batch.vectors.to(self.device), batch.next_vectors.to(self.device)
        actions = batch.actions.to(self.device)
        rewards, terminated = batch.rewards.to(self.device), batch.terminated.to(self.device)
        discounts = cfg.gamma ** batch.horizons.to(self.device)  # gamma, or gamma^n after an n-step sum

        # Clipped double-Q target with target policy smoothing. Truncation is not terminal: only
        # `terminated` stops the bootstrap.
        shared = cfg.actor_encoder == "critic"
        with torch.no_grad():
            noise = torch.randn(actions.shape, generator=self.generator, device=self.device)
            noise = (noise * cfg.policy_noise).clamp(-cfg.noise_clip, cfg.noise_clip)
            next_critic_state = self._state(self.critic_cnn_target, next_obs, next_vectors)
            next_actor_state = (
                next_critic_state if shared else self._state(self.actor_cnn_target, next_obs, next_vectors)
            )
            next_actions = (self.actor_target(next_actor_state) + noise).clamp(-1.0, 1.0)
            target_q1, target_q2 = self.critic_target(next_critic_state, next_actions)
            target_q = rewards + discounts * (1.0 - terminated) * torch.min(target_q1, target_q2)

        # Critic step: the critic loss trains the critic CNN and both Q heads.
        q1, q2 = self.critic(self._state(self.critic_cnn, obs, vectors), actions)
        critic_loss = mse_loss(q1, target_q) + mse_loss(q2, target_q)
        self.critic_cnn_optimizer.zero_grad(set_to_none=True)
        self.critic_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_cnn_optimizer.step()
        self.critic_optimizer.step()
        metrics = {
            "critic_loss": critic_loss,
            "q1_mean": q1.mean(),
            "q2_mean": q2.mean(),
            "target_q_mean": target_q.mean(),
        }

        if self.total_it % cfg.policy_delay == 0:
            # Actor step against the just-updated critic. Its features carry no gradient, and
            # backward(inputs=...) sends the actor loss only to the actor CNN and actor MLP.
            with torch.no_grad():
                critic_state = self._state(self.critic_cnn, obs, vectors)
            actor_state = critic_state if shared else self._state(self.actor_cnn, obs, vectors)
            preactivation = self.actor.preactivation(actor_state)
            actor_actions = torch.tanh(preactivation)
            actor_loss = -self.critic.q1(critic_state, actor_actions).mean()
            if cfg.actor_preactivation_penalty > 0.0:
                actor_loss = actor_loss + cfg.actor_preactivation_penalty * preactivation.pow(2).mean()
            self.actor_optimizer.zero_grad(set_to_none=True)
            self.actor_cnn_optimizer.zero_grad(set_to_none=True)
            actor_loss.backward(inputs=self._actor_params)
            if not shared:
                self.actor_cnn_optimizer.step()
            self.actor_optimizer.step()
            self.soft_update()
            metrics["actor_loss"] = actor_loss
        if shared:
            self.mirror_actor_encoder()

        values = torch.stack([value.detach() for value in metrics.values()]).tolist()  # one read-back
        return dict(zip(metrics, values, strict=True))

    @torch.no_grad()
    def mirror_actor_encoder(self) -> None:
        """actor_encoder "critic": the actor CNN (and its target) hold the critic CNN's weights,
        so the policy a checkpoint deploys (actor CNN + actor) is exactly the one trained."""
        for mirror, source in ((self.actor_cnn, self.critic_cnn), (self.actor_cnn_target, self.critic_cnn_target)):
            torch._foreach_copy_(list(mirror.parameters()), list(source.parameters()))

    @torch.no_grad()
    def soft_update(self) -> None:
        """Polyak averaging of all four targets: target += tau * (online - target)."""
        torch._foreach_lerp_(self._target_params, self._online_params, self.config.tau)

    # ------------------------------------------------------------------ checkpoints

    def _networks(self) -> dict[str, nn.Module]:
        modules = (self.actor_cnn, self.critic_cnn, self.actor, self.critic)
        targets = (self.actor_cnn_target, self.critic_cnn_target, self.actor_target, self.critic_target)
        return dict(zip((*NETWORK_KEYS, *TARGET_KEYS), (*modules, *targets), strict=True))

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        optimizers = (self.actor_cnn_optimizer, self.critic_cnn_optimizer, self.actor_optimizer, self.critic_optimizer)
        return dict(zip(OPTIMIZER_KEYS, optimizers, strict=True))

    def rng_state(self) -> dict:
        state = {
            "torch": torch.get_rng_state(),
            "generator": self.generator.get_state().cpu(),
            "generator_device": self.device.type,
            "numpy": self.np_rng.bit_generator.state,
            "python": random.getstate(),
        }
        if torch.cuda.is_available():
            state["torch_cuda"] = torch.cuda.get_rng_state_all()
        return state

    def set_rng_state(self, state: Mapping) -> None:
        if isinstance(state.get("torch"), torch.Tensor):
            torch.set_rng_state(state["torch"].cpu())
        if isinstance(state.get("generator"), torch.Tensor) and state.get("generator_device") == self.device.type:
            self.generator.set_state(state["generator"].cpu())  # CPU and CUDA generators take a CPU state
        if isinstance(state.get("numpy"), Mapping):
            self.np_rng.bit_generator.state = dict(state["numpy"])
        if state.get("python") is not None:
            python = state["python"]
            random.setstate((python[0], tuple(python[1]), python[2]))
        if torch.cuda.is_available() and isinstance(state.get("torch_cuda"), list | tuple):
            cuda_states = list(state["torch_cuda"])
            if len(cuda_states) == torch.cuda.device_count():
                torch.cuda.set_rng_state_all([s.cpu() for s in cuda_states])

    def state(self) -> TrainingState:
        """Detached CPU copies of everything a training checkpoint stores of this agent (a state
        that later updates cannot change); td3_core.checkpoint turns it into a file."""
        modules = self._networks()
        return TrainingState(
            architecture=self.arch,
            networks={key: _to_cpu(modules[key].state_dict()) for key in NETWORK_KEYS},
            targets={key: _to_cpu(modules[key].state_dict()) for key in TARGET_KEYS},
            optimizers={key: _to_cpu(optimizer.state_dict()) for key, optimizer in self._optimizers().items()},
            total_it=int(self.total_it),
            rng_state=_to_cpu(self.rng_state()),
        )

    def restore(self, state: TrainingState, restore_rng: bool = True) -> None:
        """Networks, targets, optimizers, total_it and, when asked, the random states of `state`
        (td3_core.checkpoint.read_training_state). ValueError for another architecture.
        The learning rates stay this agent's config's (a resumed run may change them)."""
        if state.architecture != self.arch:
            raise ValueError(f"checkpoint architecture {state.architecture} differs from the agent's {self.arch}")
        modules = self._networks()
        for key, module_state in {**state.networks, **state.targets}.items():
            modules[key].load_state_dict(module_state)
        for key, optimizer in self._optimizers().items():
            ours = [dict(group) for group in optimizer.param_groups]
            optimizer.load_state_dict(state.optimizers[key])
            for group, own in zip(optimizer.param_groups, ours, strict=True):
                for name in ("lr", "fused", "foreach"):  # our settings, not the file's
                    group[name] = own[name]
            _match_parameters(optimizer)
        self.total_it = state.total_it
        if restore_rng and state.rng_state:
            self.set_rng_state(state.rng_state)

    @classmethod
    def from_state(cls, state: TrainingState, config: TD3Config, device: str | torch.device | None = None) -> TD3Agent:
        """An agent of the state's architecture, restored."""
        agent = cls(state.architecture, config, device)
        agent.restore(state)
        return agent
