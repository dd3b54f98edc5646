"""The trainer's monitoring topics seen by a monitor that joins after the events happened, and at close."""

from __future__ import annotations

import threading
import time

import pytest
from diagnostic_msgs.msg import DiagnosticArray
from td3_drive.msg import Episode

from td3_bringup.observer import BackgroundNode
from td3_trainer.episode import EpisodeStats
from td3_trainer.monitor import EVENT_LOG_DEPTH, EVENT_LOG_QOS, Monitor

MONITOR_ARGS = {
    "run_name": "late_join",
    "role_name": "ego_vehicle",
    "log_dir": "",
    "total_steps": 100,
    "start_steps": 0,
    "stats_period_s": 60.0,  # no timer tick during a test
    "progress": False,
    "tensorboard": False,
    "status": dict,
}


def make_monitor(node) -> Monitor:
    return Monitor(node=node, **MONITOR_ARGS)


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


@pytest.mark.ros
def test_the_last_diagnostics_carry_the_counters_at_close():
    counters = {"resets": 0}
    with BackgroundNode("monitor_test_trainer_close") as trainer, BackgroundNode("monitor_test_reader") as reader:
        lock, got = threading.Lock(), []

        def on_diagnostics(msg: DiagnosticArray) -> None:
            with lock:
                got.extend(msg.status)

        reader.node.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, 100)
        monitor = Monitor(**{**MONITOR_ARGS, "node": trainer.node, "status": lambda: dict(counters)})
        deadline = time.monotonic() + 20.0
        while trainer.node.count_subscribers("/diagnostics") < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        counters["resets"] = 7  # the last reset, long before the next timer tick (60 s)
        monitor.close()
        deadline = time.monotonic() + 20.0
        while time.monotonic() < deadline:
            with lock:
                if got:
                    break
            time.sleep(0.05)
        with lock:
            statuses = list(got)
    assert statuses, "no /diagnostics at close"
    values = {kv.key: kv.value for kv in statuses[-1].values}
    assert values["resets"] == "7"
