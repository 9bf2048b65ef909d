"""Dataset loading (JSONL/CSV) and feeder strategies, including sharding."""

from __future__ import annotations

import pytest

from tracker.driver.feeders import FeederExhausted, make_feeder
from tracker.errors import UsageError
from tracker.scenario.datasets import load_dataset


def _jsonl(tmp_path, text, name="d.jsonl"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _numbered(tmp_path, n):
    return load_dataset(_jsonl(tmp_path, "".join(f'{{"i": {i}}}\n' for i in range(n))), name="nums")


# --- loading ---------------------------------------------------------------------------


def test_jsonl_rows_blank_lines_and_columns(tmp_path):
    path = _jsonl(
        tmp_path,
        '{"prompt": "a", "max_tokens": 8}\n\n   \n{"prompt": "b", "tags": ["x"]}\n',
        name="p.ndjson",
    )
    ds = load_dataset(path, name="prompts")
    assert len(ds) == 2
    assert ds.rows == ({"prompt": "a", "max_tokens": 8}, {"prompt": "b", "tags": ["x"]})
    assert ds.lines == (1, 4)
    assert ds.columns == {"prompt", "max_tokens", "tags"}
    assert ds.required_columns == {"prompt"}
    assert ds.first_line_without("prompt") is None
    assert ds.first_line_without("tags") == 1


def test_jsonl_bad_line_reports_its_number(tmp_path):
    path = _jsonl(tmp_path, '{"a": 1}\n\n{"a": 2,}\n')
    with pytest.raises(UsageError, match=r"^dataset 'd': .*d\.jsonl:3: not valid JSON"):
        load_dataset(path, name="d")
    path = _jsonl(tmp_path, '{"a": 1}\n[1, 2]\n')
    with pytest.raises(UsageError, match=r"d\.jsonl:2: expected a JSON object, got list"):
        load_dataset(path, name="d")


def test_empty_and_missing_files(tmp_path):
    with pytest.raises(UsageError, match=r"has no rows; add one JSON object per line"):
        load_dataset(_jsonl(tmp_path, "\n\n"), name="d")
    empty_csv = tmp_path / "e.csv"
    empty_csv.write_text("a,b\n")
    with pytest.raises(UsageError, match=r"e\.csv: has no rows; add rows below the header"):
        load_dataset(empty_csv, name="d")
    empty_csv.write_text("")
    with pytest.raises(UsageError, match="has no rows"):
        load_dataset(empty_csv, name="d")
    with pytest.raises(UsageError, match=r"^dataset 'gone': .*nope\.jsonl: file not found"):
        load_dataset(tmp_path / "nope.jsonl", name="gone")
    with pytest.raises(UsageError, match="is a directory"):
        load_dataset(tmp_path, name="d", fmt="csv")


def test_format_from_extension_or_explicit(tmp_path):
    path = _jsonl(tmp_path, '{"a": 1}\n', name="rows.txt")
    with pytest.raises(UsageError, match="cannot tell the format"):
        load_dataset(path, name="d")
    assert load_dataset(path, name="d", fmt="jsonl").rows == ({"a": 1},)
    with pytest.raises(UsageError, match="unknown dataset format 'xml'"):
        load_dataset(path, name="d", fmt="xml")


def test_csv_keeps_strings_quotes_bom_and_skips_blank_lines(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text('\ufefftext, id\n"hello, world",1\n\n"multi\nline",2\n', encoding="utf-8")
    ds = load_dataset(path, name="p")
    assert ds.rows == ({"text": "hello, world", "id": "1"}, {"text": "multi\nline", "id": "2"})
    assert ds.lines == (2, 4)
    assert ds.columns == ds.required_columns == {"text", "id"}


def test_csv_inconsistent_columns_and_bad_header(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("a,b\n1,2\n\n1,2,3\n")
    with pytest.raises(UsageError, match=r"p\.csv:4: 3 fields but the header has 2 columns"):
        load_dataset(path, name="p")
    path.write_text("a,b\n1\n")
    with pytest.raises(UsageError, match=r"p\.csv:2: 1 fields"):
        load_dataset(path, name="p")
    path.write_text("a,,b\n1,2,3\n")
    with pytest.raises(UsageError, match=r"p\.csv:1: the header row has an empty column name"):
        load_dataset(path, name="p")
    path.write_text("a,b,a\n1,2,3\n")
    with pytest.raises(UsageError, match=r"duplicate column a"):
        load_dataset(path, name="p")


def test_non_utf8_file(tmp_path):
    path = tmp_path / "p.csv"
    path.write_bytes(b"a\n\xff\xfe\n")
    with pytest.raises(UsageError, match="not UTF-8"):
        load_dataset(path, name="p")


# --- feeders ---------------------------------------------------------------------------


def test_sequential_wraps_around(tmp_path):
    feeder = make_feeder(_numbered(tmp_path, 3), "sequential")
    assert [feeder.next_row()["i"] for _ in range(7)] == [0, 1, 2, 0, 1, 2, 0]
    assert feeder.mode == "sequential" and feeder.served == 7


def test_random_is_seeded_reproducible_and_covers(tmp_path):
    ds = _numbered(tmp_path, 10)

    def draw(seed, n=500, shard=(0, 1)):
        feeder = make_feeder(ds, "random", seed=seed, shard=shard)
        return [feeder.next_row()["i"] for _ in range(n)]

    assert draw(1) == draw(1)
    assert draw(1) != draw(2)
    assert set(draw(1)) == set(range(10))
    assert draw(1, shard=(0, 2)) != draw(1, shard=(1, 2))
    assert draw(1, shard=(1, 2)) == draw(1, shard=(1, 2))


def test_unique_exhausts(tmp_path):
    feeder = make_feeder(_numbered(tmp_path, 3), "unique")
    assert [feeder.next_row()["i"] for _ in range(3)] == [0, 1, 2]
    with pytest.raises(FeederExhausted, match=r"no unique rows left \(3 used\)") as err:
        feeder.next_row()
    assert err.value.dataset == "nums"
    with pytest.raises(FeederExhausted):
        feeder.next_row()


def _drain(feeder):
    rows = []
    while True:
        try:
            rows.append(feeder.next_row()["i"])
        except FeederExhausted:
            return rows


@pytest.mark.parametrize(("rows", "workers"), [(10, 3), (7, 7), (2, 4), (12, 1)])
def test_unique_shards_are_disjoint_and_cover(tmp_path, rows, workers):
    ds = _numbered(tmp_path, rows)
    shards = [_drain(make_feeder(ds, "unique", shard=(w, workers))) for w in range(workers)]
    assert shards[0] == list(range(0, rows, workers))
    assert sorted(i for shard in shards for i in shard) == list(range(rows))


def test_sequential_shards_start_at_spread_offsets(tmp_path):
    ds = _numbered(tmp_path, 10)
    firsts = [make_feeder(ds, "sequential", shard=(w, 4)).next_row()["i"] for w in range(4)]
    assert firsts == [0, 2, 5, 7]
    feeder = make_feeder(ds, "sequential", shard=(3, 4))
    assert [feeder.next_row()["i"] for _ in range(10)] == [7, 8, 9, 0, 1, 2, 3, 4, 5, 6]


def test_bad_mode_and_shard(tmp_path):
    ds = _numbered(tmp_path, 2)
    with pytest.raises(
        UsageError, match="unknown feeder mode 'shuffle'; use one of sequential, random, unique"
    ):
        make_feeder(ds, "shuffle")
    with pytest.raises(ValueError, match="shard"):
        make_feeder(ds, "unique", shard=(2, 2))
