"""TD3Agent: acting, the update against a plain reference implementation, gradient flow."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from td3_core.networks import Architecture, Policy, build_actor, build_cnn, build_critic, encode_state
from td3_core.preprocessing import scale_frames
from td3_trainer.augment import random_shift
from td3_trainer.config import TD3Config
from td3_trainer.replay_buffer import Batch, FrameReplayBuffer
from td3_trainer.td3 import TD3Agent

SMALL = Architecture(image_size=36, feature_dim=32, hidden_dim=32, vector_dim=3)


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: the numbers do not depend on the machine's load; restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def random_batch(arch: Architecture, size: int, seed: int = 0, terminated: float | None = None) -> Batch:
    g = torch.Generator().manual_seed(seed)
    frames = lambda: torch.randint(0, 256, (size, arch.frame_stack, arch.image_size, arch.image_size), generator=g)  # noqa: E731
    done = torch.full((size, 1), terminated) if terminated is not None else (torch.rand(size, 1, generator=g) < 0.3)
    return Batch(
        frames=frames().to(torch.uint8),
        vectors=torch.randn(size, arch.vector_dim, generator=g),
        actions=torch.rand(size, arch.action_dim, generator=g) * 2 - 1,
        rewards=torch.randn(size, 1, generator=g),
        next_frames=frames().to(torch.uint8),
        next_vectors=torch.randn(size, arch.vector_dim, generator=g),
        terminated=done.float(),
        horizons=torch.randint(1, 4, (size, 1), generator=g).float(),  # n-step sums of 1 to 3 rewards
    )


def parameters(agent) -> dict[str, torch.Tensor]:
    names = ("actor_cnn", "critic_cnn", "actor", "critic")
    modules = {n: getattr(agent, n) for n in names} | {f"{n}_target": getattr(agent, f"{n}_target") for n in names}
    return {f"{m}.{k}": v.detach().clone() for m, module in modules.items() for k, v in module.state_dict().items()}


# --------------------------------------------------------------------------- reference


class ReferenceTD3:
    """The TD3 update written plainly (CleanRL style), on copies of an agent's initial weights."""

    def __init__(self, agent: TD3Agent):
        arch, cfg = agent.arch, agent.config
        self.cfg = cfg
        self.shared = cfg.actor_encoder == "critic"
        self.generator = torch.Generator().manual_seed(0)
        self.generator.set_state(agent.generator.get_state())  # the same target smoothing noise

        def copy(build, source):
            module = build(arch)
            module.load_state_dict(source.state_dict())
            return module

        self.actor_cnn, self.critic_cnn = copy(build_cnn, agent.actor_cnn), copy(build_cnn, agent.critic_cnn)
        self.actor, self.critic = copy(build_actor, agent.actor), copy(build_critic, agent.critic)
        self.actor_cnn_target = copy(build_cnn, agent.actor_cnn_target)
        self.critic_cnn_target = copy(build_cnn, agent.critic_cnn_target)
        self.actor_target = copy(build_actor, agent.actor_target)
        self.critic_target = copy(build_critic, agent.critic_target)
        self.actor_cnn_optimizer = torch.optim.Adam(self.actor_cnn.parameters(), lr=cfg.actor_cnn_lr)
        self.critic_cnn_optimizer = torch.optim.Adam(self.critic_cnn.parameters(), lr=cfg.critic_cnn_lr)
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=cfg.actor_lr)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=cfg.critic_lr)
        self.total_it = 0

    def update(self, b: Batch) -> dict[str, float]:
        cfg = self.cfg
        self.total_it += 1
        with torch.no_grad():
            noise = (torch.randn(b.actions.shape, generator=self.generator) * cfg.policy_noise).clamp(
                -cfg.noise_clip, cfg.noise_clip
            )
            actor_cnn_target = self.critic_cnn_target if self.shared else self.actor_cnn_target
            next_actions = (
                self.actor_target(encode_state(actor_cnn_target, b.next_frames, b.next_vectors)) + noise
            ).clamp(-1, 1)
            q1_next, q2_next = self.critic_target(
                encode_state(self.critic_cnn_target, b.next_frames, b.next_vectors), next_actions
            )
            target_q = b.rewards + cfg.gamma**b.horizons * (1 - b.terminated) * torch.min(q1_next, q2_next)

        q1, q2 = self.critic(encode_state(self.critic_cnn, b.frames, b.vectors), b.actions)
        critic_loss = F.mse_loss(q1, target_q) + F.mse_loss(q2, target_q)
        self.critic_cnn_optimizer.zero_grad()
        self.critic_optimizer.zero_grad()
        critic_loss.backward()
        self.critic_cnn_optimizer.step()
        self.critic_optimizer.step()
        metrics = {"critic_loss": critic_loss.item(), "q1_mean": q1.mean().item(), "q2_mean": q2.mean().item()}
        metrics["target_q_mean"] = target_q.mean().item()

        if self.total_it % cfg.policy_delay == 0:
            critic_state = encode_state(self.critic_cnn, b.frames, b.vectors).detach()
            actor_state = critic_state if self.shared else encode_state(self.actor_cnn, b.frames, b.vectors)
            actions = self.actor(actor_state)
            actor_loss = -self.critic.q1(critic_state, actions).mean()
            self.actor_cnn_optimizer.zero_grad()
            self.actor_optimizer.zero_grad()
            self.critic_optimizer.zero_grad()
            actor_loss.backward()
            self.critic_optimizer.zero_grad()  # the actor's loss is not the critic's
            if not self.shared:
                self.actor_cnn_optimizer.step()
            self.actor_optimizer.step()
            metrics["actor_loss"] = actor_loss.item()
            pairs = [
                (self.actor_cnn, self.actor_cnn_target),
                (self.critic_cnn, self.critic_cnn_target),
                (self.actor, self.actor_target),
                (self.critic, self.critic_target),
            ]
            for online, target in pairs:
                for p, tp in zip(online.parameters(), target.parameters(), strict=True):
                    tp.data.copy_(cfg.tau * p.data + (1 - cfg.tau) * tp.data)
        if self.shared:  # the deployed actor CNN is the critic's
            self.actor_cnn.load_state_dict(self.critic_cnn.state_dict())
            self.actor_cnn_target.load_state_dict(self.critic_cnn_target.state_dict())
        return metrics


@pytest.mark.parametrize(
    "arch",
    [
        Architecture(image_size=84, feature_dim=64, hidden_dim=64, vector_dim=0),
        Architecture(image_size=36, feature_dim=32, hidden_dim=32, vector_dim=5),
    ],
    ids=["84px-pixels-only", "36px-with-vector"],
)
@pytest.mark.parametrize("actor_encoder", ["critic", "own"])
def test_update_equals_the_reference_implementation(arch, actor_encoder):
    agent = TD3Agent(arch, TD3Config(seed=1, actor_encoder=actor_encoder))
    reference = ReferenceTD3(agent)
    for step in range(4):  # two critic-only iterations and two with actor and target updates
        batch = random_batch(arch, 16, seed=step)
        ours, theirs = agent.update(batch), reference.update(batch)
        assert ours.keys() == theirs.keys()
        for key in ours:
            assert ours[key] == pytest.approx(theirs[key], rel=1e-5, abs=1e-6), (step, key)
        mine, plain = parameters(agent), parameters(reference)
        for name in plain:
            torch.testing.assert_close(mine[name], plain[name], atol=1e-5, rtol=0, msg=f"{name} after {step + 1}")
    assert agent.total_it == 4


def test_contiguous_layout_gives_the_same_updates():
    """channels_last is a speed choice only: the contiguous layout computes the same TD3 update."""
    default, contiguous = TD3Agent(SMALL, TD3Config(seed=4)), TD3Agent(SMALL, TD3Config(seed=4))
    contiguous.use_memory_format(torch.contiguous_format)
    assert default.critic_cnn.features[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert contiguous.critic_cnn.features[0].weight.is_contiguous()
    for step in range(2):
        batch = random_batch(SMALL, 8, seed=step)
        assert default.update(batch) == pytest.approx(contiguous.update(batch), rel=1e-5, abs=1e-6)
    first, second = parameters(default), parameters(contiguous)
    for name in first:
        torch.testing.assert_close(first[name], second[name], atol=1e-5, rtol=0, msg=name)


def test_the_input_buffers_hold_exactly_the_scaled_frames_and_are_reused():
    agent = TD3Agent(SMALL, TD3Config(seed=2))
    first, second = random_batch(SMALL, 8, seed=0), random_batch(SMALL, 8, seed=1)
    obs = agent._scale(first.frames, "obs")
    next_obs = agent._scale(first.next_frames, "next_obs")
    assert obs.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(obs, scale_frames(first.frames)) and torch.equal(next_obs, scale_frames(first.next_frames))
    assert obs.data_ptr() != next_obs.data_ptr()
    again = agent._scale(second.frames, "obs")  # the next update's batch: same memory, new values
    assert again.data_ptr() == obs.data_ptr()
    assert torch.equal(again, scale_frames(second.frames))


# --------------------------------------------------------------------------- the update


def test_policy_delay_actor_and_targets_change_only_every_delay_updates():
    agent = TD3Agent(SMALL, TD3Config(policy_delay=3, actor_encoder="own"))
    actor_side = ("actor_cnn.", "actor.", "actor_cnn_target.", "actor_target.", "critic_cnn_target.", "critic_target.")
    for step in range(1, 7):
        before = parameters(agent)
        metrics = agent.update(random_batch(SMALL, 8, seed=step))
        after = parameters(agent)
        changed = {name for name in before if not torch.equal(before[name], after[name])}
        critic_changed = {n for n in changed if n.startswith(("critic_cnn.", "critic."))}
        actor_changed = {n for n in changed if n.startswith(actor_side)}
        assert critic_changed, f"critic unchanged at update {step}"
        if step % 3 == 0:
            assert "actor_loss" in metrics
            for prefix in actor_side:  # every actor-side module and every target moved
                assert any(n.startswith(prefix) for n in actor_changed), (step, prefix)
        else:
            assert "actor_loss" not in metrics and not actor_changed, (step, sorted(actor_changed)[:3])
    assert agent.total_it == 6


def test_the_actor_loss_sends_no_gradient_to_the_critic():
    agent = TD3Agent(SMALL, TD3Config(policy_delay=2, actor_encoder="own"))
    calls: dict[str, int] = {}

    def count(name):
        def hook(grad):
            calls[name] = calls.get(name, 0) + 1

        return hook

    for module in ("critic_cnn", "critic", "actor_cnn", "actor"):
        for key, param in getattr(agent, module).named_parameters():
            param.register_hook(count(f"{module}.{key}"))
    agent.update(random_batch(SMALL, 8, seed=1))  # critic step only
    assert calls and all(name.startswith("critic") for name in calls)
    assert all(n == 1 for n in calls.values())
    calls.clear()
    agent.update(random_batch(SMALL, 8, seed=2))  # critic step, then actor step
    critic = {n: c for n, c in calls.items() if n.startswith("critic")}
    actor = {n: c for n, c in calls.items() if n.startswith("actor")}
    # Each critic parameter got exactly one gradient (its own loss), none from the actor loss;
    # the actor loss reached every parameter of the actor CNN and the actor MLP.
    assert critic and set(critic.values()) == {1}
    assert len(critic) == sum(1 for m in (agent.critic_cnn, agent.critic) for _ in m.parameters())
    assert len(actor) == sum(1 for m in (agent.actor_cnn, agent.actor) for _ in m.parameters())
    assert set(actor.values()) == {1}


def test_with_the_critic_encoder_the_actor_cnn_mirrors_the_critics_and_gets_no_gradient():
    agent = TD3Agent(SMALL, TD3Config(policy_delay=2, actor_encoder="critic"))
    for step in range(1, 5):
        metrics = agent.update(random_batch(SMALL, 8, seed=step))
        for mirror, source in ((agent.actor_cnn, agent.critic_cnn), (agent.actor_cnn_target, agent.critic_cnn_target)):
            for a, b in zip(mirror.parameters(), source.parameters(), strict=True):
                assert torch.equal(a, b), step
        assert ("actor_loss" in metrics) == (step % 2 == 0)
    assert not agent.actor_cnn_optimizer.state, "the actor CNN is never stepped by its own optimizer"
    assert all(p.grad is None for p in agent.actor_cnn.parameters())


def _expected_target(agent: TD3Agent, batch: Batch) -> torch.Tensor:
    """r + gamma * (1 - terminated) * min(Q1', Q2') with the noise the agent will draw."""
    generator = torch.Generator().manual_seed(0)
    generator.set_state(agent.generator.get_state())
    cfg = agent.config
    with torch.no_grad():
        noise = (torch.randn(batch.actions.shape, generator=generator) * cfg.policy_noise).clamp(
            -cfg.noise_clip, cfg.noise_clip
        )
        actions = agent.actor_target(encode_state(agent.actor_cnn_target, batch.next_frames, batch.next_vectors))
        q1, q2 = agent.critic_target(
            encode_state(agent.critic_cnn_target, batch.next_frames, batch.next_vectors), (actions + noise).clamp(-1, 1)
        )
        return batch.rewards + cfg.gamma**batch.horizons * (1 - batch.terminated) * torch.min(q1, q2)


def test_terminated_transitions_do_not_bootstrap_truncated_ones_do():
    agent = TD3Agent(SMALL, TD3Config(gamma=0.9))
    with torch.no_grad():  # targets with a clearly non-zero value, so that bootstrapping shows
        agent.critic_target.Q1.l3.bias.fill_(5.0)
        agent.critic_target.Q2.l3.bias.fill_(5.0)
    terminal = random_batch(SMALL, 8, seed=3, terminated=1.0)
    metrics = agent.update(terminal)
    assert metrics["target_q_mean"] == pytest.approx(terminal.rewards.mean().item(), abs=1e-6)

    truncated = random_batch(SMALL, 8, seed=4, terminated=0.0)  # time-limit ends are stored like this
    expected = _expected_target(agent, truncated)
    metrics = agent.update(truncated)
    assert metrics["target_q_mean"] == pytest.approx(expected.mean().item(), abs=1e-5)
    assert metrics["target_q_mean"] > truncated.rewards.mean().item() + 3.0  # gamma * ~5 was added

    mixed = random_batch(SMALL, 8, seed=5)
    assert 0 < mixed.terminated.sum() < 8
    expected = _expected_target(agent, mixed)
    assert agent.update(mixed)["target_q_mean"] == pytest.approx(expected.mean().item(), abs=1e-5)


def test_an_n_step_sum_bootstraps_with_gamma_to_its_horizon():
    agent = TD3Agent(SMALL, TD3Config(gamma=0.9))
    with torch.no_grad():
        agent.critic_target.Q1.l3.bias.fill_(5.0)
        agent.critic_target.Q2.l3.bias.fill_(5.0)
    batch = random_batch(SMALL, 8, seed=6, terminated=0.0)._replace(horizons=torch.full((8, 1), 3.0))
    one_step = _expected_target(agent, batch._replace(horizons=torch.ones(8, 1)))
    expected = _expected_target(agent, batch)
    assert agent.update(batch)["target_q_mean"] == pytest.approx(expected.mean().item(), abs=1e-5)
    bootstrap = one_step - batch.rewards  # gamma * min Q; three steps bootstrap with gamma^3
    torch.testing.assert_close(expected - batch.rewards, bootstrap * 0.9**2)


def test_same_seed_same_updates_with_augmentation():
    config = TD3Config(augment=True, augment_pad=4, seed=7)
    a, b = TD3Agent(SMALL, config), TD3Agent(SMALL, config)
    for step in range(2):
        batch = random_batch(SMALL, 8, seed=step)
        assert a.update(batch) == b.update(batch)
    first, second = parameters(a), parameters(b)
    assert all(torch.equal(first[n], second[n]) for n in first)
    plain = TD3Agent(SMALL, TD3Config(seed=7))
    for step in range(2):
        plain.update(random_batch(SMALL, 8, seed=step))
    assert not torch.equal(parameters(plain)["critic_cnn.fc.weight"], first["critic_cnn.fc.weight"])


def test_random_shift_is_replicate_pad_then_crop():
    frames = torch.randint(0, 256, (6, 4, 12, 12), dtype=torch.uint8)
    generator = torch.Generator().manual_seed(3)
    shifted = random_shift(frames, 2, generator)
    assert shifted.dtype == torch.uint8 and shifted.shape == frames.shape
    shifts = torch.randint(0, 5, (6, 2), generator=torch.Generator().manual_seed(3))
    padded = F.pad(frames.float(), (2, 2, 2, 2), mode="replicate")
    for i, (dy, dx) in enumerate(shifts.tolist()):
        crop = padded[i, :, dy : dy + 12, dx : dx + 12].to(torch.uint8)
        assert torch.equal(shifted[i], crop)
    assert torch.equal(random_shift(frames, 0, generator), frames)


# --------------------------------------------------------------------------- acting


def test_act_is_in_range_deterministic_and_what_the_driver_computes():
    agent = TD3Agent(SMALL, TD3Config())
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (4, 36, 36), dtype=np.uint8)
    vector = rng.normal(size=3).astype(np.float32)
    action = agent.act(frames, vector)
    assert action.shape == (2,) and action.dtype == np.float32
    assert np.all(np.abs(action) <= 1.0)
    assert np.array_equal(action, agent.act(frames, vector))

    policy = Policy(SMALL)
    policy.actor_cnn.load_state_dict(agent.actor_cnn.state_dict())
    policy.actor.load_state_dict(agent.actor.state_dict())
    with torch.no_grad():
        driver = policy(torch.from_numpy(frames)[None], torch.from_numpy(vector)[None])[0].numpy()
    np.testing.assert_allclose(action, driver, atol=1e-6)

    noisy = agent.act(frames, vector, noise_std=0.3, rng=np.random.default_rng(5))
    assert np.array_equal(noisy, agent.act(frames, vector, noise_std=0.3, rng=np.random.default_rng(5)))
    assert not np.array_equal(noisy, action)
    wild = agent.act(frames, vector, noise_std=100.0)
    assert wild.dtype == np.float32 and np.all(np.abs(wild) <= 1.0)
    assert agent.actor.training and agent.actor_cnn.training  # act() leaves the training mode alone


def test_act_with_dropout_is_deterministic():
    arch = Architecture(image_size=36, feature_dim=32, hidden_dim=32, vector_dim=0, cnn_dropout=0.5)
    agent = TD3Agent(arch, TD3Config())
    frames = np.random.default_rng(1).integers(0, 256, (4, 36, 36), dtype=np.uint8)
    none = np.zeros(0, np.float32)
    assert np.array_equal(agent.act(frames, none), agent.act(frames, none))


# --------------------------------------------------------------------------- learning


def test_learns_a_trivial_visual_bandit():
    """One-step episodes: the best steering is +0.5 with a bar on the left, -0.5 with one on the right."""
    arch = Architecture(image_size=36, feature_dim=32, hidden_dim=64, vector_dim=0)
    config = TD3Config(seed=0, actor_lr=3e-4, actor_cnn_lr=3e-4, critic_lr=1e-3, critic_cnn_lr=1e-3)
    agent = TD3Agent(arch, config)
    buffer = FrameReplayBuffer(512, (36, 36), frame_stack=4, vector_dim=0, seed=0)
    rng = np.random.default_rng(0)
    none = np.zeros(0, np.float32)
    frame_of = {True: np.zeros((36, 36), np.uint8), False: np.zeros((36, 36), np.uint8)}
    frame_of[True][:, :12] = 255
    frame_of[False][:, 24:] = 255

    def best(left: bool) -> float:
        return 0.5 if left else -0.5

    for _ in range(512):
        left = bool(rng.random() < 0.5)
        action = rng.uniform(-1, 1, 2).astype(np.float32)
        reward = -((action[0] - best(left)) ** 2) - action[1] ** 2
        buffer.start_episode(frame_of[left], none)
        buffer.add(action, float(reward), frame_of[left], none, True, False)
    for _ in range(400):
        agent.update(buffer.sample(32))
    steer = {}
    for left in (True, False):
        steer[left], accel = agent.act(np.stack([frame_of[left]] * 4), none)
        assert abs(steer[left] - best(left)) < 0.3, (left, steer[left])
        assert abs(accel) < 0.3, (left, accel)
    assert steer[True] - steer[False] > 0.5


def test_the_preactivation_penalty_pulls_a_saturated_actor_back_and_is_off_by_default():
    def saturated_agent(penalty: float) -> TD3Agent:
        torch.manual_seed(0)
        agent = TD3Agent(SMALL, TD3Config(policy_delay=1, actor_lr=1e-2, actor_preactivation_penalty=penalty))
        with torch.no_grad():
            agent.actor.fc3.bias.fill_(-4.0)  # every action at tanh(-4): full brake, full steer
        return agent

    def mean_preactivation(agent: TD3Agent, batch: Batch) -> float:
        with torch.no_grad():
            state = agent._state(agent.critic_cnn, scale_frames(batch.frames), batch.vectors)
            return float(agent.actor.preactivation(state).mean())

    batch = random_batch(SMALL, 16)
    plain, penalised = saturated_agent(0.0), saturated_agent(1.0)
    start = mean_preactivation(plain, batch)
    for step in range(30):
        for agent in (plain, penalised):
            agent.update(random_batch(SMALL, 16, seed=step))
    assert start < -3.5
    assert mean_preactivation(penalised, batch) > mean_preactivation(plain, batch) + 0.5
    assert TD3Config().actor_preactivation_penalty == 0.0
    with pytest.raises(ValueError, match="actor_preactivation_penalty"):
        TD3Config(actor_preactivation_penalty=-1.0)
