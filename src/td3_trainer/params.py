"""Every parameter of the trainer node: declaration, type check and validation.

One table (PARAMS) lists name, default and description; config/trainer.yaml documents the same
names. `validate(values)` is ROS-free and raises ParamError naming the first bad parameter, so
a wrong value stops the node at start-up with a message instead of failing hours later.
Groups use ROS's dotted names (`reward.collision_penalty`); the TD3 hyper-parameters are at the
top level, named exactly like the TD3Config fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any

from td3_core import networks, preprocessing, vector_state
from td3_core.actions import ACTION_DIM, ActionConfig
from td3_core.device import device_name_problem
from td3_core.networks import Architecture
from td3_core.params import (
    Param,
    ParamError,
    ParamTable,
    Value,
    at_least,
    build,
    file_name_part,
    in_range,
    non_negative,
    one_of,
    positive,
    ros_name,
)
from td3_core.preprocessing import PreprocessConfig
from td3_core.vector_state import ObservationConfig
from td3_trainer.episode import EpisodeConfig
from td3_trainer.reward import RewardConfig

__all__ = ["PARAMS", "TABLE", "TD3_PARAMS", "ParamError", "TrainerParams", "declare", "validate"]


def _run_name(v: str) -> str | None:
    return None if v == "" else file_name_part(v)


def _role_names(v: str) -> str | None:
    """One role name, or several separated by ',' (one learner fed by those vehicles), each once."""
    roles = v.split(",")
    for role in roles:
        problem = ros_name(role)
        if problem:
            return f"{problem} (several: separated by ',')"
    return None if len(set(roles)) == len(roles) else "lists a vehicle twice"


# The TD3 hyper-parameters (TD3Config fields; `seed` is the node's seed).
TD3_PARAMS = (
    Param("gamma", 0.99, "discount factor"),
    Param("tau", 0.005, "soft update rate of the target networks"),
    Param("policy_noise", 0.2, "std of the target policy smoothing noise"),
    Param("noise_clip", 0.5, "clip of the target policy smoothing noise"),
    Param("policy_delay", 2, "critic updates per actor (and target) update"),
    Param("batch_size", 256, "transitions per gradient update"),
    Param("actor_lr", 3e-4, "learning rate of the actor head"),
    Param("critic_lr", 3e-4, "learning rate of the critic heads"),
    Param("actor_cnn_lr", 3e-4, "learning rate of the actor's CNN"),
    Param("critic_cnn_lr", 3e-4, "learning rate of the critic's CNN"),
    Param("exploration_noise", 0.3, "std of the Gaussian noise added to the policy's actions"),
    Param(
        "exploration_correlation",
        0.95,
        "AR(1) coefficient of the exploration noise, in [0, 1); 0 = independent per step (TD3), "
        "0.9 = deviations that last ~10 steps; > 0 also makes the warm-up actions correlated",
    ),
    Param("warmup_noise", 0.8, "std of the correlated warm-up actions (only with exploration_correlation > 0)"),
    Param("learning_starts", 1000, "transitions in the buffer before updates start (random actions until then)"),
    Param("buffer_size", 100_000, "replay buffer capacity in transitions"),
    Param("augment", False, "random-shift augmentation of sampled frames"),
    Param("augment_pad", 4, "padding in pixels of the random shift"),
    Param(
        "actor_encoder",
        "critic",
        "critic: the actor reads the critic CNN's features (no gradient), its CNN mirrors the critic's; "
        "own: the actor loss trains the actor's own CNN",
        one_of("critic", "own"),
    ),
    Param(
        "actor_preactivation_penalty",
        0.0,
        "weight of mean(pre-tanh actor output^2) added to the actor loss: pulls a saturated actor (e.g. "
        "stuck at full brake, where tanh passes almost no gradient) back; 0 = TD3's actor loss",
    ),
    Param(
        "n_step",
        1,
        "rewards summed into each critic target before it bootstraps with gamma^n (n-step return, "
        "DrQ-v2's 3): a collision's cost reaches the steps that led to it n times sooner; 1 = TD3's target",
    ),
)

REWARD_DESCRIPTIONS = {
    "efficiency_weight": "weight of the efficiency term (speed along the lane)",
    "lane_keeping_weight": "weight of the lane keeping term",
    "comfort_weight": "weight of the comfort term",
    "safety_weight": "weight of the safety term",
    "progress_weight": "weight of the progress term",
    "target_speed_mps": "speed along the lane that earns the full efficiency reward (m/s)",
    "lateral_penalty": "per metre of |lateral offset| (<= 0)",
    "heading_penalty": "per radian of |heading error| (<= 0)",
    "steer_penalty": "per unit of steer^2 (the policy's steering action, <= 0)",
    "action_change_penalty": "per unit of |change of steer| + |change of accel| between steps (<= 0)",
    "jerk_penalty": "per m/s^3 of |longitudinal jerk| (<= 0)",
    "standstill_penalty": "efficiency at a standstill (<= 0), rising linearly to 1 at the target speed: standing "
    "still costs this every step; 0 = standing earns 0",
    "overspeed_penalty": "efficiency lost per target_speed_mps of speed above the target (<= 0): above it "
    "efficiency is 1 + this x (speed - target) / target, >= -1; -1 = 0 at twice the target",
    "max_jerk": "jerk is clipped at this value (m/s^3)",
    "collision_penalty": "on a collision (<= 0)",
    "off_road_penalty": "per step off the road (<= 0)",
    "lane_invasion_penalty": "per lane invasion event (<= 0)",
    "progress_per_m": "per metre gained along the route",
    "max_progress_per_step_m": "one step's progress is clipped to +- this (projection jumps)",
    "progress_speed_cap": "> 0: a step's progress is paid up to progress_speed_cap x target_speed_mps x dt metres "
    "(driving faster than that earns no more progress); 0 = no cap",
    "curve_lateral_accel_mps2": "> 0: in curves the target speed is at most sqrt(this / curvature), the curvature "
    "being the route's mean over the next 20 m (slower in tight curves); 0 = the same target everywhere",
    "waypoint_bonus": "each time a new waypoint_spacing_m of route is first reached",
    "waypoint_spacing_m": "distance between waypoint bonuses (m)",
    "goal_bonus": "when the route end is reached",
}

PARAMS: tuple[Param, ...] = (
    Param(
        "role_name",
        "ego_vehicle",
        "ego vehicle role name: topics are /carla/<role_name>/...; 'a,b,...' = one learner fed by those vehicles "
        "(the first one evaluates)",
        _role_names,
    ),
    Param(
        "image_input",
        "raw",
        "raw: the camera (/carla/<role>/rgb_front/image), preprocessed here; preprocessed: the 84x84 mono8 frames "
        "of the preprocessing node (td3_preprocess, /carla/<role>/rgb_front/preprocessed)",
        one_of(*preprocessing.IMAGE_INPUTS),
    ),
    Param("run_name", "", "sub-directory of models_dir (and log_dir); '' = a timestamp, or the resumed run", _run_name),
    Param("scenario", "scenario_0", "scenario name in checkpoint file names", file_name_part),
    Param("models_dir", "models", "directory of the runs' checkpoints"),
    Param("device", "auto", "torch device: auto, cpu, cuda, cuda:<n>", device_name_problem),
    Param("seed", 0, "seed of torch, numpy, the replay buffer and exploration", at_least(0)),
    Param("num_threads", 0, "torch CPU threads; 0 = all cores but one", at_least(0)),
    Param("total_steps", 0, "environment step budget including resumed steps; 0 = unlimited", at_least(0)),
    Param("max_episode_steps", 1000, "actions per episode before it is truncated", at_least(1)),
    Param("checkpoint_every", 5000, "checkpoint every N environment steps; 0 = only on shutdown", at_least(0)),
    Param("keep_last", 5, "checkpoints kept per run; 0 = keep all", at_least(0)),
    Param("eval_every", 0, "evaluate without noise every N env steps (checkpoint, `best`); 0 = never", at_least(0)),
    Param("eval_episodes", 3, "episodes per evaluation, from start poses (or tracks) training never has", at_least(1)),
    Param("resume", "", "'' = new run, a .pth path, a run directory or 'latest'"),
    Param("save_replay_buffer", False, "also save/restore the replay buffer next to each checkpoint"),
    Param("updates_per_step", 1, "gradient updates per environment step once learning has started", at_least(0)),
    Param("async_updates", False, "gradient updates on their own thread, never delaying the next command"),
    Param("frame_timeout_s", 2.0, "seconds to wait for the next frame before re-sending the action", positive),
    Param("max_timeouts", 3, "consecutive frame timeouts that make a gap (no transition across it)", at_least(1)),
    Param("odometry_wait_s", 0.1, "seconds an image waits for the odometry of its stamp", non_negative),
    Param(
        "fixed_delta_seconds",
        0.05,
        "simulator tick; stamps further apart than 1.5 ticks are a drop",
        in_range(0.0, 1.0, low_open=True),
    ),
    Param("reset_service", "", "'' = reset through the bridge (set_transform, goal); or a ResetEpisode service name"),
    Param("start_pose_spacing_m", 20.0, "bridge reset: start poses every this many m of the start-up route", positive),
    Param("reset_goal_ahead_m", 200.0, "bridge reset: the goal lies this far along the start-up route", positive),
    Param("reset_attempts", 5, "bridge reset: teleports tried (each to another pose) before stopping", at_least(1)),
    Param("reset_settle_ticks", 40, "bridge reset: brake ticks one teleport may take to settle", at_least(1)),
    Param("reset_tolerance_m", 1.0, "bridge reset: how close to its start pose the car must be", positive),
    Param("min_route_m", 20.0, "bridge reset: a new route shorter than this is refused", positive),
    Param("reset_timeout_s", 10.0, "seconds to wait for the reset service's answer before asking again", positive),
    Param(
        "route_startup_timeout_s",
        600.0,
        "seconds to wait for the first route (carla_waypoint_publisher) before stopping; 0 = wait forever",
        non_negative,
    ),
    Param(
        "episode_seed", -1, "-1 = same track every episode; >= 0: episode k gets seed episode_seed + k", at_least(-1)
    ),
    Param(
        "use_speedometer",
        False,
        "speed from the speedometer topic (unstamped: may lag a tick) instead of the twist of the tick's odometry",
    ),
    Param("progress", True, "console progress bar (tqdm)"),
    Param("tensorboard", True, "write TensorBoard scalars to log_dir/run_name"),
    Param("log_dir", "runs", "TensorBoard directory"),
    Param("stats_period_s", 1.0, "seconds between ~/train_stats and /diagnostics messages", positive),
    *TD3_PARAMS,
    Param("network.feature_dim", 512, "CNN feature size", at_least(1)),
    Param("network.hidden_dim", 256, "hidden units of the actor and critic heads", at_least(1)),
    Param("network.cnn_dropout", 0.0, "dropout after each conv block", in_range(0.0, 1.0, high_open=True)),
    Param("preprocessing.image_size", 84, "frames are resized to image_size x image_size grayscale"),
    Param("preprocessing.frame_stack", 4, "frames per observation"),
    Param("observation.use_vector_state", True, "feed speed, lane offset, heading error and waypoints"),
    Param("observation.num_waypoints", 10, "route points ahead in the vector state"),
    Param("observation.speed_scale", 30.0, "m/s mapped to 1"),
    Param("observation.lateral_scale", 3.5, "metres of lateral offset mapped to 1"),
    Param("observation.lookahead_m", 50.0, "metres of waypoint coordinates mapped to 1"),
    Param("action.max_steer", 1.0, "steer sent at action +-1"),
    Param("action.max_throttle", 1.0, "throttle sent at action[1] = +1"),
    Param("action.max_brake", 1.0, "brake sent at action[1] = -1"),
    Param(
        "action.speed_limit_mps",
        0.0,
        "speed limiter (m/s): no throttle at it, braking above it; stored in the checkpoint and applied by the "
        "driver too; 0 = none",
    ),
    Param(
        "action.curve_lateral_accel_mps2",
        0.0,
        "curve governor (m/s^2): in curves the limiter's speed is at most sqrt(this / curvature of the route "
        "ahead); stored in the checkpoint and applied by the driver too; 0 = none",
    ),
    Param("episode.off_road_lateral_m", 3.0, "|lateral offset| beyond which the car is off the road (terminal)"),
    Param("episode.goal_distance_m", 2.0, "the goal is reached when less route than this remains (truncation)"),
    Param("episode.terminate_on_collision", True, "a collision ends the episode as a terminal state"),
    Param("episode.terminate_on_off_road", True, "leaving the road ends the episode as a terminal state"),
    *(Param(f"reward.{name}", value, REWARD_DESCRIPTIONS[name]) for name, value in RewardConfig().to_dict().items()),
)
TABLE = ParamTable(PARAMS)


@dataclass(frozen=True)
class TrainerParams:
    values: Mapping[str, Value]  # every parameter, by name (read-only): what the checkpoint's config holds
    td3: Mapping[str, Value]  # TD3Config fields (seed included)
    preprocess: PreprocessConfig
    observation: ObservationConfig
    action: ActionConfig
    reward: RewardConfig
    episode: EpisodeConfig
    architecture: Architecture

    def __getattr__(self, name: str) -> Value:
        # Top-level parameters read as attributes: params.frame_timeout_s
        try:
            return self.__dict__["values"][name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def reset_service_name(self) -> str:
        return str(self.values["reset_service"]).replace("{role_name}", str(self.values["role_name"]))

    def topic(self, suffix: str) -> str:
        return f"/carla/{self.values['role_name']}/{suffix}"


def role_names(value: str) -> list[str]:
    """The vehicles of a role_name parameter ('ego_vehicle' or 'hero1,hero2')."""
    return value.split(",")


def for_role(params: TrainerParams, role: str) -> TrainerParams:
    """The parameters of one vehicle of several: its own topics and reset service."""
    return replace(params, values={**params.values, "role_name": role})


def _group(values: Mapping[str, Value], prefix: str) -> dict[str, Value]:
    return {k[len(prefix) + 1 :]: v for k, v in values.items() if k.startswith(prefix + ".")}


def validate(raw: Mapping[str, Any]) -> TrainerParams:
    """Type-check and validate every parameter (missing ones take their default)."""
    values = TABLE.validate(raw)
    td3 = MappingProxyType({p.name: values[p.name] for p in TD3_PARAMS} | {"seed": values["seed"]})
    _check_td3(td3)
    preprocess = build(PreprocessConfig, _group(values, "preprocessing"), "preprocessing.")
    observation = build(ObservationConfig, _group(values, "observation"), "observation.")
    action = build(ActionConfig, _group(values, "action"), "action.")
    reward = build(RewardConfig, _group(values, "reward"), "reward.")
    episode_fields = {"max_episode_steps": values["max_episode_steps"], **_group(values, "episode")}
    episode = build(EpisodeConfig, episode_fields, "episode.", max_episode_steps="max_episode_steps")
    architecture = build(
        Architecture,
        {
            "frame_stack": preprocess.frame_stack,
            "image_size": preprocess.image_size,
            "vector_dim": observation.vector_dim,
            "action_dim": ACTION_DIM,
            **_group(values, "network"),
        },
        "network.",
        frame_stack="preprocessing.frame_stack",
        image_size="preprocessing.image_size",
        vector_dim="observation.use_vector_state",
        action_dim="network",
    )
    try:
        from td3_core.networks import build_cnn

        build_cnn(architecture)
    except ValueError as error:
        raise ParamError("preprocessing.image_size", str(error)) from error
    return TrainerParams(values, td3, preprocess, observation, action, reward, episode, architecture)


_PROFILE_FIELDS = {
    "architecture": networks.PROFILE_FIELDS,
    "preprocessing": preprocessing.PROFILE_FIELDS,
    "observation": vector_state.PROFILE_FIELDS,
}


def resume_expectations(params: TrainerParams) -> dict[str, dict[str, Any]]:
    """What the parameters fix about a checkpoint to resume from; the profile fields (activations,
    input range, stack fill, vector conventions) are the checkpoint's own and are not compared."""
    given = {
        "architecture": params.architecture.to_dict(),
        "preprocessing": params.preprocess.to_dict(),
        "observation": params.observation.to_dict(),
    }
    return {
        group: {k: v for k, v in values.items() if k not in _PROFILE_FIELDS[group]} for group, values in given.items()
    }


def with_checkpoint_profile(
    params: TrainerParams, architecture: Architecture, preprocess: PreprocessConfig, observation: ObservationConfig
) -> TrainerParams:
    """The parameters of a resumed run: the networks and input pipeline as the checkpoint has them."""
    return replace(params, architecture=architecture, preprocess=preprocess, observation=observation)


def _check_td3(td3: dict[str, Value]) -> None:
    from td3_trainer.config import TD3Config

    build(TD3Config, td3)
    if td3["learning_starts"] > td3["buffer_size"]:
        raise ParamError(
            "learning_starts", f"must be <= buffer_size ({td3['buffer_size']}), got {td3['learning_starts']}"
        )


# --------------------------------------------------------------------------- ROS side


def declare(node: Any) -> dict[str, Any]:
    """Declare every parameter (read-only, typed by the table's own check) and return the values."""
    return TABLE.declare(node)
