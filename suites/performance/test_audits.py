"""MLPerf LoadGen's integrity audits per combination (xpuperf.audits): the
performance figures count only if performance mode computes what accuracy mode
was judged on, and no result cache or tuning to the sample order made them.
Audits run at the largest batch size of which the dataset fills two batches."""
import pytest

from xpuperf import audits
from xpuperf.session import perf_indices

pytestmark = pytest.mark.audit

SEED = 1  # LoadGen's audits use fixed seeds too: a rerun audits the same samples


def _judge(record, verdict: audits.Verdict, batch_size: int) -> None:
    record(audit=verdict.audit, batch_size=batch_size, **verdict.figures)
    if not verdict.passed:
        pytest.fail(verdict.message, pytrace=False)


def test_audit_accuracy(combo, xpu, compiled, record):
    bs = xpu.audit_batch_size(combo.model)
    ds = xpu.dataset(combo.model)
    accuracy = xpu.outputs(combo)
    indices = perf_indices(len(ds), bs)
    queries = xpu.zoo.audits["rounds"] * xpu.zoo.audits["block"]
    logged = audits.logged_performance_run(compiled.run, [ds.feeds(i) for i in indices], bs,
                                           queries, SEED)
    pairs = [(outputs, {name: accuracy[name][indices[b]] for name in accuracy})
             for b, outputs in logged]
    _judge(record, audits.accuracy_verdict(pairs), bs)


def test_audit_caching(combo, xpu, compiled, record):
    bs = xpu.audit_batch_size(combo.model)
    ds = xpu.dataset(combo.model)
    block, rounds = xpu.zoo.audits["block"], xpu.zoo.audits["rounds"]
    per_attempt = (rounds + 1) * block  # block -1 of each side is its warm-up
    repeated_idx = (0,) * bs
    distinct = audits.distinct_index_batches(len(ds), bs, audits.ATTEMPTS * per_attempt, SEED,
                                             repeated_idx)
    if distinct is None:
        pytest.skip(f"{len(ds)} samples make fewer than {audits.ATTEMPTS * per_attempt} distinct "
                    f"batches of {bs}: a cache could hold them all")
    repeated = ds.feeds(list(repeated_idx))

    def measure(attempt: int) -> audits.Verdict:
        mine = distinct[attempt * per_attempt:(attempt + 1) * per_attempt]
        t = audits.alternating_blocks(compiled.run, {
            "repeated": lambda r: [repeated] * block,
            "distinct": lambda r: [ds.feeds(list(i)) for i in mine[(r + 1) * block:(r + 2) * block]],
        }, rounds)
        return audits.caching_verdict(t["repeated"], t["distinct"])
    _judge(record, audits.confirmed(measure), bs)


def test_audit_seed(combo, xpu, compiled, record):
    bs = xpu.audit_batch_size(combo.model)
    batches = xpu.perf_batches(combo, bs)  # the throughput items' inputs, in their order
    if len(batches) < 2:
        pytest.skip("the dataset makes one batch: there is no order to change")
    passes = xpu.zoo.audits["rounds"]  # a block is one pass over the batches

    def measure(attempt: int) -> audits.Verdict:
        alternate = audits.alternate_order(len(batches), passes + 1, SEED + attempt)
        t = audits.alternating_blocks(compiled.run, {
            "default": lambda r: batches,
            "alternate": lambda r: [batches[i] for i in alternate[r + 1]],
        }, passes)
        return audits.seed_verdict(t["default"], t["alternate"])
    _judge(record, audits.confirmed(measure), bs)
