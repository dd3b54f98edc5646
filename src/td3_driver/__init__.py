"""The driver: a trained policy driving the car at a fixed rate, with a safety gate.

node (DriverNode, main), command_loop (the fixed-rate command thread), policy_runner (device,
warm-up, timed inference), safety (staleness watchdog, brake reasons, rate-limited logging),
hot_reload (newer checkpoints), visualization (monitoring messages), params (parameter table),
export (TorchScript + ONNX).
"""
