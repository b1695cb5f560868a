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


def _gpu(monkeypatch, *, cuda="13.0", count=1, available=True, capability=(9, 0), arch=("sm_80", "sm_90"),
         driver="580.65"):
    monkeypatch.setattr(torch.version, "cuda", cuda)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=None: capability)
    monkeypatch.setattr(torch.cuda, "get_arch_list", lambda: list(arch))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=None: "Tesla P100")
    monkeypatch.setattr(machine, "_nvidia_driver_version", lambda: driver)


def test_gpu_problem_names_why_no_gpu_can_be_used(monkeypatch):
    _gpu(monkeypatch)
    assert machine.gpu_problem() is None
    _gpu(monkeypatch, cuda=None)
    assert "CPU-only build" in machine.gpu_problem()
    _gpu(monkeypatch, count=0, available=False, driver=None)
    assert machine.gpu_problem().startswith("no CUDA device")
    _gpu(monkeypatch, available=False, driver="470.82")
    assert "driver 470.82" in machine.gpu_problem() and "too old for CUDA 13.0" in machine.gpu_problem()
    _gpu(monkeypatch, capability=(6, 0))
    assert "sm_60" in machine.gpu_problem() and "no kernels" in machine.gpu_problem()
    _gpu(monkeypatch, capability=(12, 0), arch=("sm_90", "compute_90"))  # newer GPU: PTX is JIT-compiled
    assert machine.gpu_problem() is None


def test_the_banner_says_what_a_run_computes_on(monkeypatch):
    cpu = machine.device_banner(torch.device("cpu"), "bf16")
    assert (cpu.type, cpu.count, cpu.memory_bytes, cpu.effective_precision) == ("cpu", 0, None, "no")
    Properties = type("Properties", (), {"name": "Tesla V100-SXM2-32GB", "total_memory": 32 * 2**30})
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device=None: Properties())
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: Properties.name)
    gpu = machine.device_banner(torch.device("cuda", 0), "bf16")
    assert gpu.line() == ("device: Tesla V100-SXM2-32GB x4, 32.0 GiB each, bf16 no, fp16 yes; "
                          "mixed precision bf16 -> fp16")


def test_every_run_record_keeps_the_banner_fields():
    from thesis_lib.experiments.provenance import device_info

    info = device_info(torch.device("cpu"), processes=1, mixed_precision="bf16")
    assert {"type", "name", "count", "memory_bytes", "bf16", "mixed_precision", "effective_precision",
            "processes"} <= set(info)
    assert (info["mixed_precision"], info["effective_precision"], info["count"]) == ("bf16", "no", 0)
