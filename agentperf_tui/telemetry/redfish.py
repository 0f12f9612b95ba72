"""Node and rack power from a BMC (or a PDU / rack manager) over DMTF Redfish.

Uses the DMTF python-redfish-library's asynchronous client (``redfish.aio``) on the sampler's
aiohttp session, so polling stays off the engine's critical path and never blocks its loop.
Credentials are read from environment variables the profile *names* (never from the profile);
with none, requests are unauthenticated (the twin's loopback BMC).

Which chassis count: for the ``node`` boundary, the top-level chassis of each BMC (no
``Links.ContainedBy``, or contained only by a ``Rack``), never a rack; for ``rack``, chassis of
type ``Rack`` (or a PDU's ``PowerDistribution`` equivalent exposed as a chassis). Per chassis the
best reading available is used, in this order:
1. ``EnvironmentMetrics.EnergykWh.Reading`` - a real cumulative counter (kWh -> J);
2. ``EnvironmentMetrics.PowerWatts.Reading`` - watts, integrated here (trapezoid);
3. legacy ``Power.PowerControl[0].PowerConsumedWatts`` - watts, integrated here.
Integrated energy is only as good as the poll interval; the counter is preferred.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import aiohttp

from agentperf_tui.telemetry.energy import EnergySnapshot

try:  # the DMTF library (a core dependency); imported lazily so a broken install names itself
    from redfish.aio import AsyncRedfishClient, RedfishError
except ImportError as exc:  # pragma: no cover - exercised only on a broken install
    AsyncRedfishClient = None  # type: ignore[assignment,misc]
    RedfishError = Exception  # type: ignore[assignment,misc]
    _IMPORT_ERROR: Exception | None = exc
else:
    _IMPORT_ERROR = None


@dataclass
class _Chassis:
    path: str
    key: str
    mode: str  # "energy" | "watts" | "legacy"
    reading_path: str = ""  # the EnvironmentMetrics or Power resource found at discovery
    energy_j: float = 0.0  # integrated (watts modes)
    last_t: float | None = None
    last_w: float | None = None


class RedfishPowerReader:
    """Polls one Redfish service for the power of the chassis at one boundary ("node" or "rack")."""

    def __init__(self, url: str, boundary: str, *, username_env: str = "", password_env: str = "",
                 timeout_s: float = 2.0, prefer_counter: bool = True):
        if boundary not in ("node", "rack"):
            raise ValueError(f"Redfish boundary must be node or rack, got {boundary!r}")
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/") or parts.query:
            raise ValueError(f"{url!r}: a Redfish service is named by its root, scheme://host[:port] "
                             "(the tool walks /redfish/v1/Chassis itself)")
        self.url = url.rstrip("/")
        self.boundary = boundary
        self.username_env = username_env
        self.password_env = password_env
        self.timeout_s = timeout_s
        self.prefer_counter = prefer_counter  # False: integrate PowerWatts even where EnergykWh exists (bench)
        self._chassis: list[_Chassis] | None = None
        self._client_of: tuple[aiohttp.ClientSession, object] | None = None

    def copy(self) -> RedfishPowerReader:
        """A fresh reader with the same settings (a start-up probe must not share integration state)."""
        return RedfishPowerReader(self.url, self.boundary, username_env=self.username_env,
                                  password_env=self.password_env, timeout_s=self.timeout_s,
                                  prefer_counter=self.prefer_counter)

    async def _client(self, session: aiohttp.ClientSession):
        """One client per aiohttp session, logged in once (HTTP Basic over HTTPS) when credentials are named."""
        if self._client_of is not None and self._client_of[0] is session:
            return self._client_of[1]
        if AsyncRedfishClient is None:
            raise RuntimeError(f"the redfish package is not importable: {_IMPORT_ERROR}")
        user = os.environ.get(self.username_env) if self.username_env else None
        password = os.environ.get(self.password_env) if self.password_env else None
        if self.username_env and (user is None or password is None):
            raise RuntimeError(f"set the environment variables {self.username_env} and {self.password_env} "
                               "(the profile names them; their values are never read from the profile)")
        client = AsyncRedfishClient(self.url, username=user, password=password, session=session,
                                    timeout=self.timeout_s)
        if user is not None:
            await client.login(auth="basic")  # the library requires HTTPS for credentials
        self._client_of = (session, client)
        return client

    async def _json(self, client, path: str) -> dict:
        response = await client.get(path)
        if response.status != 200:
            raise RuntimeError(f"GET {path}: HTTP {response.status}")
        data = response.dict
        if not isinstance(data, dict):
            raise RuntimeError(f"GET {path}: not a JSON object")
        return data

    async def _discover(self, client) -> list[_Chassis]:
        collection = await self._json(client, "/redfish/v1/Chassis")
        members = [m.get("@odata.id", "") for m in collection.get("Members", []) if isinstance(m, dict)]
        found = []
        types: dict[str, str] = {}
        docs: dict[str, dict] = {}
        for path in members:
            doc = await self._json(client, path)
            docs[path] = doc
            types[path] = str(doc.get("ChassisType", ""))
        for path, doc in docs.items():
            is_rack = types[path] in ("Rack", "RackGroup", "PowerStrip")
            parent = (doc.get("Links") or {}).get("ContainedBy")  # a single navigation link
            parents = [parent["@odata.id"]] if isinstance(parent, dict) and parent.get("@odata.id") else []
            parent_types = [types.get(p, "") for p in parents]
            if self.boundary == "node":
                # a node's top-level chassis: not a rack, contained by nothing or by a rack only
                if is_rack or any(t not in ("Rack", "RackGroup", "") for t in parent_types):
                    continue
            elif not is_rack or any(t in ("Rack", "RackGroup", "PowerStrip") for t in parent_types):
                continue  # a rack inside a rack (or a strip inside a rack) is counted by its parent
            mode, reading_path = "", ""
            if isinstance(doc.get("EnvironmentMetrics"), dict):
                reading_path = doc["EnvironmentMetrics"].get("@odata.id", "")
                env = await self._json(client, reading_path)
                if self.prefer_counter and isinstance(env.get("EnergykWh"), dict) and \
                        env["EnergykWh"].get("Reading") is not None:
                    mode = "energy"
                elif isinstance(env.get("PowerWatts"), dict):
                    mode = "watts"
            if not mode and isinstance(doc.get("Power"), dict):
                mode, reading_path = "legacy", doc["Power"].get("@odata.id", "")
            if not mode or not reading_path:
                continue
            found.append(_Chassis(path, f"{self.url}{path}", mode, reading_path))
        if not found:
            raise RuntimeError(f"{self.url}: no {self.boundary} chassis with power readings under /redfish/v1/Chassis")
        return found

    async def read(self, session: aiohttp.ClientSession, now: float) -> EnergySnapshot:
        """One poll: cumulative energy (J) and watts per chassis. Raises on any failure."""
        client = await self._client(session)
        if self._chassis is None:
            self._chassis = await self._discover(client)
        energy: dict[str, float | None] = {}
        power: dict[str, float | None] = {}
        for ch in self._chassis:
            watts: float | None
            if ch.mode in ("energy", "watts"):
                env = await self._json(client, ch.reading_path)
                watts = _reading(env.get("PowerWatts"))
                if ch.mode == "energy":
                    kwh = _reading(env.get("EnergykWh"))
                    energy[ch.key] = None if kwh is None else kwh * 3.6e6
                    power[ch.key] = watts
                    continue
            else:
                doc = await self._json(client, ch.reading_path)
                controls = doc.get("PowerControl") or []
                watts = controls[0].get("PowerConsumedWatts") if controls and isinstance(controls[0], dict) else None
                watts = None if watts is None else float(watts)
            if watts is not None:
                if ch.last_t is not None and ch.last_w is not None:
                    ch.energy_j += 0.5 * (watts + ch.last_w) * (now - ch.last_t)
                ch.last_t, ch.last_w = now, watts
            energy[ch.key] = ch.energy_j if watts is not None else None
            power[ch.key] = watts
        return EnergySnapshot(now, energy, power, f"redfish {self.boundary}")


def _reading(block: object) -> float | None:
    if isinstance(block, dict) and block.get("Reading") is not None:
        return float(block["Reading"])
    return None


__all__ = ["RedfishPowerReader", "RedfishError"]
