"""Sharding (--shard K/N), xpuperf merge, and docs/scale-out.md's recipes: the
Slurm array script and the Kubernetes Indexed Job rendered and their shards run
here as separate pytest processes, merged, and checked item by item against
one session of the same selection."""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests_selftest.sessions import ROOT, conv_zoo
from xpuperf import shards
from xpuperf.report import merge
from xpuperf.report.cli import main as xpuperf
from xpuperf.report.merge import MergeError, ShardRun
from xpuperf.shard_plugin import load_durations

RECIPES = ROOT / "docs" / "scale-out"
MODELS = ("conv-a", "conv-b")
# The compile items only: one per model, each its own group, one group a shard.
SELECTION = ("-m", "compiler_coverage")


# ----------------------------------------------------------------- the split, pure

def test_units_keep_a_group_whole_in_collection_order():
    items = [("a1", "A"), ("b1", "B"), ("a2", "A"), ("x", None), ("b2", "B")]
    assert shards.units(items) == [["a1", "a2"], ["b1", "b2"], ["x"]]


def test_every_item_in_exactly_one_shard_and_groups_never_split():
    items = [(f"{g}{i}", g) for g in "ABCDEFG" for i in range(1 + "ABCDEFG".index(g) % 3)]
    chosen = [shards.select(items, shards.Shard(k, 3)) for k in (1, 2, 3)]
    assert sorted(i for c in chosen for i in c) == sorted(i for i, _ in items)
    for group in "ABCDEFG":
        members = {i for i, g in items if g == group}
        assert sum(bool(members & c) for c in chosen) == 1, group
    # By item count: 12 items over 3 shards, within one group (3 items) of even.
    sizes = [len(c) for c in chosen]
    assert max(sizes) - min(sizes) <= 3, sizes


def test_durations_balance_the_shards_where_counts_would_not():
    items = [("long", "L"), ("s1", "S1"), ("s2", "S2"), ("s3", "S3")]
    durations = {"long": 30.0, "s1": 10.0, "s2": 10.0, "s3": 10.0}
    by_count = [shards.select(items, shards.Shard(k, 2)) for k in (1, 2)]
    by_time = [shards.select(items, shards.Shard(k, 2), durations) for k in (1, 2)]
    assert sorted(map(len, by_count)) == [2, 2]
    assert {"long"} in by_time and {"s1", "s2", "s3"} in by_time
    # An item the earlier run lacked weighs the median of those it had.
    assert shards.plan([["new"], ["long"]], 2, {"long": 30.0, "s": 1.0, "t": 2.0}) == [2, 1]


def test_shard_spec_is_checked():
    assert shards.parse(" 2/4 ") == shards.Shard(2, 4)
    for bad in ("0/4", "5/4", "2", "a/b", "1/0"):
        with pytest.raises(shards.ShardError, match="--shard"):
            shards.parse(bad)


def test_shard_durations_come_from_a_report_folder_or_say_what_to_give(tmp_path):
    (tmp_path / "records.json").write_text(json.dumps({"records": [
        {"item": "a", "duration_s": 2.5}, {"item": "b"}, {"item": "c", "duration_s": True}]}))
    assert load_durations(tmp_path) == load_durations(tmp_path / "records.json") == {"a": 2.5}
    with pytest.raises(pytest.UsageError, match="cannot read .*give the report folder"):
        load_durations(tmp_path / "nowhere")
    (tmp_path / "records.json").write_text("[]")
    with pytest.raises(pytest.UsageError, match="no 'records' list"):
        load_durations(tmp_path)


# ----------------------------------------------------------------- merge's checks, pure

def _shard(source: str, spec: str, items: list[str], **manifest) -> ShardRun:
    base = {"shard": spec, "commit": "c1", "tier": "smoke", "hardware": "CPU",
            "zoo_version": "zoo.yaml sha256:1", "finished": True, "exit_status": 0,
            "selection": {"items": len(items), "deselected": 4 - len(items)}}
    return ShardRun(source, {**base, **manifest},
                    [{"item": i, "host": source, "outcome": "passed"} for i in items], {})


def test_merge_names_a_missing_and_a_doubled_shard_by_number():
    with pytest.raises(MergeError, match=r"shard 3 of 3 missing"):
        merge.check([_shard("a", "1/3", ["x"]), _shard("b", "2/3", ["y"])])
    with pytest.raises(MergeError, match=r"shard 2 of 3 given 2 times \(b, c\).*shard 3 of 3"):
        merge.check([_shard("a", "1/3", ["x"]), _shard("b", "2/3", ["y"]),
                     _shard("c", "2/3", ["y"])])
    with pytest.raises(MergeError, match="different splits"):
        merge.check([_shard("a", "1/2", ["x"]), _shard("b", "2/3", ["y"])])
    with pytest.raises(MergeError, match="not a shard"):
        _shard("a", "", ["x"])


@pytest.mark.parametrize("key, name", merge.SAME)
def test_merge_refuses_shards_that_differ_naming_the_difference(key, name):
    runs = [_shard("a", "1/2", ["x"]), _shard("b", "2/2", ["y"], **{key: "other"})]
    with pytest.raises(MergeError, match=rf"{name} differs: .*\(a\); other \(b\).*--allow-mixed"):
        merge.check(runs)
    assert merge.check(runs, allow_mixed=True) == [merge.differences(runs)[0]]
    merged = merge.records(runs)
    assert merge.manifest(runs, merged, merge.differences(runs))["mixed"].startswith(name)


def test_merged_manifest_sums_the_selection_and_says_where_it_ran():
    runs = [_shard("h2", "2/2", ["y", "z"]), _shard("h1", "1/2", ["x"])]
    merged = merge.records(runs)
    assert [r["item"] for r in merged] == ["x", "y", "z"]  # shard order
    doc = merge.manifest(runs, merged, [])
    assert doc["selection"]["items"] == 3 and doc["selection"]["deselected"] == 1
    assert doc["finished"] and [m["shard"] for m in doc["merged_from"]] == ["1/2", "2/2"]
    assert {k: v for k, v in merge.info(runs, merged, []).items() if k != "run"} == {
        "hosts": ["h1", "h2"], "nodes": 2, "accelerators_per_node": 1, "shards": 2}
    with pytest.raises(MergeError, match="item y is in two shards"):
        merge.check([_shard("a", "1/2", ["x", "y"]), _shard("b", "2/2", ["y"])])


# ----------------------------------------------------------------- the recipes, end to end

@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """One session of the selection, then the Slurm array's shards and the
    Indexed Job's, each pair run at once as separate processes, and each pair
    merged: name -> report folder."""
    folder = conv_zoo(tmp_path_factory.mktemp("scale"), dict.fromkeys(MODELS, ""))
    shim = folder / "bin"
    shim.mkdir()
    # `pytest` on the recipes' PATH: this interpreter over the tiny zoo, the selection.
    extra = ["-p", "no:cacheprovider", "-q", "--zoo", str(folder / "zoo.yaml"),
             "--cache-dir", str(folder / "cache"), *SELECTION]
    (shim / "pytest").write_text(
        f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m pytest "$@" {shlex.join(extra)}\n')
    (shim / "pytest").chmod(0o755)
    env = {**os.environ, "PATH": f"{shim}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    single = subprocess.run(["pytest", "suites", "--hardware", "CPU", "--report-dir",
                             str(folder / "single")], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=300)
    assert single.returncode == 0, single.stdout[-3000:] + single.stderr[-3000:]
    out = {"single": folder / "single", "folder": folder}
    for name, commands in (("slurm", _slurm(folder / "slurm", folder / "single")),
                           ("k8s", _indexed_job(folder / "k8s"))):
        started = [subprocess.Popen(c, cwd=ROOT, env={**env, **e}, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True) for c, e in commands]
        for proc in started:
            text = proc.communicate(timeout=300)[0]
            assert proc.returncode == 0, text[-3000:]
        shard_dirs = sorted((folder / name).glob("shard-*"))
        assert len(shard_dirs) == 2, shard_dirs
        assert xpuperf(["merge", *map(str, shard_dirs), "-o", str(folder / f"{name}-merged")]) == 0
        out[name] = folder / f"{name}-merged"
    return out


def _slurm(reports: Path, durations: Path) -> list[tuple[list[str], dict[str, str]]]:
    """The sbatch script's array tasks as Slurm starts them (its #SBATCH lines
    checked), two tasks, balanced by the single session's durations."""
    script = RECIPES / "slurm-array.sbatch"
    directives = re.findall(r"^#SBATCH (\S+)", script.read_text(), re.M)
    array = next(d for d in directives if d.startswith("--array="))
    assert re.fullmatch(r"--array=1-\d+", array), f"{script}: the array must count from 1"
    return [(["bash", str(script), "--shard-durations", str(durations)],
             {"SLURM_ARRAY_TASK_ID": str(k), "SLURM_ARRAY_TASK_COUNT": "2",
              "SLURM_ARRAY_JOB_ID": "7", "HARDWARE": "CPU", "REPORTS": str(reports)})
            for k in (1, 2)]


def _indexed_job(reports: Path) -> list[tuple[list[str], dict[str, str]]]:
    """The Job's pods as Kubernetes starts them: its container's command and
    environment, JOB_COMPLETION_INDEX 0 and 1, two shards instead of its four."""
    job = yaml.safe_load((RECIPES / "indexed-job.yaml").read_text())
    spec = job["spec"]
    assert (job["kind"], spec["completionMode"]) == ("Job", "Indexed")
    container = spec["template"]["spec"]["containers"][0]
    env = {e["name"]: str(e["value"]) for e in container["env"]}
    assert spec["completions"] == spec["parallelism"] == int(env["SHARDS"])
    env.update(SHARDS="2", HARDWARE="CPU", REPORTS=str(reports))
    return [([*container["command"], *container["args"]], {**env, "JOB_COMPLETION_INDEX": str(i)})
            for i in (0, 1)]


def _items(folder: Path) -> dict[str, str]:
    doc = json.loads((folder / "records.json").read_text())
    return {r["item"]: r["outcome"] for r in doc["records"]}


def _results(folder: Path) -> dict[str, tuple]:
    out = {}
    for path in folder.glob("*/result-*.json"):
        doc = json.loads(path.read_text())
        out[str(path.relative_to(folder))] = (doc["Status"], doc["Suites"], doc["Host"],
                                              doc["Nodes"], doc["Accelerators per Node"])
    return out


@pytest.mark.parametrize("recipe", ["slurm", "k8s"])
def test_merged_shards_equal_one_session_item_by_item(runs, recipe):
    single, merged = runs["single"], runs[recipe]
    assert len(_items(single)) == len(MODELS)
    assert _items(merged) == _items(single)
    assert _results(merged) == _results(single)
    manifest = json.loads((merged / "session.json").read_text())
    assert manifest["finished"] and manifest["selection"]["items"] == len(MODELS)
    assert [m["shard"] for m in manifest["merged_from"]] == ["1/2", "2/2"]
    assert (merged / "report.html").read_text().count("conv-") >= len(MODELS)
    # Each shard ran part of it, whole groups, and said which shard it was.
    parts = [_items(p) for p in sorted((runs["folder"] / recipe).glob("shard-*"))]
    assert all(parts) and sum(map(len, parts)) == len(MODELS)


def test_merge_refuses_a_shard_of_another_zoo(runs, tmp_path, capsys):
    other = tmp_path / "other"
    slurm = runs["folder"] / "slurm"
    other.mkdir()
    for name in ("records.json", "session.json"):
        (other / name).write_text((slurm / "shard-2" / name).read_text())
    manifest = json.loads((other / "session.json").read_text())
    (other / "session.json").write_text(json.dumps({**manifest, "zoo_version": "zoo.yaml x"}))
    with pytest.raises(SystemExit):
        xpuperf(["merge", str(slurm / "shard-1"), str(other), "-o", str(tmp_path / "m")])
    assert f"zoo digest differs: " in capsys.readouterr().err
    assert xpuperf(["merge", str(slurm / "shard-1"), str(other), "-o", str(tmp_path / "m"),
                    "--allow-mixed"]) == 0
    assert "zoo digest differs" in json.loads((tmp_path / "m" / "session.json").read_text())[
        "mixed"]
