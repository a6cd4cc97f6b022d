"""Conformance: a backend's outputs judged against a reference (numerics), onnx's
per-op node cases (opconformance), and the outcomes a backend is known to have
on a host (expected)."""
