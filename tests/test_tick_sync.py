"""Matching the messages of one tick, gap detection and waiting reasons (no ROS)."""

from __future__ import annotations

import threading
from types import SimpleNamespace

from td3_trainer.tick_sync import (
    NS_PER_S,
    GapKind,
    ResyncState,
    Stopped,
    Tick,
    TickBuffer,
    TickQuery,
    Timeout,
    classify_stamps,
    stamp_to_ns,
)

DT = 50_000_000  # 0.05 s
IMAGE = "/carla/ego_vehicle/rgb_front/image"
ODOM = "/carla/ego_vehicle/odometry"


def buffer() -> TickBuffer:
    return TickBuffer(IMAGE, ODOM)


def wait(buf: TickBuffer, query: TickQuery, timeout_s: float = 0.05, odometry_wait_s: float = 0.0, speed_after=0):
    return buf.wait_tick(query, timeout_s, odometry_wait_s, speed_after, threading.Event())


def test_stamp_to_ns():
    assert stamp_to_ns(SimpleNamespace(sec=12, nanosec=350_000_000)) == 12 * NS_PER_S + 350_000_000


def test_next_tick_is_not_a_gap():
    assert classify_stamps(None, 5 * DT, DT).kind is GapKind.NONE
    assert classify_stamps(5 * DT, 6 * DT, DT).kind is GapKind.NONE


def test_stamp_jump_over_one_and_a_half_ticks_is_a_drop():
    gap = classify_stamps(5 * DT, 7 * DT, DT)
    assert gap.kind is GapKind.DROPPED
    assert gap.missed_frames == 1
    assert classify_stamps(5 * DT, 10 * DT, DT).missed_frames == 4
    assert classify_stamps(5 * DT, 5 * DT + int(1.4 * DT), DT).kind is GapKind.NONE


def test_clock_going_back_or_standing_is_backwards():
    assert classify_stamps(5 * DT, 2 * DT, DT).kind is GapKind.BACKWARDS
    assert classify_stamps(5 * DT, 5 * DT, DT).kind is GapKind.BACKWARDS


def test_repeated_timeouts_become_one_gap():
    state = ResyncState(max_timeouts=3)
    assert [state.on_timeout() for _ in range(5)] == [False, False, True, False, False]
    assert state.counters.timeouts == 5
    assert state.counters.gaps == 1
    # The next tick after the gap is a new segment even if its stamp is the next one.
    assert state.on_tick(5 * DT, 6 * DT, DT).kind is GapKind.TIMEOUT
    assert state.on_tick(6 * DT, 7 * DT, DT).kind is GapKind.NONE
    assert state.consecutive_timeouts == 0


def test_a_timeout_or_two_is_not_a_gap():
    state = ResyncState(max_timeouts=3)
    state.on_timeout()
    state.on_timeout()
    assert state.on_tick(5 * DT, 6 * DT, DT).kind is GapKind.NONE
    assert state.counters.gaps == 0
    assert state.on_timeout() is False  # the streak started again


def test_dropped_frames_are_counted():
    state = ResyncState(max_timeouts=3)
    assert state.on_tick(5 * DT, 9 * DT, DT).kind is GapKind.DROPPED
    assert state.counters.dropped_frames == 3
    assert state.counters.gaps == 1


def test_image_and_odometry_of_the_same_stamp_match():
    buf = buffer()
    buf.put_odometry(5 * DT, "odom5")
    buf.put_odometry(6 * DT, "odom6")
    buf.put_image(6 * DT, "img6")
    tick = wait(buf, TickQuery(newer_than_ns=5 * DT))
    assert isinstance(tick, Tick)
    assert (tick.image.msg, tick.odometry.msg, tick.odometry_matched) == ("img6", "odom6", True)


def test_odometry_arriving_after_the_image_is_still_matched():
    buf = buffer()
    buf.put_odometry(5 * DT, "odom5")
    buf.put_image(6 * DT, "img6")

    def late() -> None:
        buf.put_odometry(6 * DT, "odom6")

    threading.Timer(0.05, late).start()
    tick = wait(buf, TickQuery(newer_than_ns=5 * DT), timeout_s=10.0, odometry_wait_s=10.0)
    assert isinstance(tick, Tick)
    assert tick.odometry.msg == "odom6"
    assert tick.odometry_matched


def test_missing_odometry_falls_back_to_the_newest_and_says_so():
    buf = buffer()
    buf.put_odometry(4 * DT, "odom4")
    buf.put_odometry(5 * DT, "odom5")
    buf.put_image(6 * DT, "img6")
    tick = wait(buf, TickQuery(newer_than_ns=5 * DT), timeout_s=1.0, odometry_wait_s=0.0)
    assert isinstance(tick, Tick)
    assert tick.odometry.msg == "odom5"
    assert not tick.odometry_matched


def test_old_images_do_not_end_the_wait_and_the_reason_names_topic_and_stamp():
    buf = buffer()
    buf.put_odometry(5 * DT, "odom5")
    buf.put_image(5 * DT, "img5")
    result = wait(buf, TickQuery(newer_than_ns=5 * DT), timeout_s=0.01)
    assert isinstance(result, Timeout)
    assert result.reason == f"waiting for {IMAGE} newer than stamp 0.25 s (0.0 s)"


def test_timeout_reason_for_missing_odometry():
    buf = buffer()
    buf.put_image(6 * DT, "img6")
    result = wait(buf, TickQuery(newer_than_ns=5 * DT), timeout_s=0.01)
    assert isinstance(result, Timeout)
    assert result.reason.startswith(f"waiting for {ODOM}: none received yet")


def test_timeout_reason_uses_the_query_description():
    result = wait(buffer(), TickQuery(newer_than_ns=0, describe="of the new episode (frame 7)"), timeout_s=0.01)
    assert isinstance(result, Timeout)
    assert result.reason.startswith(f"waiting for {IMAGE} of the new episode (frame 7)")


def test_the_newest_of_several_new_images_is_taken():
    buf = buffer()
    for k in (6, 7, 8):
        buf.put_odometry(k * DT, f"odom{k}")
        buf.put_image(k * DT, f"img{k}")
    tick = wait(buf, TickQuery(newer_than_ns=5 * DT))
    assert isinstance(tick, Tick)
    assert (tick.image.msg, tick.odometry.msg) == ("img8", "odom8")


def test_after_a_gap_an_older_stamp_received_later_is_accepted():
    buf = buffer()
    buf.put_odometry(50 * DT, "odom50")
    buf.put_image(50 * DT, "img50")
    mark = buf.seq
    buf.put_odometry(2 * DT, "odom2")
    buf.put_image(2 * DT, "img2")
    assert isinstance(wait(buf, TickQuery(newer_than_ns=50 * DT)), Timeout)
    tick = wait(buf, TickQuery(newer_than_ns=50 * DT, or_received_after_seq=mark, any_after_seq=True))
    assert isinstance(tick, Tick)
    assert tick.image.msg == "img2"


def test_after_a_restart_the_old_clocks_frames_are_forgotten_not_taken_as_the_next_tick():
    buf = buffer()
    buf.put_odometry(50 * DT, "odom50")
    buf.put_image(50 * DT, "img50")  # the last frame before the simulator died
    buf.put_odometry(3 * DT, "odom3")
    buf.put_image(3 * DT, "img3")  # the restarted simulator's clock
    restart = wait(buf, TickQuery(newer_than_ns=2 * DT))
    assert isinstance(restart, Tick) and restart.image.msg == "img3"
    # Without forgetting, img50 would pass as a frame newer than img3 ...
    assert wait(buf, TickQuery(newer_than_ns=3 * DT)).image.msg == "img50"
    assert buf.forget_stale(restart.image.stamp_ns, restart.image.seq) == 2
    # ... now the wait is for the new clock's next tick only.
    assert isinstance(wait(buf, TickQuery(newer_than_ns=3 * DT)), Timeout)
    buf.put_odometry(4 * DT, "odom4")
    buf.put_image(4 * DT, "img4")
    assert wait(buf, TickQuery(newer_than_ns=3 * DT)).image.msg == "img4"
    assert buf.newest_image_stamp() == 4 * DT


def test_reset_frame_is_accepted_by_stamp_only_when_received_after_the_request():
    buf = buffer()
    buf.put_odometry(3 * DT, "odom3-old")
    buf.put_image(3 * DT, "img3-old")
    query = TickQuery(newer_than_ns=9 * DT, or_received_after_seq=buf.seq, or_stamp_ns=3 * DT)
    assert isinstance(wait(buf, query), Timeout)
    buf.put_odometry(3 * DT, "odom3")
    buf.put_image(3 * DT, "img3")
    tick = wait(buf, query)
    assert isinstance(tick, Tick)
    assert (tick.image.msg, tick.odometry.msg) == ("img3", "odom3")


def test_speed_is_used_only_when_it_arrived_since_the_previous_tick():
    buf = buffer()
    buf.put_speed(3.0)
    buf.put_odometry(6 * DT, "odom6")
    buf.put_image(6 * DT, "img6")
    first = wait(buf, TickQuery(newer_than_ns=5 * DT))
    assert isinstance(first, Tick)
    assert first.speed == 3.0
    buf.put_odometry(7 * DT, "odom7")
    buf.put_image(7 * DT, "img7")
    second = wait(buf, TickQuery(newer_than_ns=6 * DT), speed_after=first.seq)
    assert isinstance(second, Tick)
    assert second.speed is None


def test_stop_ends_a_wait():
    stop = threading.Event()
    stop.set()
    assert isinstance(buffer().wait_tick(TickQuery(), 60.0, 0.0, 0, stop), Stopped)


def test_a_wait_ends_when_the_frame_arrives_from_another_thread():
    buf = buffer()
    buf.put_image(5 * DT, "img5")

    def publish() -> None:
        buf.put_odometry(6 * DT, "odom6")
        buf.put_image(6 * DT, "img6")

    threading.Timer(0.05, publish).start()
    tick = wait(buf, TickQuery(newer_than_ns=5 * DT), timeout_s=30.0)
    assert isinstance(tick, Tick)
    assert tick.image.msg == "img6"


def test_events_are_taken_per_tick_and_old_episodes_are_dropped():
    buf = buffer()
    buf.put_event("collision", 4 * DT, "old-episode")
    floor = buf.seq
    buf.put_event("collision", 9 * DT, "stale-stamp")
    buf.put_event("collision", 11 * DT, "now")
    buf.put_event("lane_invasion", 12 * DT, "next-tick")
    assert buf.take_events(11 * DT, min_stamp_ns=10 * DT, min_seq=floor) == {"collision": ["now"]}
    assert buf.take_events(12 * DT, min_stamp_ns=10 * DT, min_seq=floor) == {"lane_invasion": ["next-tick"]}
    assert buf.take_events(20 * DT) == {}


def test_route_wait_only_returns_a_route_newer_than_the_mark():
    buf = buffer()
    buf.put_route(0, "route-a")
    mark = buf.seq
    assert buf.wait_route(mark, 0.01, threading.Event()) is None
    buf.put_route(0, "route-b")
    route = buf.wait_route(mark, 0.01, threading.Event())
    assert route is not None
    assert route.msg == "route-b"
