"""The one place that decides device, autocast precision and loader workers (thesis_lib.machine)."""

from __future__ import annotations

import pytest
import torch

from thesis_lib import machine


def test_cpu_setting_is_the_cpu_and_auto_falls_back_without_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert machine.choose_device("cpu") == torch.device("cpu")
    assert machine.choose_device("auto") == torch.device("cpu")
    with pytest.raises(ValueError, match="gpu"):
        machine.choose_device("gpu")


def test_auto_picks_this_process_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert machine.choose_device("auto") == torch.device("cuda", 1)


def test_precision_follows_the_device(monkeypatch):
    cpu, gpu = torch.device("cpu"), torch.device("cuda", 0)
    assert machine.effective_precision(cpu, "bf16") == "no"
    assert machine.autocast_dtype(cpu, "fp16") is None
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert machine.autocast_dtype(gpu, "bf16") is torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla V100")
    assert machine.effective_precision(gpu, "bf16") == "fp16"
    assert machine.autocast_dtype(gpu, "no") is None
    with pytest.raises(ValueError, match="fp8"):
        machine.effective_precision(gpu, "fp8")


@pytest.mark.parametrize(("setting", "cores", "expected"), [(-1, 16, 14), (-1, 2, 0), (-1, 1, 0), (3, 16, 3), (0, 2, 0)])
def test_auto_workers_leave_two_cores(setting, cores, expected):
    assert machine.loader_workers(setting, cores=cores) == expected


def test_negative_workers_other_than_auto_are_refused():
    with pytest.raises(ValueError, match="-2"):
        machine.loader_workers(-2)
