"""The learning table and plot from bench_learning results (`--json-out` files).

    python -m bench.learning_report RESULT.json ... [--plot docs/images/learning_budget.png]

Prints Markdown: one row per run (trainer, variant, budget, seed) with the held-out protocol's
numbers (and one per `--heldout-at` budget of a run, its steps shown as "N (of M)"), then per
trainer, variant, budget and evaluation episodes (starts and obstacles per held-out track) the
median and mean over seeds, how many seeds drove every held-out episode as a full lap without a
collision or leaving the road (the goal), and, where both trainers ran the same budget on the
same environment and evaluation episodes, the ratios of their scores and wall times (runs with
other starts or obstacles per held-out track drove other episodes: they are never pooled or
compared). The score is the held-out route completion (distance before the first collision or
off-road end, over the lap); a seed counts once per budget, from the run trained for it where a
longer run's snapshot repeats it. The variant names the values of VARIANT_KEYS that differ from
their defaults in the run, from the parameters it recorded (`trainer_params`), or for runs from
before that record, from its --set overrides (those parameters had their defaults in every
params file then), and the obstacles on its training tracks; an SB3 run's, only what SB3 takes
of them: the reward's, the action mapping's and the obstacles, with our settings also the
updates per step. Ours is compared with the SB3 runs whose variant is what SB3 took of its own.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
from collections import defaultdict
from pathlib import Path

# parameters whose effect the README's learning section reports, by their short name
VARIANT_KEYS = {  # parameter: (its short name, the value it has when it is not part of the variant)
    "actor_preactivation_penalty": ("penalty", 0.0),
    "reward.standstill_penalty": ("standstill", 0.0),
    "reward.overspeed_penalty": ("overspeed", -1.0),
    "reward.curve_lateral_accel_mps2": ("curve a", 0.0),
    "action.curve_lateral_accel_mps2": ("governor a", 0.0),
    "updates_per_step": ("updates", 1.0),
    "n_step": ("n-step", 1.0),
}
LEARNER_KEYS = {"actor_preactivation_penalty"}  # our learner's own: SB3 runs do not use them
MAPPED_KEYS = {"updates_per_step", "n_step"}  # ours that SB3 takes with our settings (gradient_steps, n_steps)
# what each trainer's runs learned with of VARIANT_KEYS: SB3 at its defaults, the environment alone
IGNORED_KEYS = {"ours": frozenset(), "sb3": LEARNER_KEYS, "sb3-defaults": LEARNER_KEYS | MAPPED_KEYS}


def variant_of(budget: dict, ignored: frozenset | set = frozenset()) -> str:
    """The variant's short names and values, but for the `ignored` parameters (those a trainer
    does not use), and the obstacles on the training tracks."""
    values = budget.get("trainer_params") or budget.get("overrides", {})
    shown = [
        f"{short} {values[key]:g}"
        for key, (short, default) in VARIANT_KEYS.items()
        if float(values.get(key, default)) != default and key not in ignored
    ]
    if budget.get("obstacles", 0):  # runs from before --obstacles trained without any
        shown.append(f"obstacles {budget['obstacles']}")
    return ", ".join(shown) or "-"


def load(paths: list[str]) -> list[dict]:
    """One row per run and budget: a run with `heldout_at` entries gives a row for each of them too
    (the same run's policy after fewer steps, with the training time to that step)."""
    runs = []
    for path in paths:
        result = json.loads(Path(path).read_text())
        name = result["training"]["trainer"]
        trainer = "ours" if name == "td3-drive" else ("sb3-defaults" if "defaults" in name else "sb3")
        common = {
            "trainer": trainer,
            "starts": result["heldout"]["td3"].get("starts_per_track", 1),
            "obstacles": result["heldout"]["td3"].get("obstacles_per_track", 0),
            "variant": variant_of(result["budget"], IGNORED_KEYS[trainer]),
            # the variant an SB3 run of the same setting would have: what it is compared with
            "as_sb3": {other: variant_of(result["budget"], IGNORED_KEYS[other]) for other in ("sb3", "sb3-defaults")},
            "seed": result["budget"]["seed"],
            "date": result["date"],
        }
        # the benchmark's other evaluation: tracks of seeds 1000+k (procedural training) or other
        # spawn points of the loop, --eval-steps steps each; only after the whole budget
        other = result["eval"]["td3"]
        runs.append(
            common
            | heldout_row(result["heldout"]["td3"]["summary"])
            | {
                "steps": result["budget"]["env_steps"],
                "run_steps": result["budget"]["env_steps"],
                "seconds": result["training"]["seconds"],
                "other_m": other["mean_distance_m"],
                "other_crashed": other["episodes_ended_by_crash"],
                "other_episodes": result["eval"]["episodes"],
            }
        )
        for steps, earlier in result.get("heldout_at", {}).items():
            runs.append(
                common
                | heldout_row(earlier["td3"]["summary"])
                | {
                    "steps": int(steps),
                    "run_steps": result["budget"]["env_steps"],
                    "seconds": earlier["seconds"],
                    "other_m": None,
                }
            )
    return sorted(runs, key=lambda r: (r["trainer"], r["variant"], r["starts"], r["obstacles"], r["steps"], r["seed"]))


def one_per_seed(runs: list[dict]) -> list[dict]:
    """Each seed once per trainer, variant, budget and starts: where a run of that budget and a
    snapshot of a longer run of the same seed both have a row, the run trained for the budget (the
    shortest), so that no seed counts twice in a median, a mean or a curve."""
    best: dict[tuple, dict] = {}
    for r in runs:
        key = (*group_of(r), r["seed"])
        if key not in best or r["run_steps"] < best[key]["run_steps"]:
            best[key] = r
    return [r for r in runs if best[(*group_of(r), r["seed"])] is r]


def group_of(run: dict) -> tuple[str, str, int, int, int]:
    """What a median pools: the same trainer, variant, budget and evaluation episodes (starts and
    obstacles per held-out track)."""
    return (run["trainer"], run["variant"], run["steps"], run["starts"], run["obstacles"])


def curve_of(run: dict) -> tuple[str, str, int, int]:
    """What a curve of the plot follows over the budgets: a group but for its budget."""
    trainer, variant, _, starts, obstacles = group_of(run)
    return (trainer, variant, starts, obstacles)


def heldout_row(summary: dict) -> dict:
    speed = summary.get("speed", {})  # None below: results from before the speed profile, or no such road
    return {
        "completion": summary["route_completion"],
        "laps": summary["laps_without_incident"],
        "episodes": int(summary["episodes"]),
        "collisions_per_km": summary["collisions_per_km"],
        "off_road_per_km": summary["off_road_per_km"],
        "lateral_m": summary["mean_abs_lateral_m"],
        "speed": summary["mean_speed_mps"],
        "straights": speed.get("mean_speed_straights_mps"),
        "curves": speed.get("mean_speed_tight_curves_mps"),
        "max_speed": speed.get("max_speed_mps"),
    }


def shown(value) -> str:
    return "-" if value is None else str(value)


def other_starts(run: dict) -> str:
    if run["other_m"] is None:
        return "-"  # a --heldout-at row: the other evaluation ran after the whole budget only
    return f"{run['other_m']:.0f} m, {run['other_crashed']}/{run['other_episodes']}"


def all_laps(run: dict) -> bool:
    return run["laps"] == run["episodes"]


def table(runs: list[dict]) -> str:
    lines = [
        "| trainer | variant | steps | seed | starts | eval obstacles | completion | laps | coll./km | off-road/km "
        "| mean \\|lat.\\| m | speed m/s (straights / tight curves / max) | train s "
        "| other starts: distance, crashed |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---|",
    ]
    for r in runs:
        steps = str(r["steps"]) if r["run_steps"] == r["steps"] else f"{r['steps']} (of {r['run_steps']})"
        lines.append(
            f"| {r['trainer']} | {r['variant']} | {steps} | {r['seed']} | {r['starts']} | {r['obstacles']} "
            f"| {r['completion']:.3f} "
            f"| {r['laps']}/{r['episodes']} "
            f"| {r['collisions_per_km']:.2f} | {r['off_road_per_km']:.2f} | {r['lateral_m']:.2f} "
            f"| {r['speed']:.1f} ({shown(r['straights'])} / {shown(r['curves'])} / {shown(r['max_speed'])}) "
            f"| {r['seconds']:.0f} "
            f"| {other_starts(r)} |"
        )
    return "\n".join(lines)


def medians(runs: list[dict]) -> tuple[str, dict]:
    groups: dict[tuple[str, str, int, int, int], list[dict]] = defaultdict(list)
    for r in one_per_seed(runs):
        groups[group_of(r)].append(r)
    lines = [
        "| trainer | variant | steps | starts | eval obstacles | seeds | median completion | mean completion "
        "| seeds with every lap | median speed on straights m/s | median train s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    summary = {}
    as_sb3 = {}  # (trainer, variant) -> the variant an SB3 run of its setting has, per SB3 settings
    for (trainer, variant, steps, starts, obstacles), group in sorted(groups.items()):
        as_sb3[(trainer, variant)] = group[0]["as_sb3"]
        med = statistics.median(r["completion"] for r in group)
        mean = statistics.fmean(r["completion"] for r in group)
        straights = [r["straights"] for r in group if r["straights"] is not None]
        seconds = statistics.median(r["seconds"] for r in group)
        summary[(trainer, variant, steps, starts, obstacles)] = (med, mean, seconds)
        lines.append(
            f"| {trainer} | {variant} | {steps} | {starts} | {obstacles} | {len(group)} | {med:.3f} | {mean:.3f} "
            f"| {sum(all_laps(r) for r in group)}/{len(group)} "
            f"| {statistics.median(straights) if straights else '-'} | {seconds:.0f} |"
        )
    ratios = []
    ratio = lambda a, b: f"{a / b:.2f}" if b > 0 else "inf"  # noqa: E731
    # Ours against each SB3 group of the same budget and evaluation episodes that learned on the
    # setting, as far as SB3 takes it (the reward, the obstacles; with our settings, updates per step).
    sb3_names = {"sb3": "our settings", "sb3-defaults": "its defaults"}
    for (trainer, variant, *protocol), (med, mean, seconds) in sorted(summary.items()):
        if trainer != "ours":
            continue
        steps, starts, obstacles = protocol
        for (other, other_variant, *other_protocol), (sb3_med, sb3_mean, sb3_seconds) in sorted(summary.items()):
            if other == "ours" or other_protocol != protocol:
                continue
            if other_variant != as_sb3[(trainer, variant)][other]:
                continue
            ours = "ours" if variant == "-" else f"ours ({variant})"
            sb3 = sb3_names[other] + ("" if other_variant == "-" else f", {other_variant}")
            where = ", ".join(
                ([] if starts == 1 else [f"{starts} starts per track"])
                + ([] if not obstacles else [f"{obstacles} obstacles per track"])
            )
            where = f" ({where})" if where else ""
            ratios.append(
                f"- {steps} steps{where}, {ours} / SB3 ({sb3}): median completion {ratio(med, sb3_med)}, mean "
                f"completion {ratio(mean, sb3_mean)}, median training wall time {ratio(seconds, sb3_seconds)}"
            )
    return "\n".join(lines) + ("\n\n" + "\n".join(ratios) if ratios else ""), summary


def plot(runs: list[dict], path: Path) -> list[str]:
    """Write the completion-over-budget plot; returns the labels of its curves."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 5.0), dpi=100)
    labels = {"ours": "td3-drive", "sb3": "SB3 TD3, our settings", "sb3-defaults": "SB3 TD3, its defaults"}
    runs = one_per_seed(runs)
    curves = sorted({curve_of(r) for r in runs})
    colours = ("tab:blue", "tab:green", "tab:purple", "tab:orange", "tab:red", "tab:brown", "tab:pink", "tab:gray")
    # every curve gets a colour: past the list they repeat rather than a curve going missing
    for k, ((trainer, variant, starts, obstacles), colour) in enumerate(zip(curves, itertools.cycle(colours))):
        mine = [r for r in runs if curve_of(r) == curves[k]]
        # seeds as dots, spread a little sideways so that equal results stay visible
        offsets = {b: 0 for b in {r["steps"] for r in mine}}
        for r in mine:
            x = r["steps"] * (1.0 + 0.025 * (offsets[r["steps"]] - 2) + 0.01 * k)
            offsets[r["steps"]] += 1
            ax.scatter([x], [r["completion"]], color=colour, alpha=0.6, s=20)
        budgets = sorted(offsets)
        mean = [statistics.fmean(r["completion"] for r in mine if r["steps"] == b) for b in budgets]
        name = (
            labels[trainer]
            + ("" if variant == "-" else f", {variant}")
            + ("" if starts == 1 else f", {starts} starts")
            + ("" if not obstacles else f", {obstacles} obstacles on held-out tracks")
        )
        ax.plot(budgets, mean, color=colour, marker="o", label=f"{name} (mean; dots: seeds)")
    ax.set_xscale("log")
    budgets = sorted({r["steps"] for r in runs})
    ax.set_xticks(budgets, [f"{b / 1000:g}k" for b in budgets])
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.set_ylim(-0.04, 1.04)
    ax.set_xlabel("environment steps of training")
    ax.set_ylabel("held-out route completion")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=1, fontsize=8)  # below: no dot hidden
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return [line.get_label() for line in ax.get_lines()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", help="bench_learning --json-out files")
    parser.add_argument("--plot", default="", help="write the completion-over-budget plot here (PNG)")
    args = parser.parse_args()
    runs = load(args.results)
    print(table(runs))
    print()
    print(medians(runs)[0])
    if args.plot:
        plot(runs, Path(args.plot))


if __name__ == "__main__":
    main()
