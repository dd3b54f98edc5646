"""td3-drive: one ament_python distribution, three ROS packages (td3_trainer, td3_driver, td3_sim).

`colcon build` installs it like any ament_python package; `pip install -e .` installs the same
Python packages and console scripts into a virtual environment.
"""

from pathlib import Path

from setuptools import find_packages, setup

DISTRIBUTION = "td3_drive"
# ROS packages registered in the ament index, so that `ros2 launch td3_trainer ...` and
# `ros2 run td3_driver driver_node` find their share directory and executables.
ROS_PACKAGES = {
    "td3_trainer": {"launch": ["launch/train.launch.py"], "executables": ["trainer_node"]},
    "td3_driver": {"launch": ["launch/drive.launch.py"], "executables": ["driver_node", "export_policy"]},
    "td3_sim": {"launch": [], "executables": ["simulator_node"]},
}
HERE = Path(__file__).parent


def _files(pattern: str) -> list[str]:
    return sorted(str(p.relative_to(HERE)) for p in HERE.glob(pattern) if p.is_file())


def _requirements(name: str) -> list[str]:
    lines = (HERE / name).read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _data_files() -> list[tuple[str, list[str]]]:
    config = _files("config/*.yaml") + _files("config/*.rviz")
    data = [
        ("share/ament_index/resource_index/packages", ["resource/" + DISTRIBUTION]),
        (f"share/{DISTRIBUTION}", ["package.xml"]),
        (f"share/{DISTRIBUTION}/config", config),
    ]
    for name, parts in ROS_PACKAGES.items():
        data += [
            ("share/ament_index/resource_index/packages", ["resource/" + name]),
            (f"share/{name}", ["package.xml"]),
            (f"share/{name}/launch", parts["launch"]),
            (f"share/{name}/config", config),
            # launch_ros looks for executables in <prefix>/lib/<package>/
            (f"lib/{name}", [f"scripts/{exe}" for exe in parts["executables"]]),
        ]
    return data


setup(
    name=DISTRIBUTION,
    version="0.1.0",
    description="TD3 from camera pixels over the carla-ros-bridge interface: trainer, driver, simulator",
    license="Apache-2.0",
    python_requires=">=3.10",
    package_dir={"": "src"},
    packages=find_packages("src"),
    data_files=_data_files(),
    install_requires=["numpy", "PyYAML", "torch"],
    # The benchmarks' baseline (Stable-Baselines3), pinned: pip install -e ".[bench]"
    extras_require={"bench": _requirements("requirements-bench.txt")},
    zip_safe=False,
    entry_points={
        "console_scripts": [
            "td3-trainer = td3_trainer.node:main",
            "td3-driver = td3_driver.node:main",
            "td3-sim = td3_sim.node:main",
            "td3-export = td3_driver.export:main",
            "td3-convert = td3_core.convert:main",
            "td3-run = td3_bringup.runner:main",
            "td3-demo = td3_bringup.demo:main",
        ],
    },
)
