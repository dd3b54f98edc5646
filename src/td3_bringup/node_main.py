"""The main() of a node that only spins: init, build, spin until Ctrl-C or SIGTERM, clean up.

A node whose parameters are invalid raises td3_core.params.ParamError from its constructor: it
is logged as FATAL naming the parameter and the process exits with EXIT_INVALID_PARAMETER, as
the trainer and the driver do. SIGTERM (systemd, docker stop, the runner) stops it like Ctrl-C.
"""

from __future__ import annotations

import signal
from collections.abc import Callable

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.logging import get_logger
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from td3_core.params import ParamError

EXIT_INVALID_PARAMETER = 2


def _sigterm_as_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def spin_node(make_node: Callable[[], Node], name: str, args: list[str] | None = None) -> int:
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started with SIGINT ignored
    signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    node = None
    try:
        try:
            node = make_node()
        except ParamError as error:
            get_logger(name).fatal(f"cannot start: {error}")
            return EXIT_INVALID_PARAMETER
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0
