"""plantml-registry: model versions, stages per target, approvals, audit, cards, the server.

    plantml-registry init --admin NAME                  # new store + signing key; prints a token
    plantml-registry users add NAME --roles reviewer    # roles: developer reviewer operator admin device
    plantml-registry tokens issue NAME [--days 30]
    plantml-registry targets add SITE --conditions high,nominal [--kind site|fleet]
    plantml-registry register BUNDLE_DIR --model NAME [--tag k=v] [--parent N] [--wandb-link]
    plantml-registry approve MODEL:N [--comment TEXT] / reject MODEL:N --comment TEXT
    plantml-registry promote MODEL:N --target SITE --stage shadow|canary|production|archived
    plantml-registry outcome MODEL:N --target SITE --stage shadow --passed|--failed
    plantml-registry audit verify [--expect SEQ:HASH]    # exit 1 naming the first bad entry
    plantml-registry history --target SITE --at 2026-05-01T12:00
    plantml-registry card MODEL:N [--format md|json]
    plantml-registry serve [--host 127.0.0.1] [--port 8765] [--certfile C --keyfile K]

The store is ``--home`` / ``$PLANTML_REGISTRY_HOME`` (SQLite ``registry.db``, ``artifacts/``,
``keys/``), or ``--url`` / ``$PLANTML_REGISTRY_URL`` for PostgreSQL. Commands that change
anything take the caller's token from ``$PLANTML_REGISTRY_TOKEN`` or ``--token-file`` (never
from the command line, where other users could read it). Exit status: 0 ok, 1 audit or
bundle verification failed, 2 bad input, 3 refused by a rule (the reason is printed).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from plantml.errors import PlantMLError
from plantml.registry.errors import Refused, TamperError

TOKEN_ENV = "PLANTML_REGISTRY_TOKEN"


def _token(args: argparse.Namespace) -> str | None:
    if args.token_file:
        return Path(args.token_file).read_text().strip()
    return os.environ.get(TOKEN_ENV)


def _open(args: argparse.Namespace, upgrade: bool = False):
    from plantml.registry.service import Registry

    return Registry.open(
        args.home,
        args.url,
        policy=args.policy,
        signing_key=args.signing_key,
        artifacts=args.artifacts,
        upgrade=upgrade,
    )


def _print(value) -> None:
    print(json.dumps(value, indent=2, default=str))


def _cmd_init(args):
    from plantml.registry.service import Registry

    reg, token = Registry.init(
        args.admin, args.home, args.url, token_days=args.days, policy=args.policy,
        signing_key=args.signing_key, artifacts=args.artifacts,
    )  # fmt: skip
    print(f"registry ready at {reg.home} (signing key {reg.signer.key_id} in {reg.key_path})")
    print(f"token for {args.admin} (shown once; keep it secret, e.g. export {TOKEN_ENV}=...):")
    print(token)
    return 0


def _cmd_upgrade(args):
    from plantml.registry import migrations
    from plantml.registry.db import make_engine, registry_home, store_url

    applied = migrations.upgrade(make_engine(store_url(registry_home(args.home), args.url)))
    print(f"schema at version {migrations.LATEST}" + (f" (applied {applied})" if applied else ""))
    return 0


def _cmd_users(args):
    reg = _open(args)
    if args.action == "list":
        for u in reg.users():
            active = [t["prefix"] for t in u["tokens"] if not t["revoked_at"]]
            print(f"{u['name']:<20} {','.join(u['roles']):<30} tokens: {', '.join(active) or '-'}")
    elif args.action == "add":
        reg.add_user(_token(args), args.name, args.roles)
        print(f"user {args.name} added with roles {args.roles}")
    else:
        reg.set_roles(_token(args), args.name, args.roles)
        print(f"user {args.name} now has roles {args.roles}")
    return 0


def _cmd_tokens(args):
    reg = _open(args)
    if args.action == "issue":
        token = reg.issue_token(_token(args), args.user, args.days, args.label or "")
        print(f"token for {args.user}, valid {args.days:g} days (shown once):")
        print(token)
    else:
        reg.revoke_token(_token(args), args.prefix)
        print(f"token {args.prefix}... revoked")
    return 0


def _cmd_keys(args):
    if args.action == "generate":
        from plantml.registry.signing import generate_key

        signer = generate_key(args.out)
        print(f"key {signer.key_id}: private {args.out} (0600), public {args.out}.pub")
        return 0
    reg = _open(args)
    if args.action == "rotate":
        print(f"new signing key {reg.rotate_key(_token(args))}; the old one is retired")
    elif args.action == "export":
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        for key_id, key in reg.trusted_keys().items():
            (out / f"{key_id}.pub").write_text(Path(key.source).read_text())
            print(f"{out / (key_id + '.pub')}")
    else:
        for key_id, key in reg.trusted_keys().items():
            active = " (active)" if key_id == reg.signer.key_id else ""
            print(f"{key_id}{active}  {key.source}")
    return 0


def _cmd_targets(args):
    reg = _open(args)
    conditions = [c for c in (args.conditions or "").split(",") if c]
    if args.action == "add":
        reg.add_target(_token(args), args.name, conditions, args.kind, args.description or "")
        print(f"target {args.name} ({args.kind}) runs in: {', '.join(conditions)}")
    elif args.action == "conditions":
        reg.set_target_conditions(_token(args), args.name, conditions)
        print(f"target {args.name} now runs in: {', '.join(conditions)}")
    else:
        for t in reg.targets():
            print(f"{t['name']:<20} {t['kind']:<6} conditions: {', '.join(t['conditions'])}")
    return 0


def _cmd_register(args):
    import time

    reg = _open(args)
    tags = {}
    for tag in args.tag or []:
        key, _, value = tag.partition("=")
        tags[key] = value
    start = time.perf_counter()
    result = reg.register(
        _token(args), args.bundle, args.model, export_report=args.export_report,
        run_dir=args.run, parent=args.parent, tags=tags, intended_use=args.intended_use,
        limitations=args.limitation,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    print(
        f"registered {result['ref']} (manifest {result['manifest_sha256'][:16]}, signed) in {seconds:.2f} s"
    )
    for note in result["notes"]:
        print(f"note: {note}")
    if args.wandb_link:
        print(_wandb_link(reg, result["ref"], args.bundle))
    return 0


def _wandb_link(reg, ref: str, bundle: str | Path) -> str:
    from plantml.registry.wandb_link import link_bundle

    version = reg.version(ref)
    outcome = link_bundle(
        version["record"].get("wandb"), Path(bundle), version["model"], version["number"]
    )
    return (
        f"wandb: linked {outcome['artifact']}" if outcome["linked"] else f"note: {outcome['note']}"
    )


def _cmd_wandb_link(args):
    import tempfile

    from plantml.registry.bundles import write_bundle_folder

    reg = _open(args)
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_bundle_folder(reg, args.ref, Path(tmp) / "bundle")
        print(_wandb_link(reg, args.ref, folder))
    return 0


def _cmd_versions(args):
    reg = _open(args)
    for v in reg.versions(args.model):
        stages = ", ".join(f"{t}: {s}" for t, s in v["current_stages"].items()) or "candidate"
        approvals = sum(r["decision"] == "approve" for r in v["reviews"])
        print(
            f"{v['ref']:<24} {v['registered_at'][:19]}  by {v['author']:<10} {stages}  ({approvals} approvals)"
        )
    return 0


def _cmd_show(args):
    version = _open(args).version(args.ref)
    if not args.full:
        version["record"] = {
            k: version["record"].get(k)
            for k in ("bundle", "lineage", "gate", "export", "wandb", "notes")
        }
    _print(version)
    return 0


def _cmd_card(args):
    from plantml.registry.cards import card_markdown

    card = _open(args).card(args.ref)
    text = json.dumps(card, indent=2, default=str) if args.format == "json" else card_markdown(card)
    if args.out:
        Path(args.out).write_text(text)
        print(f"card written to {args.out}")
    else:
        print(text)
    return 0


def _cmd_review(args):
    _open(args).review(_token(args), args.ref, args.command, args.comment or "")
    print(f"{args.ref}: {args.command}d")
    return 0


def _cmd_promote(args):
    result = _open(args).promote(_token(args), args.ref, args.target, args.stage, args.reason or "")
    print(
        f"{result['ref']} at {result['target']}: {result['from']} -> {result['to']} (countersigned)"
    )
    return 0


def _cmd_outcome(args):
    evidence = json.loads(args.evidence) if args.evidence else {}
    _open(args).record_rollout_outcome(
        _token(args), args.ref, args.target, args.stage, args.passed, evidence
    )
    print(
        f"{args.ref} {args.stage} at {args.target}: {'passed' if args.passed else 'failed'} recorded"
    )
    return 0


def _cmd_assignments(args):
    _print(_open(args).assignments(args.target))
    return 0


def _cmd_fleet(args):
    devices = _open(args).devices(args.target)
    if not devices:
        print("no device has reported yet")
    for d in devices:
        match = "" if d["report"].get("matches_registry", True) else "  HASH MISMATCH"
        print(
            f"{d['device_id']:<20} {d['target']:<14} {d['state']:<12} {d['version'] or '-':<16} last seen {d['last_seen'][:19]}{match}"
        )
    return 0


def _cmd_history(args):
    from plantml.registry.history import history

    _print(history(_open(args), args.target, args.at))
    return 0


def _cmd_audit(args):
    reg = _open(args)
    if args.action == "head":
        seq, digest = reg.audit_head()
        print(f"{seq}:{digest}")
        return 0
    if args.action == "log":
        for e in reversed(reg.audit_entries(args.subject, args.limit)):
            print(
                f"{e['seq']:>6} {e['at'][:19]} {e['actor']:<10} {e['action']:<14} {e['subject']}  {json.dumps(e['after'])[:120]}"
            )
        return 0
    expect = None
    if args.expect:
        seq, _, digest = args.expect.partition(":")
        expect = (int(seq), digest)
    report = reg.verify_audit(args.trusted_keys, expect, signatures=not args.no_signatures)
    print(report.message(), file=sys.stdout if report.ok else sys.stderr)
    return 0 if report.ok else 1


def _cmd_verify(args):
    from plantml.registry.bundles import verify_version

    result = verify_version(_open(args), args.ref, args.trusted_keys)
    print(
        f"ok: {result['ref']}: {result['files']} stored files and {result['signatures']} signatures verified"
    )
    return 0


def _cmd_pull(args):
    from plantml.registry.bundles import write_bundle_folder

    folder = write_bundle_folder(_open(args), args.ref, args.out)
    print(f"signed bundle {args.ref} written to {folder}")
    return 0


def _cmd_serve(args):
    from plantml.registry.server.run import serve

    return serve(_open(args), args.host, args.port, args.certfile, args.keyfile)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="plantml-registry", description="plantml model registry")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--home", help="registry folder (default $PLANTML_REGISTRY_HOME or ~/.plantml/registry)"
    )
    common.add_argument("--url", help="SQLAlchemy URL of the store (default: HOME/registry.db)")
    common.add_argument(
        "--policy", help="promotion policy TOML (default HOME/policy.toml or built-in)"
    )
    common.add_argument(
        "--signing-key", help="private signing key (default HOME/keys/registry.key)"
    )
    common.add_argument("--artifacts", help="artifact folder (default HOME/artifacts)")
    common.add_argument("--token-file", help=f"file holding your API token (default ${TOKEN_ENV})")
    sub = parser.add_subparsers(dest="command", required=True)

    def cmd(name, func, help_text):
        p = sub.add_parser(name, parents=[common], help=help_text, description=help_text)
        p.set_defaults(func=func)
        return p

    p = cmd("init", _cmd_init, "create the store, a signing key and the first admin")
    p.add_argument("--admin", required=True, help="name of the first admin user")
    p.add_argument("--days", type=float, default=30.0, help="lifetime of the admin's token")
    cmd("upgrade", _cmd_upgrade, "apply pending schema migrations")
    p = cmd("users", _cmd_users, "list, add users, or change their roles")
    p.add_argument("action", choices=["list", "add", "roles"])
    p.add_argument("name", nargs="?")
    p.add_argument("--roles", help="comma-separated: developer, reviewer, operator, admin, device")
    p = cmd("tokens", _cmd_tokens, "issue or revoke API tokens")
    p.add_argument("action", choices=["issue", "revoke"])
    p.add_argument("user", nargs="?", help="user to issue a token for")
    p.add_argument("--prefix", help="the token's first 12 characters (revoke)")
    p.add_argument("--days", type=float, default=30.0)
    p.add_argument("--label")
    p = cmd(
        "keys", _cmd_keys, "signing keys: generate, rotate, list, export public keys for devices"
    )
    p.add_argument("action", choices=["generate", "rotate", "list", "export"])
    p.add_argument("--out", help="key file (generate) or folder (export)")
    p = cmd("targets", _cmd_targets, "deployment targets and their operating conditions")
    p.add_argument("action", choices=["list", "add", "conditions"])
    p.add_argument("name", nargs="?")
    p.add_argument("--conditions", help="comma-separated operating conditions the target runs in")
    p.add_argument("--kind", choices=["site", "fleet"], default="site")
    p.add_argument("--description")
    p = cmd("register", _cmd_register, "record a bundle as the next version of a model (signed)")
    p.add_argument("bundle", help="bundle folder (plantml-export's export/<name>/bundle)")
    p.add_argument("--model", required=True)
    p.add_argument("--export-report", help="default: export_report.json beside the bundle folder")
    p.add_argument("--run", help="training run folder (default: found from the checkpoint)")
    p.add_argument("--parent", help="parent version (default: the model's latest)")
    p.add_argument("--tag", action="append", help="key=value (repeatable)")
    p.add_argument("--intended-use")
    p.add_argument("--limitation", action="append", help="a known limitation (repeatable)")
    p.add_argument("--wandb-link", action="store_true", help="log the bundle as a W&B artifact")
    p = cmd("wandb-link", _cmd_wandb_link, "log a version's bundle to its W&B run (when online)")
    p.add_argument("ref")
    p = cmd("versions", _cmd_versions, "list versions")
    p.add_argument("model", nargs="?")
    p = cmd("show", _cmd_show, "one version as JSON")
    p.add_argument("ref")
    p.add_argument("--full", action="store_true", help="the whole record (config, card, metrics)")
    p = cmd("card", _cmd_card, "the model card of a version")
    p.add_argument("ref")
    p.add_argument("--format", choices=["md", "json"], default="md")
    p.add_argument("--out")
    for name in ("approve", "reject"):
        p = cmd(name, _cmd_review, f"{name} a version (reviewers; not your own)")
        p.add_argument("ref")
        p.add_argument("--comment", required=name == "reject")
    p = cmd("promote", _cmd_promote, "move a version to a stage at a target (policy enforced)")
    p.add_argument("ref")
    p.add_argument("--target", required=True)
    p.add_argument("--stage", required=True, choices=["shadow", "canary", "production", "archived"])
    p.add_argument("--reason")
    p = cmd("outcome", _cmd_outcome, "record a shadow/canary outcome")
    p.add_argument("ref")
    p.add_argument("--target", required=True)
    p.add_argument("--stage", required=True, choices=["shadow", "canary", "production"])
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--passed", dest="passed", action="store_true")
    group.add_argument("--failed", dest="passed", action="store_false")
    p.add_argument("--evidence", help="JSON object")
    p = cmd("assignments", _cmd_assignments, "what a target runs now, per model and stage")
    p.add_argument("--target", required=True)
    p = cmd("fleet", _cmd_fleet, "the last status report of each device")
    p.add_argument("--target")
    p = cmd("history", _cmd_history, "what a target ran at a moment, its lineage and approvers")
    p.add_argument("--target", required=True)
    p.add_argument("--at", required=True, help="ISO time, e.g. 2026-05-01T12:00 (UTC)")
    p = cmd("audit", _cmd_audit, "verify the audit chain, print its head, or list entries")
    p.add_argument("action", choices=["verify", "head", "log"])
    p.add_argument("--trusted-keys", nargs="+", help="public keys (default HOME/keys/trusted)")
    p.add_argument(
        "--expect", help="SEQ:HASH from an earlier `audit head` (detects cut-off entries)"
    )
    p.add_argument("--no-signatures", action="store_true", help="check hashes and links only")
    p.add_argument("--subject")
    p.add_argument("--limit", type=int, default=50)
    p = cmd("verify", _cmd_verify, "check a version's stored bundle, record and signatures")
    p.add_argument("ref")
    p.add_argument("--trusted-keys", nargs="+")
    p = cmd("pull", _cmd_pull, "write a version's signed bundle folder")
    p.add_argument("ref")
    p.add_argument("--out", required=True)
    p = cmd("serve", _cmd_serve, "HTTP API and review page")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default loopback only)")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--certfile", help="TLS certificate (PEM); serve HTTPS")
    p.add_argument("--keyfile", help="TLS private key (PEM)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except Refused as exc:
        print(f"refused ({exc.code}): {exc.message}", file=sys.stderr)
        return 3
    except TamperError as exc:
        print(f"verification failed: {exc}", file=sys.stderr)
        return 1
    except (PlantMLError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
