"""GpuProbe: the real no-NVML path here, and its logic against a fake at the pynvml boundary.

There is no NVIDIA driver on CI, so device behaviour comes from ``FakeNvml``: it
returns pynvml's own ctypes structures and raises pynvml's own ``NVMLError``
subclasses, built from the real error codes, so field names and exception types
are those the probe meets on a real GPU host.
"""

from __future__ import annotations

import ctypes
import os
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import psutil
import pynvml
import pytest
from support.processes import Spawn

from probes import MemoryProbe, Sampler, Target
from probes import gpu as gpu_module
from probes.gpu import GpuProbe, clock_event_names

MIB = 1 << 20


def _nvml_library_present() -> bool:
    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return False
    return True


HAS_NVML = _nvml_library_present()


def nvml_error(code: int) -> pynvml.NVMLError:
    """The exception pynvml itself raises for ``code`` (e.g. NVMLError_NotSupported)."""
    return pynvml.NVMLError(code)


@dataclass
class FakeDevice:
    name: str
    util: tuple[int, int] = (0, 0)  # (gpu %, memory %)
    mem: tuple[int, int] = (16 * 1024 * MIB, 0)  # (total, used) bytes
    sm_clock: int = 1410
    power_mw: int = 100_000
    temp: int = 40
    events: int = 0
    procs: list[tuple[int, int | None]] = field(default_factory=list)  # (pid, bytes)
    util_samples: list[tuple[int, int, int]] = field(default_factory=list)  # (pid, ts, sm %)
    errors: dict[str, int] = field(default_factory=dict)  # function -> NVML error code
    util_ts_seen: list[int] = field(default_factory=list)


class FakeNvml:
    """The pynvml functions GpuProbe uses, over in-memory devices (handles are the devices)."""

    def __init__(self, devices: list[FakeDevice], init_error: int | None = None) -> None:
        self.devices = devices
        self.init_error = init_error
        self.initialised = False
        self.calls: Counter[str] = Counter()
        self.shutdowns = 0

    def module(self, hide: tuple[str, ...] = ()) -> SimpleNamespace:
        """A module-like view; names in ``hide`` are absent, as in older bindings."""
        names = [n for n in dir(self) if n.startswith("nvml") and n not in hide]
        return SimpleNamespace(NVMLError=pynvml.NVMLError, **{n: getattr(self, n) for n in names})

    def _enter(self, fname: str, dev: FakeDevice | None = None) -> None:
        self.calls[fname] += 1
        if not self.initialised:
            raise nvml_error(pynvml.NVML_ERROR_UNINITIALIZED)
        if dev is not None and fname in dev.errors:
            raise nvml_error(dev.errors[fname])

    def nvmlInit(self) -> None:
        self.calls["nvmlInit"] += 1
        if self.init_error is not None:
            raise nvml_error(self.init_error)
        self.initialised = True

    def nvmlShutdown(self) -> None:
        self._enter("nvmlShutdown")
        self.initialised = False
        self.shutdowns += 1

    def nvmlDeviceGetCount(self) -> int:
        self._enter("nvmlDeviceGetCount")
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeDevice:
        dev = self.devices[index]
        self._enter("nvmlDeviceGetHandleByIndex", dev)
        return dev

    def nvmlDeviceGetName(self, dev: FakeDevice) -> str:
        self._enter("nvmlDeviceGetName", dev)
        return dev.name

    def nvmlDeviceGetUtilizationRates(self, dev: FakeDevice) -> Any:
        self._enter("nvmlDeviceGetUtilizationRates", dev)
        return pynvml.c_nvmlUtilization_t(gpu=dev.util[0], memory=dev.util[1])

    def nvmlDeviceGetMemoryInfo(self, dev: FakeDevice) -> Any:
        self._enter("nvmlDeviceGetMemoryInfo", dev)
        total, used = dev.mem
        return pynvml.c_nvmlMemory_t(total=total, free=total - used, used=used)

    def nvmlDeviceGetClockInfo(self, dev: FakeDevice, clock_type: int) -> int:
        self._enter("nvmlDeviceGetClockInfo", dev)
        assert clock_type == pynvml.NVML_CLOCK_SM
        return dev.sm_clock

    def nvmlDeviceGetPowerUsage(self, dev: FakeDevice) -> int:
        self._enter("nvmlDeviceGetPowerUsage", dev)
        return dev.power_mw

    def nvmlDeviceGetTemperatureV(self, dev: FakeDevice, sensor: int) -> int:
        self._enter("nvmlDeviceGetTemperatureV", dev)
        assert sensor == pynvml.NVML_TEMPERATURE_GPU
        return dev.temp

    def nvmlDeviceGetTemperature(self, dev: FakeDevice, sensor: int) -> int:
        self._enter("nvmlDeviceGetTemperature", dev)
        assert sensor == pynvml.NVML_TEMPERATURE_GPU
        return dev.temp

    def nvmlDeviceGetCurrentClocksEventReasons(self, dev: FakeDevice) -> int:
        self._enter("nvmlDeviceGetCurrentClocksEventReasons", dev)
        return dev.events

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, dev: FakeDevice) -> int:
        self._enter("nvmlDeviceGetCurrentClocksThrottleReasons", dev)
        return dev.events

    def nvmlDeviceGetComputeRunningProcesses(self, dev: FakeDevice) -> list[Any]:
        self._enter("nvmlDeviceGetComputeRunningProcesses", dev)
        out = []
        for pid, used in dev.procs:
            info = pynvml.c_nvmlProcessInfo_v3_t(pid=pid, usedGpuMemory=used or 0)
            obj = pynvml.nvmlStructToFriendlyObject(info)
            if used is None:  # what pynvml does with NVML_VALUE_NOT_AVAILABLE
                obj.usedGpuMemory = None
            out.append(obj)
        return out

    def nvmlDeviceGetProcessUtilization(self, dev: FakeDevice, last_seen: int) -> list[Any]:
        self._enter("nvmlDeviceGetProcessUtilization", dev)
        dev.util_ts_seen.append(last_seen)
        samples = [
            pynvml.c_nvmlProcessUtilizationSample_t(pid=pid, timeStamp=ts, smUtil=sm, memUtil=0)
            for pid, ts, sm in dev.util_samples
            if ts > last_seen
        ]
        if not samples:
            raise nvml_error(pynvml.NVML_ERROR_NOT_FOUND)
        return samples


def two_gpus() -> FakeNvml:
    return FakeNvml(
        [
            FakeDevice(
                "NVIDIA A100-SXM4-40GB",
                util=(90, 40),
                mem=(40 * 1024 * MIB, 30 * 1024 * MIB),
                sm_clock=1410,
                power_mw=250_500,
                temp=71,
                events=pynvml.nvmlClocksEventReasonSwPowerCap,
            ),
            FakeDevice(
                "NVIDIA A100-SXM4-40GB",
                util=(10, 5),
                mem=(40 * 1024 * MIB, 2 * 1024 * MIB),
                sm_clock=1110,
                power_mw=60_000,
                temp=45,
                events=pynvml.nvmlClocksEventReasonGpuIdle,
            ),
        ]
    )


def sample(probe: GpuProbe, procs: list[psutil.Process] | None = None) -> dict[str, float]:
    return probe.sample(time.monotonic(), procs or [])


# --- the real bindings on this host -------------------------------------------------


@pytest.mark.skipif(HAS_NVML, reason="an NVIDIA driver is installed here")
def test_real_pynvml_without_a_driver_is_unavailable_with_one_line_and_never_raises() -> None:
    probe = GpuProbe()
    reason = "NVML library not found (no NVIDIA driver on this host): gpu.* metrics omitted"
    assert probe.unavailable == reason
    assert sample(probe, [psutil.Process()]) == {}
    probe.close()
    probe.close()

    sampler = Sampler(None, probes=[GpuProbe(), MemoryProbe()])
    first = sampler.sample_once()
    assert set(sampler.unavailable) == {"gpu"}
    assert "NVML library not found" in sampler.unavailable["gpu"]
    assert "mem.host_used_pct" in first.metrics
    assert not any(name.startswith("gpu") for name in first.metrics)
    assert "mem.host_used_pct" in sampler.sample_once().metrics  # the run goes on


def test_without_nvidia_ml_py_installed_the_probe_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` fail
    probe = GpuProbe()
    assert probe.unavailable is not None
    assert "nvidia-ml-py is not installed" in probe.unavailable
    if not os.path.exists("/proc/driver/nvidia/version"):
        assert probe.unavailable.startswith("no NVIDIA driver on this host")
    assert "\n" not in probe.unavailable
    assert sample(probe) == {}
    probe.close()


@pytest.mark.skipif(not HAS_NVML, reason="no NVIDIA driver here")
def test_real_gpu_gives_sane_readings() -> None:
    probe = GpuProbe()
    try:
        assert probe.unavailable is None, probe.unavailable
        metrics = sample(probe)
        assert 0 <= metrics["gpu.util_pct"] <= 100
        assert metrics["gpu.mem_total_mb"] > 0
    finally:
        probe.close()


def test_constants_and_calls_match_the_installed_pynvml() -> None:
    assert gpu_module.NVML_CLOCK_SM == pynvml.NVML_CLOCK_SM
    assert gpu_module.NVML_TEMPERATURE_GPU == pynvml.NVML_TEMPERATURE_GPU
    for name in dir(gpu_module):
        if name.startswith("ERR_"):
            assert getattr(gpu_module, name) == getattr(pynvml, f"NVML_ERROR_{name[4:]}"), name
    prefix = "nvmlClocksThrottleReason"  # the older name carries every bit
    aliases = {"All", "None", "UserDefinedClocks"}
    reasons = {
        getattr(pynvml, n): n.removeprefix(prefix).lower()
        for n in dir(pynvml)
        if n.startswith(prefix) and n.removeprefix(prefix) not in aliases
    }
    assert {b: n.replace("_", "") for b, n in gpu_module.CLOCK_EVENT_BITS.items()} == reasons
    event_prefix = "nvmlClocksEventReason"
    for name in dir(pynvml):
        if name.startswith(event_prefix) and name.removeprefix(event_prefix) not in aliases:
            assert getattr(pynvml, name) in gpu_module.CLOCK_EVENT_BITS, name
    # The fake must not invent functions: every one it offers exists in pynvml.
    fake_functions = [n for n in dir(FakeNvml) if n.startswith("nvml")]
    assert all(hasattr(pynvml, n) for n in fake_functions)
    assert hasattr(pynvml, "nvmlDeviceGetComputeRunningProcesses_v2")


# --- device readings against the fake ------------------------------------------------


def test_two_devices_give_per_device_metrics_and_aggregates() -> None:
    fake = two_gpus()
    probe = GpuProbe(fake.module())
    assert probe.unavailable is None
    assert [(d.index, d.name) for d in probe.devices] == [
        (0, "NVIDIA A100-SXM4-40GB"),
        (1, "NVIDIA A100-SXM4-40GB"),
    ]
    m = sample(probe)
    assert m["gpu0.util_pct"] == 90
    assert m["gpu1.util_pct"] == 10
    assert m["gpu.util_pct"] == 50  # mean: 100 would be every GPU busy
    assert m["gpu.mem_busy_pct"] == pytest.approx(22.5)
    assert m["gpu0.mem_used_mb"] == 30 * 1024
    assert m["gpu.mem_used_mb"] == 32 * 1024
    assert m["gpu.mem_total_mb"] == 80 * 1024
    assert m["gpu1.mem_used_pct"] == pytest.approx(5.0)
    assert m["gpu.mem_used_pct"] == pytest.approx(40.0)
    assert m["gpu.sm_clock_mhz"] == 1260
    assert m["gpu0.power_w"] == pytest.approx(250.5)
    assert m["gpu.power_w"] == pytest.approx(310.5)
    assert m["gpu.temp_c"] == 71  # the hottest device
    # gpu0 is power capped; gpu1 only idles, which is not throttling.
    assert m["gpu0.throttle_power_pct"] == 100
    assert m["gpu0.throttled_pct"] == 100
    assert m["gpu1.throttled_pct"] == 0
    assert m["gpu.throttled_pct"] == 50
    assert m["gpu.throttle_thermal_pct"] == 0
    assert probe.clock_events == {0: ["sw_power_cap"], 1: ["gpu_idle"]}
    assert not any(name.startswith("gpu.target") for name in m)  # no target
    families = {re.sub(r"^gpu\d+\.", "gpu<N>.", name) for name in m}
    assert families == set(GpuProbe.METRICS) - {"gpu.target_mem_mb", "gpu.target_util_pct"}
    probe.close()
    assert fake.shutdowns == 1


def test_per_device_metrics_can_be_turned_off() -> None:
    m = sample(GpuProbe(two_gpus().module(), per_device=False))
    assert m and all(name.startswith("gpu.") for name in m)


def test_clock_event_bits_decode_into_readable_names_and_groups() -> None:
    mask = (
        pynvml.nvmlClocksEventReasonSwThermalSlowdown
        | pynvml.nvmlClocksEventReasonHwSlowdown
        | pynvml.nvmlClocksEventReasonHwPowerBrakeSlowdown
        | 0x8000
    )
    assert clock_event_names(mask) == [
        "hw_slowdown",
        "sw_thermal_slowdown",
        "hw_power_brake_slowdown",
        "bit_0x8000",
    ]
    assert clock_event_names(0) == []

    fake = two_gpus()
    fake.devices[0].events = mask
    fake.devices[1].events = (
        pynvml.nvmlClocksEventReasonApplicationsClocksSetting
        | pynvml.nvmlClocksEventReasonDisplayClockSetting
    )
    m = sample(GpuProbe(fake.module()))
    assert m["gpu0.throttle_thermal_pct"] == 100
    assert m["gpu0.throttle_hw_pct"] == 100
    assert m["gpu0.throttle_power_pct"] == 0
    assert m["gpu1.throttled_pct"] == 0  # clocks the user set are not throttling
    fake.devices[1].events = pynvml.nvmlClocksEventReasonSyncBoost
    assert sample(GpuProbe(fake.module()))["gpu1.throttled_pct"] == 100
    fake.devices[1].events = pynvml.nvmlClocksEventReasonHwThermalSlowdown
    m = sample(GpuProbe(fake.module()))
    assert (m["gpu1.throttle_thermal_pct"], m["gpu1.throttle_hw_pct"]) == (100, 0)


def test_not_supported_on_one_device_drops_that_metric_there_only() -> None:
    fake = two_gpus()
    fake.devices[1].errors["nvmlDeviceGetPowerUsage"] = pynvml.NVML_ERROR_NOT_SUPPORTED
    probe = GpuProbe(fake.module())
    m = sample(probe)
    assert "gpu1.power_w" not in m
    assert m["gpu0.power_w"] == pytest.approx(250.5)
    assert m["gpu.power_w"] == pytest.approx(250.5)  # over the devices that report it
    assert m["gpu1.temp_c"] == 45
    assert probe.unavailable is None
    assert probe.missing == {"gpu1.power_w": "NVML: Not Supported"}
    sample(probe)
    sample(probe)
    # Asked once on each device, then never again on the one that cannot answer.
    assert fake.calls["nvmlDeviceGetPowerUsage"] == 1 + 3


def test_a_transient_error_skips_one_tick_and_is_retried() -> None:
    fake = two_gpus()
    fake.devices[0].errors["nvmlDeviceGetUtilizationRates"] = pynvml.NVML_ERROR_TIMEOUT
    probe = GpuProbe(fake.module())
    m = sample(probe)
    assert "gpu0.util_pct" not in m
    assert m["gpu.util_pct"] == 10
    assert probe.missing == {}
    del fake.devices[0].errors["nvmlDeviceGetUtilizationRates"]
    assert sample(probe)["gpu0.util_pct"] == 90


def test_older_drivers_and_bindings_fall_back_to_the_deprecated_getters() -> None:
    fake = two_gpus()
    # An r470-era driver: the new C symbols are missing, pynvml raises FunctionNotFound.
    for dev in fake.devices:
        dev.errors["nvmlDeviceGetCurrentClocksEventReasons"] = pynvml.NVML_ERROR_FUNCTION_NOT_FOUND
        dev.errors["nvmlDeviceGetTemperatureV"] = pynvml.NVML_ERROR_FUNCTION_NOT_FOUND
    probe = GpuProbe(fake.module())
    for _ in range(3):
        m = sample(probe)
        assert m["gpu0.throttle_power_pct"] == 100
        assert m["gpu1.temp_c"] == 45
    assert probe.missing == {}
    assert fake.calls["nvmlDeviceGetCurrentClocksEventReasons"] == 1  # then remembered
    assert fake.calls["nvmlDeviceGetCurrentClocksThrottleReasons"] == 6

    old = two_gpus()  # bindings that predate the new names
    hide = ("nvmlDeviceGetCurrentClocksEventReasons", "nvmlDeviceGetTemperatureV")
    m = sample(GpuProbe(old.module(hide=hide)))
    assert m["gpu0.throttle_power_pct"] == 100
    assert m["gpu0.temp_c"] == 71


def test_a_lost_gpu_makes_the_probe_unavailable_and_the_run_goes_on() -> None:
    fake = two_gpus()
    probe = GpuProbe(fake.module())
    sampler = Sampler(None, probes=[probe, MemoryProbe()])
    assert "gpu1.util_pct" in sampler.sample_once().metrics
    fake.devices[1].errors["nvmlDeviceGetUtilizationRates"] = pynvml.NVML_ERROR_GPU_IS_LOST
    lost = sampler.sample_once()
    assert not any(name.startswith("gpu") for name in lost.metrics)
    assert "mem.host_used_pct" in lost.metrics
    reason = sampler.unavailable["gpu"]
    assert reason.startswith("GPU 1 (NVIDIA A100-SXM4-40GB) is lost")
    assert "\n" not in reason
    assert probe.unavailable == reason
    assert fake.shutdowns == 1  # NVML released at once
    assert "mem.host_used_pct" in sampler.sample_once().metrics
    probe.close()
    assert fake.shutdowns == 1


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (pynvml.NVML_ERROR_LIBRARY_NOT_FOUND, "NVML library not found (no NVIDIA driver"),
        (pynvml.NVML_ERROR_DRIVER_NOT_LOADED, "NVIDIA driver not loaded"),
        (pynvml.NVML_ERROR_NO_PERMISSION, "no permission to use NVML"),
        (pynvml.NVML_ERROR_LIB_RM_VERSION_MISMATCH, "NVML library and kernel driver versions"),
        (pynvml.NVML_ERROR_UNKNOWN, "NVML failed to start: Unknown Error"),
    ],
)
def test_init_failures_give_a_one_line_reason(code: int, expected: str) -> None:
    fake = FakeNvml([], init_error=code)
    probe = GpuProbe(fake.module())
    assert probe.unavailable is not None
    assert probe.unavailable.startswith(expected)
    assert probe.unavailable.endswith(": gpu.* metrics omitted")
    assert sample(probe) == {}
    probe.close()
    assert fake.shutdowns == 0  # nothing to shut down


def test_no_devices_or_no_permitted_device_is_unavailable() -> None:
    none = FakeNvml([])
    probe = GpuProbe(none.module())
    assert probe.unavailable == "NVML found no NVIDIA GPU: gpu.* metrics omitted"
    assert none.shutdowns == 1

    fake = two_gpus()
    fake.devices[0].errors["nvmlDeviceGetHandleByIndex"] = pynvml.NVML_ERROR_NO_PERMISSION
    probe = GpuProbe(fake.module())
    assert [d.index for d in probe.devices] == [1]
    assert probe.missing == {"gpu0": "NVML: Insufficient Permissions"}
    m = sample(probe)
    assert "gpu0.util_pct" not in m
    assert m["gpu.util_pct"] == 10

    fake.devices[1].errors["nvmlDeviceGetHandleByIndex"] = pynvml.NVML_ERROR_NO_PERMISSION
    probe = GpuProbe(fake.module())
    assert probe.unavailable == "no usable NVIDIA GPU (permission denied): gpu.* metrics omitted"


def test_a_gpu_lost_while_listing_devices_is_reported() -> None:
    fake = two_gpus()
    fake.devices[1].errors["nvmlDeviceGetHandleByIndex"] = pynvml.NVML_ERROR_GPU_IS_LOST
    probe = GpuProbe(fake.module())
    assert probe.unavailable == "listing GPUs failed: NVML: GPU is lost: gpu.* metrics omitted"
    assert fake.shutdowns == 1


# --- the target's processes -----------------------------------------------------------

# A root that starts a child; both sleep until killed (bounded: 60 s at most).
TREE = """
import subprocess, sys, time
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
time.sleep(60)
"""


@pytest.fixture
def tree(spawn: Spawn) -> list[psutil.Process]:
    """The live process tree of a real root with one child, root first."""
    root = spawn(TREE)
    target = Target.from_pid(root.pid)
    deadline = time.monotonic() + 10
    while len(target.processes()) < 2:
        assert time.monotonic() < deadline, "child never appeared"
        time.sleep(0.02)
    return target.processes()


def test_target_gpu_memory_and_utilization_count_only_the_target_tree(
    tree: list[psutil.Process],
) -> None:
    root, child = tree[0].pid, tree[1].pid
    stranger = os.getpid()  # a GPU process that is not part of the target
    fake = two_gpus()
    gpu0, gpu1 = fake.devices
    gpu0.procs = [(root, 512 * MIB), (stranger, 1024 * MIB)]
    gpu1.procs = [(child, 256 * MIB)]
    gpu0.util_samples = [(root, 100, 99)]  # already in the driver's buffer before we start
    probe = GpuProbe(fake.module())

    first = sample(probe, tree)
    assert first["gpu.target_mem_mb"] == 768
    assert "gpu.target_util_pct" not in first  # baseline: no interval yet
    assert gpu0.util_ts_seen == [0]

    gpu0.util_samples += [(root, 200, 40), (root, 300, 60), (stranger, 300, 30)]
    gpu1.util_samples = [(child, 250, 20)]
    second = sample(probe, tree)
    # root's two samples average 50 on gpu0, plus the child's 20 on gpu1; 100 = one GPU.
    assert second["gpu.target_util_pct"] == 70
    assert gpu0.util_ts_seen == [0, 100]
    assert gpu1.util_ts_seen == [0, 0]

    third = sample(probe, tree)  # nothing busy since: NVML answers NOT_FOUND
    assert third["gpu.target_util_pct"] == 0
    gpu1.errors["nvmlDeviceGetProcessUtilization"] = pynvml.NVML_SUCCESS  # pynvml's other "none"
    assert sample(probe, tree)["gpu.target_util_pct"] == 0
    del gpu1.errors["nvmlDeviceGetProcessUtilization"]
    assert gpu0.util_ts_seen[-1] == 300
    assert gpu1.util_ts_seen[-1] == 250

    gone = sample(probe, [])  # no live target: a gap, not zeros
    assert not any(name.startswith("gpu.target") for name in gone)
    assert "gpu.util_pct" in gone
    again = sample(probe, tree)
    assert "gpu.target_util_pct" not in again  # a fresh baseline after the gap
    assert again["gpu.target_mem_mb"] == 768


def test_target_without_gpu_work_reads_zero_and_unknown_memory_is_a_gap(
    tree: list[psutil.Process],
) -> None:
    fake = two_gpus()
    fake.devices[0].procs = [(os.getpid(), 1024 * MIB)]
    probe = GpuProbe(fake.module())
    sample(probe, tree)
    m = sample(probe, tree)
    assert m["gpu.target_mem_mb"] == 0
    assert m["gpu.target_util_pct"] == 0

    fake.devices[0].procs.append((tree[0].pid, None))  # NVML could not say
    fake.devices[1].errors["nvmlDeviceGetComputeRunningProcesses"] = pynvml.NVML_ERROR_NO_PERMISSION
    assert "gpu.target_mem_mb" not in sample(probe, tree)
    assert probe.missing == {"gpu1.target_mem_mb": "NVML: Insufficient Permissions"}


def test_process_utilization_not_supported_drops_only_the_target_share(
    tree: list[psutil.Process],
) -> None:
    fake = two_gpus()
    for dev in fake.devices:
        dev.errors["nvmlDeviceGetProcessUtilization"] = pynvml.NVML_ERROR_NOT_SUPPORTED
    fake.devices[0].procs = [(tree[1].pid, 100 * MIB)]
    probe = GpuProbe(fake.module())
    sample(probe, tree)
    m = sample(probe, tree)
    assert "gpu.target_util_pct" not in m
    assert m["gpu.target_mem_mb"] == 100
    assert fake.calls["nvmlDeviceGetProcessUtilization"] == 2  # once per device
