"""An rclpy node spinning on a background thread, for a process that watches a node graph.

The demo's report, the end-to-end benchmark and the tests subscribe to what the nodes publish
while their main thread starts, waits for and stops processes. This class owns the plumbing
they share: its own context (several may live in one process), the executor, the thread, and a
shutdown that never hangs or raises.
"""

from __future__ import annotations

import contextlib
import threading

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions


class BackgroundNode:
    """`node` spins on a daemon thread from construction until close() (or the end of a with block)."""

    def __init__(self, name: str) -> None:
        self.context = rclpy.Context()
        # The watching process's main thread owns the signals (it stops the graph it started).
        rclpy.init(context=self.context, signal_handler_options=SignalHandlerOptions.NO)
        self.node: Node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, name=f"{name}_spin", daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        with contextlib.suppress(Exception):  # a shutdown racing the spin ends the thread quietly
            self.executor.spin()

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self._thread.join(timeout=2.0)

    def __enter__(self) -> BackgroundNode:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
