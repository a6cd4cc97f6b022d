"""LLM serving and generation accuracy (suites/llm): the models and their facts
(models), the prompts (prompts), the harness that drives an engine and takes
every timestamp (harness), the figures (metrics) and gates (accuracy), and one
session of items tying them together (serving); the device ceilings are
xpuperf.ceilings.
The engine contract is backends/generation.py."""
