"""plantml-data output=FILE [data=...]: a source's sensor table as CSV or Parquet.

The raw table (``cleaned=false``) is what a plant's historian would hand over: multi-rate
readings, gaps, faults and all; it is also what ``plantml-edge`` reads after the device's
own alignment. ``cleaned=true`` writes the rows training cuts its windows from.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from plantml.cli.common import quiet_libraries, user_errors
from plantml.errors import ConfigError


@hydra.main(config_path="pkg://plantml.configs", config_name="data_export", version_base="1.3")
@user_errors
def main(cfg: DictConfig) -> None:
    quiet_libraries()
    from plantml.builders import instantiate
    from plantml.data.cleaning import clean
    from plantml.shell import runnable

    path = Path(str(cfg.output)).expanduser()
    suffix = "".join(path.suffixes).lower()
    if not suffix.endswith((".csv", ".csv.gz", ".parquet", ".pq")):
        raise ConfigError(f"output={path} must end in .csv, .csv.gz or .parquet")
    source = instantiate(cfg.data.source, "the data source (data=...)")
    table = source.load("train")
    if cfg.cleaned:
        table, _ = clean(table, cfg.data.get("cleaning"))
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = table.frame
    if suffix.endswith((".parquet", ".pq")):
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False, date_format="%Y-%m-%dT%H:%M:%S")
    label = table.failure_column or table.anomaly_column or table.rul_column
    kind = "failure" if table.failure_column else "anomaly" if table.anomaly_column else "rul"
    print(
        f"wrote {len(frame):,} rows of {frame[table.asset_column].nunique()} assets "
        f"({', '.join(map(str, frame.columns))}) to {path}"
    )
    command = (
        f"{runnable('plantml-train')} data=table data.path={path} "
        f"data.asset_column={table.asset_column} data.time_column={table.time_column} "
        + (
            f"data.label_column={label} data.label_kind={kind}"
            if label
            else "data.label_column=null"
        )
        + f" data.feature_columns=[{','.join(table.sensor_columns)}]"
    )
    if table.condition_column:
        command += f" data.condition_column={table.condition_column}"
    if table.setting_columns:
        command += f" data.setting_columns=[{','.join(table.setting_columns)}]"
    if table.maintenance_column:
        command += f" data.maintenance_column={table.maintenance_column}"
    if table.is_timestamped:
        command += f" data.time_unit={table.time_unit}"
    print(f"train on it as your own data: {command}")


if __name__ == "__main__":
    main()
