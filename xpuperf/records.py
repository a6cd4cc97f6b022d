"""Result records: what one item measured, as plain JSON-able dicts.

Items attach their record with ``record_property(RECORD_KEY, record)`` so that it
travels in the test report, from pytest-xdist workers too, to the controller,
which adds the outcome and writes the reports. The plugin also attaches the
item's identity (ITEM_KEY) at collection, so an item that failed before
recording anything still has a row.

Every record has these keys::

    suite        "metric" | "numerics" | "performance" | "compile" | "audit" | "generation"
                 (and "op", "micro": records of no combination, below)
    combination  "bert-torch-squad-fp16"
    model, dataset, precision, hardware, framework, domain, family
    weights      "seeded (seed 0)" or the weights file read
    outcome      "passed" | "failed" | "skipped" | "error"    (added by the controller)
    message      the failure or skip reason, "" when passed      (added by the controller)
    expected_failure, expected_reason   an expected failure (outcome "xfailed") and its
                 reason as the backend's expected_failures.txt gives it (added by the controller)

and, by suite:

    metric       metrics {name: value}, reference_metrics {name: value}, primary,
                 drop (reference - backend, of the primary metric), max_drop,
                 seeded_weights (bool), samples, data_source ("real"|"sample"|"generated"
                 |"golden"), note (what a reader must know, e.g. that the weights are seeded)
    numerics     data_source (as metric's), outputs {output name:
                 xpuperf.conformance.numerics.DiffStats.as_dict(), i.e. mean_abs,
                 std_abs, max_abs, max_rel, mean_rel, cosine, nan, inf,
                 reference_nonfinite, size}, tolerance {key: value},
                 histogram {"edges": [...], "counts": [...]} of |diff| over all outputs
    performance  the engine's LoadResult.as_record(): scenario (as in the item id:
                 offline, single_stream, multi_stream, server, multi_client), batch_size,
                 queries, samples, wall_s, qps (samples/s), latency_ms {p50, p90, p99,
                 p99.9, mean, max}, stable, spread, max_spread, window_qps, clients, and for
                 the server target_qps, latency_bound_ms, valid; then flops_per_sample,
                 bytes_per_sample (from the graph; flops_error when it could not be
                 counted), peak_flops, peak_flops_source, mfu (a fraction), peak_rss_mb,
                 rss_method ("vmhwm"|"sampled"|"lifetime"), device_resident (where
                 Compiled.resident() is offered, xpuperf.measure.resident's figures at this
                 batch size: qps, queries, latency_ms {p50, p90, p99}, device_ms
                 {p50, p90} or None, device_qps, device_time_source, h2d_bytes_per_s,
                 d2h_bytes_per_s; else {skipped: why}), device_memory_peak_mb (the
                 device's peak allocated memory over the item, where it can say),
                 energy (the device's own counter read before and after the measured
                 run, xpuperf.measure.energy: joules, seconds, avg_watts, j_per_query,
                 j_per_sample, method; or {unavailable: why}, never an estimate),
                 precision_used,
                 distinct_batches, runs (an invalid server run is run again),
                 timed_by, and with --driver mlperf: mlperf
                 {LoadGen's summary, qps_ratio} (or {skipped: why})
    compile      status, precision_used, seconds_cold (a compile that found no cache
                 entry), seconds_cached (a load from the backend's compile cache),
                 cold_measured ("this session", "an earlier session (<when>)" or why
                 not measured), cached_note (why seconds_cached is missing), cached
                 (the model in use was loaded, not compiled), nodes_total,
                 nodes_native, coverage, fallback_ops [...], artifact_bytes, error,
                 details, flops_per_sample and bytes_per_sample at batch 1 (when it
                 compiled)
    audit        audit ("accuracy"|"caching"|"seed"), batch_size, and the verdict's
                 figures (xpuperf.measure.audits): accuracy: logged_queries, mismatched_queries,
                 max_relative_diff, rtol; caching: basis ("cpu"|"wall"),
                 median_repeated_ms, median_distinct_ms, speedup, max_speedup, rounds,
                 rounds_over_bound, rounds_needed, attempts; seed: basis,
                 median_default_ms, median_alternate_ms, change, max_change, rounds,
                 rounds_slower, rounds_faster, rounds_needed, attempts

    generation   (suites/llm; combination "<workload>-<precision>", dataset "prompts")
                 a scenario item: scenario, concurrency, prompt_tokens, output_tokens,
                 requests, generated_tokens, wall_s, ttft_ms / tpot_ms / itl_ms / e2e_ms
                 {p50, p90, p99, mean}, output_tokens_per_s, requests_per_s, goodput,
                 valid, ttft_bound_ms, tpot_bound_ms, energy (as performance's, per
                 output token and request: j_per_output_token, j_per_request);
                 offline and single_stream:
                 weight_bytes, params, kv_bytes_per_token, decode_bytes_per_step,
                 memory_bandwidth(_source), decode_bandwidth_utilization, and at
                 concurrency 1 prefill_flops, peak_flops(_source), prefill_mfu; server:
                 target_rate, rate_source, runs, max_valid_rate, search [{rate, valid,
                 ttft_p99_ms, tpot_p99_ms, output_tokens_per_s}], search_budget_s.
                 The accuracy item: cosine, max_abs, greedy_match, perplexity,
                 reference_perplexity, perplexity_ratio, greedy_tokens, text_tokens,
                 tokens, reference_tokens, tolerance

Micro-benchmark records (suites/micro_perf; xpuperf.microperf.host and .xccl)
carry suite "micro", case, op, group, precision, hardware, workload (its file)
and args; an op: device, implementation, latency(us), mem_bw(GB/s),
calc_flops_power(tflops), flops, bytes, arithmetic_intensity, timing {calls,
latency_us {p10, p50, p90, p99, mean, min}, clock, rotated_sets,
rotation_bytes, llc_bytes, cold_cache}, share_of_peak {measured, datasheet:
{share, bound, source, why}}, correctness (xpuperf.microperf.correctness),
passed, why; a collective: world_size, dist_backend, size_bytes, latency(us),
algo_bw(GB/s), bus_bw(GB/s), calls, clock, wrong_elements, passed.

With --baseline or A/B, performance records carry baseline {source, qps (the
baseline's), the speed verdict (xpuperf.gate.verdict.Verdict's fields: verdict,
change_pct, low_pct, high_pct, threshold_pct, confidence, method, baseline_n,
candidate_n, why), runs, qps_regression_pct, max_regression_pct; stored: p99_ms,
unsteady_runs; A/B: ab_baseline_qps, ab_candidate_qps}; metric records the
stored baseline holds carry baseline {source, metric, drop, max_drop}.
"""
from __future__ import annotations

import math
import numbers
import re
from typing import Any

from xpuperf.zoo import Combination

# Terminal escapes a backend's output may carry (CSI: colours, cursor moves; OSC:
# titles, links), dropped whole; then any other control character but newline
# and tab, shown as \xNN (a NUL or a lone ESC says something went wrong).
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?")
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
RECORD_KEY = "xpuperf"
ITEM_KEY = "xpuperf_item"
SUITES = ("compile", "metric", "numerics", "performance")
# Suites whose records are not of a zoo combination: onnx's op cases and the
# micro-benchmarks, each with a report of its own.
APART = ("op", "micro")


def identity(suite: str, combo: Combination, hardware: str, **extra: Any) -> dict[str, Any]:
    """The keys every record of ``combo`` carries."""
    return {
        "suite": suite,
        "combination": combo.id,
        "model": combo.model.name,
        "dataset": combo.dataset.name,
        "precision": combo.precision,
        "hardware": hardware,
        "framework": combo.model.framework,
        "domain": combo.model.domain,
        "family": combo.model.family,
        **extra,
    }


def jsonable(value: Any) -> Any:
    """``value`` with non-finite floats turned into None: JSON has no NaN, and a
    NaN must not read as a number in a report (the message says what happened)."""
    # numpy scalars pass isinstance(float) or register as numbers, but pytest-xdist's
    # wire format (execnet) takes only plain Python types: convert them all.
    if isinstance(value, (bool, str)) or value is None:
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def printable(value: Any) -> Any:
    """``value`` with every string in it (keys too) safe to print and to put in a
    page: a backend's terminal escapes and control characters would otherwise
    recolour or rewrite the terminal and land as ESC and NUL bytes in
    report.html and the JSON files."""
    if isinstance(value, str):
        text = _ESCAPES.sub("", value.replace("\r\n", "\n"))
        return _CONTROLS.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    if isinstance(value, dict):
        return {printable(k): printable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [printable(v) for v in value]
    if isinstance(value, tuple):
        return tuple(printable(v) for v in value)
    return value
