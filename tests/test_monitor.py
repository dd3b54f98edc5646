"""The trainer's monitoring topics seen by a monitor that joins after the events happened."""

from __future__ import annotations

import threading
import time

import pytest
from td3_drive.msg import Episode

from td3_bringup.observer import BackgroundNode
from td3_trainer.episode import EpisodeStats
from td3_trainer.monitor import EVENT_LOG_DEPTH, EVENT_LOG_QOS, Monitor


def make_monitor(node) -> Monitor:
    return Monitor(
        node,
        run_name="late_join",
        role_name="ego_vehicle",
        log_dir="",
        total_steps=100,
        start_steps=0,
        stats_period_s=60.0,
        progress=False,
        tensorboard=False,
        status=dict,
    )


@pytest.mark.ros
def test_a_monitor_that_joins_late_gets_every_recent_episode():
    with BackgroundNode("monitor_test_trainer") as trainer:
        monitor = make_monitor(trainer.node)
        episodes = EVENT_LOG_DEPTH + 5
        for index in range(episodes):
            monitor.on_episode(EpisodeStats(index=index, steps=10, reason="max_steps"), env_steps=10 * (index + 1))
        # Only now does anyone subscribe (a slow discovery, or rqt opened mid-run).
        with BackgroundNode("monitor_test_late") as late:
            lock, got = threading.Lock(), []

            def on_episode(msg: Episode) -> None:
                with lock:
                    got.append(msg.episode)

            late.node.create_subscription(Episode, "/monitor_test_trainer/episode", on_episode, EVENT_LOG_QOS)
            deadline = time.monotonic() + 20.0
            while time.monotonic() < deadline:
                with lock:
                    if len(got) >= EVENT_LOG_DEPTH:
                        break
                time.sleep(0.05)
            with lock:
                received = list(got)
        monitor.close()
    assert received == list(range(episodes - EVENT_LOG_DEPTH, episodes))
