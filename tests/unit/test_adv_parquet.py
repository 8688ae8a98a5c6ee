"""Step rows in Parquet / Arrow: the same validated rows and the same advantages as the JSONL
path (checked against it on random batches for every estimator), written back with the input
columns untouched; bad columns are one-line errors naming FILE:ROW."""

from __future__ import annotations

import json
import random

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from agentrm.advantages import AdvantageConfig, compute
from agentrm.advantages.io import read_rows, write_rows
from agentrm.errors import InputError


def random_records(seed: int, int_ids: bool = False) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for g in range(4):
        for r in range(rng.randrange(1, 4)):
            traj = g * 10 + r if int_ids else f"t{g}-{r}"
            for s in range(rng.randrange(1, 5)):
                anchor = rng.choice([None, "start", f"s{s}", f"s{s}b"])
                out.append({"uid": g if int_ids else f"g{g}", "traj_uid": traj, "step": s * 2,
                            "anchor": anchor, "reward": rng.choice([0.0, 1.0, 0.5, None]) if s else 0.0,
                            "valid": rng.random() > 0.2, "turn_reward": rng.choice([0.1, -0.2, None]),
                            "note": f"keep-{len(out)}"})
    rng.shuffle(out)
    return out


def write_both(tmp_path, records):
    jsonl = tmp_path / "in.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in records))
    parquet = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pylist(records), parquet)
    return jsonl, parquet


@pytest.mark.parametrize("estimator", ["gigpo", "grpo", "rloo", "igpo", "minform"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_parquet_gives_the_jsonl_numbers(tmp_path, estimator, seed):
    jsonl, parquet = write_both(tmp_path, random_records(seed, int_ids=seed == 2))
    config = AdvantageConfig(estimator=estimator, anchor="similar:0.5" if seed == 1 else "exact")
    a = compute(read_rows(jsonl).rows, config)
    b = compute(read_rows(parquet).rows, config)
    assert a.columns.keys() == b.columns.keys()
    for key in a.columns:
        np.testing.assert_allclose(a.columns[key], b.columns[key], rtol=0, atol=1e-12, err_msg=key)


def test_written_parquet_echoes_input_and_appends_results(tmp_path):
    records = random_records(3)
    _, parquet = write_both(tmp_path, records)
    src = read_rows(parquet)
    result = compute(src.rows, AdvantageConfig())
    out = tmp_path / "out.parquet"
    assert write_rows(out, src, result.columns, meta=result.metadata) == len(records)
    table = pq.read_table(out)
    rows = table.to_pylist()
    for row, given in zip(rows, records, strict=True):
        assert {k: row[k] for k in given} == given
        adv = row["advantage"]
        assert adv is None or np.isfinite(adv)  # NaN (unknown reward) is written as null
    expected = [None if not np.isfinite(v) else v for v in result.advantage.tolist()]
    assert [r["advantage"] for r in rows] == expected
    assert json.loads(table.schema.metadata[b"agentrm"])["config_hash"] == result.metadata["config_hash"]
    assert json.loads((tmp_path / "out.parquet.meta.json").read_text())["estimator"] == "gigpo"
    # the same result as JSONL, and Arrow IPC in and out
    write_rows(tmp_path / "out.jsonl", src, result.columns)
    as_jsonl = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert as_jsonl == rows
    write_rows(tmp_path / "out.arrow", src, result.columns, keep=np.arange(len(records)) % 2 == 0)
    again = read_rows(tmp_path / "out.arrow")
    assert len(again) == (len(records) + 1) // 2 and again.table.column("note").to_pylist() == \
        [r["note"] for r in records[::2]]


@pytest.mark.parametrize("change, message, row", [
    (lambda t: t.set_column(2, "step", pa.array([0, 0, 1], pa.int64())), "duplicate step 0", 2),
    (lambda t: t.set_column(0, "uid", pa.array(["a", "b", "a"])), "two groups", 2),
    (lambda t: t.set_column(3, "reward", pa.array([0.0, float("nan"), 1.0])), "finite number", 2),
    (lambda t: t.set_column(2, "step", pa.array([0, -1, 2], pa.int64())), "non-negative", 2),
    (lambda t: t.set_column(0, "uid", pa.array(["a", None, "a"])), "missing field 'uid'", 2),
    (lambda t: t.set_column(2, "step", pa.array([0.0, 1.0, 2.0])), "integer column", None),
    (lambda t: t.drop_columns(["reward"]), "missing field 'reward'", None),
    (lambda t: t.set_column(4, "valid", pa.array([True, None, True])), "'valid'", 2),
])
def test_bad_columns_name_file_and_row(tmp_path, change, message, row):
    table = pa.table({"uid": ["a", "a", "a"], "traj_uid": ["x", "x", "x"], "step": pa.array([0, 1, 2], pa.int64()),
                      "reward": [0.0, 0.5, 1.0], "valid": [True, True, True]})
    path = tmp_path / "bad.parquet"
    pq.write_table(change(table), path)
    with pytest.raises(InputError, match=message) as exc:
        read_rows(path)
    where = f"{path}:{row}: " if row else f"{path}: "
    assert str(exc.value).startswith(where)


def test_not_a_parquet_file(tmp_path):
    path = tmp_path / "x.parquet"
    path.write_text("not parquet")
    with pytest.raises(InputError, match="not a parquet file"):
        read_rows(path)


def test_advantages_file_and_advantage_map_in_every_format(tmp_path):
    from agentrm.advantages.io import advantages_file, read_advantage_map

    records = random_records(4)
    jsonl, parquet = write_both(tmp_path, records)
    maps = []
    for src, out in ((jsonl, tmp_path / "a.jsonl"), (parquet, tmp_path / "a.parquet"),
                     (parquet, tmp_path / "a.arrow")):
        result = advantages_file(src, out, AdvantageConfig())
        assert (tmp_path / f"{out.name}.meta.json").exists()
        maps.append(read_advantage_map(out))
        assert len(maps[-1]) == len(records) == len(result.advantage)
    keys = maps[0].keys()
    assert maps[1].keys() == keys == maps[2].keys()
    for key in keys:
        a, b = maps[0][key], maps[1][key]
        assert (np.isnan(a) and np.isnan(b)) or a == pytest.approx(b, abs=1e-12)
