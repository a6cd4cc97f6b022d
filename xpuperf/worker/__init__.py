"""The process that hosts a backend (docs/architecture.md, "The worker process").

A backend is untrusted code: it may crash the process it runs in or never
return. The suite runs it in a worker process of its own (``process.Worker``),
whose host object (``host.GroupHost`` for a zoo model, the op-conformance host
for onnx's node cases) owns the backend, its compiled model and every timed
loop; only commands, arrays and JSON-able records cross the boundary
(``protocol``). A crash or a time limit ends the worker and becomes an error
that names the signal, the stage and the worker's last output.
"""
