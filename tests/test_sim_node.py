"""The simulator node over DDS: its own process, a test node that drives it one command at a time."""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path as FsPath

import pytest
import rclpy
from carla_msgs.msg import CarlaControl, CarlaEgoVehicleControl, CarlaEgoVehicleStatus
from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry, Path
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from td3_drive.srv import ResetEpisode

from .processes import node_process, stop_process

pytestmark = pytest.mark.ros

ROLE = "ego_vehicle"
DT_NS = 50_000_000  # fixed_delta_seconds 0.05
WIDTH, HEIGHT = 96, 72
STARTUP_S = 30.0  # a guard against a hang, not a performance expectation
WAIT_S = 10.0
SENSOR = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


def _ns(stamp) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


def _yaw(odometry: Odometry) -> float:
    q = odometry.pose.pose.orientation
    return math.atan2(2.0 * (q.w * q.z + q.x * q.y), 1.0 - 2.0 * (q.y * q.y + q.z * q.z))


class Client:
    """Test-side node: records images, odometry, routes and statuses; sends commands."""

    def __init__(self) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("sim_test_client", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.images: list[Image] = []
        self.odometry: dict[int, Odometry] = {}
        self.routes: list[Path] = []
        self.statuses: list[CarlaEgoVehicleStatus] = []
        prefix = f"/carla/{ROLE}"
        node = self.node
        node.create_subscription(Image, f"{prefix}/rgb_front/image", self.images.append, SENSOR)
        node.create_subscription(Odometry, f"{prefix}/odometry", self._on_odometry, SENSOR)
        node.create_subscription(Path, f"{prefix}/waypoints", self.routes.append, LATCHED)
        node.create_subscription(CarlaEgoVehicleStatus, f"{prefix}/vehicle_status", self.statuses.append, SENSOR)
        self.control_pub = node.create_publisher(CarlaEgoVehicleControl, f"{prefix}/vehicle_control_cmd", SENSOR)
        self.twist_pub = node.create_publisher(Twist, f"{prefix}/twist", SENSOR)
        self.carla_control_pub = node.create_publisher(CarlaControl, "/carla/control", SENSOR)
        self.reset_client = node.create_client(ResetEpisode, f"{prefix}/reset")

    def _on_odometry(self, msg: Odometry) -> None:
        self.odometry[_ns(msg.header.stamp)] = msg

    def spin_until(self, condition: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                return False
            self.executor.spin_once(timeout_sec=0.02)
        return True

    def spin_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=0.02)

    def reset(self, seed: int) -> ResetEpisode.Response:
        assert self.reset_client.wait_for_service(timeout_sec=WAIT_S), "no reset service"
        future = self.reset_client.call_async(ResetEpisode.Request(seed=seed))
        assert self.spin_until(future.done, WAIT_S), "the reset service did not answer"
        return future.result()

    def command(self, throttle: float = 0.0, steer: float = 0.0, brake: float = 0.0) -> Image:
        """One command; returns the one new image it produced (and checks its odometry)."""
        count = len(self.images)
        self.control_pub.publish(CarlaEgoVehicleControl(throttle=throttle, steer=steer, brake=brake))
        assert self.spin_until(lambda: len(self.images) > count, WAIT_S), "no frame after a command"
        image = self.images[count]
        stamp = _ns(image.header.stamp)
        assert self.spin_until(lambda: stamp in self.odometry, WAIT_S), "no odometry with the image's stamp"
        return image

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


@pytest.fixture
def client() -> Iterator[Client]:
    c = Client()
    try:
        yield c
    finally:
        c.close()


def _sim_args(**params) -> list[str]:
    values = {"image_width": WIDTH, "image_height": HEIGHT, "synchronous_mode": "true", **params}
    args = ["-m", "td3_sim.node", "--ros-args"]
    for key, value in values.items():
        args += ["-p", f"{key}:={value}"]
    return args


def _log(path: FsPath) -> str:
    return path.read_text(errors="replace")[-4000:] if path.exists() else "(no log)"


def test_one_frame_per_command_stamps_odometry_steering_and_reset(tmp_path: FsPath, client: Client):
    log = tmp_path / "simulator.log"
    # No ticks on timeouts here, so that every frame comes from a command of this test.
    with node_process(_sim_args(command_wait_timeout_s=0.0, reset_service="true"), log) as proc:
        ready = lambda: client.routes and client.control_pub.get_subscription_count() > 0  # noqa: E731
        assert client.spin_until(ready, STARTUP_S), f"simulator not up (exit {proc.poll()}):\n{_log(log)}"
        assert client.routes[-1].header.frame_id == "map" and len(client.routes[-1].poses) > 100

        # Reset: the answer names the frame, and that frame's image arrives without any command.
        response = client.reset(seed=0)
        assert response.success, response.message
        reset_stamp = response.frame * DT_NS
        got_reset_image = lambda: any(_ns(m.header.stamp) == reset_stamp for m in client.images)  # noqa: E731
        assert client.spin_until(got_reset_image, WAIT_S), "no image for the reset frame"
        assert client.spin_until(lambda: reset_stamp in client.odometry, WAIT_S)
        assert client.odometry[reset_stamp].twist.twist.linear.x == 0.0
        client.images[:] = [m for m in client.images if _ns(m.header.stamp) >= reset_stamp]
        assert len(client.images) == 1

        # Throttle, one command at a time: one frame each, stamps dt apart, speed grows.
        frames = [client.command(throttle=1.0) for _ in range(12)]
        stamps = [reset_stamp] + [_ns(m.header.stamp) for m in frames]
        assert all(b - a == DT_NS for a, b in itertools.pairwise(stamps)), stamps
        speeds = [client.odometry[s].twist.twist.linear.x for s in stamps]
        assert speeds[-1] > speeds[1] > 0.0, speeds
        image = frames[-1]
        assert (image.encoding, image.width, image.height, image.step) == ("bgra8", WIDTH, HEIGHT, WIDTH * 4)
        assert len(image.data) == WIDTH * HEIGHT * 4
        assert image.header.frame_id == f"{ROLE}/rgb_front"
        odometry = client.odometry[stamps[-1]]
        assert (odometry.header.frame_id, odometry.child_frame_id) == ("map", ROLE)

        # Steer +1 turns right: the heading decreases.
        yaw_before = _yaw(odometry)
        for _ in range(10):
            last = client.command(throttle=0.5, steer=1.0)
        turned = math.remainder(_yaw(client.odometry[_ns(last.header.stamp)]) - yaw_before, math.tau)
        assert turned < -0.05, turned

        # A Twist is a command too (carla_twist_to_control); a NaN command brakes, and the node lives on.
        count = len(client.images)
        client.twist_pub.publish(Twist())
        assert client.spin_until(lambda: len(client.images) == count + 1, WAIT_S)
        nan_image = client.command(throttle=math.nan, steer=0.0)
        nan_stamp = _ns(nan_image.header.stamp)
        assert client.spin_until(lambda: any(_ns(s.header.stamp) == nan_stamp for s in client.statuses), WAIT_S)
        status = next(s for s in client.statuses if _ns(s.header.stamp) == nan_stamp)
        assert status.control.brake == 1.0 and status.control.throttle == 0.0

        # Nothing else was published: exactly one frame per command.
        total = len(client.images)
        client.spin_for(0.3)
        assert len(client.images) == total
        assert len(client.images) == 1 + 12 + 10 + 2

        # /carla/control: PAUSE holds the world (a command is kept), STEP_ONCE ticks once, PLAY resumes.
        client.carla_control_pub.publish(CarlaControl(command=CarlaControl.PAUSE))
        client.spin_for(0.2)
        client.control_pub.publish(CarlaEgoVehicleControl(throttle=1.0))
        client.spin_for(0.3)
        assert len(client.images) == total, "ticked while paused"
        client.carla_control_pub.publish(CarlaControl(command=CarlaControl.STEP_ONCE))
        assert client.spin_until(lambda: len(client.images) == total + 1, WAIT_S), "STEP_ONCE did not tick"
        client.carla_control_pub.publish(CarlaControl(command=CarlaControl.PLAY))
        client.spin_for(0.2)
        nan_stamp = _ns(client.command(throttle=0.0, brake=1.0).header.stamp)
        assert len(client.images) == total + 2

        # A reset with a new seed: new frame (newer stamp), standing, a route republished.
        routes_before = len(client.routes)
        response = client.reset(seed=7)
        assert response.success and response.frame * DT_NS > nan_stamp
        reset_stamp = response.frame * DT_NS
        assert client.spin_until(got_reset_image, WAIT_S), "no image for the second reset"
        assert client.spin_until(lambda: len(client.routes) > routes_before, WAIT_S), "route not republished"
        assert _ns(client.routes[-1].header.stamp) == reset_stamp
        assert client.spin_until(lambda: reset_stamp in client.odometry, WAIT_S)
        assert client.odometry[reset_stamp].twist.twist.linear.x == 0.0
        assert proc.poll() is None
        assert stop_process(proc) == 0, _log(log)
    assert "Traceback" not in _log(log)


@pytest.mark.parametrize(
    "params",
    [
        {"command_wait_timeout_s": 0.2},  # synchronous: ticks with the last control after the timeout
        {"synchronous_mode": "false", "publish_rate_hz": 20.0},  # free-running on a wall-clock timer
    ],
)
def test_ticks_without_waiting_for_further_commands(tmp_path: FsPath, client: Client, params: dict):
    log = tmp_path / "simulator.log"
    with node_process(_sim_args(**params), log) as proc:
        up = lambda: client.control_pub.get_subscription_count() > 0  # noqa: E731
        assert client.spin_until(up, STARTUP_S), f"exit {proc.poll()}:\n{_log(log)}"
        client.control_pub.publish(CarlaEgoVehicleControl(throttle=0.5))  # arms the synchronous timeout
        assert client.spin_until(lambda: len(client.images) >= 5, STARTUP_S), f"exit {proc.poll()}:\n{_log(log)}"
        stamps = [_ns(m.header.stamp) for m in client.images]
        assert all(b - a == DT_NS for a, b in itertools.pairwise(stamps)), stamps
        assert client.spin_until(lambda: client.odometry and max(client.odometry) >= stamps[-1], WAIT_S)
        assert client.odometry[max(client.odometry)].twist.twist.linear.x > 0.0  # the last control applies


@pytest.mark.parametrize(("param", "value"), [("image_width", -5), ("track", "moon"), ("publish_rate_hz", -1.0)])
def test_invalid_parameter_stops_the_node_naming_it(tmp_path: FsPath, param: str, value):
    log = tmp_path / "simulator.log"
    with node_process(_sim_args(**{param: value}), log) as proc:
        try:
            code = proc.wait(timeout=STARTUP_S)
        except Exception:
            pytest.fail(f"the node did not exit on {param}={value}:\n{_log(log)}")
    assert code == 2, _log(log)
    assert param in _log(log) and "Traceback" not in _log(log)


def test_bridge_behaviour_ticks_teleports_routes_and_late_events(tmp_path: FsPath, client: Client):
    """The bridge's default behaviour, each point checked against the simulator's ground truth."""
    from carla_msgs.msg import CarlaCollisionEvent
    from geometry_msgs.msg import Pose, PoseStamped, PoseWithCovarianceStamped

    from td3_sim import ground_truth, track

    log = tmp_path / "simulator.log"
    truth = tmp_path / "truth.jsonl"
    prefix = f"/carla/{ROLE}"
    collisions: list[CarlaCollisionEvent] = []
    client.node.create_subscription(CarlaCollisionEvent, f"{prefix}/collision", collisions.append, SENSOR)
    transform_pub = client.node.create_publisher(Pose, f"{prefix}/control/set_transform", SENSOR)
    goal_pub = client.node.create_publisher(PoseStamped, f"{prefix}/goal", SENSOR)
    initial_pub = client.node.create_publisher(PoseWithCovarianceStamped, "/initialpose", SENSOR)
    params = {"command_wait_timeout_s": 0.3, "route_delay_ticks": 3, "ground_truth_log": str(truth)}
    with node_process(_sim_args(**params), log) as proc:
        # It ticks from launch on, without any command (every command_wait_timeout_s).
        assert client.spin_until(lambda: len(client.images) >= 3, STARTUP_S), f"exit {proc.poll()}:\n{_log(log)}"
        assert client.routes and client.control_pub.get_subscription_count() > 0
        # The route: open, from the car to the map's goal, ~1 m apart; poses without own headers.
        first = client.routes[-1]
        points = [(p.pose.position.x, p.pose.position.y) for p in first.poses]
        gaps = [math.dist(a, b) for a, b in itertools.pairwise(points)]
        assert min(gaps) >= 0.9 and max(gaps) <= 1.1, (min(gaps), max(gaps))
        assert math.dist(points[0], points[-1]) > 2.0  # open, not a lap
        assert first.header.frame_id == "map" and first.poses[0].header.frame_id == ""
        # /carla/status is volatile, like the bridge's.
        infos = client.node.get_publishers_info_by_topic("/carla/status")
        assert infos and all(i.qos_profile.durability == DurabilityPolicy.VOLATILE for i in infos)

        # set_transform: takes effect with the next tick, the car keeps its speed.
        for _ in range(20):
            client.command(throttle=1.0)
        speed = client.odometry[max(client.odometry)].twist.twist.linear.x
        target = track.make_track("loop").spawn_pose(100.0)
        pose = Pose()
        pose.position.x, pose.position.y = target[0], target[1]
        pose.orientation.z, pose.orientation.w = math.sin(target[2] / 2), math.cos(target[2] / 2)
        routes_before = len(client.routes)
        transform_pub.publish(pose)
        client.spin_for(0.1)
        moved = client.command(throttle=0.0)
        odometry = client.odometry[_ns(moved.header.stamp)]
        position = (odometry.pose.pose.position.x, odometry.pose.pose.position.y)
        assert math.dist(position, target[:2]) < 1.0, position
        assert odometry.twist.twist.linear.x > 0.5 * speed  # still rolling: set_transform keeps the velocity
        # The repositioned car gets a new route some ticks later, starting where it is.
        assert len(client.routes) == routes_before
        for _ in range(4):
            client.command(brake=1.0)
        assert client.spin_until(lambda: len(client.routes) > routes_before, WAIT_S), "no route after the jump"
        start = client.routes[-1].poses[0].pose.position
        assert math.dist((start.x, start.y), target[:2]) < 3.0

        # A goal: a route from the car to it.
        goal_xy = track.make_track("loop").spawn_pose(160.0)[:2]
        goal = PoseStamped()
        goal.pose.position.x, goal.pose.position.y = goal_xy
        routes_before = len(client.routes)
        goal_pub.publish(goal)
        client.spin_for(0.1)
        for _ in range(4):
            client.command(brake=1.0)
        assert client.spin_until(lambda: len(client.routes) > routes_before, WAIT_S), "no route after a goal"
        end = client.routes[-1].poses[-1].pose.position
        assert math.dist((end.x, end.y), goal_xy) < 1.0
        assert 50.0 < len(client.routes[-1].poses) < 70.0  # ~60 m at ~1 m

        # /initialpose goes to set_transform; then full throttle into the barrier: a collision whose
        # event comes with the NEXT tick, carrying the stamp of the tick it happened in.
        wall = track.make_track("loop").spawn_pose(200.0)
        initial = PoseWithCovarianceStamped()
        initial.pose.pose.position.x, initial.pose.pose.position.y = wall[0], wall[1]
        outwards = wall[2] - math.pi / 2  # facing the right-hand curb
        initial.pose.pose.orientation.z, initial.pose.pose.orientation.w = (
            math.sin(outwards / 2),
            math.cos(outwards / 2),
        )
        initial_pub.publish(initial)
        client.spin_for(0.1)
        for _ in range(60):
            client.command(throttle=1.0)
            if collisions:
                break
        assert collisions, "no collision driving into the curb"
        event = collisions[0]
        assert event.header.frame_id == f"{ROLE}/collision"
        assert stop_process(proc) == 0, _log(log)

    records = ground_truth.read(truth)
    ticks = [r for r in records if r["kind"] == "tick"]
    hit = next(r for r in ticks if r["collision"])
    assert _ns(event.header.stamp) == hit["stamp_ns"]  # its own tick's stamp, not the later one's
    sent = next(r for r in records if r["kind"] == "event" and r["event"] == "collision")
    assert sent["stamp_ns"] == hit["stamp_ns"] and sent["published_with_frame"] == hit["frame"] + 1
    assert any(r["kind"] == "set_transform" for r in records)
    assert [r["trigger"] for r in records if r["kind"] == "route"][:3] == ["start", "repositioned", "goal"]
