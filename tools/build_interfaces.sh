#!/usr/bin/env bash
# Build the ROS 2 interfaces of this repository (the carla_msgs stand-in, and td3_drive's own:
# the root CMakeLists.txt with TD3_DRIVE_INTERFACES_ONLY) into a Python virtual environment that
# holds the ROS 2 Kilted wheels from PyPI; setup.py (pip install -e .) installs the rest.
# A ROS workspace does not need this: `colcon build` builds td3_drive whole, and carla_msgs comes
# from ros-carla-msgs.
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
# (A second run finds nothing left to rewrite: grep's status 1 is not an error.)
{ grep -rl --include='*.cmake' '/opt/python/cp311-cp311' "$venv/share" 2>/dev/null || true; } | while read -r f; do
  sed -i \
    -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$np_include#g" \
    -e "s#/opt/python/cp311-cp311/include/python3.11#$py_include#g" \
    "$f"
done

export AMENT_PREFIX_PATH="$venv${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export CMAKE_PREFIX_PATH="$venv${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
export PATH="$venv/bin:$PATH"
export LD_LIBRARY_PATH="$venv/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

# package, its source folder, the module that shows it is there. carla_msgs may come from
# elsewhere (a real one); td3_drive's interfaces are this repository's and always rebuilt
# (incrementally), so that a changed .msg/.srv takes effect.
for entry in "carla_msgs $repo/interfaces/carla_msgs carla_msgs.msg" "td3_drive $repo -"; do
  read -r pkg source module <<< "$entry"
  if [ "$module" != - ] && "$python" -c "import $module" 2>/dev/null; then
    echo "[build_interfaces] $pkg already importable, skipping"
    continue
  fi
  echo "[build_interfaces] building $pkg"
  mkdir -p "$build_root/$pkg"
  cmake -S "$source" -B "$build_root/$pkg" \
    -DTD3_DRIVE_INTERFACES_ONLY=ON \
    -DCMAKE_INSTALL_PREFIX="$venv" \
    -DCMAKE_PREFIX_PATH="$venv" \
    -DPython3_EXECUTABLE="$python" \
    -DBUILD_TESTING=OFF \
    -DCMAKE_BUILD_TYPE=Release > "$build_root/$pkg.configure.log" 2>&1 \
    || { cat "$build_root/$pkg.configure.log"; exit 1; }
  make -C "$build_root/$pkg" -j"$(nproc)" install > "$build_root/$pkg.build.log" 2>&1 \
    || { tail -50 "$build_root/$pkg.build.log"; exit 1; }
done
