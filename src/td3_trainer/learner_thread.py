"""Gradient updates on their own thread (async_updates).

In the default mode the loop does its updates between publishing a_t and reading tick t+1;
an update slower than the bridge's command wait (1 s, e.g. full-size networks on a CPU)
then lets the world tick on its own and those frames are dropped. Here the loop only asks
for `updates_per_step` updates per step and never waits for them: the thread catches up
when it can (a backlog of at most MAX_BACKLOG), and acting uses a copy of the actor
refreshed after each actor update. Update counts then depend on timing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from td3_core.networks import Policy


class BackgroundLearner:
    MAX_BACKLOG = 1000

    def __init__(
        self,
        agent: Any,
        buffer: Any,
        buffer_lock: threading.Lock,
        batch_size: int,
        on_train: Callable[[Mapping[str, float], int], None],
        on_failure: Callable[[BaseException], None],
    ) -> None:
        self.agent = agent
        self.buffer = buffer
        self.buffer_lock = buffer_lock  # the thread samples while the loop adds
        self.batch_size = batch_size
        self.on_train = on_train
        self.on_failure = on_failure
        self.lock = threading.Lock()  # the agent: an update, or reading it for a checkpoint
        self._policy = Policy(agent.arch).to(agent.device).eval().requires_grad_(False)
        self._policy_lock = threading.Lock()
        self._refresh_policy()
        self._cond = threading.Condition()
        self._pending = 0
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="td3-learner", daemon=True)
        self._thread.start()

    def request(self, count: int) -> None:
        with self._cond:
            self._pending = min(self._pending + count, self.MAX_BACKLOG)
            self._cond.notify()

    def act(self, frames: np.ndarray, vector: np.ndarray) -> np.ndarray:
        """The policy's action (no exploration noise), from the snapshot the updates refresh."""
        device = self.agent.device
        frames_t = torch.as_tensor(frames, device=device).unsqueeze(0)
        vector_t = torch.as_tensor(vector, dtype=torch.float32, device=device).reshape(1, -1)
        with self._policy_lock, torch.inference_mode():
            action = self._policy(frames_t, vector_t)[0].float().cpu().numpy()
        return np.clip(action, -1.0, 1.0).astype(np.float32)

    def _refresh_policy(self) -> None:
        with self._policy_lock:
            self._policy.actor_cnn.load_state_dict(self.agent.actor_cnn.state_dict())
            self._policy.actor.load_state_dict(self.agent.actor.state_dict())

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    while not self._pending and not self._closing:
                        self._cond.wait()
                    if self._closing:
                        return
                    self._pending -= 1
                with self.buffer_lock:
                    batch = self.buffer.sample(self.batch_size)
                with self.lock:
                    stats = self.agent.update(batch)
                    total_it = self.agent.total_it
                    if "actor_loss" in stats:
                        self._refresh_policy()
                self.on_train(stats, total_it)
        except Exception as error:  # a failing update must stop the run, not leave it acting blindly
            self.on_failure(error)

    def close(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join()
