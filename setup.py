"""pip-only install of td3-drive's Python packages and console scripts (`pip install -e .`).

The ROS side (colcon) is CMakeLists.txt: it generates the td3_drive interfaces and installs the
ROS packages td3_trainer, td3_driver and td3_sim. This distribution is named td3-drive-nodes, not
td3_drive, because the generated interface module installs its own `td3_drive` egg-info (pip
would remove that module when it replaced a distribution of the same name).
"""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent


def _requirements(name: str) -> list[str]:
    lines = (HERE / name).read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


setup(
    name="td3-drive-nodes",
    version="0.1.0",
    description="TD3 from camera pixels over the carla-ros-bridge interface: trainer, driver, simulator",
    license="Apache-2.0",
    python_requires=">=3.10",
    package_dir={"": "src"},
    packages=find_packages("src"),
    install_requires=["numpy", "PyYAML", "torch"],
    # The benchmarks' baseline (Stable-Baselines3), pinned: pip install -e ".[bench]"
    extras_require={"bench": _requirements("requirements-bench.txt")},
    zip_safe=False,
    entry_points={
        "console_scripts": [
            "td3-trainer = td3_trainer.node:main",
            "td3-driver = td3_driver.node:main",
            "td3-sim = td3_sim.node:main",
            "td3-preprocess = td3_preprocess.node:main",
            "td3-export = td3_driver.export:main",
            "td3-convert = td3_core.convert:main",
            "td3-run = td3_bringup.runner:main",
            "td3-demo = td3_bringup.demo:main",
        ],
    },
)
