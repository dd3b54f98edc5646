#!/usr/bin/env bash
# Build the ROS 2 interface packages of this repository (carla_msgs stand-in, td3_drive_msgs)
# into a Python virtual environment that holds the ROS 2 Kilted wheels from PyPI.
# A real ROS 2 install does not need this: colcon builds td3_drive_msgs, and carla_msgs comes
# from carla-ros-bridge.
#
# usage: tools/build_interfaces.sh <venv>
set -euo pipefail

venv=$(cd "${1:?usage: build_interfaces.sh <venv>}" && pwd)
repo=$(cd "$(dirname "$0")/.." && pwd)
python="$venv/bin/python"
build_root="$repo/build/interfaces"

py_include=$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
np_include=$("$python" -c 'import numpy; print(numpy.get_include())')

# The wheels' exported CMake files name the include directories of the machine they were built
# on; CMake refuses include paths that do not exist, so point them at this venv's.
grep -rl --include='*.cmake' '/opt/python/cp311-cp311' "$venv/share" 2>/dev/null | while read -r f; do
  sed -i \
    -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$np_include#g" \
    -e "s#/opt/python/cp311-cp311/include/python3.11#$py_include#g" \
    "$f"
done

export AMENT_PREFIX_PATH="$venv${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export CMAKE_PREFIX_PATH="$venv${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
export PATH="$venv/bin:$PATH"
export LD_LIBRARY_PATH="$venv/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

for pkg in carla_msgs td3_drive_msgs; do
  if "$python" -c "import $pkg.msg" 2>/dev/null || "$python" -c "import $pkg.srv" 2>/dev/null; then
    echo "[build_interfaces] $pkg already importable, skipping"
    continue
  fi
  echo "[build_interfaces] building $pkg"
  mkdir -p "$build_root/$pkg"
  cmake -S "$repo/interfaces/$pkg" -B "$build_root/$pkg" \
    -DCMAKE_INSTALL_PREFIX="$venv" \
    -DCMAKE_PREFIX_PATH="$venv" \
    -DPython3_EXECUTABLE="$python" \
    -DBUILD_TESTING=OFF \
    -DCMAKE_BUILD_TYPE=Release > "$build_root/$pkg.configure.log" 2>&1 \
    || { cat "$build_root/$pkg.configure.log"; exit 1; }
  make -C "$build_root/$pkg" -j"$(nproc)" install > "$build_root/$pkg.build.log" 2>&1 \
    || { tail -50 "$build_root/$pkg.build.log"; exit 1; }
done
