"""The bad-input corpus: every bad input we know of -> exit code and a message that helps.

One table, :data:`CORPUS`. Each case is a command line of a plantml tool (run in this
process through its real entry point: Hydra for train / eval / export, argparse for
the edge), the files it needs (built by a ``setup`` function), the exit code and a
fragment of the message expected on stdout + stderr, and the outcome class:

- ``error``: the input cannot be used; one readable ``error:`` line (or Hydra's own
  one-line message), exit 2 (1 for Hydra's config-composition errors);
- ``handled``: the tool goes on and says what it did (exit 0, or 1 with ``--strict``).

A case fails when the tool prints a traceback, exits otherwise, or stays silent
(the fragment is missing). Most cases fail before data preparation or on tiny data;
the ones that need a trained checkpoint are marked slow.
"""

from __future__ import annotations

import collections
import json
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hydra.core.global_hydra import GlobalHydra

import plantml.training  # noqa: F401 - Lightning binds its log handler to stderr at import: not to one test's capture
from tests.conftest import make_fleet
from tests.unit.test_edge_runtime import columns, fleet_rows, make_bundle

ERROR, HANDLED = "error", "handled"
TINY_FLEET = ["data.n_assets=10", "data.days=40", "logger=csv", "callbacks.progress_bar=null"]
TABLE = [
    "data=table",
    "data.path={tmp}/plant.csv",
    "data.asset_column=unit",
    "data.time_column=cycle",
    "data.window.length=20",
    "logger=csv",
    "callbacks.progress_bar=null",
]


@dataclass(frozen=True)
class Case:
    """One bad input: ``tool args`` (``{tmp}`` is the case's folder) -> exit code, fragment."""

    id: str
    tool: str
    args: tuple[str, ...]
    code: int
    fragment: str
    outcome: str = ERROR
    setup: Callable[[Path], None] | None = None
    issue: str = ""  # the item of issue 19 it checks ("" for cases handled before)
    marks: tuple = field(default_factory=tuple)
    trained: bool = False  # {tmp}/model.ckpt is the last.ckpt of a tiny trained run (slow)


# -- files the cases read ---------------------------------------------------------------------------


def fleet_frame() -> pd.DataFrame:
    return make_fleet(n_assets=10, rows=(80, 120)).frame


def write(frame: pd.DataFrame, tmp: Path, name: str = "plant.csv", **kw) -> None:
    frame.to_csv(tmp / name, index=False, **kw)


def table_with(change: Callable[[pd.DataFrame], pd.DataFrame], **kw) -> Callable[[Path], None]:
    return lambda tmp: write(change(fleet_frame()), tmp, **kw)


def _set(frame: pd.DataFrame, rows, col: str, value) -> pd.DataFrame:
    frame[col] = frame[col].astype(object) if isinstance(value, str) else frame[col]
    frame.loc[rows, col] = value
    return frame


def mixed_time_zones(frame: pd.DataFrame) -> pd.DataFrame:
    stamps = pd.Series(
        pd.date_range("2024-03-01", periods=len(frame), freq="h", tz="Europe/Berlin")
    )
    return frame.assign(cycle=stamps.astype(str).to_numpy())


def checkpoint(tmp: Path, content) -> None:
    if isinstance(content, bytes):
        (tmp / "model.ckpt").write_bytes(content)
    else:
        torch.save(content, tmp / "model.ckpt")


def foreign_checkpoint(tmp: Path) -> None:
    """A training checkpoint whose weights have other shapes than the configured model."""
    weights = {"model.head.0.weight": torch.zeros(2, 2)}
    checkpoint(tmp, {"state_dict": weights, "optimizer_states": [], "loops": {}, "epoch": 0})


def truncated_checkpoint(tmp: Path) -> None:
    torch.save({"state_dict": {"w": torch.zeros(1000)}, "epoch": 0}, tmp / "full.ckpt")
    (tmp / "model.ckpt").write_bytes((tmp / "full.ckpt").read_bytes()[:700])


def bundle(change: Callable[[Path], None] | None = None) -> Callable[[Path], None]:
    def build(tmp: Path) -> None:
        make_bundle(tmp / "bundle", conditions=COND, per_condition=True, max_gap=1.5)
        if change:
            change(tmp / "bundle")
        rows = fleet_rows(n_assets=2, n=6)
        for row in rows:
            row["mode"] = "run"
        (tmp / "rows.csv").write_text(_csv(rows))

    return build


COND = {"mode": "column", "column": "mode", "names": ["idle", "run"], "categories": ["idle", "run"]}


def _csv(rows: list[dict]) -> str:
    cols = columns(rows)
    lines = [",".join(cols)] + [
        ",".join(str(v[i]) for v in cols.values()) for i in range(len(rows))
    ]
    return "\n".join(lines) + "\n"


def rows_file(change: Callable[[list[dict]], list[dict]], name: str = "rows.csv"):
    def build(tmp: Path) -> None:
        bundle()(tmp)
        rows = fleet_rows(n_assets=2, n=6)
        for row in rows:
            row["mode"] = "run"
        (tmp / name).write_text(_csv(change(rows)))

    return build


def edit_manifest(change: Callable[[dict], None], reseal: bool = False):
    def apply(folder: Path) -> None:
        from plantml.edge.bundle import content_sha256

        manifest = json.loads((folder / "manifest.json").read_text())
        change(manifest)
        if reseal:
            manifest["manifest_sha256"] = content_sha256(manifest)
        (folder / "manifest.json").write_text(json.dumps(manifest))

    return apply


def rowset(change):
    def apply(rows):
        change(rows)
        return rows

    return apply


def extra_line(tmp: Path) -> None:
    bundle()(tmp)
    lines = (tmp / "rows.csv").read_text().splitlines()
    lines.insert(3, "u0,99,1.0,2.0,run,surplus")
    (tmp / "rows.csv").write_text("\n".join(lines) + "\n")


def drop_column(col: str):
    def change(rows):
        return [{k: v for k, v in r.items() if k != col} for r in rows]

    return change


# -- the corpus ---------------------------------------------------------------------------------------

EDGE_PREDICT = ("predict", "--bundle", "{tmp}/bundle", "--input", "{tmp}/rows.csv", "--output", "-")
EDGE_STREAM = ("stream", "--bundle", "{tmp}/bundle", "--input", "{tmp}/rows.csv")
VERIFY = ("verify", "--bundle", "{tmp}/bundle")
RESUME = ("ckpt_path={tmp}/model.ckpt", *TINY_FLEET)

# fmt: off
S = (pytest.mark.slow,)
CORPUS: list[Case] = [
    # ---- configuration (before any data is read)
    Case("unknown config option", "plantml-train", ("data=nope",), 1, "Could not find 'data/nope'"),
    Case("misspelt key", "plantml-train", ("data.windw.length=3",), 1, "Could not override 'data.windw.length'"),
    Case("bad split method", "plantml-train", ("data.split_by.method=random", *TINY_FLEET), 2, "unknown data.split_by.method 'random'; use one of"),
    Case("gpu trainer without a gpu", "plantml-train", ("trainer=gpu", "logger=csv"), 2, "trainer.accelerator=gpu needs a CUDA GPU"),
    Case("table without data.path", "plantml-train", ("data=table", "logger=csv"), 2, "error: data.path is not set; give it on the command line: data.path=..."),
    Case("unknown label kind", "plantml-train", (*TABLE, "data.label_kind=broken"), 2, "unknown data.label_kind 'broken'", setup=table_with(lambda f: f)),
    Case("eval without ckpt_path", "plantml-eval", (), 2, "error: ckpt_path is not set", issue="3"),
    Case("export without ckpt_path", "plantml-export", (), 2, "error: ckpt_path is not set", issue="3"),
    Case("unknown export recipe", "plantml-export", ("ckpt_path=x.ckpt", "export=nope"), 1, "Could not find 'export/nope'"),
    # ---- checkpoints (issue item 3)
    Case("resume: ckpt_path missing", "plantml-train", ("ckpt_path={tmp}/nowhere/last.ckpt", "logger=csv"), 2, "checkpoint '{tmp}/nowhere/last.ckpt' not found", issue="3"),
    Case("resume: truncated checkpoint", "plantml-train", RESUME, 2, "it is truncated or not a checkpoint", setup=truncated_checkpoint, issue="3"),
    Case("resume: empty checkpoint", "plantml-train", RESUME, 2, "is empty (0 bytes)", setup=lambda t: checkpoint(t, b""), issue="3"),
    Case("resume: weights only", "plantml-train", RESUME, 2, "holds the model weights but not the training state", setup=lambda t: checkpoint(t, {"state_dict": {}}), issue="3"),
    Case("resume: another model's checkpoint", "plantml-train", RESUME, 2, "does not fit the model built from the config", setup=foreign_checkpoint, issue="3"),
    Case("eval: missing checkpoint", "plantml-eval", ("ckpt_path={tmp}/nowhere.ckpt",), 2, "not found", issue="3"),
    Case("eval: not a checkpoint", "plantml-eval", ("ckpt_path={tmp}/model.ckpt",), 2, "it is truncated or not a checkpoint", setup=lambda t: checkpoint(t, b"name,value\n"), issue="3"),
    Case("eval: torch file, not a checkpoint", "plantml-eval", ("ckpt_path={tmp}/model.ckpt",), 2, "not a Lightning checkpoint", setup=lambda t: checkpoint(t, {"weights": torch.zeros(2)}), issue="3"),
    Case("export: truncated checkpoint", "plantml-export", ("ckpt_path={tmp}/model.ckpt",), 2, "it is truncated or not a checkpoint", setup=truncated_checkpoint, issue="3"),
    Case("export: empty checkpoint", "plantml-export", ("ckpt_path={tmp}/model.ckpt",), 2, "is empty (0 bytes)", setup=lambda t: checkpoint(t, b""), issue="3"),
    Case("resume with another model size", "plantml-train", (*RESUME, "model.hidden_size=8"), 2, "does not fit the model built from the config (size mismatch", trained=True, issue="3", marks=S),
    Case("resume with another seed's data", "plantml-train", (*RESUME, "seed=11"), 2, "was written by a run with other data or settings (seed: 42 then, 11 now", trained=True, issue="2", marks=S),
    Case("eval: unknown split", "plantml-eval", ("ckpt_path={tmp}/model.ckpt", "data.split=holdout"), 2, "unknown split 'holdout'", trained=True, marks=S),
    # ---- splits that cannot be learned or scored (issue item 3)
    Case("small fleet: val split without failures", "plantml-train", ("data.n_assets=6", "data.days=20", "logger=csv"), 2, "the val split has no positive windows", issue="3"),
    Case("labels all 0", "plantml-train", TABLE, 2, "has no failure within the horizon in any split", setup=table_with(lambda f: f.assign(failure=0)), issue="3"),
    Case("labels all 1", "plantml-train", TABLE, 2, "has no negative windows", setup=table_with(lambda f: f.assign(failure=1)), issue="3"),
    # ---- silently wrong data (issue item 4)
    Case("failure label 2", "plantml-train", TABLE, 2, "column 'failure' (failure_column) holds values outside {0, 1}: '2' (1 rows)", setup=table_with(lambda f: _set(f, 40, "failure", 2)), issue="4"),
    Case("failure label 'yes'", "plantml-train", TABLE, 2, "holds values outside {0, 1}: 'yes'", setup=table_with(lambda f: _set(f, [3, 9], "failure", "yes")), issue="4"),
    Case("sensor mostly text", "plantml-train", (*TABLE, "data.feature_columns=[s0,s1]"), 2, "column 's1' in plant.csv is not numeric (", setup=table_with(lambda f: _set(f, slice(0, 300), "s1", "ERR")), issue="4"),
    # ---- file format (issue item 7, and before)
    Case("semicolon file read with sep=','", "plantml-train", (*TABLE, "data.source.sep=','"), 2, "set data.source.sep=';'", setup=lambda t: write(fleet_frame(), t, sep=";"), issue="7"),
    Case("mixed time zones", "plantml-train", TABLE, 2, "mixes time zones: +01:00 (", setup=table_with(mixed_time_zones), issue="7"),
    Case("data file missing", "plantml-train", TABLE, 2, "data file not found at", setup=lambda t: None),
    Case("empty data file", "plantml-train", TABLE, 2, "is empty", setup=lambda t: (t / "plant.csv").write_text("")),
    Case("wrong asset column", "plantml-train", (*TABLE, "data.asset_column=pump"), 2, "column 'pump' (data.asset_column) not found", setup=table_with(lambda f: f)),
    Case("window longer than any history", "plantml-train", (*TABLE, "data.window.length=500"), 2, "data.window.length=500 is longer than every asset's history", setup=table_with(lambda f: f)),
    Case("time not increasing, sort off", "plantml-train", (*TABLE, "data.cleaning.sort.enabled=false"), 2, "time is not increasing within asset", setup=table_with(lambda f: f.iloc[[1, 0, *range(2, len(f))]])),
    Case("NaN left without filling", "plantml-train", (*TABLE, "data.cleaning.fill.enabled=false"), 2, "NaN/inf values remain in the features", setup=table_with(lambda f: _set(f, 50, "s2", np.nan))),
    # ---- what data preparation reads and repairs, and says so ("prepare": plantml-train up to training)
    Case("1e30 in a sensor", "prepare", TABLE, 0, "sanity: 1 implausible values set to NaN (s1: 1 outside [", HANDLED, setup=table_with(lambda f: _set(f, 40, "s1", 1e30)), issue="4"),
    Case("9999 sentinel, sanity clamps", "prepare", (*TABLE, "data.cleaning.sanity.action=clip"), 0, "sanity: 2 implausible values clamped to the bounds (s2: 2 outside [", HANDLED, setup=table_with(lambda f: _set(f, [5, 77], "s2", 9999.0)), issue="4"),
    Case("a few text cells in a sensor", "prepare", TABLE, 0, "read 3 non-numeric cells as missing (s1: 3)", HANDLED, setup=table_with(lambda f: _set(f, [5, 60, 61], "s1", "ERR")), issue="4"),
    Case("a text column", "prepare", TABLE, 0, "text columns ['operator'] are not used as features", HANDLED, setup=table_with(lambda f: f.assign(operator="ann")), issue="4"),
    Case("semicolon file", "prepare", TABLE, 0, "'features': ['s0', 's1', 's2']", HANDLED, setup=lambda t: write(fleet_frame(), t, sep=";"), issue="7"),
    Case("semicolon file with decimal commas", "prepare", TABLE, 0, "'features': ['s0', 's1', 's2']", HANDLED, setup=lambda t: write(fleet_frame(), t, sep=";", decimal=","), issue="7"),
    Case("tab-separated file", "prepare", TABLE, 0, "'features': ['s0', 's1', 's2']", HANDLED, setup=lambda t: write(fleet_frame(), t, sep="\t"), issue="7"),
    Case("mixed time zones, data.time_utc=true", "prepare", (*TABLE, "data.time_utc=true"), 0, "'features': ['s0', 's1', 's2']", HANDLED, setup=table_with(mixed_time_zones), issue="7"),
    Case("duplicated rows", "prepare", TABLE, 0, "dedupe: merged 14 duplicate (asset, time) rows into 7", HANDLED, setup=table_with(lambda f: pd.concat([f, f.iloc[:7]], ignore_index=True))),
    # ---- bundles (issue item 6, and before)
    Case("bundle folder missing", "plantml-edge", ("verify", "--bundle", "{tmp}/nowhere"), 2, "bundle folder {tmp}/nowhere not found"),
    Case("tampered model", "plantml-edge", VERIFY, 2, "model.onnx has SHA-256", setup=bundle(lambda b: (b / "model.onnx").write_bytes((b / "model.onnx").read_bytes() + b"x"))),
    Case("listed file missing", "plantml-edge", VERIFY, 2, "weights.npy is listed in manifest.json but missing", setup=bundle(lambda b: (b / "weights.npy").unlink())),
    Case("manifest edited", "plantml-edge", VERIFY, 2, "was edited after export", setup=bundle(edit_manifest(lambda m: m["task"].update(threshold=0.01)))),
    Case("manifest not JSON", "plantml-edge", VERIFY, 2, "manifest.json is not valid JSON", setup=bundle(lambda b: (b / "manifest.json").write_text("{oops"))),
    Case("newer bundle format", "plantml-edge", ("info", "--bundle", "{tmp}/bundle"), 2, "upgrade plantml on this device", setup=bundle(edit_manifest(lambda m: m.update(format_version=99)))),
    Case("broken valid range", "plantml-edge", VERIFY, 2, "input.valid_range.bounds.a", setup=bundle(edit_manifest(lambda m: m["input"].update(valid_range={"bounds": {"a": [3, 1]}, "action": "nan"}), reseal=True)), issue="4"),
    Case("unlisted file in the bundle", "plantml-edge", VERIFY, 0, "1 file(s) in the bundle folder are not listed in manifest.json", HANDLED, setup=bundle(lambda b: (b / "notes.txt").write_text("x")), issue="6"),
    Case("unlisted file, --strict", "plantml-edge", (*VERIFY, "--strict"), 1, "not listed in manifest.json", HANDLED, setup=bundle(lambda b: (b / "notes.txt").write_text("x")), issue="6"),
    # ---- edge inputs (issue items 4 and 6, and before)
    Case("predict: input missing", "plantml-edge", ("predict", "--bundle", "{tmp}/bundle", "--input", "{tmp}/none.csv", "--output", "-"), 2, "input file {tmp}/none.csv not found", setup=bundle()),
    Case("predict: unsupported file type", "plantml-edge", ("predict", "--bundle", "{tmp}/bundle", "--input", "{tmp}/rows.xlsx", "--output", "-"), 2, "use a .csv or .parquet file", setup=rows_file(lambda r: r, "rows.xlsx")),
    Case("predict: empty input", "plantml-edge", EDGE_PREDICT, 2, "is empty; a CSV with a header line is needed", setup=lambda t: (bundle()(t), (t / "rows.csv").write_text(""))),
    Case("predict: required column missing", "plantml-edge", EDGE_PREDICT, 2, "input lacks the column(s) ['b']", setup=rows_file(drop_column("b"))),
    Case("stream: required column missing", "plantml-edge", EDGE_STREAM, 2, "input lacks the column(s) ['b']", setup=rows_file(drop_column("b")), issue="6"),
    Case("predict: line with extra fields", "plantml-edge", EDGE_PREDICT, 2, "line 4 has 6 fields but the header has 5", setup=extra_line),
    Case("stream: line with extra fields", "plantml-edge", EDGE_STREAM, 0, "rejected row 3: line 4 has 6 fields but the header has 5", HANDLED, setup=extra_line, issue="6"),
    Case("predict: text in a sensor", "plantml-edge", EDGE_PREDICT, 0, "column 'a': not a number: 'ERR'", HANDLED, setup=rows_file(rowset(lambda r: r[4].update(a="ERR")))),
    Case("predict: text in a sensor, --strict", "plantml-edge", (*EDGE_PREDICT, "--strict"), 1, "1 rejected", HANDLED, setup=rows_file(rowset(lambda r: r[4].update(a="ERR")))),
    Case("predict: time going backwards", "plantml-edge", EDGE_PREDICT, 0, "time goes backwards", HANDLED, setup=rows_file(rowset(lambda r: r[4].update(t="0")))),
    Case("predict: bad timestamp", "plantml-edge", EDGE_PREDICT, 0, "is not a finite number", HANDLED, setup=rows_file(rowset(lambda r: r[4].update(t="noon")))),
    Case("predict: missing condition", "plantml-edge", EDGE_PREDICT, 0, "missing operating condition", HANDLED, setup=rows_file(rowset(lambda r: r[4].update(mode="")))),
    Case("predict: unseen condition", "plantml-edge", EDGE_PREDICT, 0, "operating condition(s) not seen in training: 'overload': 1 rows", HANDLED, setup=rows_file(rowset(lambda r: r[4].update(mode="overload"))), issue="4"),
    Case("stream: unseen condition", "plantml-edge", EDGE_STREAM, 0, "1 rows with an unseen condition", HANDLED, setup=rows_file(rowset(lambda r: r[4].update(mode="overload"))), issue="4"),
    Case("predict: value beyond the training range", "plantml-edge", EDGE_PREDICT, 0, "value 1e+30 is outside the range training accepted for 'a' [-100, 100]", HANDLED, setup=lambda t: beyond_range(t), issue="4"),
    Case("predict: gap restarts the window", "plantml-edge", EDGE_PREDICT, 0, "2 window restarts (4 rows without a prediction)", HANDLED, setup=rows_file(rowset(lambda r: [row.update(t=str(float(row["t"]) + 10)) for row in r if float(row["t"]) >= 3])), issue="6"),
]
# fmt: on


def beyond_range(tmp: Path) -> None:
    """A bundle with training's valid range for sensor a, and a row with a = 1e30."""
    accepted = {"bounds": {"a": [-100.0, 100.0]}, "action": "nan"}
    bundle(edit_manifest(lambda m: m["input"].update(valid_range=accepted), reseal=True))(tmp)
    _patch_value(tmp, 4, "a", "1e30")


def _patch_value(tmp: Path, index: int, column: str, value: str) -> None:
    """Set one cell of rows.csv (data row ``index + 1``)."""
    lines = (tmp / "rows.csv").read_text().splitlines()
    header = lines[0].split(",")
    fields = lines[index + 1].split(",")
    fields[header.index(column)] = value
    lines[index + 1] = ",".join(fields)
    (tmp / "rows.csv").write_text("\n".join(lines) + "\n")


# -- running a tool in this process ---------------------------------------------------------------


def prepare(argv: list[str]) -> int:
    """plantml-train's data preparation alone (no model, no training): its log on stderr."""
    from plantml import api
    from plantml.cli.common import user_errors

    handler = logging.StreamHandler(sys.stderr)
    logger = logging.getLogger("plantml")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        user_errors(lambda: api.datamodule(api.compose(argv, output_dir=Path.cwd() / "run")))()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    return 0


def entry_point(tool: str):
    if tool == "prepare":
        return prepare
    if tool == "plantml-train":
        from plantml.cli.train import main
    elif tool == "plantml-eval":
        from plantml.cli.evaluate import main
    elif tool == "plantml-export":
        from plantml.cli.export import main
    else:
        from plantml.cli.edge import main

        return main
    return lambda argv: main()


def run_tool(case: Case, tmp: Path, monkeypatch, capsys) -> tuple[int, str]:
    """Run ``case`` in ``tmp``; (exit code, stdout + stderr). A traceback fails the test."""
    args = [a.replace("{tmp}", str(tmp)) for a in case.args]
    monkeypatch.chdir(tmp)
    monkeypatch.setenv("PLANTML_OUTPUTS", str(tmp / "outputs"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    if case.tool.startswith("plantml-") and case.tool != "plantml-edge":
        args = [*args, f"hydra.run.dir={tmp}/run", "hydra.job.chdir=false"]
        GlobalHydra.instance().clear()
    monkeypatch.setattr(sys, "argv", [case.tool, *args])
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        code = entry_point(case.tool)(args)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:  # Hydra set up logging to this test's captured streams: undo it
        for handler in root.handlers:
            if handler not in handlers:
                handler.close()
        root.handlers[:] = handlers
        root.setLevel(level)
    captured = capsys.readouterr()
    output = captured.out + captured.err
    return int(code or 0), output


def _params():
    for case in CORPUS:
        yield pytest.param(case, id=case.id, marks=case.marks)


@pytest.fixture(scope="module")
def trained_checkpoint(tmp_path_factory) -> Path:
    """last.ckpt of a tiny run: 10 pumps, 2 short epochs."""
    from tests.integration.resume_helpers import train_in_process

    folder = tmp_path_factory.mktemp("trained")
    train_in_process(
        [*TINY_FLEET, "trainer.max_epochs=2", "trainer.limit_train_batches=2", "evaluate=false"],
        folder,
    )
    GlobalHydra.instance().clear()
    return folder / "checkpoints" / "last.ckpt"


@pytest.mark.parametrize("case", list(_params()))
def test_bad_input(case: Case, tmp_path, monkeypatch, capsys, request):
    if case.setup:
        case.setup(tmp_path)
    if case.trained:
        source = request.getfixturevalue("trained_checkpoint")
        (tmp_path / "model.ckpt").write_bytes(source.read_bytes())
    code, output = run_tool(case, tmp_path, monkeypatch, capsys)
    assert "Traceback" not in output and "Error executing job" not in output, output[-3000:]
    fragment = case.fragment.replace("{tmp}", str(tmp_path))
    assert fragment in output, f"silent or unclear (exit {code}):\n{output[-3000:]}"
    assert code == case.code, f"exit {code}, expected {case.code}:\n{output[-3000:]}"
    if case.outcome == ERROR and case.tool != "plantml-edge" and case.code == 2:
        assert "error: " in output  # one line a user reads, not a log dump


def test_corpus_covers_the_issue():
    counts = collections.Counter(case.outcome for case in CORPUS)
    items = {case.issue for case in CORPUS if case.issue}
    assert {"3", "4", "6", "7"} <= items  # 1, 2 and 5: tests/integration/test_resume.py, edge tests
    assert len({case.id for case in CORPUS}) == len(CORPUS)
    print(
        f"bad-input corpus: {len(CORPUS)} cases, {counts[ERROR]} clear errors, {counts[HANDLED]} handled"
    )
