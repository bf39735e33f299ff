"""agent.yaml validation: a good file parses; each bad key is named with its fix."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from plantml.agent.config import load_config, parse_config
from plantml.agent.errors import AgentConfigError
from plantml.agent.models import ModelSlot
from plantml.agent.schema import parse_duration, parse_size
from tests.bundles import make_bundle


@pytest.fixture
def base(tmp_path) -> dict:
    make_bundle(tmp_path / "bundle", threshold=0.5, max_gap=1.5, features=("a", "b"))
    (tmp_path / "rows.csv").write_text("unit,t,a,b\n")
    return {
        "site": "plant1",
        "models": [{"bundle": "bundle", "assets": ["u*"], "alarm": {"k": 2, "n": 3}}],
        "inputs": [{"type": "file", "path": "rows.csv"}],
    }


def parse(data: dict, folder: Path):
    return parse_config(data, folder)


def test_minimal_config_and_defaults(base, tmp_path):
    cfg = parse(base, tmp_path)
    assert cfg.site == "plant1" and cfg.models[0].bundle == tmp_path / "bundle"
    assert cfg.store.path == tmp_path / "state" / "agent.db"
    assert cfg.metrics_host == "127.0.0.1" and cfg.metrics_port == 9108
    assert cfg.models[0].alarm.k == 2 and cfg.models[0].degradation.on_stale == ("fallback", "stop")
    assert cfg.mqtt is None and cfg.store.outbox_max_bytes == 100 * 10**6


def test_yaml_and_toml_files(base, tmp_path):
    import yaml

    (tmp_path / "agent.yaml").write_text(yaml.safe_dump(base))
    assert load_config(tmp_path / "agent.yaml").site == "plant1"
    (tmp_path / "agent.toml").write_text(
        'site = "plant1"\n[[models]]\nbundle = "bundle"\n[[inputs]]\ntype = "file"\npath = "rows.csv"\n'
    )
    assert load_config(tmp_path / "agent.toml").models[0].assets == ("*",)
    (tmp_path / "bad.yaml").write_text("site: [unclosed\n")
    with pytest.raises(AgentConfigError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")
    with pytest.raises(AgentConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_full_mqtt_section(base, tmp_path, monkeypatch):
    base["mqtt"] = {
        "host": "broker.local",
        "username": "agent",
        "password_env": "PLANTML_TEST_PW",
        "reconnect": {"min_delay": "500ms", "max_delay": "1m"},
        "topics": {"prediction": "plant/{site}/{asset}/prediction/{model}"},
    }
    base["inputs"].append({"type": "mqtt", "topic": "plant/{site}/{asset}/telemetry"})
    cfg = parse(base, tmp_path)
    assert cfg.mqtt.port == 1883 and cfg.mqtt.reconnect_min == 0.5 and cfg.mqtt.reconnect_max == 60
    assert cfg.mqtt.topics["alarm"] == "plant/{site}/{asset}/alarm"
    monkeypatch.setenv("PLANTML_TEST_PW", "s3cret")
    assert cfg.mqtt.password.read() == "s3cret"
    monkeypatch.delenv("PLANTML_TEST_PW")
    with pytest.raises(AgentConfigError, match="PLANTML_TEST_PW is not set"):
        cfg.mqtt.password.read()


def change(base: dict, path: str, value) -> dict:
    """A copy of ``base`` with the dotted ``path`` set (``models.0.alarm.k``); None deletes."""
    out = copy.deepcopy(base)
    node = out
    keys = [int(k) if k.isdigit() else k for k in path.split(".")]
    for k in keys[:-1]:
        node = node[k]
    if value is None:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value
    return out


@pytest.mark.parametrize(
    "path, value, match",
    [
        ("site", None, "site is missing; name the plant site"),
        ("site", "a/b", "may not contain"),
        ("models", [], "models is empty"),
        ("models.0.bundel", "x", "unknown key models\\[0\\].bundel; did you mean 'bundle'"),
        ("models.0.bundle", "nowhere", "models\\[0\\].bundle: .*nowhere does not exist"),
        ("models.0.alarm.k", 4, "models\\[0\\].alarm.k \\(4\\) must be <= models\\[0\\].alarm.n"),
        ("models.0.alarm.k", "two", "models\\[0\\].alarm.k: expected an integer"),
        ("models.0.alarm.min_duration", "ten minutes", "is not a duration"),
        ("models.0.alarm", {"raise": 0.5, "clear": 0.7, "direction": "above"}, "on the alarm side"),
        ("models.0.degradation", {"on_stale": ["pray"]}, "on_stale"),
        ("models.0.degradation", {"on_stale": ["rule"]}, "rule is empty"),
        ("models.0.degradation", {"stale_after": 10, "hold": 20}, "longer than .*stale_after"),
        ("models.0.degradation", {"rule": [{"column": "a"}]}, "needs column and above or below"),
        ("inputs.0.type", "kafka", "not one of mqtt, opcua, file"),
        ("inputs.0.path", "nope.csv", "does not exist"),
        ("inputs", [{"type": "mqtt"}], "needs the mqtt section"),
        ("mqtt", {"password": "hunter2"}, "never read from the config in clear text"),
        ("mqtt", {"port": 70000}, "must be between 1 and 65535"),
        ("mqtt", {"topics": {"alarm": "plant/{site}/alarm"}}, "must contain \\{asset\\}"),
        ("mqtt", {"tls": {"ca_file": "missing-ca.pem"}}, "tls.ca_file: .* does not exist"),
        ("mqtt", {"password_file": "a", "password_env": "B"}, "not both"),
        ("store", {"outbox_max_bytes": "lots"}, "is not a size"),
        ("limits", {"bounds": {"a": [10, 0]}}, "low <= high"),
        ("summary", {"interval": 0}, "summary.interval must be > 0"),
        ("metrics", {"prot": 9}, "did you mean 'port'"),
    ],
)
def test_bad_keys_are_named_with_the_fix(base, tmp_path, path, value, match):
    with pytest.raises(AgentConfigError, match=match):
        parse(change(base, path, value), tmp_path)


def test_opcua_input_config(base, tmp_path):
    (tmp_path / "c.der").write_bytes(b"x")
    (tmp_path / "k.pem").write_bytes(b"x")
    base["inputs"] = [
        {
            "type": "opcua",
            "endpoint": "opc.tcp://127.0.0.1:4840/",
            "row_interval": "2s",
            "assets": {"u1": {"ns=2;s=U1.a": "a", "ns=2;s=U1.b": "b"}},
            "security": {
                "policy": "Basic256Sha256",
                "mode": "Sign",
                "certificate": "c.der",
                "private_key": "k.pem",
            },
        }
    ]
    cfg = parse(base, tmp_path).inputs[0]
    assert (
        cfg.row_interval == 2
        and cfg.security.mode == "Sign"
        and cfg.assets["u1"]["ns=2;s=U1.b"] == "b"
    )
    base["inputs"][0]["assets"] = {"u1": ["ns=2;s=U1.a"]}
    with pytest.raises(AgentConfigError, match="map each asset to its nodes"):
        parse(base, tmp_path)
    base["inputs"][0]["assets"] = {"u1": {"n": "a"}}
    base["inputs"][0]["security"]["mode"] = "Encrypt"
    with pytest.raises(AgentConfigError, match="not one of Sign, SignAndEncrypt"):
        parse(base, tmp_path)


def test_bundle_level_checks(base, tmp_path):
    slot = ModelSlot(parse(base, tmp_path).models[0], 0)
    assert slot.sensors == ["a", "b"] and slot.primary.rule.raise_at == 0.5
    held = change(base, "models.0.degradation", {"hold": 2, "stale_after": 10})
    with pytest.raises(AgentConfigError, match="longer than the bundle's max_gap"):
        ModelSlot(parse(held, tmp_path).models[0], 0)
    rule = change(
        base, "models.0.degradation", {"rule": [{"column": "z", "above": 1}], "on_stale": ["rule"]}
    )
    with pytest.raises(AgentConfigError, match="rule names \\['z'\\]"):
        ModelSlot(parse(rule, tmp_path).models[0], 0)
    only = change(base, "models.0.degradation", {"stale_after": 10, "on_stale": ["fallback"]})
    with pytest.raises(AgentConfigError, match="has no fallbacks"):
        ModelSlot(parse(only, tmp_path).models[0], 0)
    make_bundle(tmp_path / "fb", features=("a", "b"))
    wrong = change(
        base, "models.0.degradation", {"fallbacks": [{"bundle": "fb", "without": ["b"]}]}
    )
    with pytest.raises(AgentConfigError, match="needs \\['b'\\]"):
        ModelSlot(parse(wrong, tmp_path).models[0], 0)


def test_durations_and_sizes():
    assert parse_duration("90s", "x") == 90 and parse_duration("2h", "x") == 7200
    assert parse_duration(1.5, "x") == 1.5 and parse_duration("250ms", "x") == 0.25
    assert parse_size("1GiB", "x") == 2**30 and parse_size(1000, "x") == 1000
    for bad in ("-5s", "5 parsecs", True):
        with pytest.raises(AgentConfigError):
            parse_duration(bad, "x")


def test_the_readme_agent_yaml_is_valid(tmp_path):
    """The complete agent.yaml in the README parses (its paths pointed at files made here)."""
    import re

    import yaml

    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = re.search(r"```yaml\n# agent.yaml\n(.*?)```", text, re.S).group(1)
    data = yaml.safe_load(block)
    make_bundle(
        tmp_path / "pumps", features=("vibration_rms", "bearing_temp", "pressure"), threshold=0.5
    )
    make_bundle(tmp_path / "no-pressure", features=("vibration_rms", "bearing_temp"))
    for name in (
        "ca.crt",
        "agent.crt",
        "agent.key",
        "agent.der",
        "agent.pem",
        "plc-3.der",
        "backfill.csv",
    ):
        (tmp_path / name).write_text("x")
    model = data["models"][0]
    model["bundle"] = str(tmp_path / "pumps")
    model["degradation"]["fallbacks"][0]["bundle"] = str(tmp_path / "no-pressure")
    opcua = data["inputs"][1]["security"]
    for key in ("certificate", "private_key", "server_certificate"):
        opcua[key] = str(tmp_path / Path(opcua[key]).name)
    data["inputs"][2]["path"] = str(tmp_path / "backfill.csv")
    for key in ("ca_file", "cert_file", "key_file"):
        data["mqtt"]["tls"][key] = str(tmp_path / Path(data["mqtt"]["tls"][key]).name)
    data["state_dir"] = str(tmp_path / "state")
    data["store"]["path"] = str(tmp_path / "state" / "agent.db")
    cfg = parse_config(data, tmp_path)
    assert cfg.models[0].alarm.k == 3 and cfg.models[0].alarm.min_duration == 7200
    assert cfg.models[0].degradation.on_stale == ("fallback", "rule", "stop")
    assert [type(i).__name__ for i in cfg.inputs] == [
        "MQTTInputConfig",
        "OPCUAInputConfig",
        "FileInputConfig",
    ]
    assert (
        cfg.mqtt.port == 8883
        and cfg.mqtt.session_expiry == 86400
        and cfg.store.outbox_max_bytes == 10**8
    )
    slot = ModelSlot(cfg.models[0], 0)
    assert [sorted(r.without) for r in slot.fallbacks] == [["pressure"]]


def test_check_config_prints_the_plan_and_errors_exit_2(base, tmp_path, capsys):
    import yaml

    from plantml.agent.cli import main

    base["mqtt"] = {"host": "127.0.0.1", "port": 1883}
    (tmp_path / "agent.yaml").write_text(yaml.safe_dump(base))
    assert main(["check-config", "--config", str(tmp_path / "agent.yaml")]) == 0
    out = capsys.readouterr().out
    assert "model test-bundle: bundle test-bundle 1 (2 files verified), assets u*" in out
    assert "alarm: score >= 0.5 (clear 0.5), 2 of 3" in out
    assert "prediction: plant/plant1/{asset}/prediction" in out and "ok: config valid" in out
    base["models"][0]["alarm"]["k"] = 9
    (tmp_path / "agent.yaml").write_text(yaml.safe_dump(base))
    assert main(["check-config", "--config", str(tmp_path / "agent.yaml")]) == 2
    assert capsys.readouterr().err.startswith("error: models[0].alarm.k (9) must be <=")
    with open(tmp_path / "bundle" / "model.onnx", "ab") as f:
        f.write(b"\0")
    base["models"][0]["alarm"]["k"] = 1
    (tmp_path / "agent.yaml").write_text(yaml.safe_dump(base))
    assert main(["check-config", "--config", str(tmp_path / "agent.yaml")]) == 2
    assert "modified or corrupted" in capsys.readouterr().err


def test_status_of_an_agent_that_is_not_running_reads_the_state_file(base, tmp_path, capsys):
    import yaml

    from plantml.agent.cli import main
    from plantml.agent.store import Store

    base["metrics"] = {"port": 1}  # nothing listens there
    (tmp_path / "agent.yaml").write_text(yaml.safe_dump(base))
    store = Store(tmp_path / "state" / "agent.db")
    with store.transaction():
        store.log_rejected(
            [("mqtt:plant/x/u1/telemetry", "u1", None, None, "not_json", "payload is not JSON")],
            1.0,
            10,
        )
    assert main(["status", "--config", str(tmp_path / "agent.yaml")]) == 1
    captured = capsys.readouterr()
    assert "agent not reachable at http://127.0.0.1:1" in captured.err
    assert "outbox messages" in captured.out and "not_json" in captured.out


def test_a_busy_metrics_port_is_a_clear_error():
    import socket

    from plantml.agent.metrics import MetricsServer, Telemetry

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(
            AgentConfigError, match=f"cannot listen on 127.0.0.1:{port}.*change metrics.port"
        ):
            MetricsServer(Telemetry(), dict, "127.0.0.1", port)
