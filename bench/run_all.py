"""Every benchmark of bench/, one after the other, each in its quick setting (the learner
comparison also on the GPU where there is one).

    python -m bench.run_all [--full] [--out results.json]      (what `make bench` runs)

Each benchmark prints one JSON object and a one-line summary; this collects the objects into
one JSON document (stdout, and --out) and repeats the summaries at the end. A benchmark that
fails is reported with its exit code and the others still run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

# name: (module and its arguments, the quick setting's arguments)
BENCHMARKS: dict[str, tuple[list[str], list[str]]] = {
    "simulator": (["bench.bench_simulator"], ["--quick"]),
    "learner": (["bench.bench_learner"], ["--quick"]),
    "replay_memory": (["bench.bench_replay_memory"], ["--quick"]),
    "driver_latency": (["bench.bench_driver_latency"], ["--quick"]),  # adds CUDA itself where there is one
    "end_to_end": (["bench.bench_end_to_end"], ["--quick"]),
    "learning": (["bench.bench_learning"], ["--quick"]),
    "obstacle_probe": (["bench.bench_obstacle_probe"], ["--quick"]),
}
# Where torch sees a CUDA device, the learner comparison runs there too (ours and SB3 on the GPU).
CUDA_BENCHMARKS = {"learner_cuda": (["bench.bench_learner", "--device", "cuda"], ["--quick"])}


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def last_json_object(text: str) -> dict | None:
    """The JSON object a benchmark printed (it may span lines), found from the end."""
    decoder = json.JSONDecoder()
    for start in range(len(text) - 1, -1, -1):
        if text[start] == "{" and (start == 0 or text[start - 1] == "\n"):
            try:
                value, _ = decoder.raw_decode(text[start:])
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict):
                return value
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="default settings instead of --quick (much longer)")
    parser.add_argument("--only", nargs="*", choices=sorted(BENCHMARKS | CUDA_BENCHMARKS), help="run only these")
    parser.add_argument("--out", type=Path, help="also write the collected JSON here")
    args = parser.parse_args()
    results, summaries, failed = {}, [], 0
    benchmarks = BENCHMARKS | (CUDA_BENCHMARKS if cuda_available() else {})
    for name, (command, quick) in benchmarks.items():
        if args.only and name not in args.only:
            continue
        argv = [sys.executable, "-m", *command, *([] if args.full else quick)]
        print(f"[bench] {name}: {' '.join(argv[1:])}", file=sys.stderr, flush=True)
        started = time.monotonic()
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        seconds = round(time.monotonic() - started, 1)
        output = last_json_object(proc.stdout)
        summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
        if proc.returncode != 0 or output is None:
            failed += 1
            results[name] = {"error": f"exit code {proc.returncode}", "stderr_tail": proc.stderr[-2000:]}
            summaries.append(f"{name}: FAILED (exit code {proc.returncode}, {seconds} s)")
        else:
            results[name] = output | {"wall_seconds": seconds}
            summaries.append(summary)
    document = {"date": time.strftime("%Y-%m-%d"), "results": results}
    text = json.dumps(document, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    print("\n".join(summaries))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
