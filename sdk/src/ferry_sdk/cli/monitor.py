"""``ferry monitor``: latency, series, traces, drift, performance, alerts, SLOs and policies (ferry-monitor)."""

from __future__ import annotations

import datetime
import json
import re
import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from ferry.monitor.v1 import monitor_pb2 as pb
from ferry_sdk._monitor_messages import action_name
from ferry_sdk.cli._common import (
    CliError,
    OutputOption,
    emit,
    err_console,
    handle_errors,
    is_json,
    monitor_client,
    note,
    out_console,
    registry_client,
    to_json,
)

app = typer.Typer(
    help="What the services and models are doing (ferry-monitor).",
    no_args_is_help=True,
    epilog="Example: ferry monitor latency --deployment churn",
)
slo_app = typer.Typer(
    help="Service-level objectives: latency and error-rate targets judged continuously.",
    epilog="Example: ferry monitor slo list",
)
policy_app = typer.Typer(
    help="What monitor does for one model on drift or poor accuracy.",
    epilog="Example: ferry monitor policy show churn",
)
app.add_typer(slo_app, name="slo", no_args_is_help=True)
app.add_typer(policy_app, name="policy", no_args_is_help=True)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(text: str, option: str) -> datetime.timedelta:
    """``90``, ``30s``, ``5m``, ``1.5h``, ``2d``, ``250ms`` -> a ``timedelta``."""
    found = _DURATION.match(text)
    if found is None:
        raise CliError(f"{option} {text!r} is not a duration such as 30s, 5m, 1h or 2d", field=option)
    value = float(found.group(1)) * _UNITS[found.group(2)]
    if value <= 0:
        raise CliError(f"{option} {text!r}: a duration is positive", field=option)
    return datetime.timedelta(seconds=value)


def parse_time(text: str, option: str) -> datetime.datetime:
    """An ISO 8601 time (``2026-01-31T12:00:00Z``; no zone = UTC), or a duration ago (``15m``)."""
    if _DURATION.match(text):
        return datetime.datetime.now(datetime.UTC) - parse_duration(text, option)
    try:
        moment = datetime.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise CliError(
            f"{option} {text!r} is not an ISO 8601 time (2026-01-31T12:00:00Z) or a duration ago (15m)", field=option
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=datetime.UTC)


# Options shared by the span queries.
DeploymentOption = Annotated[str, typer.Option("--deployment", "-d", help="Deployment id (churn).")]
ModelOption = Annotated[str, typer.Option("--model", help="Model id (churn).")]
VersionOption = Annotated[int, typer.Option("--version", help="Model version (0: any).")]
RouteOption = Annotated[str, typer.Option("--route", help="primary, canary or shadow (empty: any).")]
ServiceOption = Annotated[str, typer.Option("--service", help="service.name of the spans (ferry-serve).")]
MethodOption = Annotated[
    str, typer.Option("--method", help="gRPC method (/inference.GRPCInferenceService/ModelInfer).")
]
LastOption = Annotated[
    str | None, typer.Option("--last", help="Window: this long up to --end or now (30s, 5m, 1h; default 5m).")
]
StartOption = Annotated[str | None, typer.Option("--start", help="Window start: ISO 8601, or a duration ago (1h).")]
EndOption = Annotated[str | None, typer.Option("--end", help="Window end (exclusive): ISO 8601, or a duration ago.")]


def _window(last: str | None, start: str | None, end: str | None) -> dict[str, Any]:
    if last is not None and start is not None:
        raise CliError("give --last or --start, not both", field="--last")
    return {
        "last": parse_duration(last, "--last") if last is not None else None,
        "start": parse_time(start, "--start") if start is not None else None,
        "end": parse_time(end, "--end") if end is not None else None,
    }


def _filter(deployment: str, model: str, version: int, route: str, service: str, method: str) -> dict[str, Any]:
    return {
        "deployment": deployment,
        "model": model,
        "version": version,
        "route": route,
        "service": service,
        "method": method,
    }


def _described(deployment: str, model: str, version: int, route: str, service: str, method: str) -> str:
    parts = [
        f"deployment {deployment}" if deployment else "",
        f"model {model}" if model else "",
        f"version {version}" if version else "",
        f"route {route}" if route else "",
        f"service {service}" if service else "",
        f"method {method}" if method else "",
    ]
    return ", ".join(part for part in parts if part) or "all spans"


def _duration_text(value: datetime.timedelta) -> str:
    """``0:05:00`` -> ``5m``; ``1:30:00`` -> ``90m``; ``45s``."""
    seconds = value.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def _ms(value: float) -> str:
    return f"{value:.2f} ms"


@app.command(
    epilog="Example: ferry monitor latency --deployment churn --route canary --last 15m",
)
@handle_errors
def latency(
    ctx: typer.Context,
    deployment: DeploymentOption = "",
    model: ModelOption = "",
    version: VersionOption = 0,
    route: RouteOption = "",
    service: ServiceOption = "",
    method: MethodOption = "",
    last: LastOption = None,
    start: StartOption = None,
    end: EndOption = None,
    output: OutputOption = None,
) -> None:
    """Count, errors and p50/p90/p99/max latency of the matching spans over a window (default: 5 minutes).

    Percentiles come from mergeable sketches with the relative error printed; max is exact.
    """
    with monitor_client(ctx) as monitor:
        summary = monitor.get_latency_summary(
            **_filter(deployment, model, version, route, service, method), **_window(last, start, end)
        )

    def render(console: Console) -> None:
        console.print(f"[bold]{_described(deployment, model, version, route, service, method)}[/bold]")
        rate = f" ({summary.error_count / summary.count:.1%})" if summary.count else ""
        console.print(f"  requests   {summary.count}")
        console.print(f"  errors     {summary.error_count}{rate}")
        if summary.count:
            console.print(f"  p50        {_ms(summary.p50_ms)}")
            console.print(f"  p90        {_ms(summary.p90_ms)}")
            console.print(f"  p99        {_ms(summary.p99_ms)}")
            console.print(f"  max        {_ms(summary.max_ms)}")
            console.print(f"  (percentiles within {summary.relative_accuracy:.1%})")

    emit(ctx, summary, render)


@app.command(epilog="Example: ferry monitor series --deployment churn --last 30m --step 1m")
@handle_errors
def series(
    ctx: typer.Context,
    deployment: DeploymentOption = "",
    model: ModelOption = "",
    version: VersionOption = 0,
    route: RouteOption = "",
    service: ServiceOption = "",
    method: MethodOption = "",
    step: Annotated[str | None, typer.Option("--step", help="Bucket width, a multiple of 10 s (default 10s).")] = None,
    last: LastOption = None,
    start: StartOption = None,
    end: EndOption = None,
    output: OutputOption = None,
) -> None:
    """Latency over time: one row per --step bucket with count, errors, p50, p99 and max, oldest first."""
    with monitor_client(ctx) as monitor:
        points = monitor.list_latency_series(
            **_filter(deployment, model, version, route, service, method),
            **_window(last, start, end),
            step=parse_duration(step, "--step") if step is not None else None,
        )

    def render(console: Console) -> None:
        table = Table("start (UTC)", "requests", "errors", "p50 ms", "p99 ms", "max ms", box=None)
        for point in points:
            summary = point.summary
            busy = summary.count > 0
            table.add_row(
                point.start_time.ToDatetime().strftime("%Y-%m-%d %H:%M:%S"),
                str(summary.count),
                str(summary.error_count),
                f"{summary.p50_ms:.2f}" if busy else "-",
                f"{summary.p99_ms:.2f}" if busy else "-",
                f"{summary.max_ms:.2f}" if busy else "-",
            )
        console.print(table)

    emit(ctx, {"points": points}, render)


@app.command(epilog="Example: ferry monitor trace 4bf92f3577b34da6a3ce929d0e0e4736")
@handle_errors
def trace(
    ctx: typer.Context,
    trace_id: Annotated[str, typer.Argument(help="32 hex digits (the trace id in every service's logs).")],
    output: OutputOption = None,
) -> None:
    """Every span monitor still keeps of one trace, across services, by start time."""
    with monitor_client(ctx) as monitor:
        found = monitor.get_trace(trace_id)

    def render(console: Console) -> None:
        depth: dict[str, int] = {}
        table = Table("span", "service", "start (UTC)", "duration", "error", box=None)
        for span in found.spans:
            level = depth.get(span.parent_span_id, -1) + 1 if span.parent_span_id else 0
            depth[span.span_id] = level
            duration = (span.end_time.ToNanoseconds() - span.start_time.ToNanoseconds()) / 1e6
            table.add_row(
                "  " * level + span.name,
                span.service,
                span.start_time.ToDatetime().strftime("%H:%M:%S.%f")[:-3],
                _ms(duration),
                "yes" if span.error else "",
            )
        console.print(f"[bold]trace {found.trace_id}[/bold]  {len(found.spans)} span(s)")
        console.print(table)

    emit(ctx, found, render)


def _model_version(ctx: typer.Context, target: str, version: int | None) -> str:
    """``churn@3``, ``churn@production`` (resolved through the registry), ``models/churn/versions/3``,
    or ``churn`` with ``--version 3`` -> ``models/churn/versions/3``."""
    if "/versions/" in target:
        if version is not None:
            raise CliError(f"{target!r} already names a version: leave --version out", field="--version")
        return target
    model, sep, which = target.partition("@")
    model = model.removeprefix("models/")
    if sep and version is not None:
        raise CliError(f"{target!r} already names a version: leave --version out", field="--version")
    if not sep:
        if version is None:
            raise CliError(
                f"{target!r}: which version? MODEL@VERSION, MODEL@ALIAS or --version N", field="MODEL[@VERSION|@ALIAS]"
            )
        return f"models/{model}/versions/{version}"
    if which.isdigit():
        return f"models/{model}/versions/{int(which)}"
    with registry_client(ctx) as registry:
        resolved = registry.resolve_alias(f"models/{model}/aliases/{which}")
    return str(resolved.name)


ModelVersionArgument = Annotated[
    str,
    typer.Argument(
        metavar="MODEL[@VERSION|@ALIAS]",
        help="churn@3, churn@production (resolved through the registry) or models/churn/versions/3.",
        show_default=False,
    ),
]
ModelVersionOption = Annotated[int | None, typer.Option("--version", help="The version, when MODEL has none.")]


@app.command(epilog="Example: ferry monitor drift churn@production --last 1h --method ks")
@handle_errors
def drift(
    ctx: typer.Context,
    target: ModelVersionArgument,
    version: ModelVersionOption = None,
    method: Annotated[
        str | None, typer.Option("--method", help="Test of numeric features: psi (default), ks or wasserstein.")
    ] = None,
    last: LastOption = None,
    start: StartOption = None,
    end: EndOption = None,
    output: OutputOption = None,
) -> None:
    """Drift of a version's live inputs (serve's samples) against its training split's profile, per feature."""
    name = _model_version(ctx, target, version)
    with monitor_client(ctx) as monitor:
        report = monitor.get_drift_report(name, method=method, **_window(last, start, end))

    def render(console: Console) -> None:
        verdict = "[red]drifted[/red]" if report.drifted else "[green]no drift[/green]"
        console.print(f"[bold]{report.model_version}[/bold]  {verdict}")
        console.print(f"  reference  {report.reference_dataset_version} (split {report.reference_split or '-'})")
        console.print(f"  samples    {report.sample_count}")
        table = Table("feature", "test", "statistic", "p-value", "threshold", "drifted", box=None)
        for feature in report.features:
            table.add_row(
                feature.feature,
                pb.DriftMethod.Name(feature.method).removeprefix("DRIFT_METHOD_").lower(),
                f"{feature.statistic:.4f}",
                f"{feature.p_value:.4f}"
                if feature.method in (pb.DRIFT_METHOD_KS, pb.DRIFT_METHOD_CHI_SQUARED)
                else "-",
                f"{feature.threshold:g}",
                "yes" if feature.drifted else "",
            )
        console.print(table)

    emit(ctx, report, render)


@app.command(epilog="Example: ferry monitor performance churn@4 --route canary --last 1d")
@handle_errors
def performance(
    ctx: typer.Context,
    target: ModelVersionArgument,
    version: ModelVersionOption = None,
    route: Annotated[str, typer.Option("--route", help="Only answers on primary, canary or shadow.")] = "",
    last: LastOption = None,
    start: StartOption = None,
    end: EndOption = None,
    output: OutputOption = None,
) -> None:
    """Quality of a version measured from feedback: accuracy (labels) or MAE/RMSE (values)."""
    name = _model_version(ctx, target, version)
    with monitor_client(ctx) as monitor:
        report = monitor.get_performance(name, route=route, **_window(last, start, end))

    def render(console: Console) -> None:
        console.print(f"[bold]{report.model_version}[/bold]" + (f"  route {report.route}" if report.route else ""))
        console.print(f"  labeled    {report.labeled_count}")
        if report.labeled_count:
            if report.accuracy or not (report.mean_absolute_error or report.root_mean_squared_error):
                console.print(f"  accuracy   {report.accuracy:.4f}")
            if report.mean_absolute_error or report.root_mean_squared_error:
                console.print(f"  MAE        {report.mean_absolute_error:.4f}")
                console.print(f"  RMSE       {report.root_mean_squared_error:.4f}")

    emit(ctx, report, render)


def render_alert(console: Console, alert: pb.Alert) -> None:
    """An alert as three lines: what, what happened, what monitor did."""
    kind = pb.AlertKind.Name(alert.kind).removeprefix("ALERT_KIND_").lower()
    about = "  ".join(part for part in (alert.deployment, alert.slo, alert.model_version) if part)
    raised = alert.create_time.ToDatetime().strftime("%Y-%m-%d %H:%M:%S")
    console.print(f"[bold]#{alert.sequence}[/bold]  {raised} UTC  {kind}  {about}")
    console.print(f"    {alert.message}", markup=False)
    result = f": {alert.action_result}" if alert.action_result else ""
    console.print(f"    action {action_name(alert.action)}{result}", markup=False)


@app.command(
    epilog=(
        "Example: ferry monitor alerts --watch   (prints the alerts kept, then each new one as raised; "
        "with --output json one JSON object per line)"
    )
)
@handle_errors
def alerts(
    ctx: typer.Context,
    watch: Annotated[
        bool, typer.Option("--watch", "-w", help="Keep following: print each new alert as raised (Ctrl-C ends).")
    ] = False,
    since: Annotated[int, typer.Option("--since", help="Only alerts after this sequence number (resume a watch).")] = 0,
    output: OutputOption = None,
) -> None:
    """Alerts (SLO breaches, drift, poor accuracy), oldest first, with what monitor did about each.

    --watch reconnects by itself when monitor restarts and resumes after the last alert
    printed: none is missed or printed twice. Ctrl-C ends it (exit 130) and says which
    --since resumes it. With --output json and --watch, each alert
    is one JSON object on its own line (JSON Lines); without --watch, {"alerts": [...]}.
    """
    with monitor_client(ctx) as monitor:
        if not watch:
            found = [alert for alert in monitor.list_alerts() if alert.sequence > since]

            def render(console: Console) -> None:
                for alert in found:
                    render_alert(console, alert)
                if not found:
                    console.print("no alerts")

            emit(ctx, {"alerts": found}, render)
            return
        note(ctx, f"following alerts after sequence {since} (Ctrl-C to stop)...")
        stream = monitor.watch_alerts(since_sequence=since)
        try:
            for alert in stream:
                if is_json(ctx):
                    sys.stdout.write(json.dumps(to_json(alert)) + "\n")
                    sys.stdout.flush()
                else:
                    render_alert(out_console, alert)
        except KeyboardInterrupt:
            # On stderr in json mode too: stdout keeps only the alerts.
            err_console.print(
                f"stopped after sequence {stream.sequence} "
                f"(resume: ferry monitor alerts --watch --since {stream.sequence})"
            )
            raise typer.Exit(130) from None  # as `ferry train watch`: stopped by the user
        finally:
            stream.cancel()


def _slo_row(slo: pb.Slo) -> list[str]:
    flt = slo.filter
    spans = " ".join(
        f"{key}={value}"
        for key, value in (
            ("deployment", flt.deployment),
            ("model", flt.model),
            ("version", flt.version or ""),
            ("route", flt.route),
            ("service", flt.service),
            ("method", flt.method),
        )
        if value
    )
    objective = []
    if slo.latency_threshold_ms:
        objective.append(f"p{slo.percentile:g} <= {slo.latency_threshold_ms:g} ms")
    if slo.max_error_rate:
        objective.append(f"errors <= {slo.max_error_rate:.1%}")
    window = _duration_text(slo.window.ToTimedelta()) if slo.HasField("window") else "5m"
    return [
        slo.name.removeprefix("slos/"),
        spans,
        ", ".join(objective) or "-",
        window,
        action_name(slo.action),
        "[red]BREACHED[/red]" if slo.breached else "ok",
    ]


def _slo_table() -> Table:
    table = Table("slo", "spans", "objective", "window", "action", "state", box=None)
    for column in table.columns[2:]:
        column.no_wrap = True
    return table


@slo_app.command(
    name="set",
    epilog=(
        "Example: ferry monitor slo set churn-canary --deployment churn --route canary "
        "--percentile 99 --threshold-ms 50 --action stop-canary"
    ),
)
@handle_errors
def slo_set(
    ctx: typer.Context,
    slo_id: Annotated[str, typer.Argument(metavar="SLO", help="Id of the objective (churn-canary).")],
    deployment: DeploymentOption = "",
    model: ModelOption = "",
    version: VersionOption = 0,
    route: RouteOption = "",
    service: ServiceOption = "",
    method: MethodOption = "",
    percentile: Annotated[float, typer.Option("--percentile", help="Percentile checked, in (0, 100).")] = 99.0,
    threshold_ms: Annotated[
        float, typer.Option("--threshold-ms", help="Breach when that percentile exceeds this many ms (0: unchecked).")
    ] = 0.0,
    max_error_rate: Annotated[
        float, typer.Option("--max-error-rate", help="Breach when the error fraction exceeds this (0: unchecked).")
    ] = 0.0,
    window: Annotated[str | None, typer.Option("--window", help="Window judged (default 5m).")] = None,
    min_count: Annotated[
        int, typer.Option("--min-count", help="Fewest spans before the objective is judged (0: monitor's 20).")
    ] = 0,
    action: Annotated[
        str,
        typer.Option(
            "--action",
            help="On a breach: alert, stop-canary (the deployment's canary share to 0%) or rollback.",
        ),
    ] = "alert",
    output: OutputOption = None,
) -> None:
    """Create or replace an objective; monitor judges it every few seconds and alerts once per breach."""
    with monitor_client(ctx) as monitor:
        stored = monitor.set_slo(
            slo_id,
            **_filter(deployment, model, version, route, service, method),
            percentile=percentile,
            latency_threshold_ms=threshold_ms,
            max_error_rate=max_error_rate,
            window=parse_duration(window, "--window") if window is not None else None,
            min_count=min_count,
            action=action,
        )

    def render(console: Console) -> None:
        table = _slo_table()
        table.add_row(*_slo_row(stored))
        console.print(table)

    emit(ctx, stored, render)


@slo_app.command(name="list", epilog="Example: ferry monitor slo list --output json")
@handle_errors
def slo_list(ctx: typer.Context, output: OutputOption = None) -> None:
    """List objectives and whether each is breached now."""
    with monitor_client(ctx) as monitor:
        slos = list(monitor.list_slos())

    def render(console: Console) -> None:
        table = _slo_table()
        for slo in slos:
            table.add_row(*_slo_row(slo))
        console.print(table)

    emit(ctx, {"slos": slos}, render)


def _render_policy(console: Console, policy: pb.ModelPolicy) -> None:
    console.print(f"[bold]{policy.name}[/bold]")
    console.print(f"  drift threshold   {policy.drift_threshold:g} (PSI)")
    console.print(f"  retrain on drift  {'yes' if policy.retrain_on_drift else 'no'}")
    console.print(f"  min accuracy      {policy.min_accuracy:g}" + ("" if policy.min_accuracy else " (not checked)"))


@policy_app.command(
    name="set", epilog="Example: ferry monitor policy set churn --drift-threshold 0.25 --retrain-on-drift"
)
@handle_errors
def policy_set(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="Model id (churn).")],
    drift_threshold: Annotated[
        float, typer.Option("--drift-threshold", help="PSI above this is drift (0: monitor's default, 0.2).")
    ] = 0.0,
    retrain_on_drift: Annotated[
        bool,
        typer.Option("--retrain-on-drift/--no-retrain", help="Start a training job on the newest dataset version."),
    ] = False,
    min_accuracy: Annotated[
        float, typer.Option("--min-accuracy", help="Accuracy below this raises an alert (0: not checked).")
    ] = 0.0,
    output: OutputOption = None,
) -> None:
    """Set what monitor does for one model when its inputs drift or its accuracy drops."""
    with monitor_client(ctx) as monitor:
        stored = monitor.set_model_policy(
            model, drift_threshold=drift_threshold, retrain_on_drift=retrain_on_drift, min_accuracy=min_accuracy
        )
    emit(ctx, stored, lambda console: _render_policy(console, stored))


@policy_app.command(name="show", epilog="Example: ferry monitor policy show churn")
@handle_errors
def policy_show(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="Model id (churn).")],
    output: OutputOption = None,
) -> None:
    """Show a model's policy."""
    with monitor_client(ctx) as monitor:
        found = monitor.get_model_policy(model)
    emit(ctx, found, lambda console: _render_policy(console, found))
