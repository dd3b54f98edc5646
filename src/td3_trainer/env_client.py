"""The simulator as a synchronous RL environment, over the carla-ros-bridge topics
(td3_trainer.environment's contract).

send(action) publishes one CarlaEgoVehicleControl; receive() waits for the image of the NEXT
tick (stamp newer than the last) and the odometry of the same stamp, and turns them into an
observation with td3_core's ObservationBuilder. A step is completed (scored by StepScorer) one
tick late: the bridge may deliver an event of a tick with the next one (its own stamp), so
(before, action, after) waits for the tick after `after`. reset() teleports the car through
the bridge (or asks the reset service) and waits for the episode's first frame. Nothing here
blocks without a deadline: a wait that expires logs what it waits for, re-sends the last
command (the bridge ticks on commands), and after `max_timeouts` in a row becomes a gap; frames
after a gap or a drop start a new segment, so no transition is ever built across missing frames.

ROS callbacks run on the executor's thread and only store messages (TickBuffer); decoding and
everything else happens on the caller's (training loop's) thread.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import replace

import numpy as np
from builtin_interfaces.msg import Time
from carla_msgs.msg import CarlaCollisionEvent, CarlaEgoVehicleControl, CarlaEgoVehicleStatus, CarlaLaneInvasionEvent
from geometry_msgs.msg import Pose, PoseStamped, Twist
from nav_msgs.msg import Odometry, Path
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Float32
from td3_drive.srv import ResetEpisode

from td3_core.actions import action_to_command
from td3_core.image_codec import ImageError
from td3_core.observation import ObservationBuilder, pose_from_odometry, route_points_from_path
from td3_core.preprocessing import image_topic
from td3_core.route import wrap_angle
from td3_trainer.bridge_reset import StartPose, StartPoses, route_fits, settle_check
from td3_trainer.environment import EVAL_SEED_BASE, Observation, Received, Step, StepScorer, with_late_events
from td3_trainer.params import TrainerParams
from td3_trainer.reward import RewardFunction
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
CONTROL_TOLERANCE = 1e-3  # float32 round trips of steer / throttle / brake
TELEPORT_M = 2.0  # a jump this long in one tick is a reposition (carla_waypoint_publisher's test)
GOAL_RESEND_TICKS = 10  # a reset re-sends its goal when no fitting route came for this many ticks


class RosEnv:
    def __init__(self, node: Node, params: TrainerParams, stop: threading.Event) -> None:
        self.node = node
        self.params = params
        self.stop = stop
        self.log = node.get_logger()
        self.builder = ObservationBuilder(params.preprocess, params.observation, str(params.image_input))
        self.image_topic = params.topic(image_topic(str(params.image_input)))
        self.odometry_topic = params.topic("odometry")
        self.route_topic = params.topic("waypoints")
        self.ticks = TickBuffer(self.image_topic, self.odometry_topic)
        self.resync = ResyncState(max_timeouts=int(params.max_timeouts))
        self.counters = self.resync.counters
        self.dt_ns = round(float(params.fixed_delta_seconds) * NS_PER_S)
        self.scorer = StepScorer(params.episode, RewardFunction(params.reward, float(params.fixed_delta_seconds)))
        self._current: Observation | None = None  # the newest observation: the next action answers it
        self._action: np.ndarray | None = None  # the action sent for it
        self._open: tuple[Observation, np.ndarray, Observation] | None = None  # a step awaiting its late events
        self.waiting_for = ""  # what the loop waits for right now, for diagnostics

        self.last_stamp_ns: int | None = None
        self._consumed_seq = 0
        self._route_seq = 0
        self._episode_seq = 0  # events received before this belong to an earlier episode
        self._episode_start_ns: int | None = None
        self._force_new_segment = False
        self._previous_ns: int | None = None  # stamp of the previous observation of this episode
        self._foreign_streak = 0  # ticks in a row that applied another control than ours
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
            CarlaEgoVehicleStatus,
            params.topic("vehicle_status"),
            lambda m: put.put_status(stamp_to_ns(m.header.stamp), m),
            SENSOR_QOS,
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
        # The bridge's own ways to put the car somewhere (used when there is no reset service).
        self.transform_topic = params.topic("control/set_transform")
        self.velocity_topic = params.topic("control/set_target_velocity")
        self.goal_topic = params.topic("goal")
        self._transform_pub = node.create_publisher(Pose, self.transform_topic, SENSOR_QOS)
        self._velocity_pub = node.create_publisher(Twist, self.velocity_topic, SENSOR_QOS)
        self._goal_pub = node.create_publisher(PoseStamped, self.goal_topic, SENSOR_QOS)
        self.start_poses: StartPoses | None = None
        self.eval_poses: StartPoses | None = None  # midway between the training start poses
        self.gave_up = False  # no episode could be started: training stopped with an error
        self._last_xy: tuple[float, float] | None = None

    # ------------------------------------------------------------------ the environment contract

    def send(self, action: np.ndarray) -> None:
        """Publish the command for `action`, stamped with the observation it answers."""
        assert self._current is not None, "reset() first"
        self._action = action
        current = self._current
        self.publish_action(action, current.stamp_ns, current.speed, current.projection.curvature_ahead)

    def receive(self) -> Received | None:
        """The next observation, and the step before it, now that its tick's late events are in."""
        following = self.observe()
        if following is None:
            return None
        finished = None
        if self._open is not None:
            before, action, after = self._open
            finished = self.scorer.score(before, action, with_late_events(after, following))
            self._open = None
        if finished is None or not finished.done:
            assert self._current is not None and self._action is not None
            self._open = (self._current, self._action, following)
        self._current = following
        return Received(following, finished)

    def flush(self) -> Step | None:
        if self._open is None:
            return None
        step = self.scorer.score(*self._open)
        self._open = None
        return step

    def reset(self, seed: int) -> Observation | None:
        """Start a training episode; returns its first observation, or None when stopping."""
        return self._started(self._start_episode(seed) if self._reset_client else self._bridge_reset(None))

    def evaluation_reset(self, k: int, count: int) -> Observation | None:
        """Bridge resets: the k-th of `count` start poses midway between the training ones (the
        training reset path); with a reset service: seed EVAL_SEED_BASE + k (on the embedded
        simulator's procedural tracks, a track training never had)."""
        if self._reset_client is not None:
            return self._started(self._start_episode(EVAL_SEED_BASE + k))
        return self._started(self._bridge_reset((k, count)))

    def _started(self, observation: Observation | None) -> Observation | None:
        self._open = None
        self._current = observation
        if observation is not None:
            self.scorer.start(observation)
        return observation

    # ------------------------------------------------------------------ actions

    def publish_action(
        self, action: np.ndarray, stamp_ns: int, speed: float | None = None, curvature: float | None = None
    ) -> None:
        """Publish the command for `action`, stamped `stamp_ns`; `speed` feeds the speed limiter and
        `curvature` (the route's ahead) its curve governor."""
        command = action_to_command(float(action[0]), float(action[1]), self.params.action, speed, curvature)
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
                became_gap, line_due = self._count_timeout()
                if line_due:
                    self.log.warning(
                        f"{result.reason}; re-sending the last command (timeout {self.resync.consecutive_timeouts})"
                    )
                if became_gap:
                    self.log.warning(
                        f"no frame after {self.resync.consecutive_timeouts} timeouts: treating it as a gap "
                        "(no transition across it); continuing when frames return"
                    )
                    query = self._any_new_frame(query)
                self._resend()
                continue
            # A clock that went back is a restarted simulator, whose first ticks show its own initial
            # control: handled as a restart below, never skipped as another node's tick (which
            # would keep the old clock's last frames and wait until the new clock passes them).
            restarted = self.last_stamp_ns is not None and result.image.stamp_ns < self.last_stamp_ns
            if not restarted and self._produced_by_another_control(result):
                query = TickQuery(newer_than_ns=self.last_stamp_ns)
                continue
            gap = self.resync.on_tick(self.last_stamp_ns, result.image.stamp_ns, self.dt_ns)
            previous = ns_to_s(self.last_stamp_ns or 0)
            stamp = ns_to_s(result.image.stamp_ns)
            if gap.kind is GapKind.DROPPED and gap.missed_frames == 1:
                self.counters.double_ticks += 1
                self.log.info(
                    f"two ticks after one command ({previous:.3f} s -> {stamp:.3f} s): the bridge ticked on the old "
                    "control meanwhile (a late command); no transition across it"
                )
            elif gap.kind is GapKind.DROPPED:
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

    def _count_timeout(self) -> tuple[bool, bool]:
        """Count one timeout: (it turned the wait into a gap, a log line is due). A line for every
        timeout until the gap, then one per NOTICE_PERIOD_S."""
        became_gap = self.resync.on_timeout()
        line_due = not self.resync.in_gap or became_gap or time.monotonic() >= self._next_notice
        if line_due:
            self._next_notice = time.monotonic() + NOTICE_PERIOD_S
        return became_gap, line_due

    def _any_new_frame(self, query: TickQuery) -> TickQuery:
        """The query widened after a gap: a restarted simulator's clock starts again, so any frame
        received from now on ends the wait, whatever its stamp."""
        return replace(query, or_received_after_seq=self.ticks.seq, any_after_seq=True)

    def _produced_by_another_control(self, tick: Tick) -> bool:
        """A tick whose vehicle_status shows another control than our last command: the bridge's
        tick on the old control after its 1 s wait (our command came late), or someone else's
        command. Skipped (no transition into it) and waited past: our command makes the next one."""
        sent = self._last_command
        if sent is None:
            return False
        status = self.ticks.wait_status(tick.image.stamp_ns, float(self.params.odometry_wait_s), self.stop)
        if status is None:
            return False
        applied = status.control
        pairs = ((applied.steer, sent.steer), (applied.throttle, sent.throttle), (applied.brake, sent.brake))
        if all(abs(a - b) <= CONTROL_TOLERANCE for a, b in pairs):
            self._foreign_streak = 0
            return False
        self.counters.foreign_ticks += 1
        self._foreign_streak += 1
        self._force_new_segment = True
        if self._foreign_streak > int(self.params.max_timeouts):
            # Bounded: something else keeps driving the car; go on with what there is.
            self.log.warning(
                f"{self._foreign_streak} ticks in a row applied another control than ours: another node is "
                f"sending on {self.command_topic}? Taking this tick (no transition into it)"
            )
            self._foreign_streak = 0
            return False
        self.log.info(
            f"the tick at {ns_to_s(tick.image.stamp_ns):.3f} s applied another control than our last command "
            f"(steer {applied.steer:.3f}, throttle {applied.throttle:.3f}, brake {applied.brake:.3f}): a tick on the "
            "old control after a late command, or another node's command; skipped, waiting for ours"
        )
        self.last_stamp_ns = tick.image.stamp_ns
        self._consumed_seq = tick.seq
        if self._foreign_streak >= 2:
            self._resend()  # ours did not come next: it made an earlier tick, or was lost
        return True

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
        # Without its own odometry a tick's pose is an older tick's: a teleport into it would not
        # show, and its reward would be paid on the wrong pose. No transition into it.
        new_segment = gap is not GapKind.NONE or self._force_new_segment or not tick.odometry_matched
        if self._reset_client is not None:
            self._update_route()
        else:
            self._ignore_new_routes()
        odometry = tick.odometry.msg
        x, y, yaw, twist_speed = pose_from_odometry(odometry)
        jump = 0.0 if self._last_xy is None else float(np.hypot(x - self._last_xy[0], y - self._last_xy[1]))
        if not new_segment and jump > TELEPORT_M:
            self.counters.teleports += 1
            self.log.warning(
                f"the car jumped {jump:.1f} m in one tick (repositioned from outside?): no transition across it"
            )
            new_segment = True
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
        if tick.odometry_after_image:
            self.counters.odometry_after_image += 1
        if not tick.odometry_matched:
            self.counters.unmatched_odometry += 1
            self.log.warning(
                f"no {self.odometry_topic} with stamp {ns_to_s(tick.image.stamp_ns):.2f} s within "
                f"odometry_wait_s ({self.params.odometry_wait_s} s): the newest used, no transition into this tick "
                f"({self.counters.unmatched_odometry} so far; if most ticks come so, raise odometry_wait_s)",
                throttle_duration_sec=10.0,
            )
        speed = tick.speed if tick.speed is not None else twist_speed
        vector, projection = self.builder.vector(odometry, speed if self.params.use_speedometer else None)
        assert projection is not None  # the route is there before the first frame of an episode
        previous_ns = self._previous_ns
        late: dict[str, list] = {}
        if previous_ns is not None:  # still there from before the previous tick: they came late
            late = self.ticks.take_events(previous_ns, self._episode_start_ns, self._episode_seq)
            self.counters.late_events += sum(len(v) for v in late.values())
        events = self.ticks.take_events(tick.image.stamp_ns, self._episode_start_ns, self._episode_seq)
        self._previous_ns = tick.image.stamp_ns
        self._last_xy = (x, y)
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
            late_collisions=len(late.get("collision", [])),
            late_lane_invasions=len(late.get("lane_invasion", [])),
            new_segment=new_segment,
            gap=gap,
            odometry_matched=tick.odometry_matched,
        )

    def _ignore_new_routes(self) -> None:
        """Bridge mode: the route of an episode is the one its reset accepted."""
        route = self.ticks.route()
        if route is not None and route.seq > self._route_seq:
            self._route_seq = route.seq
            self.counters.routes_ignored += 1
            self.log.info(f"a new route on {self.route_topic} during the episode: kept the episode's own")

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

    def _start_episode(self, seed: int) -> Observation | None:
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
            else:  # not reached: without a service it is the bridge path
                return None
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
            observation = self._begin_episode(result, mark)
            if observation is not None:
                return observation
        return None

    def _begin_episode(self, result: Tick, mark: int) -> Observation | None:
        """The first observation of an episode; events from before it are the old episode's."""
        self.ticks.forget_stale(result.image.stamp_ns, result.image.seq)  # a restart's old clock
        self.builder.reset()
        self._episode_seq = mark
        self._episode_start_ns = result.image.stamp_ns
        self.ticks.take_events(result.image.stamp_ns)  # events up to the first frame: the old episode's
        self.resync.clear()
        self._previous_ns = None
        self._last_xy = None
        observation = self._build(result, GapKind.NONE)
        return None if observation is None else replace(observation, new_segment=True)

    # ------------------------------------------------------------------ resets through the bridge

    def _bridge_reset(self, evaluation: tuple[int, int] | None) -> Observation | None:
        """Teleport to a start pose of the start-up route (a drawn training one, or evaluation
        (k, count)'s), zero velocity, a goal, brake until the car stands there and the route to
        that goal has come; retried elsewhere, then given up."""
        p = self.params
        if self.start_poses is None and not self._init_start_poses():
            return None
        assert self.start_poses is not None and self.eval_poses is not None
        attempts = int(p.reset_attempts)
        missing = ""
        for attempt in range(1, attempts + 1):
            if evaluation is None:
                start = self.start_poses.draw()
            else:
                start = self.eval_poses.spread(evaluation[0] + attempt - 1, evaluation[1])
            result = self._teleport(start)
            if result is None:
                return None
            if isinstance(result, Tick):
                observation = self._begin_episode(result, result.seq)
                if observation is not None:
                    self.counters.resets += 1
                    return observation
                missing = "a decodable first image"
            else:
                missing = result
            self.counters.reset_retries += 1
            self.log.warning(
                f"reset attempt {attempt}/{attempts}: after {p.reset_settle_ticks} brake ticks still waiting for "
                f"{missing}; trying another start pose"
            )
        self.counters.reset_failures += 1
        self.log.error(
            f"could not start an episode after {attempts} teleports (last missing: {missing}). The ego vehicle needs "
            f"an actor.pseudo.control ({self.transform_topic}) and carla_waypoint_publisher must answer goals on "
            f"{self.goal_topic}; stopping training"
        )
        self.brake()
        self.gave_up = True
        self.stop.set()
        return None

    def _init_start_poses(self) -> bool:
        """Start poses from the first route seen (carla_waypoint_publisher's, to spawn_points[0])."""
        p = self.params
        if not self._await_route(0, -1):
            return False
        route = self.ticks.route()
        assert route is not None
        points = route_points_from_path(route.msg)
        heights = np.array([pose.pose.position.z for pose in route.msg.poses], dtype=np.float64)
        spacing, ahead = float(p.start_pose_spacing_m), float(p.reset_goal_ahead_m)
        try:
            self.start_poses = StartPoses(points, spacing, ahead, int(p.seed), heights)
            self.eval_poses = StartPoses(points, spacing, ahead, int(p.seed), heights, offset_m=spacing / 2.0)
        except ValueError as error:
            self.log.error(f"no start poses from {self.route_topic}: {error}; stopping training")
            self.gave_up = True
            self.stop.set()
            return False
        self.log.info(
            f"{len(self.start_poses.poses)} start poses along the {self.start_poses.route_length_m:.0f} m start-up "
            f"route, goals {self.start_poses.goal_ahead_m:.0f} m ahead (seed {p.seed})"
        )
        return True

    def _teleport(self, start: StartPose) -> Tick | str | None:
        """One attempt: the settled tick, or what was still missing, or None when stopping."""
        p = self.params
        pose = Pose()
        pose.position.x, pose.position.y, pose.position.z = start.x, start.y, start.z
        pose.orientation.z, pose.orientation.w = np.sin(start.yaw / 2.0), np.cos(start.yaw / 2.0)
        goal = PoseStamped()
        goal.header.frame_id = "map"
        goal.pose.position.x, goal.pose.position.y = start.goal_x, start.goal_y
        goal.pose.orientation.w = 1.0

        def teleport() -> None:
            # Velocity first: a teleport applied a tick before the zero velocity lets the car roll
            # on from the start pose for that tick (set_transform keeps the velocity).
            self._velocity_pub.publish(Twist())
            self._transform_pub.publish(pose)

        teleport()
        last = max(s for s in (self.last_stamp_ns, self.ticks.newest_image_stamp(), -1) if s is not None)
        query = TickQuery(last, describe="during a reset")
        goal_mark: int | None = None
        goal_ticks = 0
        missing = f"the car at its start pose ({start.x:.1f}, {start.y:.1f})"
        tolerance = float(p.reset_tolerance_m)
        tick_index = -1
        while tick_index + 1 < int(p.reset_settle_ticks):
            self.brake()
            self.counters.reset_ticks += 1
            result = self._wait(query)
            if isinstance(result, Stopped):
                return None
            if isinstance(result, Timeout):
                # No tick is no evidence against the pose: a simulator that is gone is waited
                # for, as within an episode, and does not use up the settle ticks and attempts.
                became_gap, line_due = self._count_timeout()
                if line_due:
                    gone = "; no simulator? waiting for its frames, the reset goes on when they return"
                    self.log.warning(f"reset: {result.reason}" + (gone if self.resync.in_gap else ""))
                if became_gap:
                    query = self._any_new_frame(query)
                continue
            self.resync.clear()
            if last >= 0 and result.image.stamp_ns < last:
                # A restarted simulator knows neither the teleport nor the goal: start over on it.
                self.counters.clock_jumps_back += 1
                self.log.warning(
                    f"reset: clock went back from {ns_to_s(last):.3f} s to {ns_to_s(result.image.stamp_ns):.3f} s "
                    "(simulator restarted?); teleporting again"
                )
                self.ticks.forget_stale(result.image.stamp_ns, result.image.seq)
                self._consumed_seq = result.seq
                last = result.image.stamp_ns
                query = TickQuery(last, describe="during a reset")
                goal_mark, goal_ticks, tick_index = None, 0, -1
                teleport()
                continue
            tick_index += 1
            last = result.image.stamp_ns
            query = TickQuery(last, describe="during a reset")
            self._consumed_seq = result.seq
            x, y, _, twist_speed = pose_from_odometry(result.odometry.msg)
            speed = result.speed if result.speed is not None else twist_speed
            at_pose = np.hypot(x - start.x, y - start.y) <= tolerance
            if at_pose and goal_mark is None:
                goal_mark = self.ticks.seq
                self._goal_pub.publish(goal)
            elif goal_mark is not None:
                goal_ticks += 1
                if goal_ticks % GOAL_RESEND_TICKS == 0:
                    self._goal_pub.publish(goal)  # a lost goal, or a later reroute to another goal
            if at_pose and abs(speed) >= 0.1:
                self._velocity_pub.publish(Twist())
            if not at_pose and tick_index % GOAL_RESEND_TICKS == GOAL_RESEND_TICKS - 1:
                self._transform_pub.publish(pose)  # a lost teleport
            route = self.ticks.route()
            route_ready = (
                goal_mark is not None
                and route is not None
                and route.seq > goal_mark
                and route_fits(route_points_from_path(route.msg), start, tolerance, float(p.min_route_m))
            )
            check = settle_check(start, x, y, speed, route_ready, tolerance)
            missing = check.missing
            if not missing:
                assert route is not None
                self.builder.set_route_from_path(route.msg)
                self._route_seq = route.seq
                self.waiting_for = ""
                return result
            self.waiting_for = f"reset: {missing}"
            if tick_index == int(p.reset_settle_ticks) // 2:
                self.log.warning(f"reset: waiting for {missing} (tick {tick_index + 1} of {p.reset_settle_ticks})")
        return missing

    def _await_route(self, mark: int, seed: int) -> bool:
        """The route must be known; a new seed may bring a new route, which gets a short wait."""
        p = self.params
        if self.ticks.route() is not None and not (seed >= 0 and self._reset_client is not None):
            return True
        timeout = float(p.reset_timeout_s) if self.ticks.route() is not None else NOTICE_PERIOD_S
        what = f"{self.route_topic} (nav_msgs/Path, transient local)"
        self.waiting_for = what
        limit = float(p.route_startup_timeout_s)
        give_up_at = time.monotonic() + limit if limit > 0 and self.ticks.route() is None else math.inf
        while not self.stop.is_set():
            if time.monotonic() >= give_up_at:
                self.log.error(
                    f"no route on {what} after {limit:g} s (route_startup_timeout_s): with CARLA, start "
                    "carla_waypoint_publisher for this role_name (train.launch.py simulator:=carla does); stopping "
                    "training"
                )
                self.waiting_for = ""
                self.gave_up = True
                self.stop.set()
                return False
            timeout = min(timeout, max(0.05, give_up_at - time.monotonic()))
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
