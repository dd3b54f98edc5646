"""Replay buffer that stores every camera frame once and rebuilds the stacks when sampling.

Layout (see docs/learner.md):
  * a frame ring of `slots` uint8 (H, W) frames, each with its observation vector; one slot per
    transition (its next frame) plus one per segment start (the segment's first frame);
  * a transition ring of `capacity` entries: action, reward, terminated, and where its
    observation sits in the frame ring (`obs_slot`, an absolute frame counter, and `depth`,
    the frames since the segment start, capped at frame_stack - 1).
A stack is frames obs_slot - min(back, depth) for back = stack-1 .. 0: before the segment's
first frame it repeats that frame, which is what FrameStacker does, so a stack never reaches
into another episode; with `fill_level` (a checkpoint profile's constant stack fill) the
positions before the segment start are frames of that grey level instead, as FrameStacker's.
A transition is sampleable while its oldest frame is still in the ring; because stacks start
later for later transitions, the sampleable ones are a contiguous range of transition numbers
[oldest, added), advanced as frames are overwritten.

With `n_step` > 1 a sampled transition is an n-step one, built at sampling time (nothing
extra is stored): the discounted sum of up to n rewards of the same segment, the stack after
the last of them, and `horizons`, how many were summed. Fewer than n are summed where the
segment ends first (terminal, truncation, dropped frame) or its later steps are not stored
yet. The bootstrap discount is gamma ** horizons (TD3Agent.update); a terminal inside the
horizon always ends it, so `terminated` belongs to its last step.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

STATE_FORMAT = 1


class Batch(NamedTuple):
    frames: torch.Tensor  # uint8 (B, stack, H, W)
    vectors: torch.Tensor  # float32 (B, vector_dim)
    actions: torch.Tensor  # float32 (B, action_dim)
    rewards: torch.Tensor  # float32 (B, 1)
    next_frames: torch.Tensor  # uint8 (B, stack, H, W)
    next_vectors: torch.Tensor  # float32 (B, vector_dim)
    terminated: torch.Tensor  # float32 (B, 1): 1 only for true terminal states, 0 for truncation
    horizons: torch.Tensor  # float32 (B, 1): rewards summed in `rewards` (1 unless n_step > 1)


def frame_slots(capacity: int, frame_stack: int) -> int:
    """Frame ring size: one frame per transition, the stack history of the oldest one, and room
    for the first frames of segments (1%): segments averaging >= 100 steps never cost capacity."""
    return capacity + frame_stack + capacity // 100


class FrameReplayBuffer:
    def __init__(
        self,
        capacity: int,
        frame_shape: tuple[int, int] = (84, 84),
        frame_stack: int = 4,
        vector_dim: int = 23,
        action_dim: int = 2,
        device: str | torch.device = "cpu",
        seed: int = 0,
        fill_level: int | None = None,
        n_step: int = 1,
        gamma: float = 0.99,
    ) -> None:
        if capacity < 1 or frame_stack < 1 or vector_dim < 0 or action_dim < 1:
            raise ValueError(
                f"invalid buffer shape: capacity {capacity}, frame_stack {frame_stack}, "
                f"vector_dim {vector_dim}, action_dim {action_dim}"
            )
        if n_step < 1 or not 0.0 <= gamma <= 1.0:
            raise ValueError(f"n_step must be >= 1 and gamma in [0, 1], got n_step {n_step}, gamma {gamma}")
        self.capacity = int(capacity)
        self.frame_shape = (int(frame_shape[0]), int(frame_shape[1]))
        self.frame_stack = int(frame_stack)
        self.vector_dim = int(vector_dim)
        self.action_dim = int(action_dim)
        self.device = torch.device(device)
        self.fill_level = fill_level  # None: repeat the segment's first frame before its start
        self.slots = frame_slots(self.capacity, self.frame_stack)
        self.n_step = int(n_step)
        self.gamma = float(gamma)  # only n-step sums use it; the bootstrap discount is the agent's

        # Bulk storage on the device: frames stay uint8 until the update scales them there.
        self.frames = torch.zeros((self.slots, *self.frame_shape), dtype=torch.uint8, device=self.device)
        self.vectors = torch.zeros((self.slots, self.vector_dim), dtype=torch.float32, device=self.device)
        self.actions = torch.zeros((self.capacity, self.action_dim), dtype=torch.float32, device=self.device)
        self.rewards = torch.zeros((self.capacity, 1), dtype=torch.float32, device=self.device)
        self.terminated = torch.zeros((self.capacity, 1), dtype=torch.float32, device=self.device)
        # Index bookkeeping on the CPU: the sampler does its arithmetic here, sends indices once.
        self.obs_slot = torch.zeros(self.capacity, dtype=torch.int64)
        self.depth = torch.zeros(self.capacity, dtype=torch.int64)
        self._backs = torch.arange(self.frame_stack - 1, -1, -1, dtype=torch.int64)
        self._ahead = torch.arange(self.n_step, dtype=torch.int64)
        self._reward_weights = (self.gamma ** self._ahead.to(torch.float64)).to(torch.float32).to(self.device)

        self.generator = torch.Generator()
        self.generator.manual_seed(int(seed))
        self.frames_written = 0  # absolute frame counter (slot = counter % slots)
        self.added = 0  # absolute transition counter
        self.oldest = 0  # first sampleable transition number
        self._current = -1  # absolute slot of the open segment's latest frame; -1: no open segment
        self._current_depth = 0

    # ------------------------------------------------------------------ writing

    def start_episode(self, first_frame: np.ndarray, vector: np.ndarray) -> None:
        """Open a segment (episode start, or restart after a dropped frame) with its first frame."""
        self._current = self._write_frame(first_frame, vector)
        self._current_depth = 0

    def add(
        self,
        action: np.ndarray,
        reward: float,
        next_frame: np.ndarray,
        next_vector: np.ndarray,
        terminated: bool,
        truncated: bool,
    ) -> None:
        """Store one transition of the open segment; terminated or truncated closes the segment."""
        if self._current < 0:
            raise RuntimeError("add() without an open segment: call start_episode() first")
        action = np.asarray(action, dtype=np.float32).reshape(-1)
        if action.shape != (self.action_dim,):
            raise ValueError(f"action has shape {action.shape}, expected ({self.action_dim},)")
        obs_slot, depth = self._current, self._current_depth
        next_slot = self._write_frame(next_frame, next_vector)
        index = self.added % self.capacity
        self.obs_slot[index] = obs_slot
        self.depth[index] = depth
        self.actions[index] = torch.from_numpy(action).to(self.device)
        self.rewards[index, 0] = float(reward)
        self.terminated[index, 0] = 1.0 if terminated else 0.0
        self.added += 1
        self._forget_overwritten()
        if terminated or truncated:
            self._current = -1
        else:
            self._current, self._current_depth = next_slot, min(depth + 1, self.frame_stack - 1)

    def _write_frame(self, frame: np.ndarray, vector: np.ndarray) -> int:
        frame = np.asarray(frame)
        if frame.shape != self.frame_shape or frame.dtype != np.uint8:
            raise ValueError(f"frame must be uint8 {self.frame_shape}, got {frame.dtype} {frame.shape}")
        vector = np.asarray(vector, dtype=np.float32).reshape(-1)
        if vector.shape != (self.vector_dim,):
            raise ValueError(f"vector has shape {vector.shape}, expected ({self.vector_dim},)")
        absolute = self.frames_written
        slot = absolute % self.slots
        self.frames[slot] = torch.from_numpy(frame).to(self.device)
        self.vectors[slot] = torch.from_numpy(vector).to(self.device)
        self.frames_written += 1
        self._forget_overwritten()
        return absolute

    def _forget_overwritten(self) -> None:
        """Advance `oldest` past transitions whose stack lost a frame or whose entry is reused."""
        first_kept_frame = self.frames_written - self.slots
        self.oldest = max(self.oldest, self.added - self.capacity)
        while self.oldest < self.added:
            index = self.oldest % self.capacity
            if int(self.obs_slot[index]) - int(self.depth[index]) >= first_kept_frame:
                break
            self.oldest += 1

    # ------------------------------------------------------------------ sampling

    def __len__(self) -> int:
        return self.added - self.oldest

    def sample(self, batch_size: int) -> Batch:
        if len(self) == 0:
            raise RuntimeError("sample() from an empty replay buffer")
        number = torch.randint(self.oldest, self.added, (batch_size,), generator=self.generator)
        index = number % self.capacity
        if self.n_step > 1:
            last, steps = self._horizon(number)
        else:
            last, steps = index, None
        obs_slot, depth = self.obs_slot[index], self.depth[index]
        last_slot, last_depth = self.obs_slot[last], self.depth[last]
        # Stack positions, oldest first; before the segment start they repeat its first frame.
        obs = obs_slot[:, None] - torch.minimum(self._backs[None, :], depth[:, None])
        nxt = last_slot[:, None] + 1 - torch.minimum(self._backs[None, :], last_depth[:, None] + 1)
        # One transfer of all indices to the device, then gathers there.
        parts = (
            obs.reshape(-1) % self.slots,
            nxt.reshape(-1) % self.slots,
            obs_slot % self.slots,
            (last_slot + 1) % self.slots,
            index,
            last,
        )
        obs_index, next_index, vector_index, next_vector_index, transition, last_transition = (
            torch.cat(parts).to(self.device, non_blocking=True).split([p.numel() for p in parts])
        )
        stack_shape = (batch_size, self.frame_stack, *self.frame_shape)
        frames = self.frames.index_select(0, obs_index).view(stack_shape)
        next_frames = self.frames.index_select(0, next_index).view(stack_shape)
        if self.fill_level is not None:
            before_obs = self._backs[None, :] > depth[:, None]
            before_next = self._backs[None, :] > last_depth[:, None] + 1
            frames.masked_fill_(before_obs.to(self.device)[:, :, None, None], self.fill_level)
            next_frames.masked_fill_(before_next.to(self.device)[:, :, None, None], self.fill_level)
        if steps is None:
            rewards = self.rewards.index_select(0, transition)
            horizons = torch.ones((batch_size, 1), dtype=torch.float32, device=self.device)
        else:
            rewards, horizons = self._n_step_rewards(number, steps)
        return Batch(
            frames=frames,
            vectors=self.vectors.index_select(0, vector_index),
            actions=self.actions.index_select(0, transition),
            rewards=rewards,
            next_frames=next_frames,
            next_vectors=self.vectors.index_select(0, next_vector_index),
            terminated=self.terminated.index_select(0, last_transition),
            horizons=horizons,
        )

    def _horizon(self, number: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Ring index of the last transition of each n-step window, and the window length.

        Transition number + k continues the same segment exactly when it is stored and its
        observation is the frame k after number's: every transition writes one frame, and a
        new segment writes its first frame too, so a segment boundary breaks the count."""
        later = number[:, None] + self._ahead[None, :]
        stored = later < self.added
        slots = self.obs_slot[later % self.capacity]
        same_segment = stored & (slots == self.obs_slot[number % self.capacity][:, None] + self._ahead[None, :])
        steps = same_segment.to(torch.int64).cumprod(dim=1).sum(dim=1)  # >= 1: k = 0 is number itself
        return (number + steps - 1) % self.capacity, steps

    def _n_step_rewards(self, number: torch.Tensor, steps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """sum_{k < steps} gamma^k r_{number + k}, and steps, as (B, 1) float32 on the device."""
        ring = ((number[:, None] + self._ahead[None, :]) % self.capacity).to(self.device)
        within = (self._ahead[None, :] < steps[:, None]).to(self.device)
        per_step = self.rewards[:, 0][ring] * self._reward_weights[None, :]
        rewards = torch.where(within, per_step, torch.zeros((), device=self.device)).sum(dim=1, keepdim=True)
        return rewards, steps.to(torch.float32).to(self.device)[:, None]

    # ------------------------------------------------------------------ size and persistence

    def nbytes(self) -> int:
        tensors = (self.frames, self.vectors, self.actions, self.rewards, self.terminated, self.obs_slot, self.depth)
        return sum(t.numel() * t.element_size() for t in tensors)

    def state_dict(self) -> dict:
        """Tensors and ints only (torch.load(weights_only=True) reads it); the filled part only."""
        frames_used = min(self.frames_written, self.slots)
        used = min(self.added, self.capacity)
        return {
            "format": STATE_FORMAT,
            "capacity": self.capacity,
            "frame_shape": list(self.frame_shape),
            "frame_stack": self.frame_stack,
            "vector_dim": self.vector_dim,
            "action_dim": self.action_dim,
            "frames_written": self.frames_written,
            "added": self.added,
            "oldest": self.oldest,
            "current": self._current,
            "current_depth": self._current_depth,
            "generator": self.generator.get_state(),
            "frames": self.frames[:frames_used].cpu(),
            "vectors": self.vectors[:frames_used].cpu(),
            "actions": self.actions[:used].cpu(),
            "rewards": self.rewards[:used].cpu(),
            "terminated": self.terminated[:used].cpu(),
            "obs_slot": self.obs_slot[:used].clone(),
            "depth": self.depth[:used].clone(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a state_dict() of a buffer of the same shape; ValueError naming what differs."""
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"replay buffer state format {state.get('format')!r}, expected {STATE_FORMAT}")
        expected = {
            "capacity": self.capacity,
            "frame_shape": list(self.frame_shape),
            "frame_stack": self.frame_stack,
            "vector_dim": self.vector_dim,
            "action_dim": self.action_dim,
        }
        for key, value in expected.items():
            found = list(state.get(key)) if key == "frame_shape" else state.get(key)
            if found != value:
                raise ValueError(f"replay buffer state has {key} {found!r}, this buffer {value!r}")
        frames_used = min(int(state["frames_written"]), self.slots)
        used = min(int(state["added"]), self.capacity)
        if state["frames"].shape[0] != frames_used or state["actions"].shape[0] != used:
            raise ValueError("replay buffer state is inconsistent (stored sizes do not match its counters)")
        self.frames[:frames_used] = state["frames"].to(self.device)
        self.vectors[:frames_used] = state["vectors"].to(self.device)
        self.actions[:used] = state["actions"].to(self.device)
        self.rewards[:used] = state["rewards"].to(self.device)
        self.terminated[:used] = state["terminated"].to(self.device)
        self.obs_slot[:used] = state["obs_slot"]
        self.depth[:used] = state["depth"]
        self.frames_written = int(state["frames_written"])
        self.added = int(state["added"])
        self.oldest = int(state["oldest"])
        self._current = int(state["current"])
        self._current_depth = int(state["current_depth"])
        self.generator.set_state(state["generator"])
