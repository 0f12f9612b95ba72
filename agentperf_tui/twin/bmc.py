"""The twin's BMC: a loopback DMTF Redfish service with node and rack power, beside its dcgm-exporter.

Served on the twin's telemetry port (``--dcgm-port``) next to ``/metrics``, so a twin profile
reads node power with ``node_power_urls = ["http://{host}:{dcgm_port}"]``. One chassis per
simulated node (tray), contained by one ``Rack`` chassis. A node draws its GPUs' power plus
``node_other_idle_w + node_other_gpu_share x GPU watts`` (CPUs, NICs, fans, losses; constants and
their sources in twin/hardware.py and docs/twin.md); the rack adds ``rack_extra_w`` (NVSwitch
trays, power shelves) in proportion to the GPUs simulated. Each chassis has ``EnvironmentMetrics``
(``PowerWatts`` and a cumulative ``EnergykWh`` counter) and the legacy ``Power`` resource.
``/twin/energy`` gives the exact energy per GPU, node and the rack (ground truth for bench/power.py).
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from agentperf_tui.twin.hardware import HardwareSpec
from agentperf_tui.twin.metrics import DcgmExporter

ROOT = "/redfish/v1"
RACK_ID = "Rack"


class TwinBmc:
    """Node and rack power computed from the same per-GPU energy the twin's dcgm-exporter serves."""

    def __init__(self, dcgm: DcgmExporter, hardware: HardwareSpec):
        self.dcgm = dcgm
        self.hw = hardware
        self.t0 = dcgm.t0
        self.hosts = sorted({host for _gpu, host, _engine, _share in dcgm.gpu_map})
        gpus = len(dcgm.gpu_map)
        self.rack_extra_w = hardware.rack_extra_w * gpus / max(1, hardware.rack_gpus or gpus)

    def readings(self, now: float) -> dict[str, Any]:
        """Exact watts and joules (since the twin started) per GPU, node and the rack at ``now``."""
        rows = self.dcgm.exact(now)
        hw = self.hw
        nodes: dict[str, dict[str, float]] = {}
        for host in self.hosts:
            mine = [r for r in rows if r["host"] == host]
            gpu_w = sum(r["power_w"] for r in mine)
            gpu_j = sum(r["energy_j"] for r in mine)
            elapsed = now - self.t0
            nodes[host] = {"power_w": gpu_w * (1 + hw.node_other_gpu_share) + hw.node_other_idle_w,
                           "energy_j": gpu_j * (1 + hw.node_other_gpu_share) + hw.node_other_idle_w * elapsed,
                           "gpu_power_w": gpu_w, "gpu_energy_j": gpu_j}
        rack = {"power_w": sum(n["power_w"] for n in nodes.values()) + self.rack_extra_w,
                "energy_j": sum(n["energy_j"] for n in nodes.values()) + self.rack_extra_w * (now - self.t0)}
        return {"t": now, "gpus": {r["uuid"]: r["energy_j"] for r in rows}, "nodes": nodes, "rack": rack}

    # -- Redfish -----------------------------------------------------------------------------
    def add_routes(self, app: web.Application) -> None:
        r = app.router
        r.add_get(ROOT, self.service_root)
        r.add_get(ROOT + "/", self.service_root)
        r.add_get(ROOT + "/Chassis", self.chassis_collection)
        r.add_get(ROOT + "/Chassis/{id}", self.chassis)
        r.add_get(ROOT + "/Chassis/{id}/EnvironmentMetrics", self.environment)
        r.add_get(ROOT + "/Chassis/{id}/Power", self.power)
        r.add_get("/twin/energy", self.energy)

    def _reading(self, chassis_id: str) -> dict[str, float]:
        data = self.readings(time.monotonic())
        if chassis_id == RACK_ID:
            return data["rack"]
        if chassis_id not in data["nodes"]:
            raise web.HTTPNotFound(text=f"no chassis {chassis_id}")
        return data["nodes"][chassis_id]

    async def service_root(self, _request: web.Request) -> web.Response:
        return web.json_response({"@odata.id": ROOT, "@odata.type": "#ServiceRoot.v1_16_0.ServiceRoot",
                                  "Id": "RootService", "Name": "agentperf-tui twin BMC", "RedfishVersion": "1.17.0",
                                  "Chassis": {"@odata.id": ROOT + "/Chassis"}})

    async def chassis_collection(self, _request: web.Request) -> web.Response:
        members = [{"@odata.id": f"{ROOT}/Chassis/{h}"} for h in self.hosts] + [
            {"@odata.id": f"{ROOT}/Chassis/{RACK_ID}"}]
        return web.json_response({"@odata.id": ROOT + "/Chassis", "Name": "Chassis Collection",
                                  "Members@odata.count": len(members), "Members": members})

    async def chassis(self, request: web.Request) -> web.Response:
        cid = request.match_info["id"]
        if cid != RACK_ID and cid not in self.hosts:
            raise web.HTTPNotFound(text=f"no chassis {cid}")
        base = f"{ROOT}/Chassis/{cid}"
        doc: dict[str, Any] = {
            "@odata.id": base, "@odata.type": "#Chassis.v1_25_0.Chassis", "Id": cid, "Name": cid,
            "ChassisType": "Rack" if cid == RACK_ID else "RackMount",
            "EnvironmentMetrics": {"@odata.id": base + "/EnvironmentMetrics"}, "Power": {"@odata.id": base + "/Power"},
            "Links": ({"Contains": [{"@odata.id": f"{ROOT}/Chassis/{h}"} for h in self.hosts]} if cid == RACK_ID
                      else {"ContainedBy": {"@odata.id": f"{ROOT}/Chassis/{RACK_ID}"}}),
        }
        return web.json_response(doc)

    async def environment(self, request: web.Request) -> web.Response:
        cid = request.match_info["id"]
        reading = self._reading(cid)
        return web.json_response({
            "@odata.id": f"{ROOT}/Chassis/{cid}/EnvironmentMetrics",
            "@odata.type": "#EnvironmentMetrics.v1_3_0.EnvironmentMetrics", "Id": "EnvironmentMetrics",
            "PowerWatts": {"Reading": round(reading["power_w"], 3)},
            "EnergykWh": {"Reading": reading["energy_j"] / 3.6e6}})

    async def power(self, request: web.Request) -> web.Response:
        cid = request.match_info["id"]
        reading = self._reading(cid)
        return web.json_response({"@odata.id": f"{ROOT}/Chassis/{cid}/Power", "Id": "Power",
                                  "PowerControl": [{"MemberId": "0", "PowerConsumedWatts": round(reading["power_w"], 3)}]})

    async def energy(self, request: web.Request) -> web.Response:
        t = request.query.get("t")
        now = time.monotonic()
        at = min(now, float(t)) if t else now
        return web.json_response(self.readings(at))
