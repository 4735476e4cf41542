"""How many CPUs a run may use: affinity, capped by a cgroup v2 or v1 CPU quota, read from a made-up /sys/fs/cgroup."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from xscan.scoring.cpus import cgroup_cpu_quota, usable_cpus


def fake_cgroups(tmp_path: Path, own: str, files: dict[str, str]) -> tuple[Path, Path]:
    root = tmp_path / "cgroup"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    (tmp_path / "self-cgroup").write_text(own)
    return root, tmp_path / "self-cgroup"


@pytest.mark.parametrize(
    ("own", "files", "quota"),
    [
        ("0::/\n", {"cpu.max": "max 100000\n"}, None),  # v2, no limit
        ("0::/\n", {"cpu.max": "150000 100000\n"}, 1.5),  # v2, a container of one and a half CPUs
        (
            "0::/system.slice/xscan.service\n",
            {"system.slice/cpu.max": "100000 100000\n", "system.slice/xscan.service/cpu.max": "max 100000\n"},
            1.0,
        ),  # a parent's limit
        (
            "4:cpu,cpuacct:/docker/abc\n",
            {
                "cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "200000\n",
                "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n",
            },
            2.0,
        ),  # v1
        ("1:cpu:/\n", {"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),  # v1, no limit
        ("0::/\n", {}, None),  # no controller files
    ],
)
def test_cgroup_cpu_quota(tmp_path: Path, own: str, files: dict[str, str], quota: float | None) -> None:
    assert cgroup_cpu_quota(*fake_cgroups(tmp_path, own, files)) == quota


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="CPU affinity is Linux's")
def test_usable_cpus_is_the_affinity_capped_by_the_quota_rounded_up(tmp_path: Path) -> None:
    allowed = len(os.sched_getaffinity(0))
    assert usable_cpus(*fake_cgroups(tmp_path, "0::/\n", {"cpu.max": "max 100000\n"})) == allowed
    assert usable_cpus(*fake_cgroups(tmp_path, "0::/\n", {"cpu.max": "50000 100000\n"})) == 1
    assert usable_cpus(*fake_cgroups(tmp_path, "0::/\n", {"cpu.max": f"{100000 * allowed + 1} 100000\n"})) == allowed
