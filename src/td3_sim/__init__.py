"""Embedded simulator that speaks the carla-ros-bridge topics for one ego vehicle.

ROS-free core: track (geometry), dynamics (kinematic bicycle), renderer (front camera),
world (SimWorld: one tick = dynamics + events + camera). The ROS node lives in td3_sim.node.

Conventions (the same as CARLA seen through the bridge): map frame x forward / y left / z up
(REP-103), yaw counter-clockwise positive, steer +1 turns RIGHT (yaw decreases).
"""
