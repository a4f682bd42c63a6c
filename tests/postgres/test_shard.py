from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from flux0sync.config import ConfigError, load_config
from flux0sync.shard import MAX_SHARDS, Shard, parse_shard, shard_of

from tests.conftest import subprocess_env


def test_parse_accepts_i_of_n_and_rejects_everything_else() -> None:
    assert parse_shard("0/1") == Shard(0, 1)
    assert parse_shard(" 3/4 ") == Shard(3, 4)
    assert str(parse_shard("2/8")) == "2/8"
    for bad in (
        "",
        "4/4",
        "5/4",
        "0/0",
        "-1/4",
        "1/-4",
        "a/4",
        "1/4/2",
        "1",
        "1:4",
        "١/٤",
        f"0/{MAX_SHARDS + 1}",
        "0/99999999999",
    ):
        with pytest.raises(ValueError):
            parse_shard(bad)


def test_every_session_has_exactly_one_owner_and_the_split_is_even() -> None:
    ids = [f"session-{i:05d}" for i in range(4000)] + ["\ud83d lone surrogate", "ümlaut", ""]
    for count in (1, 2, 4, 7):
        shards = [Shard(i, count) for i in range(count)]
        owners = Counter()
        for sid in ids:
            mine = [s.index for s in shards if s.owns(sid)]
            assert len(mine) == 1, (sid, count, mine)
            owners[mine[0]] += 1
        expected = len(ids) / count
        assert all(abs(n - expected) < expected * 0.15 for n in owners.values()), owners


def test_ownership_is_stable_across_processes_and_documented_as_blake2b() -> None:
    # fixed values: a change here would silently move sessions between daemons
    assert [shard_of(f"s{i}", 4) for i in range(8)] == [1, 0, 2, 2, 0, 0, 3, 1]
    assert shard_of("abc", 2**64) == 0xD8BB14D833D59559  # b2sum -l 64 of "abc"
    code = "from flux0sync.shard import shard_of; print(shard_of('abc', 1000))"
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=subprocess_env()
        ).stdout
        for _ in range(3)
    }
    assert outputs == {f"{shard_of('abc', 1000)}\n"}  # PYTHONHASHSEED differs per process; this must not
    b2sum = shutil.which("b2sum")
    if b2sum:
        digest = subprocess.run([b2sum, "-l", "64"], input=b"abc", capture_output=True, check=True).stdout.split()[0]
        assert int(digest, 16) % 1000 == shard_of("abc", 1000)


def test_shard_setting_from_flag_environment_and_ini(tmp_path: Path) -> None:
    ini = tmp_path / "sync.ini"
    ini.write_text("[flux0-sync]\nshard = 1/3\n")
    assert load_config({"config_file": str(ini)}, {}).shard == Shard(1, 3)
    assert load_config({"config_file": str(ini)}, {"FLUX0_SYNC_SHARD": "2/3"}).shard == Shard(2, 3)
    assert load_config({"config_file": str(ini), "shard": "0/3"}, {"FLUX0_SYNC_SHARD": "2/3"}).shard == Shard(0, 3)
    assert load_config({}, {}).shard is None
    with pytest.raises(ConfigError, match=r"shard \(FLUX0_SYNC_SHARD\).*below the count"):
        load_config({"shard": "3/3"}, {})
