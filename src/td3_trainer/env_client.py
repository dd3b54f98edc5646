"""The simulator as a synchronous RL environment, over the carla-ros-bridge topics.

send(action) publishes one CarlaEgoVehicleControl; observe() waits for the image of the NEXT
tick (stamp newer than the last) and the odometry of the same stamp, and turns them into an
observation with td3_core's ObservationBuilder. reset() asks the reset service for a new
episode and waits for its first frame. Nothing here blocks without a deadline: a wait that
expires logs what it waits for, re-sends the last command (the bridge ticks on commands), and
after `max_timeouts` in a row becomes a gap; frames after a gap or a drop start a new segment,
so no transition is ever built across missing frames.

ROS callbacks run on the executor's thread and only store messages (TickBuffer); decoding and
everything else happens on the caller's (training loop's) thread.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace

import numpy as np
from builtin_interfaces.msg import Time
from carla_msgs.msg import CarlaCollisionEvent, CarlaEgoVehicleControl, CarlaLaneInvasionEvent
from nav_msgs.msg import Odometry, Path
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Float32
from td3_drive.srv import ResetEpisode

from td3_core.actions import action_to_command
from td3_core.image_codec import ImageError
from td3_core.observation import ObservationBuilder, pose_from_odometry
from td3_core.route import RouteProjection, wrap_angle
from td3_trainer.params import TrainerParams
from td3_trainer.tick_sync import (
    NS_PER_S,
    GapKind,
    ResyncState,
    Stopped,
    Tick,
    TickBuffer,
    TickQuery,
    Timeout,
    ns_to_s,
    stamp_to_ns,
)

# Like the bridge: reliable sensor streams, and the route latched for late subscribers
# (carla_waypoint_publisher publishes it once, transient local).
SENSOR_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
EVENT_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
ROUTE_QOS = QoSProfile(
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
    history=HistoryPolicy.KEEP_LAST,
)
NOTICE_PERIOD_S = 10.0  # how often a long wait (service, route) repeats its log line


@dataclass(frozen=True)
class Observation:
    frames: np.ndarray  # (frame_stack, H, W) uint8, oldest first
    frame: np.ndarray  # the newest (H, W) frame: what the replay buffer stores
    vector: np.ndarray  # float32 vector state (empty without use_vector_state)
    stamp_ns: int
    x: float
    y: float
    speed: float  # m/s
    projection: RouteProjection
    heading_error: float
    collisions: int = 0
    lane_invasions: int = 0
    new_segment: bool = True  # first frame of an episode or after a gap: no transition into it
    gap: GapKind = GapKind.NONE
    odometry_matched: bool = True


class RosEnv:
    def __init__(self, node: Node, params: TrainerParams, stop: threading.Event) -> None:
        self.node = node
        self.params = params
        self.stop = stop
        self.log = node.get_logger()
        self.builder = ObservationBuilder(params.preprocess, params.observation)
        self.image_topic = params.topic("rgb_front/image")
        self.odometry_topic = params.topic("odometry")
        self.route_topic = params.topic("waypoints")
        self.ticks = TickBuffer(self.image_topic, self.odometry_topic)
        self.resync = ResyncState(max_timeouts=int(params.max_timeouts))
        self.counters = self.resync.counters
        self.dt_ns = round(float(params.fixed_delta_seconds) * NS_PER_S)
        self.waiting_for = ""  # what the loop waits for right now, for diagnostics

        self.last_stamp_ns: int | None = None
        self._consumed_seq = 0
        self._route_seq = 0
        self._episode_seq = 0  # events received before this belong to an earlier episode
        self._episode_start_ns: int | None = None
        self._force_new_segment = False
        self._last_command: CarlaEgoVehicleControl | None = None
        self._next_notice = 0.0

        put = self.ticks
        node.create_subscription(
            Image, self.image_topic, lambda m: put.put_image(stamp_to_ns(m.header.stamp), m), SENSOR_QOS
        )
        node.create_subscription(
            Odometry, self.odometry_topic, lambda m: put.put_odometry(stamp_to_ns(m.header.stamp), m), SENSOR_QOS
        )
        if params.use_speedometer:
            node.create_subscription(Float32, params.topic("speedometer"), lambda m: put.put_speed(m.data), SENSOR_QOS)
        node.create_subscription(
            Path, self.route_topic, lambda m: put.put_route(stamp_to_ns(m.header.stamp), m), ROUTE_QOS
        )
        node.create_subscription(
            CarlaCollisionEvent,
            params.topic("collision"),
            lambda m: put.put_event("collision", stamp_to_ns(m.header.stamp), m),
            EVENT_QOS,
        )
        node.create_subscription(
            CarlaLaneInvasionEvent,
            params.topic("lane_invasion"),
            lambda m: put.put_event("lane_invasion", stamp_to_ns(m.header.stamp), m),
            EVENT_QOS,
        )
        self.command_topic = params.topic("vehicle_control_cmd")
        self._command_pub = node.create_publisher(CarlaEgoVehicleControl, self.command_topic, SENSOR_QOS)
        self.reset_service = params.reset_service_name
        self._reset_client = node.create_client(ResetEpisode, self.reset_service) if self.reset_service else None

    # ------------------------------------------------------------------ actions

    def send(self, action: np.ndarray, stamp_ns: int) -> None:
        """Publish the command for `action`, stamped with the observation it answers."""
        command = action_to_command(float(action[0]), float(action[1]), self.params.action)
        msg = CarlaEgoVehicleControl()
        msg.header.stamp = Time(sec=stamp_ns // NS_PER_S, nanosec=stamp_ns % NS_PER_S)
        msg.header.frame_id = "map"
        msg.steer, msg.throttle, msg.brake = float(command.steer), float(command.throttle), float(command.brake)
        self._publish(msg)

    def brake(self) -> None:
        """Full brake, neutral steering: what the car gets when training stops."""
        msg = CarlaEgoVehicleControl(brake=1.0)
        msg.header.stamp = self._last_command.header.stamp if self._last_command else Time()
        self._publish(msg)

    def _publish(self, msg: CarlaEgoVehicleControl) -> None:
        self._last_command = msg
        self._command_pub.publish(msg)

    def _resend(self) -> None:
        if self._last_command is None:
            self.brake()  # nothing sent yet: a neutral command still makes a waiting bridge tick
        else:
            self._command_pub.publish(self._last_command)

    # ------------------------------------------------------------------ observing

    def observe(self) -> Observation | None:
        """The observation of the next tick; None when stopping."""
        query = TickQuery(newer_than_ns=self.last_stamp_ns)
        while True:
            result = self._wait(query)
            if isinstance(result, Stopped):
                return None
            if isinstance(result, Timeout):
                became_gap = self.resync.on_timeout()
                # Every timeout until the gap, then one line per NOTICE_PERIOD_S.
                if not self.resync.in_gap or became_gap or time.monotonic() >= self._next_notice:
                    self._next_notice = time.monotonic() + NOTICE_PERIOD_S
                    self.log.warning(
                        f"{result.reason}; re-sending the last command (timeout {self.resync.consecutive_timeouts})"
                    )
                if became_gap:
                    self.log.warning(
                        f"no frame after {self.resync.consecutive_timeouts} timeouts: treating it as a gap "
                        "(no transition across it); continuing when frames return"
                    )
                    # After a long gap the simulator may have restarted: take any new frame.
                    query = replace(query, or_received_after_seq=self.ticks.seq, any_after_seq=True)
                self._resend()
                continue
            gap = self.resync.on_tick(self.last_stamp_ns, result.image.stamp_ns, self.dt_ns)
            previous = ns_to_s(self.last_stamp_ns or 0)
            stamp = ns_to_s(result.image.stamp_ns)
            if gap.kind is GapKind.DROPPED:
                self.log.warning(
                    f"dropped frames: stamp jumped from {previous:.3f} s to {stamp:.3f} s "
                    f"(~{gap.missed_frames} missing); no transition across it"
                )
            elif gap.kind is GapKind.BACKWARDS:
                self.log.warning(f"clock went back from {previous:.3f} s to {stamp:.3f} s (simulator restarted?)")
                self.ticks.forget_stale(result.image.stamp_ns, result.image.seq)
            observation = self._build(result, gap.kind)
            if observation is not None:
                return observation
            query = TickQuery(newer_than_ns=self.last_stamp_ns)

    def _wait(self, query: TickQuery) -> Tick | Timeout | Stopped:
        p = self.params
        result = self.ticks.wait_tick(
            query, float(p.frame_timeout_s), float(p.odometry_wait_s), self._consumed_seq, self.stop
        )
        # Only a wait that already timed out is news for /diagnostics.
        self.waiting_for = result.reason.removeprefix("waiting for ") if isinstance(result, Timeout) else ""
        return result

    def _build(self, tick: Tick, gap: GapKind) -> Observation | None:
        """Observation from a matched tick; None (and the frame skipped) if the image is bad."""
        self.last_stamp_ns = tick.image.stamp_ns
        self._consumed_seq = tick.seq
        new_segment = gap is not GapKind.NONE or self._force_new_segment
        self._update_route()
        if new_segment:
            self.builder.stacker.reset()  # nothing stacked across a gap
        try:
            frames = self.builder.push_image(tick.image.msg)
        except ImageError as error:
            self.counters.bad_images += 1
            self.log.error(
                f"skipping a bad frame from {self.image_topic} at {ns_to_s(tick.image.stamp_ns):.2f} s: {error}"
            )
            self._force_new_segment = True
            self._resend()  # a waiting simulator needs a command to produce the next tick
            return None
        self._force_new_segment = False
        if not tick.odometry_matched:
            self.counters.unmatched_odometry += 1
            self.log.debug(f"no {self.odometry_topic} with stamp {ns_to_s(tick.image.stamp_ns):.2f} s: newest used")
        odometry = tick.odometry.msg
        x, y, yaw, twist_speed = pose_from_odometry(odometry)
        speed = tick.speed if tick.speed is not None else twist_speed
        vector, projection = self.builder.vector(odometry, speed if self.params.use_speedometer else None)
        assert projection is not None  # the route is there before the first frame of an episode
        events = self.ticks.take_events(tick.image.stamp_ns, self._episode_start_ns, self._episode_seq)
        return Observation(
            frames=frames,
            frame=frames[-1],
            vector=vector,
            stamp_ns=tick.image.stamp_ns,
            x=x,
            y=y,
            speed=speed,
            projection=projection,
            heading_error=wrap_angle(yaw - projection.route_yaw),
            collisions=len(events.get("collision", [])),
            lane_invasions=len(events.get("lane_invasion", [])),
            new_segment=new_segment,
            gap=gap,
            odometry_matched=tick.odometry_matched,
        )

    def _update_route(self) -> bool:
        """Take a newly received route; True if it changed."""
        route = self.ticks.route()
        if route is None or route.seq <= self._route_seq:
            return False
        self._route_seq = route.seq
        previous = self.builder.route
        try:
            self.builder.set_route_from_path(route.msg)
        except ValueError as error:
            self.log.error(f"ignoring the route on {self.route_topic}: {error}")
            return False
        current = self.builder.route
        same = previous is not None and np.array_equal(previous.points, current.points)
        # The simulator republishes its route at every reset: only a new one is news.
        (self.log.debug if same else self.log.info)(
            f"route from {self.route_topic}: {len(current.points)} points, {current.length:.0f} m"
        )
        return not same

    # ------------------------------------------------------------------ episodes

    def reset(self, seed: int) -> Observation | None:
        """Start an episode; returns its first observation, or None when stopping."""
        while not self.stop.is_set():
            mark = self.ticks.seq
            newest = self.ticks.newest_image_stamp()
            last = max(s for s in (self.last_stamp_ns, newest, -1) if s is not None)
            if self._reset_client is not None:
                frame = self._call_reset(seed)
                if frame is None:
                    continue
                reset_stamp = frame * self.dt_ns if frame > 0 else None
                describe = f"of the new episode (frame {frame})"
                query = TickQuery(last, or_received_after_seq=mark, or_stamp_ns=reset_stamp, describe=describe)
            else:
                # No reset service (a real bridge): whatever repositions the car, the next tick
                # starts the episode.
                self._resend()
                query = TickQuery(last, or_received_after_seq=mark, any_after_seq=True, describe="to start an episode")
            if not self._await_route(mark, seed):
                continue
            result = self._wait(query)
            if isinstance(result, Stopped):
                return None
            if isinstance(result, Timeout):
                self.counters.timeouts += 1
                again = "asking for a reset again" if self._reset_client else "re-sending the last command"
                self.log.warning(f"{result.reason}; {again}")
                continue
            self.ticks.forget_stale(result.image.stamp_ns, result.image.seq)  # a restart's old clock
            self.builder.reset()
            self._episode_seq = mark
            self._episode_start_ns = result.image.stamp_ns
            self.ticks.take_events(result.image.stamp_ns)  # events up to the first frame: the old episode's
            self.resync.consecutive_timeouts = 0
            self.resync.in_gap = False
            observation = self._build(result, GapKind.NONE)
            if observation is not None:
                return replace(observation, new_segment=True)
        return None

    def _await_route(self, mark: int, seed: int) -> bool:
        """The route must be known; a new seed may bring a new route, which gets a short wait."""
        p = self.params
        if self.ticks.route() is not None and not (seed >= 0 and self._reset_client is not None):
            return True
        timeout = float(p.reset_timeout_s) if self.ticks.route() is not None else NOTICE_PERIOD_S
        what = f"{self.route_topic} (nav_msgs/Path, transient local)"
        self.waiting_for = what
        while not self.stop.is_set():
            if self.ticks.wait_route(mark if self.ticks.route() is not None else 0, timeout, self.stop) is not None:
                self.waiting_for = ""
                return True
            if self.ticks.route() is not None:
                self.log.warning(f"no new route on {self.route_topic} after the reset: keeping the previous one")
                self.waiting_for = ""
                return True
            self.log.warning(f"waiting for {what} ({timeout:.0f} s): the reward needs the route")
        return False

    def _call_reset(self, seed: int) -> int | None:
        """Ask the reset service; the frame number of the new episode's first tick, or None."""
        client = self._reset_client
        assert client is not None
        p = self.params
        notice_at = time.monotonic()
        while not client.service_is_ready():
            if self.stop.is_set():
                return None
            if time.monotonic() >= notice_at:
                self.log.warning(
                    f"waiting for service {self.reset_service} (td3_drive/srv/ResetEpisode); with a real CARLA "
                    "bridge set reset_service:='' and reposition the ego vehicle externally"
                )
                notice_at += NOTICE_PERIOD_S
            self.waiting_for = f"service {self.reset_service}"
            self.stop.wait(0.2)
        self.waiting_for = ""
        future = client.call_async(ResetEpisode.Request(seed=seed))
        done = threading.Event()
        future.add_done_callback(lambda _: done.set())
        deadline = time.monotonic() + float(p.reset_timeout_s)
        while not done.is_set() and time.monotonic() < deadline and not self.stop.is_set():
            done.wait(0.1)
        if not done.is_set():
            client.remove_pending_request(future)
            if not self.stop.is_set():
                self.log.warning(f"{self.reset_service} did not answer within {p.reset_timeout_s} s; asking again")
            return None
        response = future.result()
        if response is None or not response.success:
            message = response.message if response is not None else "no response"
            self.log.warning(f"{self.reset_service} refused the reset: {message}; asking again in 1 s")
            self.stop.wait(1.0)
            return None
        return int(response.frame)
