"""Pictures of a drive, made from its MCAP recording (td3_bringup.recording):

    trajectory.png   the route and the driven trajectory coloured by speed, with marks where the
                     driver's safety gate braked, the car crossed a lane marking or collided
    timeline.png     steer, throttle, brake and speed over time
    camera.gif       the front camera with what the network sees (the driver's ~/network_input) beside it
    trajectory.csv   the plotted trajectory: odometry log time, x, y, speed (one row per message)

Everything plotted comes from the recording, so a picture shows what was on the topics.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from td3_bringup.recording import read_messages

TRAJECTORY_PNG = "trajectory.png"
TIMELINE_PNG = "timeline.png"
CAMERA_GIF = "camera.gif"
TRAJECTORY_CSV = "trajectory.csv"
TRAJECTORY_SIZE = (900, 800)  # pixels of the PNGs (figure inches x dpi, no tight cropping)
TIMELINE_SIZE = (1000, 700)
DPI = 100
GIF_CAMERA_SIZE = (336, 252)  # the camera, resized; the network input (4 x 84 px) below it
GIF_FPS = 5.0
GIF_SECONDS = 12.0


@dataclass
class DriveData:
    """The topics of one drive as arrays; times in seconds from the first odometry message."""

    t0_ns: int = 0
    odometry: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))  # log time (ns), x, y, speed
    route: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    commands: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))  # log time (ns), steer, throttle, brake
    gate_brakes_ns: list[int] = field(default_factory=list)  # driver diagnostics: the safety gate braked in that period
    lane_invasions_ns: list[int] = field(default_factory=list)
    collisions_ns: list[int] = field(default_factory=list)
    camera: list[tuple[int, np.ndarray]] = field(default_factory=list)  # (log time, RGB)
    network_input: list[tuple[int, np.ndarray]] = field(default_factory=list)  # (log time, mono8)

    def position_at(self, times_ns: list[int]) -> np.ndarray:
        """The odometry position nearest in log time to each of `times_ns`, (N, 2)."""
        if not times_ns or len(self.odometry) == 0:
            return np.zeros((0, 2))
        stamps = self.odometry[:, 0]
        index = np.clip(np.searchsorted(stamps, np.asarray(times_ns, dtype=np.float64)), 0, len(stamps) - 1)
        return self.odometry[index, 1:3]


def image_array(msg) -> np.ndarray:
    """A decoded sensor_msgs/Image (bgra8, bgr8, rgb8, rgba8 or mono8) → RGB or gray uint8 array."""
    data = np.frombuffer(bytes(msg.data), dtype=np.uint8)
    channels = {"bgra8": 4, "rgba8": 4, "bgr8": 3, "rgb8": 3, "mono8": 1}[msg.encoding]
    image = data.reshape(msg.height, msg.step)[:, : msg.width * channels].reshape(msg.height, msg.width, channels)
    if msg.encoding in ("bgra8", "bgr8"):
        return image[:, :, 2::-1].copy()
    if msg.encoding == "mono8":
        return image[:, :, 0].copy()
    return image[:, :, :3].copy()


def load_drive(path: Path | str, role: str = "ego_vehicle", driver: str = "td3_driver") -> DriveData:
    prefix = f"/carla/{role}"
    topics = {
        "odometry": f"{prefix}/odometry",
        "route": f"{prefix}/waypoints",
        "command": f"{prefix}/vehicle_control_cmd",
        "lane": f"{prefix}/lane_invasion",
        "collision": f"{prefix}/collision",
        "camera": f"{prefix}/rgb_front/image",
        "input": f"/{driver}/network_input",
        "diagnostics": "/diagnostics",
    }
    odometry, commands = [], []
    brake_count: int | None = None
    data = DriveData()
    for record in read_messages(path, list(topics.values())):
        msg, when = record.message, record.log_time_ns
        if record.topic == topics["odometry"]:
            twist = msg.twist.twist.linear
            position = msg.pose.pose.position
            odometry.append((when, position.x, position.y, float(np.hypot(twist.x, twist.y))))
        elif record.topic == topics["route"] and len(data.route) == 0:
            data.route = np.array([(p.pose.position.x, p.pose.position.y) for p in msg.poses]).reshape(-1, 2)
        elif record.topic == topics["command"]:
            commands.append((when, msg.steer, msg.throttle, msg.brake))
        elif record.topic == topics["lane"]:
            data.lane_invasions_ns.append(when)
        elif record.topic == topics["collision"]:
            data.collisions_ns.append(when)
        elif record.topic == topics["camera"]:
            data.camera.append((when, image_array(msg)))
        elif record.topic == topics["input"]:
            data.network_input.append((when, image_array(msg)))
        elif record.topic == topics["diagnostics"]:
            for status in msg.status:
                values = {item.key: item.value for item in status.values}
                if "safety_brake_commands" not in values:
                    continue  # not the driver's
                # Braking now, or brake commands since the last period (a short gate event between two).
                count = int(float(values["safety_brake_commands"]))
                if values.get("state") == "full brake" or (brake_count is not None and count > brake_count):
                    data.gate_brakes_ns.append(when)
                brake_count = count
    data.odometry = np.array(odometry, dtype=np.float64).reshape(-1, 4)
    data.commands = np.array(commands, dtype=np.float64).reshape(-1, 4)
    data.t0_ns = int(data.odometry[0, 0]) if len(data.odometry) else 0
    return data


def _figure(size_px: tuple[int, int]):
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt, plt.figure(figsize=(size_px[0] / DPI, size_px[1] / DPI), dpi=DPI)


def plot_trajectory(data: DriveData, path: Path, title: str) -> Path:
    plt, fig = _figure(TRAJECTORY_SIZE)
    ax = fig.add_subplot(1, 1, 1)
    if len(data.route):
        ax.plot(data.route[:, 0], data.route[:, 1], color="0.85", linewidth=10, solid_capstyle="round", label="route")
    if len(data.odometry):
        points = ax.scatter(
            data.odometry[:, 1],
            data.odometry[:, 2],
            c=data.odometry[:, 3],
            cmap="viridis",
            s=5,
            label="driven",
            zorder=3,
        )
        fig.colorbar(points, ax=ax, label="speed (m/s)", shrink=0.8)
        ax.plot(*data.odometry[0, 1:3], marker="o", color="black", markersize=8, linestyle="", label="start", zorder=4)
    marks = (
        (data.gate_brakes_ns, "s", "tab:red", "safety gate braked"),
        (data.lane_invasions_ns, "x", "tab:orange", "lane marking crossed"),
        (data.collisions_ns, "*", "black", "collision"),
    )
    for times, marker, colour, label in marks:
        where = data.position_at(times)
        if len(where):
            ax.plot(
                where[:, 0], where[:, 1], marker=marker, color=colour, linestyle="", markersize=9, label=label, zorder=4
            )
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize=8)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def plot_timeline(data: DriveData, path: Path, title: str) -> Path:
    plt, fig = _figure(TIMELINE_SIZE)
    top, bottom = fig.subplots(2, 1, sharex=True)
    seconds = lambda ns: (np.asarray(ns, dtype=np.float64) - data.t0_ns) / 1e9  # noqa: E731
    if len(data.commands):
        t = seconds(data.commands[:, 0])
        for column, label in ((1, "steer"), (2, "throttle"), (3, "brake")):
            top.plot(t, data.commands[:, column], label=label, linewidth=1)
    for when in data.gate_brakes_ns:
        top.axvline(seconds(when), color="tab:red", alpha=0.3, linewidth=3)
    top.set_ylabel("command")
    top.set_ylim(-1.05, 1.05)
    top.legend(loc="upper right", fontsize=8)
    top.set_title(title)
    if len(data.odometry):
        bottom.plot(seconds(data.odometry[:, 0]), data.odometry[:, 3], color="tab:green")
    for when in data.lane_invasions_ns:
        bottom.axvline(seconds(when), color="tab:orange", alpha=0.5)
    bottom.set_ylabel("speed (m/s)")
    bottom.set_xlabel("time (s) from the first odometry message")
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def write_trajectory_csv(data: DriveData, path: Path) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["log_time_ns", "x", "y", "speed"])
        for when, x, y, speed in data.odometry:
            writer.writerow([int(when), repr(float(x)), repr(float(y)), repr(float(speed))])
    return path


def read_trajectory_csv(path: Path) -> np.ndarray:
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    return np.array([(float(r["log_time_ns"]), float(r["x"]), float(r["y"]), float(r["speed"])) for r in rows])


def gif_frame_size() -> tuple[int, int]:
    return GIF_CAMERA_SIZE[0], GIF_CAMERA_SIZE[1] + GIF_CAMERA_SIZE[0] // 4


def write_camera_gif(data: DriveData, path: Path) -> Path | None:
    """The camera, and below it the network's input of the same moment (nearest in log time)."""
    from PIL import Image

    if not data.camera or not data.network_input:
        return None
    width, height = gif_frame_size()
    input_times = np.array([t for t, _ in data.network_input], dtype=np.float64)
    start = data.camera[0][0]
    frames, next_ns = [], start
    for when, rgb in data.camera:
        if when < next_ns or when - start > GIF_SECONDS * 1e9:
            continue
        next_ns = when + int(1e9 / GIF_FPS)
        sees = data.network_input[int(np.argmin(np.abs(input_times - when)))][1]
        canvas = Image.new("RGB", (width, height))
        canvas.paste(Image.fromarray(rgb).resize(GIF_CAMERA_SIZE, Image.BILINEAR), (0, 0))
        strip = Image.fromarray(sees).convert("RGB").resize((width, height - GIF_CAMERA_SIZE[1]), Image.NEAREST)
        canvas.paste(strip, (0, GIF_CAMERA_SIZE[1]))
        frames.append(canvas)
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=int(1000 / GIF_FPS), loop=0)
    return path


def write_report(recording: Path, out_dir: Path, title: str) -> dict[str, Path]:
    """Every picture of the drive in `recording`, in `out_dir`; returns name → path of those written."""
    data = load_drive(recording)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {
        "trajectory": plot_trajectory(data, out_dir / TRAJECTORY_PNG, title),
        "timeline": plot_timeline(data, out_dir / TIMELINE_PNG, title),
        "trajectory data": write_trajectory_csv(data, out_dir / TRAJECTORY_CSV),
    }
    gif = write_camera_gif(data, out_dir / CAMERA_GIF)
    if gif is not None:
        written["camera"] = gif
    return written
