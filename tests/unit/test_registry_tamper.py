"""Tamper evidence: the audit chain, stored bundles, manifests and signatures; keys; torch-free."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import sqlalchemy as sa

from plantml.edge.signature import (
    SIGNATURE_FILE,
    SignatureError,
    load_trusted_keys,
    verify_signed_bundle,
)
from plantml.registry import Refused, RegistryError
from plantml.registry.bundles import (
    bundle_archive,
    extract_archive,
    verify_version,
    write_bundle_folder,
)
from plantml.registry.errors import TamperError
from plantml.registry.signing import generate_key, load_key
from tests.registry_helpers import make_export, make_registry


@pytest.fixture
def reg(tmp_path):
    registry, tokens = make_registry(tmp_path / "home")
    registry.register(tokens["dev"], make_export(tmp_path / "a"), "pump")
    registry.review(tokens["rev1"], "pump:1", "approve")
    registry.promote(tokens["ops"], "pump:1", "site-a", "shadow")
    return registry, tokens


def unlock(engine) -> None:
    """What an attacker with database access does first: drop the append-only triggers."""
    with engine.begin() as conn:
        for event in ("update", "delete"):
            conn.exec_driver_sql(f"DROP TRIGGER audit_no_{event}")


def edit(engine, sql: str, **params) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text(sql), params)


def test_intact_chain_verifies(reg):
    registry, _ = reg
    report = registry.verify_audit()
    assert report.ok and report.entries > 20 and report.first_bad is None
    assert report.signers == {registry.signer.key_id: report.entries}


def test_edited_entry_is_named(reg):
    registry, _ = reg
    unlock(registry.engine)
    edit(registry.engine, "UPDATE audit SET actor = 'mallory' WHERE seq = 7")
    report = registry.verify_audit()
    assert not report.ok and report.first_bad == 7 and "was edited" in report.problem


def test_rechained_edit_without_the_key_fails_the_signature(reg):
    """An attacker edits entry 9 and recomputes every hash after it: the hashes and links
    are consistent again, only the signatures (the private key is not in the store) show it."""
    from plantml.registry.audit import entry_hash

    registry, _ = reg
    unlock(registry.engine)
    with registry.engine.begin() as conn:
        rows = conn.execute(sa.text("SELECT * FROM audit WHERE seq >= 9 ORDER BY seq")).mappings()
        prev = None
        for row in list(rows):
            forged = dict(row)
            if row["seq"] == 9:
                forged["after"] = json.dumps({"roles": ["admin"]})
            if prev is not None:
                forged["prev_hash"] = prev
            prev = entry_hash(forged)
            conn.execute(
                sa.text(
                    "UPDATE audit SET after = :a, prev_hash = :p, entry_hash = :h WHERE seq = :s"
                ),
                {"a": forged["after"], "p": forged["prev_hash"], "h": prev, "s": row["seq"]},
            )
    assert registry.verify_audit(signatures=False).ok
    report = registry.verify_audit()
    assert not report.ok and report.first_bad == 9 and "signature does not match" in report.problem


def test_deleted_inserted_and_reordered_entries_are_named(reg, tmp_path):
    registry, _ = reg
    unlock(registry.engine)
    edit(registry.engine, "DELETE FROM audit WHERE seq = 5")
    report = registry.verify_audit()
    assert report.first_bad == 5 and "missing" in report.problem
    # renumber the rest to hide the gap: the link of entry 5 breaks instead
    edit(registry.engine, "UPDATE audit SET seq = seq - 1 WHERE seq > 5")
    report = registry.verify_audit()
    assert report.first_bad == 5 and "does not follow" in report.problem


def test_reordered_entries_are_detected(reg):
    registry, _ = reg
    unlock(registry.engine)
    edit(registry.engine, "UPDATE audit SET seq = -1 WHERE seq = 3")
    edit(registry.engine, "UPDATE audit SET seq = 3 WHERE seq = 4")
    edit(registry.engine, "UPDATE audit SET seq = 4 WHERE seq = -1")
    report = registry.verify_audit()
    assert not report.ok and report.first_bad == 3


def test_cut_off_tail_is_detected_against_a_kept_head(reg):
    registry, tokens = reg
    head = registry.audit_head()
    registry.review(tokens["rev2"], "pump:1", "approve")
    unlock(registry.engine)
    edit(registry.engine, "DELETE FROM audit WHERE seq >= :seq", seq=head[0])
    assert registry.verify_audit().ok  # the chain alone cannot see a cut-off end
    report = registry.verify_audit(expect=head)
    assert not report.ok and "removed" in report.problem


def test_tampered_artifact_record_or_signature_blocks_download(reg):
    registry, _ = reg
    assert verify_version(registry, "pump:1")["signatures"] == 2
    blob = registry.artifacts._path(registry.version("pump:1")["files"]["model.onnx"])
    os.chmod(blob, 0o644)
    blob.write_bytes(blob.read_bytes() + b"\0")
    with pytest.raises(TamperError, match=r"model\.onnx.*was modified"):
        verify_version(registry, "pump:1")
    with pytest.raises(Refused, match="download refused") as err:
        bundle_archive(registry, "pump:1")
    assert err.value.code == "tampered_bundle"


def test_edited_version_record_is_detected(reg):
    registry, _ = reg
    with registry.engine.begin() as conn:
        conn.exec_driver_sql("DROP TRIGGER versions_no_update")
        conn.exec_driver_sql("UPDATE versions SET record = replace(record, 'fp-0', 'fp-X')")
    with pytest.raises(TamperError, match="record was edited"):
        verify_version(registry, "pump:1")


def test_forged_signature_row_is_detected(reg):
    registry, _ = reg
    with registry.engine.begin() as conn:
        conn.exec_driver_sql("DROP TRIGGER signatures_no_update")
        conn.exec_driver_sql(
            "UPDATE signatures SET signature = 'AAAA' || substr(signature, 5) WHERE id = 2"
        )
    with pytest.raises(TamperError, match="promotion signature"):
        verify_version(registry, "pump:1")


def test_device_verifies_the_downloaded_bundle_and_refuses_tampering(reg, tmp_path):
    registry, _ = reg
    name, data = bundle_archive(registry, "pump:1")
    assert (
        name == "pump-1.tar.gz" and bundle_archive(registry, "pump:1")[1] == data
    )  # deterministic
    folder = extract_archive(data, tmp_path / "device")
    trusted = load_trusted_keys(registry.trusted_dir)
    bundle, payloads = verify_signed_bundle(folder, trusted)
    assert bundle.name == "pump-int8" and payloads[0]["model"] == "pump"
    stages = [p["stage"] for p in verify_signed_bundle(folder, trusted, "promotion")[1]]
    assert stages == ["shadow"]
    # a key the device does not trust
    other = generate_key(tmp_path / "other.key")
    with pytest.raises(SignatureError, match="is not trusted"):
        verify_signed_bundle(folder, {other.key_id: other.trusted()})
    # a manifest edited and re-sealed (hashes consistent again) no longer matches the signature
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["task"]["threshold"] = 0.99
    from plantml.edge.bundle import write_manifest

    (folder / SIGNATURE_FILE).rename(tmp_path / "sig.json")
    write_manifest(folder, manifest)
    (tmp_path / "sig.json").rename(folder / SIGNATURE_FILE)
    with pytest.raises(SignatureError, match="belongs to another manifest"):
        verify_signed_bundle(folder, trusted)
    # a forged signature over the right manifest
    folder2 = extract_archive(data, tmp_path / "device2")
    doc = json.loads((folder2 / SIGNATURE_FILE).read_text())
    doc["signatures"][0]["payload"]["model"] = "other"
    (folder2 / SIGNATURE_FILE).write_text(json.dumps(doc))
    with pytest.raises(SignatureError, match="does not match"):
        verify_signed_bundle(folder2, trusted, "registration")
    # unsigned
    (folder2 / SIGNATURE_FILE).unlink()
    with pytest.raises(SignatureError, match="not signed"):
        verify_signed_bundle(folder2, trusted)


def test_edge_cli_requires_the_signature_when_given_trusted_keys(reg, tmp_path):
    registry, _ = reg
    folder = write_bundle_folder(registry, "pump:1", tmp_path / "pulled")
    edge = os.path.join(os.path.dirname(sys.executable), "plantml-edge")
    ok = subprocess.run(
        [edge, "verify", "--bundle", str(folder), "--trusted-keys", str(registry.trusted_dir)],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0 and "signature verified" in ok.stdout
    (folder / SIGNATURE_FILE).unlink()
    bad = subprocess.run(
        [edge, "verify", "--bundle", str(folder), "--trusted-keys", str(registry.trusted_dir)],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "not signed" in bad.stderr
    plain = subprocess.run(
        [edge, "verify", "--bundle", str(folder)], capture_output=True, text=True
    )
    assert plain.returncode == 0  # format-1 bundles still load where signing is not required


def test_key_rotation_keeps_old_entries_verifiable(reg, tmp_path):
    registry, tokens = reg
    old = registry.signer.key_id
    new = registry.rotate_key(tokens["admin"])
    assert new != old and registry.signer.key_id == new
    registry.review(tokens["rev2"], "pump:1", "approve")
    report = registry.verify_audit()
    assert report.ok and set(report.signers) == {old, new}
    assert verify_version(registry, "pump:1")
    # the private key is in no table and in no audit entry
    with registry.engine.connect() as conn:
        dump = "\n".join(
            str(r)
            for t in ("signing_keys", "audit", "signatures")
            for r in conn.exec_driver_sql(f"SELECT * FROM {t}")
        )
    assert "PRIVATE KEY" not in dump and "PUBLIC KEY" in dump
    with pytest.raises(Refused) as err:
        registry.rotate_key(tokens["ops"])
    assert err.value.code == "wrong_role"


def test_key_files(tmp_path):
    signer = generate_key(tmp_path / "k.key")
    assert (tmp_path / "k.key").stat().st_mode & 0o777 == 0o600
    assert "PRIVATE" not in repr(signer) and load_key(tmp_path / "k.key").key_id == signer.key_id
    with pytest.raises(RegistryError, match="already exists"):
        generate_key(tmp_path / "k.key")
    os.chmod(tmp_path / "k.key", 0o644)
    with pytest.raises(RegistryError, match="chmod 600"):
        load_key(tmp_path / "k.key")
    with pytest.raises(RegistryError, match="not found"):
        load_key(tmp_path / "missing.key")


def test_device_side_and_registry_import_no_training_stack():
    code = (
        "import sys, plantml.edge.signature, plantml.registry, plantml.registry.server.app, "
        "plantml.registry.cli\n"
        "bad = [m for m in ('torch', 'lightning', 'hydra', 'omegaconf', 'pandas', 'wandb', 'optuna')"
        " if m in sys.modules]\n"
        "edge_only = [m for m in ('sqlalchemy', 'fastapi') if m in sys.modules]\n"
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    edge = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, plantml.edge.signature; "
            "print([m for m in ('torch', 'pandas', 'sqlalchemy', 'fastapi') if m in sys.modules])",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert edge.stdout.strip() == "[]"
