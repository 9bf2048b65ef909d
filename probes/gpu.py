"""GPU probe: NVIDIA device gauges through NVML, and the target's share of the GPUs.

Used by ``probes.sampler`` (as one of the probes it runs) and by the tracker, which
closes it at the end of a run. ``pynvml`` (the ``nvidia-ml-py`` distribution, the
``gpu`` extra) is imported only when a probe is built, so ``import probes`` stays
light; tests pass a module-like fake as ``nvml`` since no GPU exists on CI.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import psutil

log = logging.getLogger(__name__)

MIB = 1024 * 1024

# Values from NVML's C header (nvml.h). They are ABI, so fixing them here lets the
# clock-event decoding work without pynvml; the tests check them against pynvml.
NVML_CLOCK_SM = 1
NVML_TEMPERATURE_GPU = 0
ERR_UNINITIALIZED = 1
ERR_NOT_SUPPORTED = 3
ERR_NO_PERMISSION = 4
ERR_NOT_FOUND = 6
ERR_DRIVER_NOT_LOADED = 9
ERR_LIBRARY_NOT_FOUND = 12
ERR_FUNCTION_NOT_FOUND = 13
ERR_GPU_IS_LOST = 15
ERR_RESET_REQUIRED = 16
ERR_LIB_RM_VERSION_MISMATCH = 18
ERR_GPU_NOT_FOUND = 28

# Errors after which no reading from this NVML session can be trusted; {gpu} names
# the device whose call failed.
_FATAL = {
    ERR_UNINITIALIZED: "NVML was shut down while sampling {gpu}",
    ERR_DRIVER_NOT_LOADED: "the NVIDIA driver was unloaded while sampling {gpu}",
    ERR_GPU_IS_LOST: "{gpu} is lost (fell off the bus: see dmesg for Xid errors)",
    ERR_RESET_REQUIRED: "{gpu} needs a reset",
    ERR_LIB_RM_VERSION_MISMATCH: "NVML and the kernel driver versions differ ({gpu})",
    ERR_GPU_NOT_FOUND: "{gpu} is gone",
}
# Errors that will recur on every call: stop asking for that reading on that device.
_PERMANENT = {ERR_NOT_SUPPORTED, ERR_NO_PERMISSION, ERR_FUNCTION_NOT_FOUND}

CLOCK_EVENT_BITS: dict[int, str] = {
    0x001: "gpu_idle",
    0x002: "applications_clocks_setting",
    0x004: "sw_power_cap",
    0x008: "hw_slowdown",
    0x010: "sync_boost",
    0x020: "sw_thermal_slowdown",
    0x040: "hw_thermal_slowdown",
    0x080: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
    0x200: "board_limit",
    0x400: "reliability",
}
"""NVML clock-event (formerly "throttle") reason bits -> readable name."""

# Idle GPUs and clocks the user pinned run slow on purpose: not a slowdown.
_BENIGN_EVENTS = 0x001 | 0x002 | 0x100
_THROTTLE_GROUPS: dict[str, int] = {
    "throttled_pct": ~_BENIGN_EVENTS,
    "throttle_power_pct": 0x004,
    "throttle_thermal_pct": 0x020 | 0x040,
    "throttle_hw_pct": 0x008 | 0x080,
}

# suffix -> (unit, description, how devices combine into the gpu.* aggregate)
_DEVICE_SPECS: dict[str, tuple[str, str, str]] = {
    "util_pct": ("%", "time a kernel was running on the GPU (NVML utilization)", "mean"),
    "mem_busy_pct": ("%", "time device memory was being read or written", "mean"),
    "mem_used_mb": ("MiB", "device memory in use, all processes", "sum"),
    "mem_total_mb": ("MiB", "device memory installed", "sum"),
    "mem_used_pct": ("%", "device memory in use, 0-100", "ratio"),
    "sm_clock_mhz": ("MHz", "current SM (shader) clock", "mean"),
    "power_w": ("W", "board power draw", "sum"),
    "temp_c": ("°C", "GPU core temperature", "max"),
    "throttled_pct": (
        "%",
        "100 while clocks are held down for any reason but idle or a clock setting, else 0",
        "mean",
    ),
    "throttle_power_pct": ("%", "100 while the software power cap holds clocks down", "mean"),
    "throttle_thermal_pct": ("%", "100 while a thermal slowdown (sw or hw) is active", "mean"),
    "throttle_hw_pct": ("%", "100 while a hardware slowdown or power brake is active", "mean"),
}
_AGGREGATE_NOTE = {
    "mean": "mean over devices",
    "sum": "sum over devices",
    "max": "hottest device",
    "ratio": "over all devices",
}


def clock_event_names(mask: int) -> list[str]:
    """Decode an NVML clock-event reason mask into readable names, lowest bit first.

    Args:
        mask: Value of ``nvmlDeviceGetCurrentClocksEventReasons``.

    Returns:
        Names from :data:`CLOCK_EVENT_BITS`; unknown bits appear as ``bit_0x...``.
    """
    names = []
    for bit in range(64):
        flag = 1 << bit
        if mask & flag:
            names.append(CLOCK_EVENT_BITS.get(flag, f"bit_{flag:#x}"))
    return names


@dataclass(frozen=True, slots=True)
class GpuDevice:
    """One GPU as NVML enumerates it (PCI bus order, which CUDA's order may differ from)."""

    index: int
    name: str
    handle: Any


class _NvmlCallError(Exception):
    """An NVML call failed; ``code`` is the NVML error code (None if not an NVMLError)."""

    def __init__(self, code: int | None, text: str) -> None:
        super().__init__(text)
        self.code = code


class GpuProbe:
    """Samples ``gpu.*`` (aggregates and target share) and ``gpu<N>.*`` (per device).

    NVML is initialised in the constructor and kept open, so the driver stays loaded
    between samples; call :meth:`close` at the end. Without NVML the probe sets
    :attr:`unavailable` and never raises. A reading that one device does not support
    is dropped for that device only (see :attr:`missing`); a lost GPU makes the whole
    probe unavailable, since every aggregate would silently change meaning.
    """

    name = "gpu"
    METRICS: ClassVar[dict[str, tuple[str, str]]] = {
        **{
            f"gpu.{suffix}": (unit, f"{description} ({_AGGREGATE_NOTE[how]})")
            for suffix, (unit, description, how) in _DEVICE_SPECS.items()
        },
        "gpu.target_mem_mb": ("MiB", "GPU memory held by the target tree's processes"),
        "gpu.target_util_pct": (
            "%",
            "SM utilization of the target tree's processes; 100 = one full GPU",
        ),
        # One family per reading, for GPU N in NVML's order (``per_device=True``).
        **{
            f"gpu<N>.{suffix}": (unit, f"GPU N: {description}")
            for suffix, (unit, description, _) in _DEVICE_SPECS.items()
        },
    }

    def __init__(self, nvml: Any = None, *, per_device: bool = True) -> None:
        """Initialise NVML and list the devices; never raises.

        Args:
            nvml: A module-like object with pynvml's functions; None imports ``pynvml``.
            per_device: Also emit ``gpu<N>.*`` next to the aggregates.
        """
        self.unavailable: str | None = None
        self.devices: list[GpuDevice] = []
        # Metric (``gpu0.power_w``, or ``gpu0`` for a whole device) -> why it
        # is not reported; for the run's notes and the TUI.
        self.missing: dict[str, str] = {}
        # Device index -> decoded clock-event reasons at the last sample.
        self.clock_events: dict[int, list[str]] = {}
        self._per_device = per_device
        self._nvml: Any = nvml
        self._initialised = False
        self._dead: set[tuple[int, str]] = set()
        self._chosen: dict[tuple[str, ...], str] = {}
        self._util_ts: dict[int, int] = {}
        if self._nvml is None:
            try:
                import pynvml
            except ImportError:
                self.unavailable = _no_bindings_reason()
                return
            self._nvml = pynvml
        self._open()

    def sample(self, now: float, procs: list[psutil.Process]) -> dict[str, float]:
        """Read every device, then the target's processes on them.

        Args:
            now: ``time.monotonic()`` of this sample (unused: NVML keeps its own clock).
            procs: Target tree; empty means no target, so ``gpu.target_*`` are omitted.

        Returns:
            Metrics named as in :attr:`METRICS` (``gpu<N>.*`` with N = 0, 1, ...);
            empty once the probe is unavailable.
        """
        if self.unavailable is not None:
            return {}
        try:
            per_device = {dev.index: self._read_device(dev) for dev in self.devices}
            metrics = _aggregate(per_device)
            if self._per_device:
                for index, values in per_device.items():
                    metrics.update({f"gpu{index}.{k}": v for k, v in values.items()})
            if procs:
                metrics.update(self._read_target({p.pid for p in procs}))
            else:
                self._util_ts.clear()  # a later target starts from a fresh baseline
        except _FatalError as exc:
            self._give_up(str(exc))
            return {}
        return metrics

    def close(self) -> None:
        """Shut NVML down (idempotent); the sampler's owner calls this when the run ends."""
        if not self._initialised:
            return
        self._initialised = False
        try:
            self._nvml.nvmlShutdown()
        except self._nvml.NVMLError as exc:
            log.debug("nvmlShutdown failed: %s", exc)

    def _open(self) -> None:
        nvml = self._nvml
        try:
            nvml.nvmlInit()
        except nvml.NVMLError as exc:
            self.unavailable = _init_failure_reason(exc)
            return
        self._initialised = True
        try:
            count = int(nvml.nvmlDeviceGetCount())
            for index in range(count):
                try:
                    handle = nvml.nvmlDeviceGetHandleByIndex(index)
                except nvml.NVMLError as exc:
                    if getattr(exc, "value", None) != ERR_NO_PERMISSION:
                        raise
                    # A container may see every GPU but be allowed only some of them.
                    self.missing[f"gpu{index}"] = f"NVML: {exc}"
                    continue
                try:
                    name = str(nvml.nvmlDeviceGetName(handle))
                except nvml.NVMLError:
                    name = "unknown model"
                self.devices.append(GpuDevice(index, name, handle))
        except nvml.NVMLError as exc:
            self._give_up(f"listing GPUs failed: NVML: {exc}: gpu.* metrics omitted")
            return
        if not self.devices:
            why = (
                "no usable NVIDIA GPU (permission denied)" if count else "NVML found no NVIDIA GPU"
            )
            self._give_up(f"{why}: gpu.* metrics omitted")
            return
        log.debug("GPU probe: %s", ", ".join(f"{d.index}: {d.name}" for d in self.devices))

    def _give_up(self, reason: str) -> None:
        self.unavailable = reason
        self.close()

    def _call(self, names: tuple[str, ...], *args: Any) -> Any:
        """Call the first of ``names`` that this pynvml and driver provide.

        Newer getters replace deprecated ones (e.g. ClocksEventReasons for
        ClocksThrottleReasons); older drivers lack the new C symbol and older
        bindings lack the Python function, so fall back in order.

        Raises:
            _NvmlCallError: The call failed (or no alternative exists).
        """
        nvml = self._nvml
        mismatch = getattr(nvml, "NVMLLibraryMismatchError", _NeverRaised)
        chosen = self._chosen.get(names)
        candidates = (chosen,) if chosen else names
        last: _NvmlCallError = _NvmlCallError(ERR_FUNCTION_NOT_FOUND, "Function Not Found")
        for fname in candidates:
            func = getattr(nvml, fname, None)
            if func is None:
                continue
            try:
                result = func(*args)
            except nvml.NVMLError as exc:
                code = getattr(exc, "value", None)
                last = _NvmlCallError(code, str(exc))
                if code == ERR_FUNCTION_NOT_FOUND:
                    continue
                self._chosen[names] = fname
                raise last from None
            except mismatch as exc:  # pynvml's unversioned wrappers on an old driver
                last = _NvmlCallError(ERR_FUNCTION_NOT_FOUND, str(exc))
                continue
            self._chosen[names] = fname
            return result
        raise last

    def _guarded(
        self,
        dev: GpuDevice,
        key: str,
        read: Callable[..., dict[str, float]],
        *args: Any,
    ) -> dict[str, float]:
        """Run ``read(dev, *args)``; map NVML errors to skip-once, skip-forever or give up."""
        if (dev.index, key) in self._dead:
            return {}
        try:
            return read(dev, *args)
        except _NvmlCallError as exc:
            if exc.code in _FATAL:
                what = _FATAL[exc.code].format(gpu=f"GPU {dev.index} ({dev.name})")
                raise _FatalError(f"{what} [NVML: {exc}]: gpu.* metrics stop here") from None
            if exc.code in _PERMANENT:
                self._dead.add((dev.index, key))
                for suffix in _READING_SUFFIXES.get(key, (key,)):
                    self.missing[f"gpu{dev.index}.{suffix}"] = f"NVML: {exc}"
                log.info("GPU %d: %s unavailable (NVML: %s)", dev.index, key, exc)
            else:
                log.debug("GPU %d: reading %s failed this tick: %s", dev.index, key, exc)
            return {}

    def _read_device(self, dev: GpuDevice) -> dict[str, float]:
        values: dict[str, float] = {}
        for key, read in (
            ("utilization", self._utilization),
            ("memory", self._memory),
            ("sm_clock_mhz", self._sm_clock),
            ("power_w", self._power),
            ("temp_c", self._temperature),
            ("clock_events", self._clock_events),
        ):
            values.update(self._guarded(dev, key, read))
        return values

    def _utilization(self, dev: GpuDevice) -> dict[str, float]:
        rates = self._call(("nvmlDeviceGetUtilizationRates",), dev.handle)
        return {"util_pct": float(rates.gpu), "mem_busy_pct": float(rates.memory)}

    def _memory(self, dev: GpuDevice) -> dict[str, float]:
        info = self._call(("nvmlDeviceGetMemoryInfo",), dev.handle)
        values = {"mem_used_mb": info.used / MIB, "mem_total_mb": info.total / MIB}
        if info.total > 0:
            values["mem_used_pct"] = 100.0 * info.used / info.total
        return values

    def _sm_clock(self, dev: GpuDevice) -> dict[str, float]:
        mhz = self._call(("nvmlDeviceGetClockInfo",), dev.handle, NVML_CLOCK_SM)
        return {"sm_clock_mhz": float(mhz)}

    def _power(self, dev: GpuDevice) -> dict[str, float]:
        milliwatts = self._call(("nvmlDeviceGetPowerUsage",), dev.handle)
        return {"power_w": milliwatts / 1000.0}

    def _temperature(self, dev: GpuDevice) -> dict[str, float]:
        # nvmlDeviceGetTemperature is deprecated (to be removed in CUDA 14) in favour
        # of ...TemperatureV, which drivers before r535 do not have.
        celsius = self._call(
            ("nvmlDeviceGetTemperatureV", "nvmlDeviceGetTemperature"),
            dev.handle,
            NVML_TEMPERATURE_GPU,
        )
        return {"temp_c": float(celsius)}

    def _clock_events(self, dev: GpuDevice) -> dict[str, float]:
        mask = int(
            self._call(
                (
                    "nvmlDeviceGetCurrentClocksEventReasons",
                    "nvmlDeviceGetCurrentClocksThrottleReasons",
                ),
                dev.handle,
            )
        )
        self.clock_events[dev.index] = clock_event_names(mask)
        return {name: 100.0 if mask & bits else 0.0 for name, bits in _THROTTLE_GROUPS.items()}

    def _read_target(self, pids: set[int]) -> dict[str, float]:
        mem_mb = util_pct = 0.0
        have_mem = have_util = False
        for dev in self.devices:
            mem = self._guarded(dev, "target_mem_mb", self._target_mem, pids)
            if mem:
                have_mem = True
                mem_mb += mem["target_mem_mb"]
            util = self._guarded(dev, "target_util_pct", self._target_util, pids)
            if util:
                have_util = True
                util_pct += util["target_util_pct"]
        metrics: dict[str, float] = {}
        if have_mem:
            metrics["gpu.target_mem_mb"] = mem_mb
        if have_util:
            metrics["gpu.target_util_pct"] = util_pct
        return metrics

    def _target_mem(self, dev: GpuDevice, pids: set[int]) -> dict[str, float]:
        running = self._call(
            ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetComputeRunningProcesses_v2"),
            dev.handle,
        )
        used = 0
        for proc in running:
            if proc.pid in pids:
                if proc.usedGpuMemory is None:
                    return {}  # NVML cannot tell (e.g. no permission): a gap, not zero
                used += proc.usedGpuMemory
        return {"target_mem_mb": used / MIB}

    def _target_util(self, dev: GpuDevice, pids: set[int]) -> dict[str, float]:
        """SM utilization of the target's processes since the previous call.

        NVML returns one sample per process and driver sampling period with a CPU
        timestamp (µs), only for processes that were busy; samples newer than the
        timestamp passed in. NOT_FOUND means no process was busy since then.
        """
        baseline = dev.index not in self._util_ts
        last_ts = self._util_ts.get(dev.index, 0)
        try:
            samples = self._call(("nvmlDeviceGetProcessUtilization",), dev.handle, last_ts)
        except _NvmlCallError as exc:
            # pynvml raises NVMLError(NVML_SUCCESS) when the size query finds nothing.
            if exc.code not in (ERR_NOT_FOUND, 0):
                raise
            samples = []
        self._util_ts[dev.index] = max((int(s.timeStamp) for s in samples), default=last_ts)
        if baseline:
            return {}  # samples since the start of the driver's buffer: not this interval
        by_pid: dict[int, list[float]] = defaultdict(list)
        for s in samples:
            if s.pid in pids:
                by_pid[s.pid].append(float(s.smUtil))
        busy = sum(sum(v) / len(v) for v in by_pid.values())
        return {"target_util_pct": min(100.0, busy)}


class _FatalError(Exception):
    """NVML can no longer be trusted for any device; the message is the probe's reason."""


class _NeverRaised(Exception):
    """Stands in for pynvml's NVMLLibraryMismatchError when the bindings lack it."""


# Reading key -> the per-device suffixes it produces (for :attr:`GpuProbe.missing`).
_READING_SUFFIXES: dict[str, tuple[str, ...]] = {
    "utilization": ("util_pct", "mem_busy_pct"),
    "memory": ("mem_used_mb", "mem_total_mb", "mem_used_pct"),
    "clock_events": tuple(_THROTTLE_GROUPS),
}


def _aggregate(per_device: dict[int, dict[str, float]]) -> dict[str, float]:
    """Combine device readings into ``gpu.*``, over the devices that reported each one."""
    metrics: dict[str, float] = {}
    for suffix, (_, _, how) in _DEVICE_SPECS.items():
        values = [v[suffix] for v in per_device.values() if suffix in v]
        if not values or how == "ratio":
            continue
        if how == "mean":
            metrics[f"gpu.{suffix}"] = sum(values) / len(values)
        elif how == "sum":
            metrics[f"gpu.{suffix}"] = sum(values)
        else:
            metrics[f"gpu.{suffix}"] = max(values)
    with_mem = [v for v in per_device.values() if "mem_total_mb" in v]
    total = sum(v["mem_total_mb"] for v in with_mem)
    if total > 0:
        metrics["gpu.mem_used_pct"] = 100.0 * sum(v["mem_used_mb"] for v in with_mem) / total
    return metrics


def _init_failure_reason(exc: Exception) -> str:
    code = getattr(exc, "value", None)
    why = {
        ERR_LIBRARY_NOT_FOUND: "NVML library not found (no NVIDIA driver on this host)",
        ERR_DRIVER_NOT_LOADED: "NVIDIA driver not loaded (check `nvidia-smi`)",
        ERR_NO_PERMISSION: "no permission to use NVML (check access to /dev/nvidia*)",
        ERR_LIB_RM_VERSION_MISMATCH: (
            "NVML library and kernel driver versions differ (reload the driver or reboot)"
        ),
    }.get(code if isinstance(code, int) else -1, f"NVML failed to start: {exc}")
    return f"{why}: gpu.* metrics omitted"


def _no_bindings_reason() -> str:
    if os.path.exists("/proc/driver/nvidia/version"):
        return (
            "nvidia-ml-py is not installed (pip install 'perfsleuth[gpu]'): gpu.* metrics omitted"
        )
    return "no NVIDIA driver on this host and nvidia-ml-py is not installed: gpu.* metrics omitted"
