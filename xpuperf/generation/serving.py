"""One session of LLM items: the backend's engines, the fp32 references, and each
scenario and accuracy check turned into a record's figures and its problems.

The figures come from xpuperf.generation.metrics over the harness's timestamps;
nothing here trusts a number the engine reports.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np

from backends.base import Backend
from backends.generation import GenerationEngine, GenerationUnsupported, Request
from xpuperf.generation import accuracy, device, endpoint, harness, prompts
from xpuperf.generation.metrics import Bounds, decode_bandwidth_utilization, prefill_mfu
from xpuperf.generation.models import LMArtifact
from xpuperf.generation.settings import Settings, load_trace
from xpuperf.measure import energy
from xpuperf.zoo.generation import GenerationSpec


def describe(engine: GenerationEngine) -> str:
    """Which engine served (and why, where it is a fallback): its ``description``,
    else its class's name."""
    return getattr(engine, "description", None) or type(engine).__qualname__


class LLMSession:
    """Holds one model and one open engine at a time (items of a workload and
    precision run together), and what outlives them: the references, the
    offline capacity the server loads a fraction of, the measured ceilings.
    ``build_on``: where the models are built (LMArtifact), for a benchmark of a big
    model; the accuracy gates then have no reference. ``ceilings``: those already
    measured (``self.ceilings`` of an earlier session), not measured again.
    ``settings``: an OpenAI-compatible server to measure instead of the backend's
    engine (then no model is built here), SLOs, arrivals, percentiles."""

    def __init__(self, backend: Backend, options: Mapping[str, str],
                 build_on: tuple[str, str] | None = None,
                 ceilings: Mapping[str, device.Ceiling] | None = None,
                 settings: Settings | None = None):
        self.backend, self.options, self.build_on = backend, dict(options), build_on
        self.settings = settings or Settings()
        self._tokenizer = endpoint.Tokenizer(self.settings.tokenizer or "")
        self._prompts: dict[tuple[str, int, int], Any] = {}  # ids, or a server's text
        self._artifact: LMArtifact | None = None
        self._engine: tuple[str, GenerationEngine] | None = None
        self._references: dict[str, dict[str, Any]] = {}
        self._capacity: dict[str, float] = {}
        self.ceilings: dict[str, device.Ceiling] = dict(ceilings or {})
        self._meter: energy.Meter | None = None

    # ------------------------------------------------------------------ lifetime
    def artifact(self, spec: GenerationSpec) -> LMArtifact:
        if self._artifact is None or self._artifact.name != spec.name:
            self._artifact = None  # the old model's memory goes before the new one's
            self._artifact = LMArtifact(spec.name, spec.builder, spec.config, spec.seed,
                                        self.build_on, spec.tensor_parallel)
        return self._artifact

    def engine(self, spec: GenerationSpec, precision: str) -> GenerationEngine:
        """The backend's engine for (workload, precision), warmed up alone and at
        the largest concurrency (first calls of a shape are slow: kernel choice,
        allocation); raises GenerationUnsupported when the backend has none for it."""
        key = spec.combo_id(precision)
        if self._engine is None or self._engine[0] != key:
            self.close()
            served = self.settings.endpoint
            engine = endpoint.EndpointEngine(served, self._tokenizer) if served else \
                self.backend.generation_engine(self.artifact(spec), precision, self.options)
            if not served and engine.tensor_parallel != spec.tensor_parallel:
                engine.close()
                raise GenerationUnsupported(
                    f"{spec.name} is split over tensor_parallel={spec.tensor_parallel} ranks; "
                    f"this engine ({describe(engine)}) runs on {engine.tensor_parallel}")
            self._engine = (key, engine)
            c = max(spec.concurrency)
            for count in (1, c):
                harness.closed_loop(engine, self._requests(spec, count), count, spec.timeout_s)
        return self._engine[1]

    def close(self) -> None:
        if self._engine is not None:
            _, engine = self._engine
            self._engine = None
            engine.close()
        if self._meter is not None:
            self._meter.close()
            self._meter = None

    # ------------------------------------------------------------------ scenarios
    def run_scenario(self, spec: GenerationSpec, precision: str, scenario: str,
                     concurrency: int | None) -> tuple[dict[str, Any], list[str]]:
        """The record fields of one scenario and why it fails ([] when it passes)."""
        engine = self.engine(spec, precision)
        slo = self.settings.slo
        bounds = Bounds(slo.get("ttft_ms", spec.server.ttft_bound_ms),
                        slo.get("tpot_ms", spec.server.tpot_bound_ms))
        fields: dict[str, Any] = {"scenario": scenario, "engine": describe(engine),
                                  "prompt_tokens": spec.prompt_tokens,
                                  "output_tokens": spec.output_tokens,
                                  "ttft_bound_ms": bounds.ttft_ms, "tpot_bound_ms": bounds.tpot_ms,
                                  "bounds_source": "--llm-slo" if slo else "zoo.yaml"}
        if self.settings.endpoint:
            fields.update(endpoint=self.settings.endpoint.url,
                          served_model=self.settings.endpoint.model,
                          prompt_tokenizer=self.settings.tokenizer)
        if scenario == "server":
            return self._server(spec, precision, engine, bounds, fields)
        c = 1 if scenario == "single_stream" else concurrency or 1
        fig = self._measured(lambda: harness.closed_loop(
            engine, self._requests(spec, spec.requests), c, spec.timeout_s), bounds)
        if scenario == "offline" and c == max(spec.concurrency):
            self._capacity[spec.combo_id(precision)] = fig["requests_per_s"]
        fields.update(concurrency=c, **fig, **self._utilization(spec, precision, fig, c))
        return fields, []

    def _server(self, spec: GenerationSpec, precision: str, engine: GenerationEngine,
                bounds: Bounds, fields: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        s = spec.server
        trace = self.settings.trace_path
        if trace:
            return self._replay(spec, engine, bounds, fields, trace)
        if s.rate is not None:
            rate, fields["rate_source"] = s.rate, "zoo.yaml"
        else:
            rate = s.load * self._offline_capacity(spec, precision, engine, bounds)
            fields["rate_source"] = f"{s.load:g} x the offline requests/s at concurrency " \
                                    f"{max(spec.concurrency)}"
        requests = self._requests(spec, spec.requests)
        burst = self.settings.burstiness
        fields["arrivals"] = "poisson" if burst == 1 else f"gamma (shape {burst:g})"

        def arrivals(r: float) -> Callable[[], Sequence[Any]]:
            return lambda: harness.at_times(
                engine, requests, harness.arrivals_ns(len(requests), r, spec.seed, burst),
                spec.timeout_s)

        def run_at(r: float) -> dict[str, Any]:  # a search trial: no energy figure
            return harness.run_figures(arrivals(r)(), bounds, self.settings.percentiles)
        fig, runs = self._measured(arrivals(rate), bounds), 1
        if not fig["valid"]:  # one stall of a shared machine backs up every request behind it
            fig, runs = self._measured(arrivals(rate), bounds), 2
        best, trials = harness.search_rate(run_at, rate, s.search_s, s.max_trials)
        fields.update(target_rate=rate, runs=runs, **fig, max_valid_rate=best, search=trials,
                      search_budget_s=s.search_s)
        return fields, self._verdict(fig, bounds, f"server at {rate:.3g} requests/s", runs)

    def _replay(self, spec: GenerationSpec, engine: GenerationEngine, bounds: Bounds,
                fields: dict[str, Any], path: str) -> tuple[dict[str, Any], list[str]]:
        """The trace's requests, each of its sizes, at its times (no rate search)."""
        lines = load_trace(path)
        requests = [self._request(spec, i, r.input_tokens, r.output_tokens)
                    for i, r in enumerate(lines)]
        offsets = [(r.arrival_s - lines[0].arrival_s) * 1e9 for r in lines]
        fig = self._measured(lambda: harness.at_times(engine, requests, offsets, spec.timeout_s),
                             bounds)
        fields.update(arrivals=f"trace {path}", prompt_tokens=None, output_tokens=None,
                      prompt_tokens_total=sum(r.input_tokens for r in lines), **fig)
        return fields, self._verdict(fig, bounds, f"trace {path}", 1)

    @staticmethod
    def _verdict(fig: Mapping[str, Any], bounds: Bounds, what: str, runs: int) -> list[str]:
        problems = []
        if fig["ttft_ms"]["p99"] > bounds.ttft_ms:
            problems.append(f"TTFT p99 {fig['ttft_ms']['p99']:.1f} ms > {bounds.ttft_ms:g} ms")
        if fig["tpot_ms"] and fig["tpot_ms"]["p99"] > bounds.tpot_ms:
            problems.append(f"TPOT p99 {fig['tpot_ms']['p99']:.1f} ms > {bounds.tpot_ms:g} ms")
        if problems:
            problems = [f"{what} is invalid ({runs} runs): " + "; ".join(problems)]
        return problems

    def _measured(self, run: Callable[[], Sequence[Any]], bounds: Bounds) -> dict[str, Any]:
        """The figures of ``run()`` (the harness's sinks), with the device's energy
        over it (xpuperf.measure.energy): per output token and per request; for a
        server, where its token counts came from and the requests that ended short."""
        if self.settings.endpoint:  # the server's device is not this process's to meter
            counts = self._engine[1].token_counts  # where the run's token counts came from
            counts.clear()
            sinks = run()
            used = energy.unavailable("a server's energy is not metered by its client")
            return {**harness.run_figures(sinks, bounds, self.settings.percentiles),
                    "energy": used, "short_requests": harness.short(sinks),
                    "token_count_source": dict(counts)}
        if self._meter is None:
            self._meter = energy.Meter.open(self.backend, self.options)
        window = self._meter.window()
        window.start()
        sinks = run()
        used = window.stop(output_token=harness.generated(sinks), request=len(sinks))
        return {**harness.run_figures(sinks, bounds, self.settings.percentiles), "energy": used}

    def _offline_capacity(self, spec: GenerationSpec, precision: str, engine: GenerationEngine,
                          bounds: Bounds) -> float:
        """Requests/s offline at the largest concurrency: the offline item's, else run now."""
        key = spec.combo_id(precision)
        if key not in self._capacity:
            fig = harness.run_figures(harness.closed_loop(
                engine, self._requests(spec, spec.requests), max(spec.concurrency),
                spec.timeout_s), bounds)
            self._capacity[key] = fig["requests_per_s"]
        return self._capacity[key]

    def _utilization(self, spec: GenerationSpec, precision: str, fig: Mapping[str, Any],
                     concurrency: int) -> dict[str, Any]:
        """Prefill MFU (a lone request's TTFT is its prefill) and decode bandwidth
        utilization (a step reads the weights once and every sequence's KV cache,
        at its mean length over the decode). None for a server: its device and
        model are not this process's."""
        if self.settings.endpoint:
            return {}
        facts = self.artifact(spec).facts()
        info = self.backend.info()
        where = self.engine(spec, precision).device
        bandwidth = self._ceiling(f"bandwidth-{where}",
                                  lambda: device.memory_bandwidth(info, where))
        peak = self._ceiling(f"flops-{precision}-{where}",
                             lambda: device.peak_flops(info, precision, where))
        context = spec.prompt_tokens + spec.output_tokens / 2
        step_bytes = facts.weight_bytes(precision) + \
            concurrency * context * facts.kv_bytes_per_token(precision)
        out: dict[str, Any] = {
            "weight_bytes": facts.weight_bytes(precision), "params": facts.params,
            "kv_bytes_per_token": facts.kv_bytes_per_token(precision),
            "decode_bytes_per_step": step_bytes, "memory_bandwidth": bandwidth.value,
            "memory_bandwidth_source": bandwidth.source,
            "decode_bandwidth_utilization": decode_bandwidth_utilization(
                step_bytes, fig["tpot_ms"]["p50"], bandwidth.value) if fig["tpot_ms"] else None}
        if concurrency == 1:
            flops = spec.prompt_tokens * facts.flops_per_token((spec.prompt_tokens - 1) / 2)
            out.update(prefill_flops=flops, peak_flops=peak.value, peak_flops_source=peak.source,
                       prefill_mfu=prefill_mfu(flops, fig["ttft_ms"]["p50"], peak.value))
        return out

    def _ceiling(self, key: str, measure: Any) -> device.Ceiling:
        if key not in self.ceilings:
            self.ceilings[key] = measure()
        return self.ceilings[key]

    # ------------------------------------------------------------------ accuracy
    def check_accuracy(self, spec: GenerationSpec, precision: str
                       ) -> tuple[dict[str, Any], list[str]]:
        """The engine against the fp32 reference: first-token logits, greedy
        tokens, perplexity; the record fields and what is out of tolerance."""
        engine = self.engine(spec, precision)
        ref = self.reference(spec)
        prompt = self._requests(spec, 1)[0].prompt
        sinks = harness.closed_loop(engine, [Request(prompt, spec.greedy_tokens)], 1, spec.timeout_s)
        got_tokens = harness.tokens(sinks)[0]
        text = prompts.text_ids(spec.text_tokens, self.artifact(spec).vocab_size)
        ppl = accuracy.perplexity(engine.logits(text), text)
        found = {**accuracy.logits_agreement(ref["logits"], engine.logits(prompt)[-1]),
                 "greedy_match": accuracy.greedy_match(ref["tokens"], got_tokens),
                 "perplexity": ppl, "reference_perplexity": ref["perplexity"],
                 "perplexity_ratio": ppl / ref["perplexity"]}
        tolerance = spec.tolerances[precision]
        fields = {**found, "engine": describe(engine), "greedy_tokens": spec.greedy_tokens,
                  "text_tokens": spec.text_tokens,
                  "tokens": got_tokens, "reference_tokens": ref["tokens"], "tolerance": tolerance}
        return fields, accuracy.verdict(found, tolerance)

    def reference(self, spec: GenerationSpec) -> dict[str, Any]:
        """The fp32 model's outputs without a KV cache (each greedy step recomputes
        the whole sequence), so that an engine's cache is checked, not trusted."""
        if spec.name not in self._references:
            import torch

            artifact = self.artifact(spec)
            lm = artifact.reference()
            prompt = list(self._requests(spec, 1)[0].prompt)
            text = prompts.text_ids(spec.text_tokens, artifact.vocab_size)
            with torch.inference_mode():
                first = lm(torch.tensor([prompt]), None)[0, -1]
                ids, tokens = list(prompt), []
                for _ in range(spec.greedy_tokens):
                    tokens.append(int(lm(torch.tensor([ids]), None)[0, -1].argmax()))
                    ids.append(tokens[-1])
                text_logits = lm(torch.tensor([text]), None)[0].numpy()
            self._references[spec.name] = {
                "logits": first.numpy().astype(np.float32), "tokens": tokens,
                "perplexity": accuracy.perplexity(text_logits, text)}
        return self._references[spec.name]

    def _requests(self, spec: GenerationSpec, count: int) -> list[Request]:
        return [self._request(spec, i, spec.prompt_tokens, spec.output_tokens)
                for i in range(count)]

    def _request(self, spec: GenerationSpec, i: int, prompt_tokens: int,
                 output_tokens: int) -> Request:
        """The i-th prompt of ``prompt_tokens``: the byte-level ids the in-tree
        engines take, or text in the served model's tokens for a server."""
        key = (spec.name, i, prompt_tokens)
        if key not in self._prompts:
            self._prompts[key] = self._tokenizer.prompt(i, prompt_tokens) \
                if self.settings.endpoint else prompts.ids(i, prompt_tokens,
                                                          self.artifact(spec).vocab_size)
        prompt = self._prompts[key]
        return Request((), output_tokens, prompt) if isinstance(prompt, str) \
            else Request(prompt, output_tokens)
