"""Turn NVIDIA dcgm-exporter Prometheus text (one URL per node or tray) into PowerReadings.

Fields read (dcgm-exporter default counter set): ``DCGM_FI_DEV_POWER_USAGE`` (W),
``DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION`` (mJ since boot, TYPE counter: prometheus_client reports
its samples with a ``_total`` suffix, both spellings are accepted), ``DCGM_FI_DEV_GPU_UTIL`` (%),
``DCGM_FI_DEV_FB_USED`` / ``_FB_FREE`` / ``_FB_RESERVED`` (MiB; total = used + free + reserved),
``DCGM_FI_DEV_GPU_TEMP`` (C), ``DCGM_FI_DEV_SM_CLOCK`` (MHz). Labels: ``gpu``, ``UUID``,
``Hostname`` (``hostname`` on dcgm-exporter's main branch since 2026-05), ``modelName`` (``device``, ``pci_bus_id`` and others are ignored).

DCGM reports fields it cannot read as "blank" sentinels (values near 2**63 for int64 fields,
2**47 for doubles, e.g. ``9223372036854775794``); those become None. With MIG enabled, series
carrying ``GPU_I_ID`` are per instance: a GPU-level series without it is preferred.

Note: dcgm-exporter refreshes values only every collect interval (``-c``, 30 s by default);
run it with ``-c 1000`` or less for power curves.
"""

from __future__ import annotations

from collections.abc import Iterable

from agentperf_tui.telemetry.samples import GpuSample, PowerReading
from agentperf_tui.telemetry.sglang_metrics import prom_samples

_FIELDS = {
    "DCGM_FI_DEV_POWER_USAGE": "power_w",
    "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": "energy_mj",
    "DCGM_FI_DEV_GPU_UTIL": "util_pct",
    "DCGM_FI_DEV_FB_USED": "fb_used",
    "DCGM_FI_DEV_FB_FREE": "fb_free",
    "DCGM_FI_DEV_FB_RESERVED": "fb_reserved",
    "DCGM_FI_DEV_GPU_TEMP": "temp_c",
    "DCGM_FI_DEV_SM_CLOCK": "sm_clock_mhz",
}

#: Smallest DCGM blank sentinel (DCGM_FP64_BLANK = 2**47); int64 blanks are ~2**63.
DCGM_BLANK_MIN = 140737488355328.0


def _field_of(sample_name: str) -> str | None:
    f = _FIELDS.get(sample_name)
    if f is None and sample_name.endswith("_total"):
        f = _FIELDS.get(sample_name.removesuffix("_total"))
    return f


def parse_dcgm(text: str, t_s: float, default_host: str = "") -> PowerReading:
    """Parse one dcgm-exporter ``/metrics`` body.

    ``default_host`` names the GPUs when the exporter sends no ``Hostname`` label (pass the
    URL's host). Raises ValueError if ``text`` is not Prometheus text.
    """
    # (host, gpu) -> {"uuid":..., "model":..., field: (is_mig, value)}
    gpus: dict[tuple[str, int], dict] = {}
    for name, labels, value in prom_samples(text):
        fld = _field_of(name)
        if fld is None:
            continue
        try:
            gpu = int(labels.get("gpu", ""))
        except ValueError:
            continue
        host = labels.get("Hostname") or labels.get("hostname") or default_host  # renamed on dcgm-exporter main
        rec = gpus.setdefault((host, gpu), {"uuid": "", "model": ""})
        rec["uuid"] = rec["uuid"] or labels.get("UUID", "")
        rec["model"] = rec["model"] or labels.get("modelName", "")
        is_mig = bool(labels.get("GPU_I_ID"))
        val = None if abs(value) >= DCGM_BLANK_MIN else value
        prev = rec.get(fld)
        if prev is None or (prev[0] and not is_mig) or (prev[1] is None and prev[0] == is_mig):
            rec[fld] = (is_mig, val)

    out = []
    for (host, gpu), rec in sorted(gpus.items()):

        def get(f: str, rec: dict = rec) -> float | None:
            v = rec.get(f)
            return None if v is None else v[1]

        used, free, reserved = get("fb_used"), get("fb_free"), get("fb_reserved")
        energy_mj = get("energy_mj")
        out.append(
            GpuSample(
                source="dcgm",
                host=host,
                gpu=gpu,
                uuid=rec["uuid"],
                power_w=get("power_w"),
                energy_j=None if energy_mj is None else energy_mj / 1000.0,
                util_pct=get("util_pct"),
                mem_used_mib=used,
                mem_total_mib=None if used is None or free is None else used + free + (reserved or 0.0),
                temp_c=get("temp_c"),
                sm_clock_mhz=get("sm_clock_mhz"),
                model_name=rec["model"],
            )
        )
    return PowerReading(t_s=t_s, gpus=tuple(out))


def merge_readings(readings: Iterable[PowerReading], t_s: float | None = None) -> PowerReading:
    """Merge readings from several exporters (trays) and/or NVML into one.

    GPUs are keyed by UUID when known (globally unique, so identical ``Hostname`` labels from
    containerised exporters cannot hide a tray), else by (host, gpu); the first reading listing
    a GPU wins, so pass NVML first to prefer it. ``t_s`` defaults to the latest input time.
    """
    readings = list(readings)
    seen: dict[object, GpuSample] = {}
    for r in readings:
        for g in r.gpus:
            key: object = g.uuid or g.key
            if key not in seen:
                seen[key] = g
    if t_s is None:
        t_s = max((r.t_s for r in readings), default=0.0)
    return PowerReading(t_s=t_s, gpus=tuple(sorted(seen.values(), key=lambda g: (g.host, g.gpu, g.uuid))))
