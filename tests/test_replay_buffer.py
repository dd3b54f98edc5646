"""FrameReplayBuffer: frames stored once, stacks rebuilt exactly as FrameStacker builds them."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from td3_core.preprocessing import FrameStacker, PreprocessConfig
from td3_trainer.replay_buffer import Batch, FrameReplayBuffer, frame_slots

SIZE = 8  # small frames: the layout logic does not depend on the size


@dataclass
class Expected:
    frames: np.ndarray
    vector: np.ndarray
    action: np.ndarray
    next_frames: np.ndarray
    next_vector: np.ndarray
    terminated: float
    frame_numbers: tuple[int, ...]  # absolute frame counters of obs + next stacks


def episode_frame(episode: int, step: int, counter: int) -> np.ndarray:
    """Every pixel says the episode; two pixels say the step and the absolute frame counter."""
    frame = np.full((SIZE, SIZE), episode % 251, dtype=np.uint8)
    frame[0, 0] = step % 256
    frame[0, 1] = counter % 256
    frame[0, 2] = (counter // 256) % 256
    return frame


def fill(
    buffer: FrameReplayBuffer,
    lengths: list[int],
    endings: list[str] | None = None,
    vector_dim: int = 3,
    gaps: tuple[int, ...] = (),
) -> dict[int, Expected]:
    """Write episodes (length = transitions) and replay them through FrameStacker, with the
    buffer's stack fill; a transition number in `gaps` restarts the stack before it (a gap).

    The reward of transition k is k, so a sampled row names the transition it came from."""
    fill = {} if buffer.fill_level is None else {"stack_fill": "constant", "fill_level": buffer.fill_level}
    stacker = FrameStacker(PreprocessConfig(image_size=SIZE, frame_stack=buffer.frame_stack, **fill))
    expected: dict[int, Expected] = {}
    counter = transition = 0
    for episode, length in enumerate(lengths):
        ending = endings[episode] if endings else ("terminated" if episode % 2 else "truncated")
        frame = episode_frame(episode, 0, counter)
        vector = np.full(vector_dim, counter, dtype=np.float32)
        stacker.reset()
        obs, numbers = stacker.push(frame), [counter] * buffer.frame_stack
        buffer.start_episode(frame, vector)
        counter += 1
        for step in range(1, length + 1):
            if transition in gaps:  # frames lost: the stack starts again from the frame in hand
                stacker.reset()
                obs, numbers = stacker.push(episode_frame(episode, step - 1, counter)), [counter] * buffer.frame_stack
                buffer.start_episode(episode_frame(episode, step - 1, counter), vector)
                counter += 1
            next_frame = episode_frame(episode, step, counter)
            next_vector = np.full(vector_dim, counter, dtype=np.float32)
            action = np.array([transition % 7 / 7, -episode % 5 / 5], dtype=np.float32)
            last = step == length
            terminated = last and ending == "terminated"
            truncated = last and ending == "truncated"
            buffer.add(action, float(transition), next_frame, next_vector, terminated, truncated)
            next_obs = stacker.push(next_frame)
            next_numbers = [*numbers[1:], counter]
            expected[transition] = Expected(
                obs, vector, action, next_obs, next_vector, float(terminated), (*numbers, *next_numbers)
            )
            obs, numbers, vector = next_obs, next_numbers, next_vector
            counter += 1
            transition += 1
    return expected


def assert_matches(batch: Batch, expected: dict[int, Expected]) -> list[int]:
    ids = [int(r) for r in batch.rewards[:, 0].tolist()]
    for row, transition in enumerate(ids):
        want = expected[transition]
        np.testing.assert_array_equal(batch.frames[row].numpy(), want.frames, err_msg=f"obs of {transition}")
        np.testing.assert_array_equal(batch.next_frames[row].numpy(), want.next_frames, err_msg=f"next {transition}")
        np.testing.assert_array_equal(batch.vectors[row].numpy(), want.vector)
        np.testing.assert_array_equal(batch.next_vectors[row].numpy(), want.next_vector)
        np.testing.assert_array_equal(batch.actions[row].numpy(), want.action)
        assert batch.terminated[row, 0].item() == want.terminated
    return ids


def sampleable(buffer: FrameReplayBuffer, expected: dict[int, Expected]) -> set[int]:
    """Transitions among the newest `capacity` whose frames are all still in the ring."""
    total_frames = max(n for e in expected.values() for n in e.frame_numbers) + 1
    newest = max(expected) + 1
    return {
        k
        for k, e in expected.items()
        if k >= newest - buffer.capacity and min(e.frame_numbers) >= total_frames - buffer.slots
    }


# --------------------------------------------------------------------------- storage


def test_each_frame_is_stored_once():
    capacity = 1000
    buffer = FrameReplayBuffer(capacity, (84, 84), frame_stack=4, vector_dim=23, action_dim=2)
    frame_bytes = 84 * 84
    assert buffer.nbytes() >= capacity * frame_bytes
    # One frame per transition, 1 % for segment starts, vectors and indices: < 7.4 KB per transition.
    assert buffer.nbytes() / capacity < 1.02 * frame_bytes + 200
    assert buffer.frames.dtype == torch.uint8 and tuple(buffer.frames.shape) == (frame_slots(capacity, 4), 84, 84)


def test_sample_shapes_and_dtypes():
    buffer = FrameReplayBuffer(50, (SIZE, SIZE), frame_stack=3, vector_dim=5, action_dim=2)
    fill(buffer, [30], vector_dim=5)
    batch = buffer.sample(16)
    assert batch.frames.shape == batch.next_frames.shape == (16, 3, SIZE, SIZE)
    assert batch.frames.dtype == batch.next_frames.dtype == torch.uint8
    assert batch.vectors.shape == batch.next_vectors.shape == (16, 5)
    assert batch.actions.shape == (16, 2)
    assert batch.rewards.shape == batch.terminated.shape == (16, 1)
    for name in ("vectors", "next_vectors", "actions", "rewards", "terminated"):
        assert getattr(batch, name).dtype == torch.float32, name


def test_empty_vector_state():
    buffer = FrameReplayBuffer(20, (SIZE, SIZE), frame_stack=4, vector_dim=0)
    expected = fill(buffer, [12], vector_dim=0)
    batch = buffer.sample(8)
    assert batch.vectors.shape == batch.next_vectors.shape == (8, 0)
    assert_matches(batch, expected)


# --------------------------------------------------------------------------- stacks


def test_stacks_equal_frame_stacker_over_several_episodes():
    buffer = FrameReplayBuffer(500, (SIZE, SIZE), frame_stack=4, vector_dim=3)
    expected = fill(buffer, [1, 2, 3, 4, 5, 9, 1, 17])
    assert len(buffer) == len(expected)
    seen: set[int] = set()
    for _ in range(20):
        seen.update(assert_matches(buffer.sample(32), expected))
    assert seen == set(expected)  # every transition was drawn at least once, all matched


def test_constant_stack_fill_equals_frame_stacker_across_episodes_and_gaps():
    buffer = FrameReplayBuffer(500, (SIZE, SIZE), frame_stack=4, vector_dim=3, fill_level=128)
    expected = fill(buffer, [1, 2, 3, 5, 9, 1, 17], gaps=(6, 13, 14))
    assert any((e.frames == 128).all(axis=(1, 2)).any() for e in expected.values())  # the fill is in there
    seen: set[int] = set()
    for _ in range(20):
        seen.update(assert_matches(buffer.sample(32), expected))
    assert seen == set(expected)


def test_no_frame_of_another_episode_in_a_stack():
    buffer = FrameReplayBuffer(200, (SIZE, SIZE), frame_stack=4, vector_dim=1)
    lengths = [1, 3, 2, 6, 1, 1, 4, 8, 2]
    fill(buffer, lengths, vector_dim=1)
    episode_of = np.repeat(np.arange(len(lengths)), lengths)
    batch = buffer.sample(256)
    for row, transition in enumerate(int(r) for r in batch.rewards[:, 0]):
        for stack in (batch.frames[row], batch.next_frames[row]):
            body = stack[:, 1:, :]  # all but the first row, which carries step and counter
            assert bool((body == episode_of[transition]).all()), f"transition {transition} mixes episodes"


def test_a_gap_restarts_the_stack_like_a_new_episode():
    """start_episode() in the middle (dropped frames): the stack after it repeats its first frame."""
    buffer = FrameReplayBuffer(50, (SIZE, SIZE), frame_stack=4, vector_dim=0)
    frames = [np.full((SIZE, SIZE), v, np.uint8) for v in range(10)]
    none = np.zeros(0, np.float32)
    buffer.start_episode(frames[0], none)
    buffer.add(np.zeros(2), 0.0, frames[1], none, False, False)
    buffer.add(np.zeros(2), 1.0, frames[2], none, False, False)
    buffer.start_episode(frames[5], none)  # frames 3 and 4 were lost
    buffer.add(np.zeros(2), 2.0, frames[6], none, False, False)
    batch = buffer.sample(64)
    after_gap = batch.rewards[:, 0] == 2.0
    assert after_gap.any()
    first_pixel = lambda stacks: stacks[after_gap][:, :, 0, 0]  # noqa: E731
    assert first_pixel(batch.frames).unique().tolist() == [5]
    assert first_pixel(batch.next_frames)[0].tolist() == [5, 5, 5, 6]


def test_ring_wrap_never_yields_overwritten_frames():
    capacity = 20
    buffer = FrameReplayBuffer(capacity, (SIZE, SIZE), frame_stack=4, vector_dim=2)
    lengths = list(np.random.default_rng(1).integers(1, 12, size=60))
    expected = fill(buffer, lengths, vector_dim=2)
    valid = sampleable(buffer, expected)
    assert len(buffer) == len(valid) <= capacity
    drawn: set[int] = set()
    for _ in range(20):
        drawn.update(assert_matches(buffer.sample(64), expected))
    assert drawn == valid  # only intact stacks, and all of them


def test_a_long_episode_fills_the_whole_capacity():
    buffer = FrameReplayBuffer(30, (SIZE, SIZE), frame_stack=4, vector_dim=1)
    expected = fill(buffer, [200], vector_dim=1)
    assert len(buffer) == 30
    ids = assert_matches(buffer.sample(128), expected)
    assert min(ids) == 170 and max(ids) == 199


def test_terminated_and_truncated_flags():
    buffer = FrameReplayBuffer(100, (SIZE, SIZE), frame_stack=2, vector_dim=1)
    expected = fill(buffer, [3, 3, 2], endings=["terminated", "truncated", "terminated"], vector_dim=1)
    terminal = {k for k, e in expected.items() if e.terminated}
    assert terminal == {2, 7}  # truncation (transition 5) is not terminal
    batch = buffer.sample(200)
    for row, transition in enumerate(int(r) for r in batch.rewards[:, 0]):
        assert batch.terminated[row, 0].item() == (1.0 if transition in terminal else 0.0)


# --------------------------------------------------------------------------- errors and state


def test_add_needs_an_open_segment_and_checks_shapes():
    buffer = FrameReplayBuffer(10, (SIZE, SIZE), frame_stack=2, vector_dim=1)
    frame, vector = np.zeros((SIZE, SIZE), np.uint8), np.zeros(1, np.float32)
    with pytest.raises(RuntimeError, match="start_episode"):
        buffer.add(np.zeros(2), 0.0, frame, vector, False, False)
    buffer.start_episode(frame, vector)
    buffer.add(np.zeros(2), 0.0, frame, vector, True, False)
    with pytest.raises(RuntimeError, match="start_episode"):  # the episode ended
        buffer.add(np.zeros(2), 0.0, frame, vector, False, False)
    with pytest.raises(ValueError, match="frame"):
        buffer.start_episode(np.zeros((SIZE, SIZE + 1), np.uint8), vector)
    with pytest.raises(ValueError, match="frame"):
        buffer.start_episode(np.zeros((SIZE, SIZE), np.float32), vector)
    with pytest.raises(ValueError, match="vector"):
        buffer.start_episode(frame, np.zeros(2, np.float32))
    with pytest.raises(RuntimeError, match="empty"):
        FrameReplayBuffer(10, (SIZE, SIZE)).sample(1)


def test_state_dict_round_trip_is_weights_only_and_samples_the_same():
    buffer = FrameReplayBuffer(40, (SIZE, SIZE), frame_stack=3, vector_dim=2, seed=5)
    expected = fill(buffer, [7, 30, 11], vector_dim=2)
    data = io.BytesIO()
    torch.save(buffer.state_dict(), data)
    data.seek(0)
    state = torch.load(data, weights_only=True)
    restored = FrameReplayBuffer(40, (SIZE, SIZE), frame_stack=3, vector_dim=2, seed=99)
    restored.load_state_dict(state)
    assert len(restored) == len(buffer)
    for a, b in zip(buffer.sample(32), restored.sample(32), strict=True):
        assert torch.equal(a, b)
    assert_matches(restored.sample(32), expected)
    with pytest.raises(ValueError, match="vector_dim"):
        FrameReplayBuffer(40, (SIZE, SIZE), frame_stack=3, vector_dim=4).load_state_dict(state)


def test_same_seed_same_samples():
    a = FrameReplayBuffer(40, (SIZE, SIZE), vector_dim=3, seed=3)
    b = FrameReplayBuffer(40, (SIZE, SIZE), vector_dim=3, seed=3)
    fill(a, [25])
    fill(b, [25])
    assert torch.equal(a.sample(16).rewards, b.sample(16).rewards)


# --------------------------------------------------------------------------- property


@settings(max_examples=40, deadline=None)
@given(
    capacity=st.integers(1, 40),
    frame_stack=st.integers(1, 5),
    lengths=st.lists(st.integers(1, 15), min_size=1, max_size=12),
    seed=st.integers(0, 2**16),
)
def test_property_every_sample_equals_the_online_stacks(capacity, frame_stack, lengths, seed):
    buffer = FrameReplayBuffer(capacity, (SIZE, SIZE), frame_stack=frame_stack, vector_dim=1, seed=seed)
    expected = fill(buffer, lengths, vector_dim=1)
    valid = sampleable(buffer, expected)
    assert len(buffer) == len(valid) <= capacity
    if valid:
        ids = assert_matches(buffer.sample(64), expected)
        assert set(ids) <= valid


# --------------------------------------------------------------------------- n-step returns


def n_step_reference(expected: dict[int, Expected], stack: int, n: int, gamma: float, t: int) -> tuple:
    """Transition t's n-step window from the online record: it goes on while the next
    transition's observation is this one's next frame (the same segment), at most n long."""
    window = [t]
    while len(window) < n and window[-1] + 1 in expected:
        here, after = expected[window[-1]], expected[window[-1] + 1]
        if after.frame_numbers[stack - 1] != here.frame_numbers[-1] or here.terminated:
            break
        window.append(window[-1] + 1)
    rewards = sum(gamma**k * float(step) for k, step in enumerate(window))  # transition k's reward is k
    return window[-1], rewards, len(window)


@settings(max_examples=40, deadline=None)
@given(
    capacity=st.integers(1, 40),
    frame_stack=st.integers(1, 4),
    lengths=st.lists(st.integers(1, 12), min_size=1, max_size=8),
    endings=st.lists(st.sampled_from(["terminated", "truncated", "open"]), min_size=8, max_size=8),
    gaps=st.sets(st.integers(0, 60), max_size=4),
    n_step=st.integers(1, 5),
    seed=st.integers(0, 2**16),
)
def test_property_n_step_samples_sum_one_segment(capacity, frame_stack, lengths, endings, gaps, n_step, seed):
    """Every n-step sample: the obs of its first transition, the discounted rewards of the same
    segment's next ones (never past a terminal, a truncation, a gap or the newest stored), and
    the next stack, vector and terminal flag of the last one."""
    gamma = 0.5
    buffer = FrameReplayBuffer(capacity, (SIZE, SIZE), frame_stack, vector_dim=1, seed=seed, n_step=n_step, gamma=gamma)
    expected = fill(buffer, lengths, endings, vector_dim=1, gaps=tuple(gaps))
    valid = sampleable(buffer, expected)
    if not valid:
        return
    batch = buffer.sample(64)
    by_obs_vector = {float(e.vector[0]): k for k, e in expected.items()}  # a transition's obs frame counter
    for row in range(64):
        t = by_obs_vector[batch.vectors[row, 0].item()]
        assert t in valid
        last, rewards, horizon = n_step_reference(expected, frame_stack, n_step, gamma, t)
        np.testing.assert_array_equal(batch.frames[row].numpy(), expected[t].frames)
        np.testing.assert_array_equal(batch.actions[row].numpy(), expected[t].action)
        np.testing.assert_array_equal(batch.next_frames[row].numpy(), expected[last].next_frames)
        np.testing.assert_array_equal(batch.next_vectors[row].numpy(), expected[last].next_vector)
        assert batch.terminated[row, 0].item() == expected[last].terminated
        assert batch.horizons[row, 0].item() == horizon
        assert batch.rewards[row, 0].item() == pytest.approx(rewards, rel=1e-6)


def test_n_step_windows_stop_at_a_terminal_and_at_the_newest_transition():
    buffer = FrameReplayBuffer(50, (SIZE, SIZE), frame_stack=2, vector_dim=0, n_step=3, gamma=0.5)
    frame, none = np.zeros((SIZE, SIZE), np.uint8), np.zeros(0, np.float32)
    buffer.start_episode(frame, none)
    for k in range(4):  # rewards 1, 2, 4, 8; the fourth is terminal
        buffer.add(np.zeros(2), float(2**k), frame, none, k == 3, False)
    buffer.start_episode(frame, none)
    buffer.add(np.zeros(2), 100.0, frame, none, False, False)  # a new episode's first, not yet followed
    batch = buffer.sample(256)
    rows = {
        (batch.rewards[i, 0].item(), batch.horizons[i, 0].item(), batch.terminated[i, 0].item()) for i in range(256)
    }
    assert rows == {
        (1 + 2 * 0.5 + 4 * 0.25, 3.0, 0.0),  # transitions 0, 1, 2
        (2 + 4 * 0.5 + 8 * 0.25, 3.0, 1.0),  # 1, 2 and the terminal 3
        (4 + 8 * 0.5, 2.0, 1.0),  # 2 and the terminal
        (8.0, 1.0, 1.0),  # the terminal alone
        (100.0, 1.0, 0.0),  # nothing after it is stored yet
    }


def test_n_step_one_samples_what_the_one_step_buffer_samples():
    kwargs = dict(capacity=30, frame_shape=(SIZE, SIZE), frame_stack=3, vector_dim=2, seed=5)
    one, default = FrameReplayBuffer(**kwargs, n_step=1, gamma=0.3), FrameReplayBuffer(**kwargs)
    fill(one, [7, 5, 9], vector_dim=2), fill(default, [7, 5, 9], vector_dim=2)
    for a, b in zip(one.sample(32), default.sample(32), strict=True):
        assert torch.equal(a, b)
    assert torch.equal(one.sample(8).horizons, torch.ones(8, 1))


def test_n_step_and_gamma_are_checked():
    for bad in (dict(n_step=0), dict(gamma=1.5), dict(gamma=-0.1)):
        with pytest.raises(ValueError, match="n_step"):
            FrameReplayBuffer(10, (SIZE, SIZE), **bad)
