"""Command line: the composition root. Each subcommand builds what it needs and runs it."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from rich.console import Console

from crowdwatch import __version__

log = logging.getLogger("crowdwatch")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="crowdwatch",
        description="Count people per zone on many cameras and alert the responsible center.",
    )
    p.add_argument("--version", action="version", version=f"crowdwatch {__version__}")
    p.add_argument(
        "--log-level",
        type=str.upper,  # any case: --log-level debug
        choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
        default="WARNING",
        help="DEBUG, INFO, WARNING (default), ERROR or CRITICAL",
    )
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="everything in one process (embedded bus and store)")
    run.add_argument("-c", "--config", required=True, type=Path, help="YAML configuration file")
    run.add_argument(
        "--duration", type=float, help="stop after this many seconds (counted once the models are loaded)"
    )
    run.add_argument(
        "--metrics-port",
        type=int,
        help="serve metrics on this port, not metrics.port (0: any free one): one port per process on a host",
    )
    run.add_argument("--events-out", type=Path, help="append events and alert changes as JSON lines")
    run.add_argument(
        "--no-ui",
        action="store_true",
        help="no live table: the summary at the end (--log-level INFO for progress)",
    )
    run.add_argument("--models-dir", type=Path, help="where fetched models live")

    worker = sub.add_parser("worker", help="distributed role: cameras -> counts -> events on the bus")
    worker.add_argument("-c", "--config", required=True, type=Path, help="YAML configuration file")
    worker.add_argument("--duration", type=float, help="stop after this many seconds")
    worker.add_argument(
        "--metrics-port",
        type=int,
        help="serve metrics on this port, not metrics.port (0: any free one): one port per process on a host",
    )
    worker.add_argument("--models-dir", type=Path, help="where fetched models live")
    worker.add_argument(
        "--assign",
        choices=["static", "kafka"],
        default="static",
        help="static: run every camera of the config; kafka: run the cameras that Kafka's group "
        "assignment of the compacted `cameras` topic gives this worker",
    )
    worker.add_argument("--group", default="crowdwatch-workers", help="--assign kafka: consumer group")
    worker.add_argument("--cameras-topic", default="cameras", help="--assign kafka: the cameras topic")

    alerting = sub.add_parser("alerting", help="distributed role: events -> routed alerts in the store")
    alerting.add_argument("-c", "--config", required=True, type=Path, help="YAML configuration file")
    alerting.add_argument("--duration", type=float, help="stop after this many seconds")
    alerting.add_argument(
        "--metrics-port",
        type=int,
        help="serve metrics on this port, not metrics.port (0: any free one): one port per process on a host",
    )
    alerting.add_argument("--group", default="crowdwatch-alerting", help="Kafka consumer group")

    cameras = sub.add_parser("cameras", help="the cameras topic that --assign kafka workers share")
    cameras_sub = cameras.add_subparsers(dest="cameras_command", required=True)
    publish = cameras_sub.add_parser(
        "publish", help="make the compacted cameras topic hold exactly the config's cameras"
    )
    publish.add_argument("-c", "--config", required=True, type=Path, help="YAML configuration file")
    publish.add_argument("--topic", default="cameras", help="the cameras topic (default: cameras)")

    val = sub.add_parser("validate-config", help="check a configuration file and report every problem")
    val.add_argument("config", type=Path)

    sub.add_parser("config-reference", help="print the configuration reference (markdown)")

    models = sub.add_parser("models", help="the model catalog: list, fetch, train, quantize", add_help=False)
    models.add_argument("rest", nargs=argparse.REMAINDER)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    for stream in (sys.stdout, sys.stderr):
        tolerate_encoding(stream)
    # `models` has its own parser (list/fetch with their options).
    if argv and argv[0] == "models":
        from crowdwatch.detectors.models_cli import run_models_command

        return run_models_command(argv[1:])
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "validate-config":
        return _validate(args.config)
    if args.command in ("run", "worker", "alerting"):
        return _run(args)
    if args.command == "cameras":
        return _publish_cameras(args)
    if args.command == "config-reference":
        from crowdwatch.config.reference import config_reference

        sys.stdout.write(config_reference())
        return 0
    return 2


def _validate(path: Path) -> int:
    from crowdwatch.config.root import ConfigError, load_config

    try:
        config = load_config(path)
    except ConfigError as err:
        print(f"{path}: {len(err.problems)} problem(s)", file=sys.stderr)
        for line in err.problems:
            print(f"  {line}", file=sys.stderr)
        return 1
    zones = sum(len(c.zones) for c in config.cameras)
    print(f"{path}: OK ({len(config.cameras)} camera(s), {zones} zone(s), {len(config.centers)} center(s))")
    return 0


def _publish_cameras(args: argparse.Namespace) -> int:
    from crowdwatch.config.root import ConfigError, load_config
    from crowdwatch.runtime.assignment import publish_cameras

    try:
        config = load_config(args.config)
        result = publish_cameras(config, topic=args.topic)
    except ConfigError as err:
        print(f"{args.config}: configuration error", file=sys.stderr)
        for line in err.problems:
            print(f"  {line}", file=sys.stderr)
        return 1
    except Exception as exc:  # a broker error is one line for the operator
        print(f"error: cannot publish cameras to {args.topic!r}: {exc}", file=sys.stderr)
        return 1
    print(
        f"{args.topic}: {len(result.written)} camera(s) written, {len(result.unchanged)} unchanged, "
        f"{len(result.removed)} removed"
    )
    return 0


def _run(args: argparse.Namespace) -> int:
    from redis.exceptions import ConnectionError as RedisConnectionError

    from crowdwatch.config.root import ConfigError, load_config
    from crowdwatch.detectors.catalog import ModelNotFetchedError, UnknownModelError

    try:
        config = load_config(args.config)
    except ConfigError as err:
        print(f"{args.config}: configuration error", file=sys.stderr)
        for line in err.problems:
            print(f"  {line}", file=sys.stderr)
        return 1
    configured = Path(config.models_dir).expanduser() if config.models_dir else None
    models_dir = getattr(args, "models_dir", None) or configured  # `alerting` has no --models-dir
    # What can be checked before models load (seconds) is checked first, in the operator's terms.
    problem = _preflight(config, args)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    try:
        if args.command == "worker":
            return _run_role(config, args, models_dir)
        if args.command == "alerting":
            return _run_role(config, args, None)
        return _run_embedded(config, args, models_dir)
    except (ModelNotFetchedError, UnknownModelError, _MetricsPortError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except RedisConnectionError as err:
        print(f"error: cannot reach the Redis store ({err}); is it running? (store.url)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # a second Ctrl-C while stopping
        print("interrupted: stopped without finishing the shutdown", file=sys.stderr)
        return 130


def tolerate_encoding(stream: object) -> None:
    """On a terminal or pipe that is not UTF-8 (PYTHONIOENCODING=ascii, a latin-1 locale), write
    what it cannot show as '?' instead of failing: the tables use '·', 'm²', '↑' and '—'."""
    encoding = (getattr(stream, "encoding", None) or "").lower().replace("-", "").replace("_", "")
    reconfigure = getattr(stream, "reconfigure", None)
    if reconfigure is not None and encoding not in ("utf8", "utf8sig"):
        reconfigure(errors="replace")


def _preflight(config: object, args: argparse.Namespace) -> str | None:
    from crowdwatch.config.backends import KafkaBusConfig
    from crowdwatch.config.root import AppConfig

    assert isinstance(config, AppConfig)
    if getattr(args, "assign", None) == "kafka" and not isinstance(config.bus, KafkaBusConfig):
        bus = config.bus.type
        return f"--assign kafka needs `bus: {{type: kafka, ...}}` in {args.config}, not `type: {bus}`"
    if args.command in ("worker", "alerting") and not isinstance(config.bus, KafkaBusConfig):
        # A memory bus lives inside one process: the role would run and nobody would hear it.
        return (
            f"`crowdwatch {args.command}` is one role of the distributed mode and needs "
            f"`bus: {{type: kafka, ...}}` in {args.config}, not `type: {config.bus.type}` (a memory "
            "bus lives inside one process); `crowdwatch run` runs both roles in one process"
        )
    events_out: Path | None = getattr(args, "events_out", None)
    if events_out is not None:
        if events_out.is_dir():
            return f"--events-out {events_out} is a directory; give a file name"
        try:
            events_out.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            return f"--events-out {events_out}: cannot create its folder: {exc.strerror or exc}"
    return None


class _MetricsPortError(RuntimeError):
    pass


def _serve_metrics(config: object, registry: object, args: argparse.Namespace) -> object:
    """The metrics endpoint, started before anything slow: a taken port is told at once."""
    from prometheus_client import CollectorRegistry, start_http_server

    from crowdwatch.config.root import AppConfig

    assert isinstance(config, AppConfig)
    assert isinstance(registry, CollectorRegistry)
    if not config.metrics.enabled:
        return None
    host, port = config.metrics.host, config.metrics.port
    override = getattr(args, "metrics_port", None)
    if override is not None:
        port = override
    try:
        server, _ = start_http_server(port, host, registry=registry)
    except OSError as exc:
        raise _MetricsPortError(
            f"cannot serve metrics on {host}:{port} ({exc.strerror or exc}); another crowdwatch "
            "process there? give each process its own port: --metrics-port N (0: any free port), "
            "or metrics.enabled: false"
        ) from None
    log.warning("metrics on http://%s:%d/metrics", host, server.server_port)
    return server


def _run_embedded(config: object, args: argparse.Namespace, models_dir: Path | None) -> int:
    from prometheus_client import CollectorRegistry

    from crowdwatch.config.root import AppConfig
    from crowdwatch.runtime import gc_tuning
    from crowdwatch.runtime.embedded import EmbeddedApp

    assert isinstance(config, AppConfig)
    registry = CollectorRegistry()
    server = _serve_metrics(config, registry, args)
    try:
        app = EmbeddedApp(config, registry=registry, events_out=args.events_out, models_dir=models_dir)
    except BaseException:
        _shutdown(server)
        raise
    stop = threading.Event()
    _on_signals(stop)
    console = Console()
    app.start()
    tuned = gc_tuning.apply(config.gc)
    try:
        if args.no_ui or not console.is_terminal:
            app.run(args.duration, stop)
        else:
            _run_live(app, args.duration, stop, console)
    finally:
        gc_tuning.restore(tuned)
        app.stop()
        _shutdown(server)
    _summary(app, console)
    return 0


def _run_role(config: object, args: argparse.Namespace, models_dir: Path | None) -> int:
    from prometheus_client import CollectorRegistry

    from crowdwatch.config.root import AppConfig
    from crowdwatch.runtime import gc_tuning
    from crowdwatch.runtime.roles import AlertingRole, WorkerRole

    assert isinstance(config, AppConfig)
    registry = CollectorRegistry()
    server = _serve_metrics(config, registry, args)
    role: WorkerRole | AlertingRole
    try:
        if args.command == "worker":
            role = WorkerRole(config, registry=registry, models_dir=models_dir)
        else:
            role = AlertingRole(config, registry=registry, group=args.group)
    except BaseException:
        _shutdown(server)
        raise
    stop = threading.Event()
    _on_signals(stop)
    assignment = None
    if isinstance(role, WorkerRole) and args.assign == "kafka":
        from crowdwatch.runtime.assignment import KafkaCameraAssignment

        assignment = KafkaCameraAssignment(
            config, role.fleet, registry=registry, topic=args.cameras_topic, group=args.group
        )
        role.start(cameras=False)
        assignment.start()
    else:
        role.start()
    tuned = gc_tuning.apply(config.gc)
    log.warning("crowdwatch %s running", args.command)
    try:
        if isinstance(role, WorkerRole):
            role.run(stop, args.duration, until_sources_end=assignment is None)
        else:
            role.run(stop, args.duration)
    finally:
        gc_tuning.restore(tuned)
        if assignment is not None:
            assignment.stop()
        role.stop()
        _shutdown(server)
    return 0


def _shutdown(server: object) -> None:
    if server is not None:
        server.shutdown()  # type: ignore[attr-defined]


def _run_live(app: object, duration: float | None, stop: threading.Event, console: Console) -> None:
    from rich.live import Live

    from crowdwatch.console.terminal import render
    from crowdwatch.runtime.embedded import EmbeddedApp

    assert isinstance(app, EmbeddedApp)
    names = app.center_names()

    def view() -> object:
        return render(app.live.cameras(), app.live.zones(), app.store.list_alerts(open_only=False), names)

    with Live(get_renderable=view, console=console, refresh_per_second=4, screen=False):  # type: ignore[arg-type]
        app.run(duration, stop)


def _summary(app: object, console: Console) -> None:
    from crowdwatch.console.terminal import render
    from crowdwatch.runtime.embedded import EmbeddedApp

    assert isinstance(app, EmbeddedApp)
    alerts = app.store.list_alerts(open_only=False)
    console.print(render(app.live.cameras(), app.live.zones(), alerts, app.center_names()))
    console.print(f"{len(alerts)} alert(s) raised.")


def _on_signals(stop: threading.Event) -> None:
    def handler(signum: int, frame: object) -> None:
        if stop.is_set():  # second Ctrl-C: the user really wants out
            raise KeyboardInterrupt
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


if __name__ == "__main__":
    sys.exit(main())
