"""xpuperf's default --benchmark-json takes both ways pytest-benchmark writes it,
whichever version is installed (.ci/floors runs the sessions under the lowest)."""
import json

from xpuperf.plugin import BenchmarkJson


def test_written_as_an_open_file_before_pytest_benchmark_5_3(tmp_path):
    target = BenchmarkJson(tmp_path / "benchmark.json")
    assert not target.path.exists()  # nothing until pytest-benchmark writes
    with target as fh:  # 5.1 and 5.2: argparse.FileType('wb'), entered by save_json
        fh.write(b'{"benchmarks": [1]}')
    assert json.loads(target.path.read_text()) == {"benchmarks": [1]}


def test_written_as_a_path_from_pytest_benchmark_5_3(tmp_path):
    target = BenchmarkJson(tmp_path / "benchmark.json")
    with open(target, mode="wb") as fh:  # 5.3: a Path, opened by save_json
        fh.write(b'{"benchmarks": [2]}')
    assert json.loads(target.path.read_text()) == {"benchmarks": [2]}
    assert str(target) == str(tmp_path / "benchmark.json")  # as its log line names it
