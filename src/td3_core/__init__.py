"""Code shared by the trainer and the driver: preprocessing, networks, checkpoints.

Both nodes import these modules and nothing else for what the network sees and how it is
built, so training and deployment cannot drift apart.
"""
