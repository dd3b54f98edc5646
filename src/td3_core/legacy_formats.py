"""The original system's checkpoints (av_td3_system): variant detection, key mapping, metadata.

av_td3_system never wrote the layout its own documentation describes (CNN `features.*`, critic
`Q1.l1`); its files use CNN `conv1..conv3/fc` (+ LayerNorm `ln1..ln4`), critic `Q{1,2}.fc1..fc3`,
and changed over its history (docs/driver.md, "Checkpoints of the original system"):

- A: actor and critic MLPs only, no CNN: cannot drive from pixels, refused.
- B: one shared CNN `cnn_state_dict` (ReLU, no activation after the fc), state 535.
- C1/C2: `actor_cnn_state_dict` + `critic_cnn_state_dict`, state 535. C1 (ReLU) lived for one commit
  and has exactly C2's keys and shapes; a file of this layout is read as C2 (LeakyReLU 0.01).
- C3: state 565 (25 waypoints); C4: the CNN parameters folded into the actor/critic Adams, the CNN
  optimizers saved as None; C5: LayerNorm in the CNN and LeakyReLU after the fc; C6: Adams with
  weight_decay 1e-4 (C5 has 0), and an unsigned lateral distance in the vector state.

Everything is read from the file itself. `unify` turns such a file into our format 2 in memory
(targets = copies of the online networks, optimizer moments mapped to our parameter order, the
architecture and input-pipeline profile in the metadata), so that the driver, the trainer's
resume, td3-export and td3-convert all read it through the same path.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from td3_core.actions import ActionConfig
from td3_core.networks import Architecture
from td3_core.preprocessing import PreprocessConfig
from td3_core.vector_state import ObservationConfig

SYSTEM = "av_td3_system"
# Our stack fill for a [-1, 1] network: the grey level nearest to 127.5, the original's 0.0 frame.
MID_GREY = 128

# Original CNN parameter names, in the order its modules register them (the Adams' order too).
_CNN_CONVS = ("conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "conv3.weight", "conv3.bias")
_CNN_NORMS = ("ln1.weight", "ln1.bias", "ln2.weight", "ln2.bias", "ln3.weight", "ln3.bias")
_CNN_FC = ("fc.weight", "fc.bias")
_CNN_NAMES = {
    "conv1.weight": "features.0.weight",
    "conv1.bias": "features.0.bias",
    "conv2.weight": "features.3.weight",
    "conv2.bias": "features.3.bias",
    "conv3.weight": "features.6.weight",
    "conv3.bias": "features.6.bias",
}
_MLP = ("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "fc3.weight", "fc3.bias")
_CRITIC = tuple(f"{q}.{name}" for q in ("Q1", "Q2") for name in _MLP)


def cnn_parameter_order(layer_norm: bool) -> tuple[str, ...]:
    """The original CNN's parameters in registration order."""
    if layer_norm:
        return (*_CNN_CONVS, *_CNN_NORMS, *_CNN_FC, "ln4.weight", "ln4.bias")
    return (*_CNN_CONVS, *_CNN_FC)


def our_cnn_name(name: str) -> str:
    return _CNN_NAMES.get(name, name)


def our_critic_name(name: str) -> str:
    """Q1.fc2.weight → Q1.l2.weight."""
    head, layer, kind = name.split(".")
    return f"{head}.l{layer[2:]}.{kind}"


class OriginalFormatError(ValueError):
    """An original-system file that cannot be used; the message says what it holds and why."""


def is_original_system(ckpt: Mapping) -> bool:
    """A file of av_td3_system: no format_version, and critic keys Q1.fc1 (our layout has Q1.l1)
    or a CNN with conv1 (ours has features.0)."""
    if "format_version" in ckpt:
        return False
    marks = {
        "critic_state_dict": "Q1.fc1.weight",
        "actor_cnn_state_dict": "conv1.weight",
        "cnn_state_dict": "conv1.weight",
    }
    return any(isinstance(ckpt.get(key), Mapping) and mark in ckpt[key] for key, mark in marks.items())


def _shape(state: Mapping, key: str) -> tuple[int, ...]:
    tensor = state.get(key)
    if not isinstance(tensor, torch.Tensor):
        raise OriginalFormatError(f"'{key}' is missing or not a tensor")
    return tuple(tensor.shape)


def _weight_decay(optimizer: Any) -> float:
    if isinstance(optimizer, Mapping) and optimizer.get("param_groups"):
        group = optimizer["param_groups"][0]
        if isinstance(group, Mapping) and isinstance(group.get("weight_decay"), int | float):
            return float(group["weight_decay"])
    return 0.0


def detect_variant(ckpt: Mapping) -> tuple[str, Mapping[str, torch.Tensor] | None, Mapping | None]:
    """(variant, actor CNN state, critic CNN state); raises OriginalFormatError for what cannot drive."""
    actor = ckpt.get("actor_state_dict")
    if not isinstance(actor, Mapping):
        raise OriginalFormatError("'actor_state_dict' is missing or not a state dict")
    state_dim = _shape(actor, "fc1.weight")[1]
    actor_cnn, critic_cnn = ckpt.get("actor_cnn_state_dict"), ckpt.get("critic_cnn_state_dict")
    shared = ckpt.get("cnn_state_dict")
    if isinstance(actor_cnn, Mapping) and "conv1.weight" in actor_cnn:
        if "ln1.weight" in actor_cnn:
            variant = "C6" if _weight_decay(ckpt.get("actor_optimizer_state_dict")) > 0 else "C5"
        elif state_dim - _shape(actor_cnn, "fc.weight")[0] > 23:
            variant = "C4" if ckpt.get("actor_cnn_optimizer_state_dict") is None else "C3"
        else:
            variant = "C2"
        return variant, actor_cnn, critic_cnn if isinstance(critic_cnn, Mapping) else None
    if isinstance(shared, Mapping) and "conv1.weight" in shared:
        return "B", shared, shared
    keys = ", ".join(sorted(str(k) for k in ckpt))
    if "use_dict_buffer" in ckpt and ("actor_cnn_state_dict" in ckpt or "cnn_state_dict" in ckpt):
        held = "CNN entries that are None (saved without an image encoder)"
    else:
        held = f"its first layout (variant A: keys {keys}; no CNN at all)"
    raise OriginalFormatError(
        f"this {SYSTEM} checkpoint holds {held}: actor and critic MLPs for a state of {state_dim} values "
        f"(actor fc1 {list(_shape(actor, 'fc1.weight'))}), total_it {ckpt.get('total_it')!r}. That state starts "
        "with image features of a CNN the file does not hold, so it cannot drive from camera pixels; a checkpoint "
        "of its later layouts (B, C1-C6) holds the CNN"
    )


def _profile(variant: str, arch_values: dict) -> tuple[Architecture, PreprocessConfig, ObservationConfig]:
    layer_norm = variant in ("C5", "C6")
    arch = Architecture(
        **arch_values,
        cnn_activation="relu" if variant == "B" else "leaky_relu",
        cnn_layer_norm=layer_norm,
        fc_activation="leaky_relu" if layer_norm else "none",
        input_range="symmetric",
    )
    preprocess = PreprocessConfig(
        image_size=arch.image_size, frame_stack=arch.frame_stack, stack_fill="constant", fill_level=MID_GREY
    )
    waypoints, odd = divmod(arch.vector_dim - 3, 2)
    if arch.vector_dim < 3 or odd:
        raise OriginalFormatError(f"a vector state of {arch.vector_dim} values is not 3 + 2 x waypoints")
    observation = ObservationConfig(
        use_vector_state=True,
        num_waypoints=waypoints,
        frame="carla",
        lateral="unsigned" if variant == "C6" else "signed",
        lateral_reference="projection" if variant == "C6" else "waypoint_segment",
        heading_reference="route" if variant == "C6" else "waypoint_bearing",
        waypoint_reach_m=5.0,
        beyond_lookahead="zero",
        past_route_end="zero",
    )
    return arch, preprocess, observation


def _renamed(state: Mapping, names: tuple[str, ...], rename, where: str) -> dict[str, torch.Tensor]:
    missing = [name for name in names if name not in state]
    unexpected = sorted(set(state) - set(names))
    if missing or unexpected:
        raise OriginalFormatError(f"{where}: missing {missing[:4]}, unexpected {unexpected[:4]}")
    return {rename(name): state[name] for name in names}


def _split_optimizer(optimizer: Any, parts: list[int]) -> list[dict] | None:
    """An Adam state dict over len(parts) consecutive parameter blocks → one state dict per block
    (parameter ids renumbered from 0); None if it does not have that many parameters."""
    if not isinstance(optimizer, Mapping) or not isinstance(optimizer.get("param_groups"), list):
        return None
    groups = optimizer["param_groups"]
    if len(groups) != 1 or not isinstance(groups[0], Mapping):
        return None
    ids = list(groups[0].get("params", []))
    if len(ids) != sum(parts):
        return None
    state = optimizer.get("state") if isinstance(optimizer.get("state"), Mapping) else {}
    hyper = {k: v for k, v in groups[0].items() if k != "params"}
    blocks, start = [], 0
    for size in parts:
        block_ids = ids[start : start + size]
        blocks.append(
            {
                "state": {i: dict(state[pid]) for i, pid in enumerate(block_ids) if pid in state},
                "param_groups": [{**hyper, "params": list(range(size))}],
            }
        )
        start += size
    return blocks


def _fresh_like(optimizer_block: dict | None, size: int) -> dict | None:
    if optimizer_block is None:
        return None
    hyper = {k: v for k, v in optimizer_block["param_groups"][0].items() if k != "params"}
    return {"state": {}, "param_groups": [{**hyper, "params": list(range(size))}]}


def _optimizers(ckpt: Mapping, variant: str, n_cnn: int) -> tuple[dict[str, dict | None], str]:
    """Our four optimizer state dicts from the file's, and a sentence saying how."""
    actor_opt, critic_opt = ckpt.get("actor_optimizer_state_dict"), ckpt.get("critic_optimizer_state_dict")
    folded_actor = _split_optimizer(actor_opt, [6, n_cnn])
    if folded_actor is not None:  # C4-C6: CNN parameters after the MLP's in the actor/critic Adams
        folded_critic = _split_optimizer(critic_opt, [12, n_cnn]) or [None, None]
        how = "CNN moments taken from the actor/critic Adams (parameters 6.. and 12..), renumbered"
        return {
            "actor_optimizer_state_dict": folded_actor[0],
            "actor_cnn_optimizer_state_dict": folded_actor[1],
            "critic_optimizer_state_dict": folded_critic[0],
            "critic_cnn_optimizer_state_dict": folded_critic[1],
        }, how
    actor = (_split_optimizer(actor_opt, [6]) or [None])[0]
    critic = (_split_optimizer(critic_opt, [12]) or [None])[0]
    if variant == "B":
        shared = (_split_optimizer(ckpt.get("cnn_optimizer_state_dict"), [n_cnn]) or [None])[0]
        how = "the shared CNN's Adam moments given to the critic CNN; the actor CNN's Adam starts empty"
        return {
            "actor_optimizer_state_dict": actor,
            "critic_optimizer_state_dict": critic,
            "critic_cnn_optimizer_state_dict": shared,
            "actor_cnn_optimizer_state_dict": _fresh_like(shared or actor, n_cnn),
        }, how
    how = "each Adam mapped to ours parameter by parameter (same order)"
    return {
        "actor_optimizer_state_dict": actor,
        "critic_optimizer_state_dict": critic,
        "actor_cnn_optimizer_state_dict": (
            _split_optimizer(ckpt.get("actor_cnn_optimizer_state_dict"), [n_cnn]) or [None]
        )[0],
        "critic_cnn_optimizer_state_dict": (
            _split_optimizer(ckpt.get("critic_cnn_optimizer_state_dict"), [n_cnn]) or [None]
        )[0],
    }, how


def _number(value: Any, default: float) -> float:
    return (
        float(value)
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        else default
    )


def _training_config(ckpt: Mapping, optimizers: Mapping[str, dict | None]) -> dict:
    """Our TD3Config fields from the file's hyper-parameters (the actor keeps its own CNN)."""
    lr = 3e-4
    actor = optimizers.get("actor_optimizer_state_dict")
    if actor:
        lr = _number(actor["param_groups"][0].get("lr"), lr)
    policy_freq = ckpt.get("policy_freq")
    return {
        "gamma": _number(ckpt.get("discount"), 0.99),
        "tau": _number(ckpt.get("tau"), 0.005),
        "policy_noise": _number(ckpt.get("policy_noise"), 0.2),
        "noise_clip": _number(ckpt.get("noise_clip"), 0.5),
        "policy_delay": policy_freq if isinstance(policy_freq, int) and policy_freq >= 1 else 2,
        "actor_lr": lr,
        "critic_lr": lr,
        "actor_cnn_lr": lr,
        "critic_cnn_lr": lr,
        "actor_encoder": "own",
    }


def unify(ckpt: Mapping, path: Path | None = None) -> dict:
    """An original-system payload → our format 2 (in memory); OriginalFormatError if it cannot drive
    or does not have the shapes of any variant (the schema check then runs on the result)."""
    try:
        return _unify(ckpt, path)
    except OriginalFormatError:
        raise
    except (IndexError, KeyError, TypeError, ValueError, AttributeError) as error:
        raise OriginalFormatError(f"not a valid {SYSTEM} checkpoint: {type(error).__name__}: {error}") from error


def _unify(ckpt: Mapping, path: Path | None) -> dict:
    variant, actor_cnn, critic_cnn = detect_variant(ckpt)
    layer_norm = "ln1.weight" in actor_cnn
    cnn_names = cnn_parameter_order(layer_norm)
    actor_cnn_ours = _renamed(actor_cnn, cnn_names, our_cnn_name, "actor CNN")
    critic_cnn_ours = _renamed(critic_cnn, cnn_names, our_cnn_name, "critic CNN") if critic_cnn else None
    actor_ours = _renamed(ckpt["actor_state_dict"], _MLP, str, "actor")
    critic_state = ckpt.get("critic_state_dict")
    critic_ours = (
        _renamed(critic_state, _CRITIC, our_critic_name, "critic") if isinstance(critic_state, Mapping) else None
    )
    conv1, fc, fc1 = _shape(actor_cnn, "conv1.weight"), _shape(actor_cnn, "fc.weight"), _shape(actor_ours, "fc1.weight")
    side = round(math.sqrt(fc[1] / 64))
    if side < 1 or 64 * side * side != fc[1]:
        raise OriginalFormatError(f"CNN fc.weight {list(fc)} does not read 64 x side x side conv features")
    # The convs' output sides run backwards: 3x3/1, 4x4/2, 8x8/4 (7 → 9 → 20 → 84).
    image_size = ((side + 2 - 1) * 2 + 4 - 1) * 4 + 8
    arch, preprocess, observation = _profile(
        variant,
        {
            "frame_stack": conv1[1],
            "image_size": image_size,
            "feature_dim": fc[0],
            "vector_dim": fc1[1] - fc[0],
            "action_dim": _shape(actor_ours, "fc3.weight")[0],
            "hidden_dim": fc1[0],
        },
    )
    optimizers, how = _optimizers(ckpt, variant, len(cnn_names))
    note = {
        "system": SYSTEM,
        "variant": variant,
        "source": str(path) if path else "",
        "targets": "initialised from the online networks (the file has none)",
        "optimizers": how,
    }
    if variant == "C2":
        note["assumed"] = "C1 (ReLU) has the same keys and shapes; read as C2 (LeakyReLU 0.01)"
    if variant == "C5":
        note["assumed"] = (
            "the vector state of 168403b (signed lateral offset from the waypoint segment, heading error against "
            "the first waypoint's bearing); runs from c8c3ff1 (2025-11-23) used the unsigned lane distance and "
            "from 4db24a3 (2025-11-24) the lane direction"
        )
    original_config = ckpt.get("config") if isinstance(ckpt.get("config"), Mapping) else {}
    payload = {
        "format_version": 2,
        "architecture": arch.to_dict(),
        "preprocessing": preprocess.to_dict(),
        "observation": observation.to_dict(),
        "action": ActionConfig().to_dict(),
        "total_it": ckpt.get("total_it", 0),
        "config": _training_config(ckpt, optimizers),
        "original_system": note,
        "original_config": dict(original_config),
        "actor_cnn_state_dict": actor_cnn_ours,
        "actor_state_dict": actor_ours,
        "actor_cnn_target_state_dict": dict(actor_cnn_ours),
        "actor_target_state_dict": dict(actor_ours),
    }
    if critic_cnn_ours is not None:
        payload["critic_cnn_state_dict"] = critic_cnn_ours
        payload["critic_cnn_target_state_dict"] = dict(critic_cnn_ours)
    if critic_ours is not None:
        payload["critic_state_dict"] = critic_ours
        payload["critic_target_state_dict"] = dict(critic_ours)
    payload.update({key: value for key, value in optimizers.items() if value is not None})
    return payload
