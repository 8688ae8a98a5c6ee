"""OpenTelemetry spans for rollouts, scoring and the proxy (`--otel`).

The tree: `agentrm.run` → `agentrm.trajectory` → `chat MODEL` (the model call, GenAI semantic
conventions) and `execute_tool NAME` (each tool call) per turn, grouped under `agentrm.turn`;
`agentrm.score SCORER` per scored batch; `chat MODEL` per proxied request. Without `--otel`
nothing is configured and the OpenTelemetry API's tracer does nothing (no cost beyond a call).

`setup()` sends spans to OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` (or the traces-specific
variable) is set, else prints them to stderr as JSON lines; the standard `OTEL_SERVICE_NAME`
and `OTEL_RESOURCE_ATTRIBUTES` apply.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Sequence
from typing import Any

SCOPE = "agentrm"
_configured = False


def setup(exporter: Any = None) -> None:
    """Install a tracer provider (once per process): `exporter`, else OTLP or stderr."""
    global _configured
    if _configured:
        return
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": os.environ.get(
        "OTEL_SERVICE_NAME", "agentrm")}))
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    elif os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    else:
        import sys

        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(
            out=sys.stderr, formatter=lambda span: span.to_json(indent=None) + "\n")))
    trace.set_tracer_provider(provider)
    import atexit

    atexit.register(provider.shutdown)  # flush batched spans at exit
    _configured = True


def tracer() -> Any:
    from opentelemetry import trace

    return trace.get_tracer(SCOPE)


def active() -> bool:
    """Whether anyone installed a tracer provider (`--otel`, or the application agentrm runs
    in); when nobody did, the helpers below return at once instead of making no-op spans."""
    from opentelemetry import trace

    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


@contextlib.contextmanager
def span(name: str, **attributes: Any) -> Iterator[Any]:
    """A span around a block, child of the current one (None attributes are left out)."""
    if not active():
        from opentelemetry.trace import INVALID_SPAN

        yield INVALID_SPAN
        return
    with tracer().start_as_current_span(name, attributes=_clean(attributes)) as current:
        yield current


def current_context() -> Any:
    """The active context, to parent spans made later or in another thread."""
    from opentelemetry import context

    return context.get_current()


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


def record_turn(parent: Any, index: int, model: str | None, started_at: float, model_done_at: float,
                ended_at: float, prompt_tokens: int | None, completion_tokens: int | None,
                calls: Sequence[Any], results: Sequence[Any], valid: bool) -> None:
    """A finished turn as spans with its recorded times: the turn, its model call and each
    tool call (run one after another after the model's reply)."""
    if not active():
        return
    from opentelemetry import trace

    t = tracer()
    turn = t.start_span("agentrm.turn", context=parent, start_time=_ns(started_at),
                        attributes=_clean({"agentrm.turn.index": index, "agentrm.turn.valid": valid}))
    inside = trace.set_span_in_context(turn)
    chat = t.start_span(f"chat {model or 'policy'}", context=inside, start_time=_ns(started_at),
                        kind=trace.SpanKind.CLIENT, attributes=_clean({
                            "gen_ai.operation.name": "chat", "gen_ai.request.model": model,
                            "gen_ai.usage.input_tokens": prompt_tokens,
                            "gen_ai.usage.output_tokens": completion_tokens}))
    chat.end(end_time=_ns(model_done_at))
    at = model_done_at
    for call, result in zip(calls, results, strict=False):
        took = float(getattr(result, "duration_s", None) or 0.0)
        tool = t.start_span(f"execute_tool {call.name}", context=inside, start_time=_ns(at),
                            attributes=_clean({"gen_ai.operation.name": "execute_tool",
                                               "gen_ai.tool.name": call.name, "gen_ai.tool.call.id": call.id,
                                               "agentrm.tool.exit_code": getattr(result, "exit_code", None)}))
        at += took
        tool.end(end_time=_ns(at))
    turn.end(end_time=_ns(max(ended_at, at)))


def now() -> float:
    return time.time()


def _clean(attributes: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in attributes.items() if v is not None}
