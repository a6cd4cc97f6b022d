"""Expected failures (xpuperf.conformance.expected): the file format, its rewrite from a run,
and whole sessions gating on change in both directions, for zoo items and
per-op items."""
import json
import re
from pathlib import Path

import pytest

from tests_selftest.sessions import SHARED_CACHE, run_session, tiny_zoo
from xpuperf.conformance import expected

COMPILE = "test_compile[tiny-bert-fake-fp32]"
METRIC = "test_metric[tiny-bert-fake-fp32]"  # errors: it needs the compiled model
NUMERICS = "test_numerics[tiny-bert-fake-fp32]"
THROUGHPUT = "test_throughput[tiny-bert-fake-fp32-bs2-offline]"


def test_parse_reads_names_and_reasons_and_names_a_bad_line() -> None:
    text = "# header\n\ntest_op[abs]  # mismatch: off\ntest_compile[a-b-fp32]\n"
    assert expected.parse(text) == {"test_op[abs]": expected.Listed("mismatch: off"),
                                    "test_compile[a-b-fp32]": expected.Listed("")}
    with pytest.raises(expected.ExpectedFileError, match=r"f.txt:2: 'test_op abs' is not an item"):
        expected.parse("test_op[abs]\ntest_op abs\n", "f.txt")
    with pytest.raises(expected.ExpectedFileError, match=r"f.txt:2: test_op\[abs\] is listed twice"):
        expected.parse("test_op[abs]\ntest_op[abs]  # again\n", "f.txt")
    assert expected.load(Path("/nonexistent/expected_failures.txt")) == {}


def test_updated_drops_passes_adds_failures_and_keeps_the_rest() -> None:
    old = ("# known failures\n"
           "test_op[a]  # conversion: old reason\n"
           "test_op[b]  # fixed since\n"
           "test_op[c]  # did not run\n")
    new = expected.updated(old, {"test_op[a]": "mismatch:   new\nreason", "test_op[b]": None,
                                 "test_op[d]": "run: crashed", "test_op[e]": None}, "unused")
    assert new == ("# known failures\n"
                   "test_op[a]  # mismatch: new reason\n"
                   "test_op[c]  # did not run\n"
                   "test_op[d]  # run: crashed\n")
    assert expected.updated("", {"test_op[x]": "run: boom"}, "line one\n") == \
        "# line one\ntest_op[x]  # run: boom\n"


def test_a_condition_keys_a_line_on_the_backends_capabilities() -> None:
    text = ("test_op[a]  if not bf16  # no native bf16\n"
            "test_op[b]  if bf16 and not amx  # bf16 without AMX\n"
            "test_op[c]  # everywhere\n")
    assert expected.parse(text, "f.txt", {"bf16": False, "amx": False}) == {
        "test_op[a]": ("no native bf16", True), "test_op[c]": ("everywhere", True)}
    assert expected.parse(text, "f.txt", {"bf16": True, "amx": False}) == {
        "test_op[b]": ("bf16 without AMX", True), "test_op[c]": ("everywhere", True)}
    with pytest.raises(expected.ExpectedFileError,
                       match=r"f.txt:2: 'if bf16 and not amx': 'amx' is not a capability of "
                             r"this backend; it knows: bf16"):
        expected.parse(text, "f.txt", {"bf16": True})
    with pytest.raises(expected.ExpectedFileError, match=r"f.txt:1: .* it knows: none"):
        expected.parse(text, "f.txt")


def test_a_sometimes_line_is_not_strict_and_survives_a_pass() -> None:
    text = ("test_op[a]  sometimes if capped  # crashes on some hosts\n"
            "test_op[b]  sometimes  # crashes now and then\n")
    assert expected.parse(text, "f.txt", {"capped": True}) == {
        "test_op[a]": ("crashes on some hosts", False), "test_op[b]": ("crashes now and then", False)}
    assert expected.parse(text, "f.txt", {"capped": False}) == {
        "test_op[b]": ("crashes now and then", False)}
    new = expected.updated(text, {"test_op[a]": None, "test_op[b]": "run: died"}, "unused",
                           {"capped": True})
    assert new == ("test_op[a]  sometimes if capped  # crashes on some hosts\n"
                   "test_op[b]  sometimes  # run: died\n")


def test_updated_keeps_the_lines_of_other_hosts() -> None:
    old = ("test_op[a]  if not bf16  # holds here, passed\n"
           "test_op[b]  if not bf16  # holds here, failed\n"
           "test_op[c]  if bf16  # another host's, passed here\n"
           "test_op[d]  if bf16  # another host's, failed here too\n")
    new = expected.updated(old, {"test_op[a]": None, "test_op[b]": "mismatch: new",
                                 "test_op[c]": None, "test_op[d]": "run: crashed"},
                           "unused", {"bf16": False})
    assert new == ("test_op[b]  if not bf16  # mismatch: new\n"
                   "test_op[c]  if bf16  # another host's, passed here\n"
                   "test_op[d]  # run: crashed\n")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_zoo(tmp_path_factory.mktemp("expected"))


def _listed(path: Path) -> set[str]:
    return set(expected.load(path))


def test_a_session_writes_gates_on_and_rewrites_its_expected_failures(tiny: Path) -> None:
    path = tiny / "expected_failures.txt"
    no_compile = "tests_selftest.fakes:NoCompileBackend"
    common = ("--benchmark-disable", "--expected-failures", str(path))

    # A vendor starts with no file: the run fails, and writes the file from its failures.
    r = run_session(tiny, no_compile, *common, "--update-expected-failures")
    assert r.returncode == 1, r.stdout[-3000:]
    assert _listed(path) == {COMPILE, METRIC, NUMERICS, THROUGHPUT}
    assert "no kernel for op Erf" in path.read_text()  # each line says why

    # With the file, the same failures are expected: the run passes, the report says so.
    r = run_session(tiny, no_compile, *common)
    assert r.returncode == 0, r.stdout[-3000:]
    assert "4 xfailed" in r.stdout
    report = json.loads((tiny / no_compile / "tiny-bert" / "result-fp32.json").read_text())
    assert report["Status"] == "xfailed" and report["Suites"]["compile"] == "xfailed"
    # The known reason, from the file, in the result, the terminal table and the page.
    assert "no kernel for op Erf" in report["Expected Failure Reasons"]["compile"][0]
    assert re.search(r"    ~ expected: .*no kernel for op Erf", r.stdout), r.stdout[-3000:]
    html = (tiny / no_compile / "report.html").read_text()
    assert re.search(r'class="known"[^>]*>known: [^<]*no kernel for op Erf', html)

    # A backend that now passes them fails the run, saying which line to drop ...
    r = run_session(tiny, "CPU", *common)
    assert r.returncode == 1
    assert f"[XPASS(strict)] listed in {path}" in r.stdout
    assert "remove its line once it passes" in r.stdout
    # ... and the rewrite drops them.
    r = run_session(tiny, "CPU", *common, "--update-expected-failures")
    assert _listed(path) == set()


def test_a_malformed_expected_failures_file_is_a_usage_error(tiny: Path) -> None:
    path = tiny / "bad_expected.txt"
    path.write_text("test_compile[x]\nnot an item\n")
    r = run_session(tiny, "CPU", "--expected-failures", str(path))
    assert r.returncode == 4
    assert f"{path}:2: 'not an item' is not an item name" in r.stderr


def test_op_items_fail_unlisted_and_xfail_listed_with_the_category(tiny: Path) -> None:
    path = tiny / "op_expected.txt"
    path.write_text("test_op[add_bcast]  # mismatch: shifted outputs\n")
    perturbing = "tests_selftest.test_opconformance:PerturbingBackend"
    r = run_session(tiny, perturbing, "-k", "add_bcast or add_uint8", "--expected-failures",
                    str(path), "--cache-dir", str(SHARED_CACHE),
                    target="suites/compiler_coverage/test_ops.py")
    assert r.returncode == 1, r.stdout[-3000:]
    assert "1 failed" in r.stdout and "1 xfailed" in r.stdout
    assert "FAILED suites/compiler_coverage/test_ops.py::test_op[add_uint8]" in r.stdout
    assert "mismatch: Add: output 'sum'" in r.stdout
    assert f"or list this item in {path}" in r.stdout
    ops = json.loads((tiny / perturbing / "ops.json").read_text())
    assert (ops["cases"], ops["passed"], ops["expected_failures"], ops["unexpected_failures"]) == \
        (2, 0, 1, 1)
    assert ops["ops"]["Add"]["by_category"] == {"mismatch": 2}
    html = (tiny / perturbing / "report.html").read_text()
    assert "Per-op conformance" in html and "add_uint8" in html


def test_a_conditional_line_gates_only_the_hosts_it_names(
        tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same file, strict on both host profiles: 'if capped' expects the failure
    under ONEDNN_MAX_CPU_ISA and not without it, on any host."""
    path = tiny / "capped_expected.txt"
    path.write_text(f"{COMPILE}  if capped  # fails only under the cap\n")
    args = ("--benchmark-disable", "-k", "test_compile", "--expected-failures", str(path))
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    r = run_session(tiny, "tests_selftest.fakes:NoCompileBackend", *args)
    assert r.returncode == 0 and "1 xfailed" in r.stdout, r.stdout[-3000:]
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    r = run_session(tiny, "tests_selftest.fakes:NoCompileBackend", *args)
    assert r.returncode == 1 and "1 failed" in r.stdout, r.stdout[-3000:]


def test_a_sometimes_item_that_passes_does_not_fail_the_run(tiny: Path) -> None:
    """A fault no capability predicts: its pass is reported as a pass, not as a
    line to remove (its failure is an xfail as a strict line's is, above)."""
    path = tiny / "sometimes_expected.txt"
    path.write_text(f"{COMPILE}  sometimes  # crashes on some hosts\n")
    args = ("--benchmark-disable", "-k", "test_compile", "--expected-failures", str(path))
    r = run_session(tiny, "CPU", *args)
    assert r.returncode == 0 and "1 xpassed" in r.stdout, r.stdout[-3000:]
    report = json.loads((tiny / "CPU" / "tiny-bert" / "result-fp32.json").read_text())
    assert report["Suites"]["compile"] == "passed"


def test_update_refuses_to_write_into_an_installed_package(tiny: Path, tmp_path: Path) -> None:
    """A pip-installed backend's list lies in site-packages: the rewrite would be
    lost on the next install, so the run is refused with --expected-failures as
    the fix, and nothing is written there."""
    import os
    import subprocess
    import sys
    import sysconfig

    from tests_selftest.sessions import session_command

    # pip install --user's layout under PYTHONUSERBASE, importable through PYTHONPATH.
    site_packages = Path(sysconfig.get_path("purelib", f"{os.name}_user",
                                            {"userbase": str(tmp_path)}))
    (site_packages / "vendor_backend").mkdir(parents=True)
    (site_packages / "vendor_backend" / "__init__.py").write_text(
        "from backends.cpu import CpuBackend as VendorBackend\n")
    env = {**os.environ, "PYTHONUSERBASE": str(tmp_path),
           "PYTHONPATH": os.pathsep.join([str(site_packages), *sys.path])}
    command = session_command(tiny, "vendor_backend:VendorBackend", "--update-expected-failures",
                              "--collect-only")
    r = subprocess.run(command, cwd=Path(__file__).resolve().parents[1], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 4, r.stdout + r.stderr
    assert (f"--update-expected-failures: the backend's list of known failures is "
            f"{site_packages / 'vendor_backend' / expected.FILE_NAME}, inside the installed "
            f"packages") in r.stderr
    assert "--expected-failures PATH" in r.stderr
    assert not (site_packages / "vendor_backend" / expected.FILE_NAME).exists()
