"""One session of LLM items: the backend's engines, the fp32 references, and each
scenario and accuracy check turned into a record's figures and its problems.

The figures come from xpuperf.generation.metrics over the harness's timestamps;
nothing here trusts a number the engine reports.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from backends.base import Backend, EnergyUnavailable
from backends.generation import GenerationEngine, GenerationUnsupported, Request
from xpuperf.ceilings import Ceilings, torch_gemm
from xpuperf.generation import accuracy, arithmetic, endpoint, harness, prompts, sweep
from xpuperf.generation.metrics import Bounds, decode_bandwidth_utilization, prefill_mfu
from xpuperf.generation.models import LMArtifact
from xpuperf.generation.settings import ENDPOINT_PRECISION, Settings, load_trace
from xpuperf.measure import energy, nvml
from xpuperf.zoo import GenerationSpec


def describe(engine: GenerationEngine) -> str:
    """Which engine served (and why, where it is a fallback): its ``description``,
    else its class's name."""
    return getattr(engine, "description", None) or type(engine).__qualname__


def _overruns(fig: Mapping[str, Any], bounds: Bounds) -> str:
    """Which p99 of a run is past its bound, in words ("" when none is)."""
    over = [f"{name} p99 {got['p99']:.1f} ms > {bound:g} ms"
            for name, got, bound in (("TTFT", fig["ttft_ms"], bounds.ttft_ms),
                                     ("TPOT", fig["tpot_ms"], bounds.tpot_ms))
            if got and got["p99"] > bound]
    return "; ".join(over)


class LLMSession:
    """Holds one model and one open engine at a time (items of a workload and
    precision run together), and what outlives them: the references, the
    offline capacity the server loads a fraction of, the measured ceilings.
    ``build_on``: where the models are built (LMArtifact), for a benchmark of a big
    model; the accuracy gates then have no reference. ``ceilings``: those already
    measured (``self.ceilings.wire()`` of an earlier session), not measured again.
    ``settings``: an OpenAI-compatible server to measure instead of the backend's
    engine (then no model is built here), SLOs, arrivals, percentiles;
    ``tokenizer``: the server's prompts and token counts (endpoint.Tokenizer's
    interface), instead of the served model's (a server with no model)."""

    def __init__(self, backend: Backend, options: Mapping[str, str],
                 build_on: tuple[str, str] | None = None,
                 ceilings: Mapping[str, Sequence[Any]] | None = None,
                 settings: Settings | None = None, tokenizer: Any = None):
        self.backend, self.options, self.build_on = backend, dict(options), build_on
        self.settings = settings or Settings()
        self._tokenizer = tokenizer or endpoint.Tokenizer(self.settings.tokenizer or "")
        self._prompts: dict[tuple[str, int, int], Any] = {}  # ids, or a server's text
        self._artifact: LMArtifact | None = None
        self._engine: tuple[str, GenerationEngine] | None = None
        self._references: dict[str, dict[str, Any]] = {}
        self._capacity: dict[str, float] = {}
        self._handed_ceilings = dict(ceilings or {})
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
            # The workload's prefill_chunk reaches an in-tree engine as a backend
            # option (an engine that cannot chunk declines it); a server chunks as
            # it was started.
            chunk = {"prefill_chunk": str(spec.prefill_chunk)} if spec.prefill_chunk else {}
            engine = endpoint.EndpointEngine(served, self._tokenizer) if served else \
                self.backend.generation_engine(self.artifact(spec), precision,
                                               {**self.options, **chunk})
            if not served and engine.tensor_parallel != spec.tensor_parallel:
                engine.close()
                raise GenerationUnsupported(
                    f"{spec.name} is split over tensor_parallel={spec.tensor_parallel} ranks; "
                    f"this engine ({describe(engine)}) runs on {engine.tensor_parallel}")
            self._engine = (key, engine)
            c = max(spec.concurrency)
            for count in (1, c):
                self._closed(spec, engine, count, count)()
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
        bounds, fields = self._bounds(spec, scenario, engine)
        if scenario == "server":
            return self._server(spec, precision, engine, bounds, fields)
        c = 1 if scenario == "single_stream" else concurrency or 1
        fig = self._measured(self._closed(spec, engine, spec.requests, c), bounds)
        if scenario == "offline" and c == max(spec.concurrency):
            self._capacity[spec.combo_id(precision)] = fig["requests_per_s"]
        fields.update(concurrency=c, **fig, **self._utilization(spec, precision, fig, c))
        return fields, []

    def _bounds(self, spec: GenerationSpec, scenario: str, engine: GenerationEngine
                ) -> tuple[Bounds, dict[str, Any]]:
        """The SLOs (--llm-slo over the zoo's bounds) and the fields every record of
        ``scenario`` starts with."""
        slo = self.settings.slo
        bounds = Bounds(slo.get("ttft_ms", spec.server.ttft_bound_ms),
                        slo.get("tpot_ms", spec.server.tpot_bound_ms))
        fields: dict[str, Any] = {"scenario": scenario, "engine": describe(engine),
                                  "prompt_tokens": spec.prompt_tokens,
                                  "output_tokens": spec.output_tokens,
                                  "ttft_bound_ms": bounds.ttft_ms, "tpot_bound_ms": bounds.tpot_ms,
                                  "bounds_source": "--llm-slo" if slo else spec.server.bounds_source,
                                  "prefill_chunk": spec.prefill_chunk,
                                  "shared_prefix_tokens": spec.shared_prefix_tokens,
                                  "turns": spec.turns}
        if self.settings.endpoint:
            fields.update(endpoint=self.settings.endpoint.url,
                          served_model=self.settings.endpoint.model,
                          prompt_tokenizer=self.settings.tokenizer)
        return bounds, fields

    def run_sweep(self, spec: GenerationSpec, precision: str
                  ) -> tuple[dict[str, Any], list[str]]:
        """The --llm-sweep item: the workload's load at each point of the sweep
        (auto: the search's), every point's figures against the SLOs, the verdict
        (xpuperf.generation.sweep); fails only when no point meets the SLOs. The
        fields' ``request_latencies_ns`` (every request's end to end, for
        pytest-benchmark's rounds) are not the record's."""
        plan = self.settings.sweep
        if plan is None:
            raise ValueError("the sweep item needs --llm-sweep")
        engine = self.engine(spec, precision)
        bounds, fields = self._bounds(spec, "sweep", engine)
        latencies: list[int] = []

        def run_at(load: float) -> dict[str, Any]:
            if plan.integer:  # every slot busy for two requests at least
                run = self._closed(spec, engine, max(spec.requests, 2 * int(load)), int(load))
            else:
                run = self._arrive(spec, engine, spec.requests, load)

            def kept() -> Sequence[Any]:
                sinks = run()
                latencies.extend(t.e2e_ns for t in harness.traces(sinks))
                return sinks
            return self._measured(kept, bounds)
        # auto starts at one request in flight, or at the server scenario's rate
        start = 1 if plan.integer or plan.points else spec.server.rate or \
            spec.server.load * self._offline_capacity(spec, precision, engine, bounds)
        found = sweep.record(plan, sweep.run(plan, run_at, start, spec.server.search_s,
                                             spec.server.max_trials), self.settings.devices)
        fields.update(sweep=found, serving=self.settings.endpoint.model if self.settings.endpoint
                      else fields["engine"], request_latencies_ns=latencies)
        if not plan.integer:
            fields["arrivals"] = "poisson" if self.settings.burstiness == 1 else \
                f"gamma (shape {self.settings.burstiness:g})"
        if found["max_passing"] is not None:
            return fields, []
        lowest = found["points"][0]
        return fields, [f"no point of the sweep {plan} meets the SLOs; at the lowest, "
                        f"{plan.variable} {lowest[plan.variable]:g}: {_overruns(lowest, bounds)}"]

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
        burst = self.settings.burstiness
        fields["arrivals"] = "poisson" if burst == 1 else f"gamma (shape {burst:g})"

        def run_at(r: float) -> dict[str, Any]:  # a search trial: no energy figure
            return harness.run_figures(self._arrive(spec, engine, spec.requests, r)(), bounds,
                                       self.settings.percentiles)
        fig, runs = self._measured(self._arrive(spec, engine, spec.requests, rate), bounds), 1
        if not fig["valid"]:  # one stall of a shared machine backs up every request behind it
            if s.rate is None:  # and the host may have slowed since: as xpuperf.measure.timing
                rate = s.load * self._offline_capacity(spec, precision, engine, bounds, again=True)
            fig, runs = self._measured(self._arrive(spec, engine, spec.requests, rate), bounds), 2
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
        problems = _overruns(fig, bounds)
        return [f"{what} is invalid ({runs} runs): {problems}"] if problems else []

    def _measured(self, run: Callable[[], Sequence[Any]], bounds: Bounds) -> dict[str, Any]:
        """The figures of ``run()`` (the harness's sinks), with the device's energy
        over it (xpuperf.measure.energy): per output token and per request; for a
        server, where its token counts came from and the requests that ended short."""
        if self._meter is None:
            self._meter = self._open_meter()
        served = self.settings.endpoint
        if served:
            engine = self._engine[1]
            counts, cached = engine.token_counts, engine.cached_tokens
            counts.clear()  # where the run's token counts came from
            cached.clear()
        window = self._meter.window()
        window.start()
        sinks = run()
        used = window.stop(output_token=harness.generated(sinks), request=len(sinks))
        fig = {**harness.run_figures(sinks, bounds, self.settings.percentiles), "energy": used}
        if served:
            fig.update(short_requests=harness.short(sinks), token_count_source=dict(counts),
                       # the prompt tokens the server's prefix cache held, where its usage says
                       cached_prompt_tokens=sum(cached) if cached else None,
                       cached_prompt_tokens_requests=len(cached))
        return fig

    def _open_meter(self) -> energy.Meter:
        """The backend's meter; against a server, NVML's of --llm-energy-devices
        (the server's device is not this process's backend's)."""
        if not self.settings.endpoint:
            return energy.Meter.open(self.backend, self.options)
        cards = self.settings.energy_devices
        if not cards:
            return energy.Meter(None, "a server's energy is not metered by its client unless "
                                      "--llm-energy-devices names its NVIDIA cards on this host")
        try:
            return energy.Meter(nvml.meter({f"GPU {c}": c for c in cards}))
        except EnergyUnavailable as e:
            return energy.Meter(None, str(e))

    def _offline_capacity(self, spec: GenerationSpec, precision: str, engine: GenerationEngine,
                          bounds: Bounds, again: bool = False) -> float:
        """Requests/s offline at the largest concurrency: the offline item's, else
        (or ``again``) run now."""
        key = spec.combo_id(precision)
        if again or key not in self._capacity:
            fig = harness.run_figures(self._closed(spec, engine, spec.requests,
                                                   max(spec.concurrency))(), bounds)
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
        where = self.engine(spec, precision).device
        bandwidth = self.ceilings.memory_bandwidth(where)
        peak = self.ceilings.peak_flops(precision, where, lambda: torch_gemm(precision, where))
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

    @functools.cached_property
    def ceilings(self) -> Ceilings:
        """The backend's declared ceilings, and those measured on the engine's device."""
        return Ceilings(self.backend.name, self.backend.info(), self._handed_ceilings)

    # ------------------------------------------------------------------ accuracy
    def check_accuracy(self, spec: GenerationSpec, precision: str
                       ) -> tuple[dict[str, Any], list[str]]:
        """The engine against the fp32 reference: first-token logits, greedy
        tokens, perplexity; the record fields and what is out of tolerance. A
        server: its answers to the arithmetic problems (``_endpoint_accuracy``)."""
        if self.settings.endpoint:
            return self._endpoint_accuracy(spec)
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

    def _endpoint_accuracy(self, spec: GenerationSpec) -> tuple[dict[str, Any], list[str]]:
        """zoo.yaml's ``endpoint_accuracy`` gate: the server's greedy answers to the
        shipped problems (xpuperf.generation.arithmetic), at the workload's
        largest concurrency, scored by exact match or against the served model's
        fp32 greedy text; fails below ``min_score``."""
        gate = spec.endpoint_accuracy
        engine = self.engine(spec, ENDPOINT_PRECISION)
        problems = arithmetic.load()[:gate.problems]
        sinks = harness.closed_loop(
            engine, [Request((), gate.max_tokens, p.prompt) for p in problems],
            max(spec.concurrency), spec.timeout_s)
        replies = harness.texts(sinks)
        fields: dict[str, Any] = {"engine": describe(engine), "method": gate.method,
                                  "problems": gate.problems, "max_tokens": gate.max_tokens,
                                  "min_score": gate.min_score, "replies": replies}
        if gate.method == "exact_match":
            score = arithmetic.exact_match(problems, replies)
        else:
            served = self.settings.endpoint
            references = endpoint.greedy_texts(self.settings.tokenizer or served.model,
                                               [p.prompt for p in problems], gate.max_tokens,
                                               served.ignore_eos)
            score = arithmetic.agreement(references, replies)
            fields["reference_replies"] = references
        fields["score"] = score
        verdict = [] if score >= gate.min_score else [
            f"endpoint accuracy ({gate.method}) {score:.3g} on {gate.problems} arithmetic "
            f"problems, needs >= {gate.min_score:g}: the server answers wrongly"]
        return fields, verdict

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

    # _closed and _arrive make the prompts (and a server's tokenized messages) now
    # and return the run: what they cost stays out of the measured window.
    def _closed(self, spec: GenerationSpec, engine: GenerationEngine, count: int,
                concurrency: int) -> Callable[[], list[Any]]:
        """The run of ``count`` requests (conversations, for a multi-turn
        workload), ``concurrency`` in flight (harness.closed_loop): its sinks."""
        requests, talks = self._requests(spec, count), self._conversations(spec, count)
        return lambda: harness.closed_loop(engine, requests, concurrency, spec.timeout_s, talks)

    def _arrive(self, spec: GenerationSpec, engine: GenerationEngine, count: int,
                rate: float) -> Callable[[], list[Any]]:
        """The run of ``count`` requests arriving at ``rate`` requests/s, the
        workload's seeded arrivals (harness.at_times): its sinks; a multi-turn
        workload's conversations arrive at ``rate`` / turns, so that its requests
        come at ``rate``."""
        requests, talks = self._requests(spec, count), self._conversations(spec, count)
        at = harness.arrivals_ns(count, rate / spec.turns, spec.seed, self.settings.burstiness)
        return lambda: harness.at_times(engine, requests, at, spec.timeout_s, talks)

    def _conversations(self, spec: GenerationSpec, count: int) -> harness.Conversations | None:
        """A multi-turn workload's later turns: a turn's context and its answer, then a
        new message of prompt_tokens. The messages are made now, before the run:
        tokenizing one between turns would run on the client's event loop."""
        if spec.turns == 1:
            return None
        messages = {(c, t): self._prompt(spec, c * spec.turns + t, spec.prompt_tokens)
                    for c in range(count) for t in range(1, spec.turns)}

        def follow(request: Request, sink: Any, conversation: int, turn: int) -> Request:
            message = messages[conversation, turn]
            if isinstance(message, str):  # a server: the history as messages
                return Request((), request.max_new_tokens, message,
                               (*request.history, request.text, "".join(sink.pieces)))
            return Request(request.prompt + tuple(sink.tokens) + message, request.max_new_tokens)
        return harness.Conversations(spec.turns, follow)

    def _requests(self, spec: GenerationSpec, count: int) -> list[Request]:
        return [self._request(spec, i, spec.prompt_tokens, spec.output_tokens)
                for i in range(count)]

    def _request(self, spec: GenerationSpec, i: int, prompt_tokens: int,
                 output_tokens: int) -> Request:
        """The i-th request's prompt of ``prompt_tokens`` (``_prompt``), behind the
        workload's shared prefix."""
        key = (spec.name, i, prompt_tokens)
        if key not in self._prompts:
            # A shared prefix: the same first tokens in every request (a system
            # prompt, a document asked about), then the request's own.
            shared = spec.shared_prefix_tokens if spec.shared_prefix_tokens < prompt_tokens else 0
            self._prompts[key] = self._prompt(spec, prompts.SHARED, shared) + \
                self._prompt(spec, i, prompt_tokens - shared)
        prompt = self._prompts[key]
        return Request((), output_tokens, prompt) if isinstance(prompt, str) \
            else Request(prompt, output_tokens)

    def _prompt(self, spec: GenerationSpec, i: int, tokens: int) -> str | tuple[int, ...]:
        """The sample's i-th prompt cut to ``tokens``: the byte-level ids the
        in-tree engines take, or text in the served model's tokens for a server."""
        if self.settings.endpoint:
            return self._tokenizer.prompt(i, tokens) if tokens else ""
        return prompts.ids(i, tokens, self.artifact(spec).vocab_size)
