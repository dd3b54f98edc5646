"""The trainer: TD3 from camera frames against CARLA or the embedded simulator.

td3 (TD3Agent), replay_buffer (FrameReplayBuffer, Batch), config (TD3Config) and augment form
the learning core and import no ROS; node, env_client, reward, monitor, checkpointing, params
and the episode/tick helpers connect it to the simulator.
"""
