"""docker-compose.yml, the Dockerfile, Prometheus and Grafana provisioning agree with each other and
with the code. No Docker and no network: the files are parsed and checked against the source."""

from __future__ import annotations

import ast
import json
import re
import tomllib
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from crowdwatch.alerting.metrics import AlertingMetrics
from crowdwatch.bus.spool import SpoolMetrics
from crowdwatch.config.backends import KafkaBusConfig, RedisStoreConfig
from crowdwatch.config.root import AppConfig, load_config
from crowdwatch.detectors.catalog import CATALOG
from crowdwatch.runtime.metrics import WorkerMetrics

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src" / "crowdwatch"
COMPOSE = REPO / "docker-compose.yml"
PROMETHEUS = REPO / "deploy" / "prometheus" / "prometheus.yml"
GRAFANA = REPO / "deploy" / "grafana"
DASHBOARDS = GRAFANA / "dashboards"

ROLES = ("worker", "alerting", "console")
INFRA = ("kafka", "redis", "prometheus", "grafana")
# One-shot jobs: they run to completion, so others wait for their success, not their health.
JOBS = ("cameras",)
CONFIG_IN_CONTAINER = "/etc/crowdwatch/config.yaml"
# What each role needs before it can start (DESIGN 1): workers publish to Kafka; alerting
# consumes Kafka and writes Redis; the console reads Redis (and the bus).
NEEDS = {
    "worker": {"kafka", "cameras"},
    "cameras": {"kafka"},
    "alerting": {"kafka", "redis"},
    "console": {"redis"},
    "grafana": {"prometheus"},
}
# The dashboard must show at least these (metric families, as defined in src/).
DASHBOARD_MUST_SHOW = {
    "crowdwatch_frames_analysed": "frames analysed",
    "crowdwatch_detect_seconds": "detect latency",
    "crowdwatch_zone_people": "people per zone",
    "crowdwatch_events": "gathering events",
    "crowdwatch_alerting_events_consumed": "alerting throughput",
    "crowdwatch_alerting_processing_latency_seconds": "alerting latency",
    "crowdwatch_alerting_dlq_messages": "dead letters",
    "crowdwatch_bus_spool_depth": "spool depth",
}


# --- loading ----------------------------------------------------------------------------------


@cache
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def services() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose()["services"]
    return found


def image_of(name: str) -> str:
    image: str = services()[name]["image"]
    return image


def mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, target) of the bind mounts (short syntax, sources starting with ./)."""
    out = []
    for volume in service.get("volumes", []):
        assert isinstance(volume, str), "use the short volume syntax (the checks read it)"
        parts = volume.split(":")
        if len(parts) >= 2 and parts[0].startswith("./"):
            out.append((parts[0], parts[1]))
    return out


def role_config(role: str) -> tuple[Path, AppConfig]:
    """The configuration file mounted into `role` at the path its command names."""
    service = services()[role]
    command = service["command"]
    assert command[:3] == ["crowdwatch", role, "-c"], command
    target = command[3]
    sources = [src for src, dst in mounts(service) if dst == target]
    assert len(sources) == 1, f"{role}: {target} is not mounted from the repository"
    path = REPO / sources[0]
    return path, load_config(path)


@cache
def prometheus() -> dict[str, Any]:
    data = yaml.safe_load(PROMETHEUS.read_text())
    assert isinstance(data, dict)
    return data


def dashboards() -> list[Path]:
    found = sorted(DASHBOARDS.glob("*.json"))
    assert found, f"no dashboard JSON under {DASHBOARDS}"
    return found


# --- metric names defined in src/ -------------------------------------------------------------

METRIC_CLASSES = {
    "Counter": "counter",
    "Gauge": "gauge",
    "Histogram": "histogram",
    "BatchHistogram": "histogram",  # crowdwatch.alerting.batch_histogram
    "Summary": "summary",
}
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
}


def _callee(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Name):
        return call.func.id
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    return None


def _defaults(func: ast.FunctionDef) -> dict[str, ast.expr]:
    args = func.args
    positional = [*args.posonlyargs, *args.args]
    with_defaults = positional[len(positional) - len(args.defaults) :]
    pairs = {a.arg: d for a, d in zip(with_defaults, args.defaults, strict=True)}
    pairs.update({a.arg: d for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d is not None})
    return pairs


def _params(func: ast.FunctionDef) -> list[str]:
    return [a.arg for a in [*func.args.posonlyargs, *func.args.args, *func.args.kwonlyargs]]


class _MetricScanner(ast.NodeVisitor):
    """Finds `Counter("name", ..., namespace=..., subsystem=...)` (and Gauge, Histogram, Summary)
    calls with a literal name, also through small wrappers such as
    `def counter(name, doc): return Counter(name, doc, namespace=namespace, subsystem="bus")`.
    Namespaces and subsystems may be literals or parameters with literal defaults."""

    def __init__(self) -> None:
        self.stack: list[ast.FunctionDef] = []
        self.wrappers: dict[str, tuple[str, ast.Call, ast.FunctionDef]] = {}
        self.found: dict[str, str] = {}

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        # A wrapper: its body calls a metric class with its own first parameter as the name.
        params = _params(node)
        for call in ast.walk(node):
            if isinstance(call, ast.Call) and _callee(call) in METRIC_CLASSES and call.args:
                first = call.args[0]
                if isinstance(first, ast.Name) and params and first.id == params[0]:
                    self.wrappers[node.name] = (METRIC_CLASSES[_callee(call) or ""], call, node)
        self.stack.append(node)
        self.generic_visit(node)
        self.stack.pop()

    def _literal(self, expr: ast.expr | None, scopes: list[ast.FunctionDef]) -> str | None:
        if expr is None:
            return ""
        if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
            return expr.value
        if isinstance(expr, ast.Name):
            for scope in reversed(scopes):
                default = _defaults(scope).get(expr.id)
                if default is not None:
                    return self._literal(default, scopes)
        return None

    def visit_Call(self, node: ast.Call) -> None:
        name = _callee(node)
        first = node.args[0] if node.args else None
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            if name in METRIC_CLASSES:
                self._add(first.value, METRIC_CLASSES[name], node, self.stack)
            elif name in self.wrappers:
                kind, inner, wrapper = self.wrappers[name]
                self._add(first.value, kind, inner, [*self.stack, wrapper])
        self.generic_visit(node)

    def _add(self, base: str, kind: str, call: ast.Call, scopes: list[ast.FunctionDef]) -> None:
        keywords = {k.arg: k.value for k in call.keywords if k.arg}
        namespace = self._literal(keywords.get("namespace"), scopes)
        subsystem = self._literal(keywords.get("subsystem"), scopes)
        assert namespace is not None, f"cannot resolve the namespace of {base!r}"
        assert subsystem is not None, f"cannot resolve the subsystem of {base!r}"
        full = "_".join(part for part in (namespace, subsystem, base) if part)
        if kind == "counter":
            full = full.removesuffix("_total")  # prometheus_client's family name
        self.found[full] = kind


@cache
def defined_metrics() -> dict[str, str]:
    """Metric family name -> type, for every metric created in src/ (found in the source)."""
    found: dict[str, str] = {}
    for path in sorted(SRC.rglob("*.py")):
        scanner = _MetricScanner()  # wrappers are local to their module
        scanner.visit(ast.parse(path.read_text(), filename=str(path)))
        found.update(scanner.found)
    return found


def exposed_names() -> set[str]:
    """Every sample name the metrics defined in src/ expose (x_total, x_bucket, ...)."""
    return {family + suffix for family, kind in defined_metrics().items() for suffix in SUFFIXES[kind]}


def family_of(sample: str) -> str:
    for family, kind in defined_metrics().items():
        if any(sample == family + suffix for suffix in SUFFIXES[kind]):
            return family
    raise KeyError(sample)


# --- PromQL -----------------------------------------------------------------------------------

_PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or"}
_PROMQL_WORDS |= {"unless", "offset", "inf", "nan"}


def promql_metrics(expr: str) -> set[str]:
    """Metric names an expression selects: identifiers that are not functions, keywords, labels
    (inside {...}, by/without (...)), ranges ([...]), strings or Grafana variables."""
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\$\{?\w+\}?", " ", text)
    # label_values(metric, label): only the first argument is a metric.
    text = re.sub(r"label_values\(\s*([A-Za-z_:][\w:]*)\s*,\s*\w+\s*\)", r"\1", text)
    names = set()
    for match in re.finditer(r"(?<![\w.])([A-Za-z_:][\w:]*)(\s*\()?", text):
        word, is_call = match.group(1), match.group(2)
        if is_call or word.lower() in _PROMQL_WORDS:
            continue
        names.add(word)
    return names


def dashboard_queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, PromQL) for every panel target (rows nest panels) and query variable."""

    def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for panel in items:
            yield panel
            yield from panels(panel.get("panels", []))

    for panel in panels(dashboard.get("panels", [])):
        for target in panel.get("targets", []):
            yield f"panel {panel.get('title')!r} {target.get('refId')}", target["expr"]
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            query = variable["query"]
            yield f"variable {variable['name']!r}", query["query"] if isinstance(query, dict) else query


# --- compose: services, health, images --------------------------------------------------------


def test_every_service_is_there() -> None:
    assert set(services()) == set(ROLES) | set(INFRA) | set(JOBS)


def test_workers_share_cameras_published_by_the_job() -> None:
    worker, job = services()["worker"], services()["cameras"]
    assert worker["command"][4:] == ["--assign", "kafka"]
    assert job["command"] == ["crowdwatch", "cameras", "publish", "-c", CONFIG_IN_CONTAINER]
    assert job.get("restart") == "no"


@pytest.mark.parametrize("name", ROLES + INFRA)
def test_service_has_a_healthcheck(name: str) -> None:
    check = services()[name].get("healthcheck")
    assert check, f"{name} has no healthcheck"
    assert not check.get("disable", False)
    test = check["test"]
    assert isinstance(test, list), test
    assert test[0] in ("CMD", "CMD-SHELL"), test
    assert len(test) > 1, test
    for key in ("interval", "timeout", "retries"):
        assert key in check, f"{name}: healthcheck without {key}"


@pytest.mark.parametrize("name", ROLES + INFRA + JOBS)
def test_depends_on_waits_for_healthy_dependencies(name: str) -> None:
    depends = services()[name].get("depends_on", {})
    assert isinstance(depends, dict), f"{name}: depends_on needs the long form with conditions"
    for dependency, rule in depends.items():
        assert dependency in services(), f"{name} depends on unknown service {dependency}"
        if dependency in JOBS:
            assert rule.get("condition") == "service_completed_successfully", (
                f"{name} -> {dependency}: {rule}"
            )
            continue
        assert rule == {"condition": "service_healthy"} or rule.get("condition") == "service_healthy", (
            f"{name} -> {dependency}: {rule}"
        )
        assert services()[dependency].get("healthcheck"), f"{dependency} has no healthcheck to wait for"
    assert NEEDS.get(name, set()) <= set(depends), f"{name} must wait for {NEEDS[name] - set(depends)}"


@pytest.mark.parametrize("name", ROLES + INFRA)
def test_image_is_pinned(name: str) -> None:
    image = image_of(name)
    _, sep, tag = image.rpartition(":")
    assert sep, f"{name}: {image} has no tag"
    assert "/" not in tag, f"{name}: {image} has no tag"
    assert tag != "latest"
    assert re.match(r"^v?\d+(\.\d+)+", tag), f"{name}: {image} is not pinned to a version"


def test_crowdwatch_image_is_built_here_at_the_project_version() -> None:
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    for role in ROLES:
        service = services()[role]
        assert image_of(role) == f"crowdwatch:{version}"
        assert service["build"]["context"] == "."
        assert (REPO / service["build"]["dockerfile"]).is_file()


def test_roles_run_their_role_with_the_mounted_config() -> None:
    for role in ROLES:
        # Options may follow (e.g. the worker's `--assign kafka`).
        assert services()[role]["command"][:4] == ["crowdwatch", role, "-c", CONFIG_IN_CONTAINER]


def test_console_is_marked_as_not_available_yet() -> None:
    # The console role does not exist yet: it must not start with a plain `docker compose up`.
    assert services()["console"].get("profiles"), "console needs a profile until its role exists"
    text = COMPOSE.read_text()
    assert re.search(r"#.*console.*(later|not yet)", text, re.IGNORECASE)


def test_published_ports_stay_on_localhost() -> None:
    for name, service in services().items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond localhost"


# --- environment: only variables the code reads -----------------------------------------------


@cache
def source_texts() -> dict[Path, str]:
    return {path: path.read_text() for path in SRC.rglob("*.py")}


def read_from_environment(name: str) -> bool:
    """`name` appears as a string literal in a src/ module that reads the environment."""
    literal = re.compile(rf"""["']{re.escape(name)}["']""")
    return any(
        literal.search(text) and re.search(r"os\.environ|getenv", text) for text in source_texts().values()
    )


def test_environment_scan_tells_read_from_unread() -> None:
    assert read_from_environment("CROWDWATCH_MODELS_DIR")
    assert not read_from_environment("CROWDWATCH_NOT_A_SETTING")


@pytest.mark.parametrize("role", ROLES)
def test_role_environment_is_read_by_the_code(role: str) -> None:
    environment = services()[role].get("environment", {})
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    unread = [name for name in environment if not read_from_environment(name)]
    assert not unread, f"{role}: environment variables nothing in src/ reads: {unread}"


def test_models_dir_in_compose_matches_the_image() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    models_dir = services()["worker"]["environment"]["CROWDWATCH_MODELS_DIR"]
    assert f"CROWDWATCH_MODELS_DIR={models_dir}" in dockerfile


# --- configuration files ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ROLES + INFRA)
def test_mounted_files_exist(name: str) -> None:
    for source, _ in mounts(services()[name]):
        assert (REPO / source).exists(), f"{name} mounts {source}, which is not in the repository"


@pytest.mark.parametrize("role", ROLES)
def test_role_config_validates_and_points_at_the_compose_services(role: str) -> None:
    _, config = role_config(role)
    assert isinstance(config.bus, KafkaBusConfig), "distributed roles use the Kafka bus"
    assert isinstance(config.store, RedisStoreConfig), "distributed roles use the Redis store"
    for server in config.bus.bootstrap_servers:
        host, port = server.rsplit(":", 1)
        assert host == "kafka", server
        assert port in services()["kafka"]["expose"], f"kafka does not listen on {port}"
        assert f"PLAINTEXT://kafka:{port}" in services()["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    url = re.match(r"redis://([^:/]+):(\d+)/", config.store.url)
    assert url, config.store.url
    assert url.group(1) == "redis", config.store.url
    assert url.group(2) in services()["redis"]["expose"], config.store.url
    if config.bus.spool_path is not None:
        spool_dir = str(Path(config.bus.spool_path).parent)
        assert spool_dir in services()[role]["volumes"], f"{role}: the spool directory is not a volume"


def test_models_of_the_config_are_fetched_into_the_image() -> None:
    _, config = role_config("worker")
    dockerfile = (REPO / "Dockerfile").read_text()
    fetch = re.search(r"crowdwatch models fetch ([^\n\\&]+)", dockerfile)
    assert fetch, "the Dockerfile does not fetch models"
    fetched = set(fetch.group(1).split())
    assert fetched <= set(CATALOG), f"not catalog models: {fetched - set(CATALOG)}"
    assert {config.detector.model, config.counting.density.model} <= fetched


def test_dockerfile_builds_from_the_lock_as_a_non_root_user() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert (
        re.search(r"^FROM python:3\.11-slim", text, re.MULTILINE) or "PYTHON_IMAGE=python:3.11-slim" in text
    )
    assert re.search(r"uv sync --frozen", text)
    users = re.findall(r"^USER\s+(\S+)", text, re.MULTILINE)
    assert users, "the image must not run as root"
    assert users[-1] not in ("root", "0"), "the image must not run as root"
    uv_version = re.search(r'UV_VERSION="([\d.]+)"', (REPO / "scripts" / "lib.sh").read_text())
    assert uv_version
    assert f"UV_VERSION={uv_version.group(1)}" in text, "uv differs from scripts/lib.sh"
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".venv", ".git", "run", ".cache"} <= set(ignored)


# --- Prometheus -------------------------------------------------------------------------------


def scrape_targets() -> dict[str, set[tuple[str, int]]]:
    """job -> {(host or DNS name, port)} from static and DNS service discovery configs."""
    jobs: dict[str, set[tuple[str, int]]] = {}
    for job in prometheus()["scrape_configs"]:
        targets = jobs.setdefault(job["job_name"], set())
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                host, port = target.rsplit(":", 1)
                targets.add((host, int(port)))
        for dns in job.get("dns_sd_configs", []):
            assert dns.get("type", "SRV") == "A", "A records need an explicit port"
            targets.update((name, int(dns["port"])) for name in dns["names"])
    return jobs


@pytest.mark.parametrize("role", ROLES)
def test_prometheus_scrapes_each_role_on_its_metrics_port(role: str) -> None:
    _, config = role_config(role)
    assert config.metrics.enabled
    assert config.metrics.host == "0.0.0.0", "metrics must listen beyond the container's loopback"
    scraped = {port for targets in scrape_targets().values() for host, port in targets if host == role}
    assert scraped == {config.metrics.port}, f"{role}: scraped on {scraped}, serves {config.metrics.port}"
    assert str(config.metrics.port) in services()[role]["expose"]
    healthcheck = " ".join(services()[role]["healthcheck"]["test"])
    assert f":{config.metrics.port}/metrics" in healthcheck


def test_prometheus_targets_are_compose_services() -> None:
    for job, targets in scrape_targets().items():
        assert targets, f"job {job} has no targets"
        for host, _ in targets:
            assert host in services() or host == "localhost", f"job {job}: unknown host {host}"


def test_prometheus_config_is_mounted() -> None:
    assert ("./deploy/prometheus/prometheus.yml", "/etc/prometheus/prometheus.yml") in mounts(
        services()["prometheus"]
    )


# --- Grafana ----------------------------------------------------------------------------------


def test_metric_scan_finds_what_the_metric_classes_register() -> None:
    registry = CollectorRegistry()
    WorkerMetrics(registry)
    AlertingMetrics.create(registry)
    SpoolMetrics.create(registry)
    registered = {m.name: m.type for m in registry.collect()}
    assert registered, "no metrics registered"
    scanned = defined_metrics()
    missing = {name: kind for name, kind in registered.items() if scanned.get(name) != kind}
    assert not missing, f"the source scan missed {missing}"


def test_promql_names_are_extracted() -> None:
    expr = (
        "histogram_quantile(0.95, sum by (le, camera) "
        '(rate(crowdwatch_detect_seconds_bucket{camera=~"$camera"}[$__rate_interval]))) '
        "/ on (camera) group_left max(up) and crowdwatch_zone_people offset 5m"
    )
    assert promql_metrics(expr) == {"crowdwatch_detect_seconds_bucket", "up", "crowdwatch_zone_people"}
    assert promql_metrics("label_values(crowdwatch_events_total, camera)") == {"crowdwatch_events_total"}


def test_grafana_datasource_is_the_compose_prometheus() -> None:
    sources = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    (source,) = sources["datasources"]
    assert source["type"] == "prometheus"
    url = re.match(r"http://([\w-]+):(\d+)$", source["url"])
    assert url, source["url"]
    assert url.group(1) == "prometheus"
    assert f"127.0.0.1:{url.group(2)}:{url.group(2)}" in services()["prometheus"]["ports"]
    assert ("./deploy/grafana/provisioning", "/etc/grafana/provisioning") in mounts(services()["grafana"])
    providers = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "crowdwatch.yml").read_text())
    paths = {p["options"]["path"] for p in providers["providers"]}
    assert paths <= {
        dst for src, dst in mounts(services()["grafana"]) if src == "./deploy/grafana/dashboards"
    }


@pytest.mark.parametrize("path", dashboards(), ids=lambda p: p.name)
def test_dashboard_uses_only_metrics_defined_in_the_code(path: Path) -> None:
    dashboard = json.loads(path.read_text())
    known = exposed_names()
    sources = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    uids = {s["uid"] for s in sources["datasources"]}
    queries = list(dashboard_queries(dashboard))
    assert queries
    used: set[str] = set()
    for where, expr in queries:
        names = promql_metrics(expr)
        assert names, f"{where}: no metric in {expr!r}"
        unknown = names - known
        assert not unknown, f"{where}: {sorted(unknown)} are not metrics defined in src/"
        used |= {family_of(n) for n in names}

    def datasources(node: Any) -> Iterator[dict[str, Any]]:
        if isinstance(node, dict):
            if isinstance(node.get("datasource"), dict):
                yield node["datasource"]
            for value in node.values():
                yield from datasources(value)
        elif isinstance(node, list):
            for value in node:
                yield from datasources(value)

    unknown_sources = {d["uid"] for d in datasources(dashboard)} - uids
    assert not unknown_sources, f"datasources not provisioned: {unknown_sources}"
    missing = {what for family, what in DASHBOARD_MUST_SHOW.items() if family not in used}
    assert not missing, f"the dashboard does not show: {sorted(missing)}"
