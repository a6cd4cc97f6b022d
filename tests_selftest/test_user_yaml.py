"""YAML a user hands xpuperf (a zoo file, --backend-config) is read by one loader
that bounds alias expansion: an alias bomb is refused at once with file:line,
where yaml's own safe loader would expand it until the host runs out of memory."""
from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from tests_selftest.test_zoo import GOOD
from xpuperf import safe_yaml
from xpuperf.options import backend_options
from xpuperf.zoo import ZooError, parse_zoo


def bomb(levels: int, key: str = "models") -> str:
    """A "billion laughs": each level is ten aliases of the one below, so the
    last stands for 10**levels nodes in a few hundred bytes."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, levels)]
    return "\n".join(lines) + f"\n{key}: {{m: {{family: *a{levels - 1}}}}}\n"


def test_an_alias_bomb_in_a_zoo_is_refused_at_once_with_the_line_of_the_alias():
    # Six levels (a million nodes, 361 bytes) took 4 s before its "unknown field"
    # error; nine (538 bytes) ended in MemoryError. Both now stop at the fourth line.
    for levels in (6, 9):
        start = time.process_time()
        with pytest.raises(ZooError) as e:
            parse_zoo(bomb(levels))
        assert time.process_time() - start < 1.0, "the aliases were expanded"
        assert str(e.value).startswith("zoo.yaml:5: alias *a3 makes the aliases stand for more "
                                       "than 100,000 nodes"), e.value


def test_a_recursive_alias_is_refused_with_its_line():
    with pytest.raises(ZooError, match=r"^zoo\.yaml:3: alias \*loop is inside its own anchor"):
        parse_zoo("models:\n  m: &loop\n    family: *loop\n")


def test_the_shipped_zoos_anchors_stay_within_the_bound():
    zoo = parse_zoo(GOOD.replace("  m-torch:\n", "  m-torch: &m\n")
                    + "  m2-torch: {<<: *m, family: gpt}\n")
    assert [m.family for m in zoo.models] == ["bert", "gpt"]


def test_an_alias_bomb_in_backend_config_is_a_usage_error_with_its_line(tmp_path):
    path = tmp_path / "backends.yaml"
    path.write_text(bomb(9, key="CPU"))
    config = SimpleNamespace(getoption={"backend_config": str(path), "backend_option": []}.get)
    with pytest.raises(pytest.UsageError) as e:
        backend_options(config, "CPU")
    assert str(e.value).startswith(f"--backend-config {path}:5: alias *a3"), e.value


def test_invalid_yaml_names_file_and_line():
    with pytest.raises(safe_yaml.YamlError, match=r"^opts\.yaml:2: not valid YAML"):
        safe_yaml.load("a: [1,\nb: }", "opts.yaml")
