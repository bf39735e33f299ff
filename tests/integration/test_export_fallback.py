"""plantml-export with export.fallbacks: one bundle per sensor subset, listed in the main manifest."""

from __future__ import annotations

import json

import pytest

from plantml.agent.config import parse_config
from plantml.agent.models import ModelSlot
from plantml.edge import load_bundle
from tests.integration.helpers import QUICK, run_cli

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore")]


def test_fallback_bundles_are_trained_sealed_and_served(tmp_path, tiny_run):
    run_cli(
        "plantml-export",
        f"ckpt_path={tiny_run.ckpt}",
        "export=int8",
        f"export_dir={tmp_path / 'export'}",
        *QUICK,
        "export.fallbacks=[[pressure],[vibration_rms,motor_current]]",
        "export.fallback_epochs=1",
        cwd=tmp_path,
    )
    out = tmp_path / "export" / "synthetic_failure-int8"
    bundle = load_bundle(out / "bundle")  # every hash, the fallbacks' files included
    entries = bundle.manifest["fallbacks"]
    assert [e["without"] for e in entries] == [["pressure"], ["motor_current", "vibration_rms"]]
    assert any(name.startswith("fallbacks/without-pressure/") for name in bundle.manifest["files"])
    for entry in entries:
        fb = load_bundle(bundle.path / entry["path"])
        assert not set(fb.required_columns) & set(entry["without"])
        assert set(fb.feature_columns) == set(bundle.feature_columns) - set(entry["without"])
        assert fb.manifest["model"]["variant"] == "fallback_int8" and fb.threshold is not None
        assert fb.manifest["lineage"]["without"] == entry["without"] and "auroc" in entry["metrics"]
    report = json.loads((out / "export_report.json").read_text())
    assert [f["path"] for f in report["fallbacks"]] == [e["path"] for e in entries]
    assert (
        run_cli("plantml-edge", "verify", "--bundle", str(out / "bundle"), cwd=tmp_path).returncode
        == 0
    )
    # tampering with a fallback file breaks the main bundle's verification
    (bundle.path / entries[0]["path"] / "model.onnx").write_bytes(b"x")
    proc = run_cli(
        "plantml-edge", "verify", "--bundle", str(out / "bundle"), cwd=tmp_path, expect_ok=False
    )
    assert proc.returncode == 2 and "modified or corrupted" in proc.stderr


def test_the_agent_picks_the_fallback_for_the_stale_set(tmp_path):
    from plantml.edge.bundle import write_manifest
    from tests.bundles import make_bundle

    main = make_bundle(tmp_path / "main", features=("a", "b", "c"))
    make_bundle(main / "fallbacks" / "without-a", features=("b", "c"))
    make_bundle(main / "fallbacks" / "without-a-b", features=("c",))
    manifest = json.loads((main / "manifest.json").read_text())
    manifest["fallbacks"] = [
        {"without": ["a", "b"], "path": "fallbacks/without-a-b"},
        {"without": ["a"], "path": "fallbacks/without-a"},
    ]
    write_manifest(main, manifest)
    cfg = parse_config(
        {"site": "s", "models": [{"bundle": "main"}], "inputs": [{"type": "file", "path": "-"}]},
        tmp_path,
    )
    slot = ModelSlot(cfg.models[0], 0)
    assert slot.fallback_for({"a"}).without == {"a"}
    assert slot.fallback_for({"b"}).without == {"a", "b"}
    assert slot.fallback_for({"c"}) is None
