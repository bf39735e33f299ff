"""``agent.yaml`` (or ``agent.toml``): what the agent runs, reads, publishes and keeps.

:func:`load_config` reads the file and validates every key on start; an error
names the key (``models[0].alarm.k``) and the fix. The complete file, with
every key and its default, is in the README section "Edge agent". Relative
paths start at the config file's folder. Durations are seconds or strings
(``90s``, ``5m``, ``2h``, ``1d``); with a bundle whose time column is a plain
number (cycles), durations in ``alarm`` and ``degradation`` are in its time units.

Passwords are never read from the config itself: ``password_file`` or
``password_env`` name where they are.
"""

from __future__ import annotations

import os
import socket
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plantml.agent.errors import AgentConfigError
from plantml.agent.schema import Section

ON_STALE = ("fallback", "rule", "stop")
TOPICS = {
    "prediction": "plant/{site}/{asset}/prediction",
    "alarm": "plant/{site}/{asset}/alarm",
    "summary": "plant/{site}/_agent/summary",
    "rejected": "plant/{site}/_agent/rejected",
}
NO_CLEAR_PASSWORD = (
    "passwords are never read from the config in clear text; put it in a file readable only "
    "by the agent ({key}_file: /etc/plantml/secret) or an environment variable ({key}_env: NAME)"
)


@dataclass(frozen=True)
class AlarmConfig:
    """Alarm state machine settings (:mod:`plantml.agent.alarms`); None: from the bundle."""

    raise_at: float | None = None
    clear_at: float | None = None
    direction: str | None = None
    k: int = 1
    n: int = 1
    min_duration: float = 0.0
    cooldown: float = 0.0


@dataclass(frozen=True)
class RuleCondition:
    """One condition of a degraded-mode rule: ``column`` above or below a value."""

    column: str
    above: float | None = None
    below: float | None = None

    def holds(self, value: float) -> bool:
        if self.above is not None and value > self.above:
            return True
        return self.below is not None and value < self.below


@dataclass(frozen=True)
class FallbackSpec:
    """A bundle that serves an asset when the sensors ``without`` are stale."""

    bundle: Path
    without: tuple[str, ...]


@dataclass(frozen=True)
class DegradationConfig:
    """Sensor staleness and what to do about it."""

    stale_after: float | None = None
    hold: float = 0.0
    on_stale: tuple[str, ...] = ("fallback", "stop")
    rule: tuple[RuleCondition, ...] = ()
    fallbacks: tuple[FallbackSpec, ...] = ()


@dataclass(frozen=True)
class ModelConfig:
    bundle: Path
    name: str | None
    assets: tuple[str, ...]
    threads: int
    alarm: AlarmConfig
    degradation: DegradationConfig


@dataclass(frozen=True)
class Secret:
    """Where a password lives: a file or an environment variable (read at connect time)."""

    file: Path | None = None
    env: str | None = None
    where: str = ""

    def read(self) -> str | None:
        if self.file is not None:
            try:
                return self.file.read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as exc:
                raise AgentConfigError(
                    f"{self.where}_file: cannot read {self.file} ({exc.strerror}); check the "
                    "path and that the agent's user may read it"
                ) from None
        if self.env is not None:
            value = os.environ.get(self.env)
            if value is None:
                raise AgentConfigError(
                    f"{self.where}_env: the environment variable {self.env} is not set; set it "
                    "in the service's environment (systemd: EnvironmentFile=)"
                )
            return value
        return None


@dataclass(frozen=True)
class TLSConfig:
    ca_file: Path | None
    cert_file: Path | None
    key_file: Path | None
    verify_hostname: bool = True


@dataclass(frozen=True)
class MQTTConfig:
    host: str
    port: int
    client_id: str
    keepalive: int
    username: str | None
    password: Secret
    tls: TLSConfig | None
    reconnect_min: float
    reconnect_max: float
    session_expiry: int
    inflight: int
    retain: bool
    topics: dict[str, str]


@dataclass(frozen=True)
class MQTTInputConfig:
    name: str
    topic: str
    qos: int = 1


@dataclass(frozen=True)
class OPCUASecurity:
    policy: str
    mode: str
    certificate: Path
    private_key: Path
    server_certificate: Path | None


@dataclass(frozen=True)
class OPCUAInputConfig:
    name: str
    endpoint: str
    assets: dict[str, dict[str, str]]
    row_interval: float
    sampling_interval: float
    time_format: str
    security: OPCUASecurity | None
    username: str | None
    password: Secret
    reconnect_min: float
    reconnect_max: float
    application_uri: str | None


@dataclass(frozen=True)
class FileInputConfig:
    name: str
    path: str
    format: str
    rate: float
    asset_column: str | None
    time_column: str | None


@dataclass(frozen=True)
class StoreConfig:
    path: Path
    outbox_max_bytes: int
    log_max_age: float
    log_max_bytes: int
    synchronous: str
    rejected_keep: int


@dataclass(frozen=True)
class AgentConfig:
    site: str
    agent_id: str
    state_dir: Path
    models: tuple[ModelConfig, ...]
    inputs: tuple[Any, ...]
    mqtt: MQTTConfig | None
    store: StoreConfig
    max_abs: float = 1e12
    bounds: dict[str, tuple[float, float]] = field(default_factory=dict)
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = 9108
    summary_interval: float = 60.0
    sketches: str = "plantml.agent.summary:ConditionCounts"
    max_rejected_messages: int = 100
    batch: int = 500
    queue: int = 10000
    shutdown_grace: float = 10.0
    source: Path | None = None


def _alarm(s: Section) -> AlarmConfig:
    cfg = AlarmConfig(
        raise_at=s.number("raise", None),
        clear_at=s.number("clear", None),
        direction=s.string("direction", None, ("above", "below")),
        k=s.integer("k", 1, 1),
        n=s.integer("n", 1, 1),
        min_duration=s.duration("min_duration", 0),
        cooldown=s.duration("cooldown", 0),
    )
    s.done()
    if cfg.k > cfg.n:
        raise AgentConfigError(f"{s.key('k')} ({cfg.k}) must be <= {s.key('n')} ({cfg.n})")
    if cfg.raise_at is not None and cfg.clear_at is not None and cfg.direction is not None:
        wrong = (
            cfg.clear_at > cfg.raise_at if cfg.direction == "above" else cfg.clear_at < cfg.raise_at
        )
        if wrong:
            raise AgentConfigError(
                f"{s.key('clear')} ({cfg.clear_at}) is on the alarm side of {s.key('raise')} "
                f"({cfg.raise_at}); for direction {cfg.direction} the clear threshold must be "
                f"{'lower' if cfg.direction == 'above' else 'higher'} (hysteresis)"
            )
    return cfg


def _degradation(s: Section) -> DegradationConfig:
    on_stale = tuple(s.string_list("on_stale", ["fallback", "stop"]))
    bad = [o for o in on_stale if o not in ON_STALE]
    if bad or not on_stale:
        raise AgentConfigError(
            f"{s.key('on_stale')}: {bad or on_stale!r} — use an ordered list of {', '.join(ON_STALE)}"
        )
    rules = []
    for r in s.sections("rule", "", required=False):
        cond = RuleCondition(r.string("column"), r.number("above", None), r.number("below", None))
        if cond.column is None or (cond.above is None and cond.below is None):
            raise AgentConfigError(f"{r.where}: a rule condition needs column and above or below")
        r.done()
        rules.append(cond)
    if "rule" in on_stale and not rules:
        raise AgentConfigError(
            f"{s.key('on_stale')} lists 'rule' but {s.key('rule')} is empty; add conditions such "
            "as [{column: bearing_temp, above: 90}]"
        )
    fallbacks = []
    for f in s.sections("fallbacks", "", required=False):
        spec = FallbackSpec(f.path("bundle", must_exist=True), tuple(f.string_list("without")))
        if spec.bundle is None or not spec.without:
            raise AgentConfigError(f"{f.where}: a fallback needs bundle and without (sensors)")
        f.done()
        fallbacks.append(spec)
    cfg = DegradationConfig(
        stale_after=s.duration("stale_after", None),
        hold=s.duration("hold", 0),
        on_stale=on_stale,
        rule=tuple(rules),
        fallbacks=tuple(fallbacks),
    )
    s.done()
    if cfg.stale_after is not None and cfg.hold > cfg.stale_after:
        raise AgentConfigError(
            f"{s.key('hold')} ({cfg.hold:g}) is longer than {s.key('stale_after')} "
            f"({cfg.stale_after:g}); a held value would hide a stale sensor"
        )
    return cfg


def _model(s: Section) -> ModelConfig:
    cfg = ModelConfig(
        bundle=s.path("bundle", must_exist=True)
        or s.require("bundle", "give the bundle folder written by plantml-export"),
        name=s.string("name", None),
        assets=tuple(s.string_list("assets", ["*"])),
        threads=s.integer("threads", 1, 1, 64),
        alarm=_alarm(s.section("alarm")),
        degradation=_degradation(s.section("degradation")),
    )
    s.done()
    return cfg


def _secret(s: Section, key: str) -> Secret:
    if s.has(key):
        raise AgentConfigError(f"{s.key(key)}: " + NO_CLEAR_PASSWORD.format(key=key))
    secret = Secret(s.path(f"{key}_file"), s.string(f"{key}_env"), s.key(key))
    if secret.file is not None and secret.env is not None:
        raise AgentConfigError(f"{s.where}: give {key}_file or {key}_env, not both")
    return secret


def _mqtt(s: Section, agent_id: str, site: str) -> MQTTConfig:
    tls = None
    if s.has("tls"):
        t = s.section("tls")
        tls = TLSConfig(
            t.path("ca_file", must_exist=True),
            t.path("cert_file", must_exist=True),
            t.path("key_file", must_exist=True),
            t.boolean("verify_hostname", True),
        )
        t.done()
        if (tls.cert_file is None) != (tls.key_file is None):
            raise AgentConfigError(f"{t.where}: give both cert_file and key_file, or neither")
    reconnect = s.section("reconnect")
    topics = s.section("topics")
    names = {k: topics.string(k, v) for k, v in TOPICS.items()}
    topics.done()
    for kind, template in names.items():
        if kind in ("prediction", "alarm") and "{asset}" not in template:
            raise AgentConfigError(f"{topics.key(kind)}: the topic must contain {{asset}}")
    cfg = MQTTConfig(
        host=s.string("host", "127.0.0.1"),
        port=s.integer("port", 8883 if tls else 1883, 1, 65535),
        client_id=s.string("client_id", agent_id),
        keepalive=s.integer("keepalive", 30, 5, 3600),
        username=s.string("username", None),
        password=_secret(s, "password"),
        tls=tls,
        reconnect_min=reconnect.duration("min_delay", 1),
        reconnect_max=reconnect.duration("max_delay", 60),
        session_expiry=int(s.duration("session_expiry", "1d")),
        inflight=s.integer("inflight", 100, 1, 65535),
        retain=s.boolean("retain", True),
        topics=names,
    )
    reconnect.done()
    s.done()
    if cfg.reconnect_min <= 0 or cfg.reconnect_max < cfg.reconnect_min:
        raise AgentConfigError(f"{reconnect.where}: need 0 < min_delay <= max_delay")
    return cfg


def _input(s: Section, i: int, site: str) -> Any:
    kind = s.string("type", None, ("mqtt", "opcua", "file"))
    if kind is None:
        raise AgentConfigError(f"{s.key('type')} is missing; use mqtt, opcua or file")
    name = s.string("name", f"{kind}{i}")
    if kind == "mqtt":
        cfg: Any = MQTTInputConfig(
            name, s.string("topic", "plant/{site}/{asset}/telemetry"), s.integer("qos", 1, 0, 1)
        )
    elif kind == "file":
        path = s.string("path") or s.require("path", "give a .csv or .jsonl file, or '-' for stdin")
        cfg = FileInputConfig(
            name,
            path if path == "-" else str(s.path("path", must_exist=True)),
            s.string("format", "auto", ("auto", "csv", "jsonl")),
            s.number("rate", 0.0) or 0.0,
            s.string("asset_column", None),
            s.string("time_column", None),
        )
        if cfg.rate < 0:
            raise AgentConfigError(f"{s.key('rate')}: rows per second must be >= 0")
    else:
        cfg = _opcua(s, name)
    s.done()
    return cfg


def _opcua(s: Section, name: str) -> OPCUAInputConfig:
    fix = "map each asset to its nodes: {pump-1: {'ns=2;s=Pump1.Pressure': pressure}}"
    assets_raw = s.require("assets", fix)
    if not isinstance(assets_raw, dict) or not assets_raw:
        raise AgentConfigError(f"{s.key('assets')}: {fix}")
    assets: dict[str, dict[str, str]] = {}
    for asset, nodes in assets_raw.items():
        if (
            not isinstance(nodes, dict)
            or not nodes
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in nodes.items())
        ):
            raise AgentConfigError(f"{s.key('assets')}.{asset}: {fix}")
        assets[str(asset)] = dict(nodes)
    security = None
    if s.has("security"):
        sec = s.section("security")
        security = OPCUASecurity(
            policy=sec.string(
                "policy",
                "Basic256Sha256",
                ("Basic256Sha256", "Aes128Sha256RsaOaep", "Aes256Sha256RsaPss"),
            ),
            mode=sec.string("mode", "SignAndEncrypt", ("Sign", "SignAndEncrypt")),
            certificate=sec.path("certificate", must_exist=True)
            or sec.require("certificate", "give the client certificate (.der or .pem)"),
            private_key=sec.path("private_key", must_exist=True)
            or sec.require("private_key", "give the client private key (.pem)"),
            server_certificate=sec.path("server_certificate", must_exist=True),
        )
        sec.done()
    reconnect = s.section("reconnect")
    cfg = OPCUAInputConfig(
        name=name,
        endpoint=s.string("endpoint")
        or s.require("endpoint", "give the server URL, e.g. opc.tcp://plc.local:4840/"),
        assets=assets,
        row_interval=s.duration("row_interval", 1.0),
        sampling_interval=s.duration("sampling_interval", 0.5),
        time_format=s.string("time_format", "iso", ("iso", "epoch")),
        security=security,
        username=s.string("username", None),
        password=_secret(s, "password"),
        reconnect_min=reconnect.duration("min_delay", 1),
        reconnect_max=reconnect.duration("max_delay", 60),
        application_uri=s.string("application_uri", None),
    )
    reconnect.done()
    if cfg.row_interval <= 0:
        raise AgentConfigError(f"{s.key('row_interval')} must be > 0")
    return cfg


def _limits(s: Section) -> tuple[float, dict[str, tuple[float, float]]]:
    max_abs = s.number("max_abs", 1e12, positive=True)
    bounds = {}
    for col, pair in (s.raw("bounds", {}) or {}).items():
        ok = isinstance(pair, list) and len(pair) == 2
        ok = ok and all(isinstance(v, int | float) and not isinstance(v, bool) for v in pair)
        if not ok or pair[0] > pair[1]:
            raise AgentConfigError(
                f"{s.key('bounds')}.{col}: expected [low, high] with low <= high, got {pair!r}"
            )
        bounds[str(col)] = (float(pair[0]), float(pair[1]))
    s.done()
    return max_abs, bounds


def parse_config(data: Any, base_dir: Path, source: Path | None = None) -> AgentConfig:
    """Validate a parsed config mapping; relative paths start at ``base_dir``."""
    root = Section(data, "", base_dir)
    site = root.string("site") or root.require("site", "name the plant site (used in topics)")
    if any(c in site for c in "/+#"):
        raise AgentConfigError(f"site: {site!r} may not contain '/', '+' or '#' (MQTT topics)")
    agent_id = root.string("agent_id", socket.gethostname())
    state_dir = root.path("state_dir", "state")
    models = tuple(_model(m) for m in root.sections("models", "list at least one {bundle: FOLDER}"))
    inputs = tuple(
        _input(s, i, site)
        for i, s in enumerate(root.sections("inputs", "add an mqtt, opcua or file input"))
    )
    names = [i.name for i in inputs]
    if len(set(names)) != len(names):
        raise AgentConfigError(f"inputs: names must be unique, got {names}")
    mqtt = _mqtt(root.section("mqtt"), agent_id, site) if root.has("mqtt") else None
    if mqtt is None and any(isinstance(i, MQTTInputConfig) for i in inputs):
        raise AgentConfigError("inputs: an mqtt input needs the mqtt section (host, port, ...)")
    st = root.section("store")
    store = StoreConfig(
        path=st.path("path", str(state_dir / "agent.db")),
        outbox_max_bytes=st.size("outbox_max_bytes", "100MB"),
        log_max_age=st.duration("log_max_age", "30d"),
        log_max_bytes=st.size("log_max_bytes", "500MB"),
        synchronous=st.string("synchronous", "full", ("full", "normal")),
        rejected_keep=st.integer("rejected_keep", 10000, 1),
    )
    st.done()
    max_abs, bounds = _limits(root.section("limits"))
    met, summ, proc = root.section("metrics"), root.section("summary"), root.section("processing")
    enabled = met.boolean("enabled", True)
    cfg = AgentConfig(
        site=site,
        agent_id=agent_id,
        state_dir=state_dir,
        models=models,
        inputs=inputs,
        mqtt=mqtt,
        store=store,
        max_abs=max_abs,
        bounds=bounds,
        metrics_host=met.string("host", "127.0.0.1"),
        metrics_port=met.integer("port", 9108, 0, 65535) if enabled else None,
        summary_interval=summ.duration("interval", 60),
        sketches=summ.string("sketches", "plantml.agent.summary:ConditionCounts"),
        max_rejected_messages=summ.integer("max_rejected_messages", 100, 0),
        batch=proc.integer("batch", 500, 1),
        queue=proc.integer("queue", 10000, 1),
        shutdown_grace=proc.duration("shutdown_grace", 10),
        source=source,
    )
    for s in (met, summ, proc):
        s.done()
    root.done()
    if cfg.summary_interval <= 0:
        raise AgentConfigError("summary.interval must be > 0")
    return cfg


def load_config(path: str | Path) -> AgentConfig:
    """Read and validate ``agent.yaml`` / ``agent.yml`` / ``agent.toml``."""
    path = Path(path)
    if not path.is_file():
        raise AgentConfigError(
            f"config file {path} not found; write one (the README section 'Edge agent' has a "
            "complete agent.yaml) and pass it with --config"
        )
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise AgentConfigError(f"{path} is not valid TOML: {exc}") from None
    elif path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise AgentConfigError(f"{path} is not valid YAML: {exc}") from None
    else:
        raise AgentConfigError(f"{path}: use a .yaml, .yml or .toml file")
    return parse_config(data, path.resolve().parent, path.resolve())
