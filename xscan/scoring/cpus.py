"""How many CPUs this process may use: its affinity mask, and a cgroup CPU quota where one is set (containers)."""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def usable_cpus(cgroup_root: Path = CGROUP_ROOT, own_cgroups: Path = Path("/proc/self/cgroup")) -> int:
    """Count the CPUs this process may use.

    os.cpu_count() counts the machine's CPUs: in a container limited to 2 of 64, a thread per
    core would be 64 threads taking turns on 2.

    Args:
        cgroup_root: Where the cgroup file systems are mounted.
        own_cgroups: The file naming this process's cgroups.

    Returns:
        The CPUs it may run on (sched_getaffinity), capped by its cgroups' CPU quota rounded up;
        at least 1.
    """
    try:
        allowed = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        allowed = os.cpu_count() or 1
    quota = cgroup_cpu_quota(cgroup_root, own_cgroups)
    return max(1, min(allowed, math.ceil(quota)) if quota else allowed)


def cgroup_cpu_quota(cgroup_root: Path = CGROUP_ROOT, own_cgroups: Path = Path("/proc/self/cgroup")) -> float | None:
    """Read the CPU time this process's cgroups allow.

    cgroup v2: `cpu.max` ("QUOTA PERIOD", or "max PERIOD") in the process's group and each group
    above it. cgroup v1: `cpu.cfs_quota_us` (-1: none) and `cpu.cfs_period_us` in the cpu
    controller's group and above.

    Args:
        cgroup_root: Where the cgroup file systems are mounted.
        own_cgroups: The file naming this process's cgroups.

    Returns:
        The smallest quota along the way, in CPUs (1.5: one and a half); None if unlimited.
    """
    quotas = [quota for folder in _cgroup_folders(cgroup_root, own_cgroups) if (quota := _quota_in(folder)) is not None]
    return min(quotas) if quotas else None


def _cgroup_folders(cgroup_root: Path, own_cgroups: Path) -> list[Path]:
    """The folders of this process's CPU cgroups and of every group above them, v2 and v1."""
    try:
        lines = own_cgroups.read_text().splitlines()
    except OSError:
        lines = []
    folders = []
    for line in lines:  # "0::/user.slice/x" (v2) or "4:cpu,cpuacct:/docker/abc" (v1)
        _, controllers, group = (line.split(":", 2) + ["", ""])[:3]
        if controllers == "":
            base = cgroup_root
        elif "cpu" in controllers.split(","):
            base = cgroup_root / controllers if (cgroup_root / controllers).is_dir() else cgroup_root / "cpu"
        else:
            continue
        folder = base / group.strip("/")
        folders.extend([folder, *[parent for parent in folder.parents if parent.is_relative_to(base)]])
    return folders


def _quota_in(folder: Path) -> float | None:
    try:
        if (folder / "cpu.max").exists():
            quota, period = (folder / "cpu.max").read_text().split()[:2]
            return None if quota == "max" else int(quota) / int(period)
        if (folder / "cpu.cfs_quota_us").exists():
            quota = int((folder / "cpu.cfs_quota_us").read_text())
            period = int((folder / "cpu.cfs_period_us").read_text())
            return None if quota <= 0 else quota / period
    except (OSError, ValueError, ZeroDivisionError):
        return None
    return None
