"""The one device choice (td3_core.device) of trainer and driver."""

from __future__ import annotations

import pytest
import torch

from td3_core.device import DeviceError, device_name_problem, select_device


def test_auto_takes_the_gpu_when_torch_can_use_one():
    assert select_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert select_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize("name", ["tpu", "", "CUDA", "cuda:", "cuda:x", "cpu ", "gpu"])
def test_a_name_that_is_no_device_is_refused_by_name(name: str):
    assert device_name_problem(name) is not None
    with pytest.raises(DeviceError, match="unknown device"):
        select_device(name)


@pytest.mark.parametrize("value", [None, 0, 1.5, True])
def test_a_value_that_is_no_string_is_no_device_name(value: object):
    assert device_name_problem(value) is not None


def test_an_explicit_gpu_that_is_not_there_is_an_error_not_the_cpu():
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="CUDA is not available"):
            select_device("cuda")
    with pytest.raises(DeviceError, match=r"GPU|CUDA"):
        select_device(f"cuda:{torch.cuda.device_count() + 3}")
