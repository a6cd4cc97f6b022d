"""The backend contract kit: what any backend must do, checked on tiny ONNX models
the kit writes itself. It ships in the package, so it runs without a checkout:

    python -m xpuperf.contract_kit --hardware NAME [--backend-option KEY=VALUE ...]

which is ``pytest -p xpuperf.contract_kit.plugin --pyargs xpuperf.contract_kit ...``:
plugin.py is the kit's pytest plugin (its fixtures and parameters; it loads
xpuperf.plugin, which gives --hardware), test_contract.py its items, models.py the
tiny models.

NAME is whatever --hardware takes: a package under backends/, an entry point in
group ``xpuperf.backends``, or ``package.module:Class``. The kit drives the
backend's two classes directly, in this process (not through the suite's worker):
it tests the backend, not the harness. Every declared precision is a parameter.
"""
