"""Accuracy: the task metric against the reference's, and numeric agreement of
every output with the framework's fp32 reference."""
import pytest

from xpuperf.conformance.numerics import abs_diff_histogram, check, check_close, diff_stats

pytestmark = pytest.mark.accuracy


def test_metric(combo, xpu, dataset, reference, compiled, record):
    if dataset.primary_metric is None:
        pytest.skip(f"{combo.dataset.name} has no task metric; test_numerics covers this model")
    metrics = xpu.evaluate(combo.model, xpu.outputs(combo))
    reference_metrics = xpu.evaluate(combo.model, reference)
    primary = dataset.primary_metric
    drop = reference_metrics[primary] - metrics[primary]
    max_drop = combo.model.max_drop.get(combo.precision)
    seeded = xpu.artifact(combo.model).seeded
    record(metrics=metrics, reference_metrics=reference_metrics, primary=primary, drop=drop,
           max_drop=max_drop, seeded_weights=seeded, samples=len(dataset),
           data_source=dataset.source,
           note="seeded weights: the metric checks agreement with the reference, not model quality"
           if seeded else "")
    if max_drop is not None:
        assert drop <= max_drop, (f"{primary} dropped {drop:.3f} points "
                                  f"({reference_metrics[primary]:.3f} -> {metrics[primary]:.3f}), "
                                  f"more than the {max_drop} tolerated for {combo.precision}")


def test_numerics(combo, xpu, dataset, reference, compiled, record):
    outputs = xpu.outputs(combo)
    tolerance = combo.model.tolerances[combo.precision]
    stats = {name: diff_stats(reference[name], outputs[name]) for name in reference}
    problems = [p for name, s in stats.items() for p in check(name, s, tolerance)
                + check_close(name, reference[name], outputs[name], tolerance)]
    record(outputs={n: s.as_dict() for n, s in stats.items()}, tolerance=dict(tolerance),
           data_source=dataset.source,
           histogram=abs_diff_histogram([(reference[n], outputs[n]) for n in reference]))
    assert not problems, f"{combo.id} disagrees with the fp32 reference: " + "; ".join(problems)
