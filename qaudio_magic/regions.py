"""Model Studio regions and their hosts: legacy hosts by default, workspace hosts on request.

Six region ids are documented (CURRENT-MODELS §11.2.1); ``cn`` and ``intl``, the names this
package used before, stay as aliases of Beijing and Singapore. Each region has a legacy
host (``dashscope.aliyuncs.com`` ...) and, for a Model Studio workspace, a workspace host
``{WorkspaceId}.{region}.maas.aliyuncs.com``. Both are documented as valid; the docs now
show the workspace host first and say "the existing domains remain fully functional"
(QA3@2026-09-11, OMNI-35; SDK2-src ``v2/_config.py``). Paths are the same on both:
``/api/v1`` (native) and ``/compatible-mode/v1`` (OpenAI-compatible).

API keys are per region ("The API keys for Singapore and Beijing differ"), so a 401
``InvalidApiKey`` often means a key of another region: :func:`key_hint` says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "ALIASES",
    "REGIONS",
    "Region",
    "api_base",
    "key_hint",
    "region_of",
    "resolve_region",
]


@dataclass(frozen=True)
class Region:
    id: str
    name: str
    legacy_host: str
    # True where no primary source confirms that the legacy host serves this region
    legacy_unverified: bool = False


# Legacy hosts (§11.2.1): Beijing and Singapore from every page; Hong Kong from SDK2-src;
# US: the Qwen API reference (§1.1) and 3P name dashscope-us, while SDK2's legacy map and
# ASR-API@2026-01-06 use dashscope-intl (UNVERIFIED which is right); Frankfurt and Tokyo:
# dashscope-intl in SDK2's legacy map, UNVERIFIED that it serves EU/JP-resident models.
# The workspace hosts are the documented way to reach those regions.
REGIONS: dict[str, Region] = {
    r.id: r
    for r in (
        Region("cn-beijing", "China (Beijing)", "dashscope.aliyuncs.com"),
        Region("ap-southeast-1", "Singapore (International)", "dashscope-intl.aliyuncs.com"),
        Region("us-east-1", "US (Virginia)", "dashscope-us.aliyuncs.com", True),
        Region("cn-hongkong", "China (Hong Kong)", "cn-hongkong.dashscope.aliyuncs.com"),
        Region("eu-central-1", "Germany (Frankfurt)", "dashscope-intl.aliyuncs.com", True),
        Region("ap-northeast-1", "Japan (Tokyo)", "dashscope-intl.aliyuncs.com", True),
    )
}
ALIASES = {"cn": "cn-beijing", "intl": "ap-southeast-1"}

# A workspace id is one DNS label (Model Studio shows ids like "llm-abc123xyz").
_WORKSPACE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


class RegionError(ValueError):
    """An unknown region id or a malformed workspace id (the message names the choices)."""


def resolve_region(region: str) -> Region:
    """The region for an id or an alias (``cn``, ``intl``), case-insensitive."""
    key = region.strip().lower()
    found = REGIONS.get(ALIASES.get(key, key))
    if found is None:
        choices = ", ".join([*REGIONS, *ALIASES])
        raise RegionError(f"unknown region {region!r} (one of: {choices})")
    return found


def api_base(region: str, workspace: str = "", *, api: str = "native") -> str:
    """The base URL of ``api`` (``native`` → ``/api/v1``, ``compatible`` →
    ``/compatible-mode/v1``) in ``region``, on the workspace host when ``workspace`` is set."""
    where = resolve_region(region)
    workspace = workspace.strip()
    if workspace:
        if not _WORKSPACE.fullmatch(workspace):
            raise RegionError(
                f"workspace id {workspace!r} is not a host name label (letters, digits, '-')"
            )
        host = f"{workspace.lower()}.{where.id}.maas.aliyuncs.com"
    else:
        host = where.legacy_host
    if api == "native":
        return f"https://{host}/api/v1"
    if api == "compatible":
        return f"https://{host}/compatible-mode/v1"
    raise ValueError(f"api must be 'native' or 'compatible', not {api!r}")


def region_of(host: str) -> Region | None:
    """The region a DashScope host belongs to, when it names one (None for others)."""
    host = host.lower().split(":")[0]
    match = re.fullmatch(r"[a-z0-9-]+\.([a-z0-9-]+)\.maas\.aliyuncs\.com", host)
    if match:
        return REGIONS.get(match.group(1))
    for region in REGIONS.values():
        if host == region.legacy_host and not region.legacy_unverified:
            return region
    return None


def key_hint(host: str) -> str:
    """What to check after ``InvalidApiKey``: keys belong to one region (and account)."""
    region = region_of(host)
    where = (
        f"is a {region.name} ({region.id}) key" if region else f"belongs to the region of {host}"
    )
    return (
        f"API keys are per region: check that the key {where}, or set "
        "%config QAudioMagic.region to the key's region (cn-beijing, ap-southeast-1, …)"
    )
