"""`perfsleuth export --format hdr|csv`: a real run against the example server, exported,
and read back by HdrHistogram's own readers (hdrh's HistogramLogReader, and the Java
HistogramLogProcessor where a JVM and the HdrHistogram jar are on the machine)."""

from __future__ import annotations

import csv
import io
import random
import re
import shutil
import signal
import sqlite3
import subprocess
from pathlib import Path

import pytest
from cli_helpers import perfsleuth, show_json
from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader
from support.llm_server import running_llm_server

from tracker.records.window import Histogram
from tracker.reports.windows import summary_ms
from tracker.reports.windows_csv import CSV_COLUMNS
from tracker.reports.windows_hdr import hlog_tag

SCENARIO = """
name = "export-windows"
url = "{url}"

[load]
rate = 20
duration = "3s"
warmup = "1s"

[[requests]]
name = "short"
path = "/v1/completions"
stream = "sse"
json = {{ model = "sim", prompt = "one two", max_tokens = 4, stream = true }}

[[requests]]
name = "long words"
path = "/v1/completions"
stream = "sse"
json = {{ model = "sim", prompt = "one two three four", max_tokens = 10, stream = true }}
"""

# The HdrHistogram jar as Maven leaves it; the Java check is skipped where it is absent.
HDR_JAR = Path.home() / ".m2/repository/org/hdrhistogram/HdrHistogram/2.2.2/HdrHistogram-2.2.2.jar"


class Stored:
    def __init__(self, root: Path, db: str, doc: dict, server_pid: int) -> None:
        self.root, self.db, self.doc, self.server_pid = root, db, doc, server_pid

    def export(self, *args: str) -> subprocess.CompletedProcess[str]:
        run = str(self.doc["run_id"])
        return perfsleuth("export", run, *args, "--db", self.db, cwd=self.root)

    def windows(self) -> list[tuple[int, bool]]:
        con = sqlite3.connect(self.db.removeprefix("sqlite:///"))
        try:
            rows = con.execute(
                "select idx, warmup from windows where run_id=? order by idx",
                (self.doc["run_id"],),
            ).fetchall()
        finally:
            con.close()
        return [(int(i), bool(w)) for i, w in rows]


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("export")
    db = f"sqlite:///{root / 'runs.db'}"
    with running_llm_server() as server:
        scenario = root / "scenario.toml"
        scenario.write_text(SCENARIO.format(url=server.url))
        done = perfsleuth("run", str(scenario), "--db", db, cwd=root)
        assert done.returncode == 0, done.stderr
        yield Stored(root, db, show_json(db, "latest", root), server.pid)


def _read_hlog(path: Path) -> tuple[dict[str, HdrHistogram], list[tuple[str, float, float]]]:
    """Merge the log's intervals per tag with hdrh's reader; also (tag, start, length)."""
    reader = HistogramLogReader(str(path), HdrHistogram(1, 3_600_000_000, 3))
    merged: dict[str, HdrHistogram] = {}
    intervals = []
    try:
        while (h := reader.get_next_interval_histogram()) is not None:
            tag = h.get_tag()
            merged.setdefault(tag, HdrHistogram(1, 3_600_000_000, 3)).add(h)
            start = h.get_start_time_stamp() / 1000.0 - reader.base_time_sec
            length = (h.get_end_time_stamp() - h.get_start_time_stamp()) / 1000.0
            intervals.append((tag, round(start, 3), round(length, 3)))
    finally:
        reader.close()
    return merged, intervals


def _ms(h: HdrHistogram) -> dict[str, float]:
    return {
        "p50": h.get_value_at_percentile(50) / 1000.0,
        "p99": h.get_value_at_percentile(99) / 1000.0,
        "max": h.get_max_value() / 1000.0,
        "count": float(h.get_total_count()),
    }


def _same(ours: dict[str, float], doc: dict[str, float]) -> None:
    assert ours == {k: doc[k] for k in ours}, (ours, doc)


def test_hdr_log_merges_to_the_percentiles_of_show(stored: Stored) -> None:
    out = stored.root / "run.hlog"
    done = stored.export("--format", "hdr", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(
        r"wrote \d+ interval histograms \(\d+ windows\) of run \d+ to .*run\.hlog\n", done.stderr
    ), done.stderr
    lines = out.read_text().splitlines()
    assert "#[Histogram log format version 1.3]" in lines
    assert any(line.startswith("#[StartTime: ") for line in lines)
    assert any(line.startswith("#[BaseTime: ") for line in lines)
    assert any("microseconds" in line for line in lines if line.startswith("#"))
    legend = '"StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"'
    assert lines.index(legend) == max(i for i, x in enumerate(lines) if x.startswith("#")) + 1

    merged, intervals = _read_hlog(out)
    doc = stored.doc
    # Warm-up (window 0) is left out by default, as the summary leaves it out.
    assert min(start for _, start, _ in intervals) == 1.0
    assert all(0 < length <= 1.0 for _, _, length in intervals)
    _same(_ms(merged["latency"]), doc["latency_ms"])
    assert merged["latency"].get_total_count() == doc["requests"]["ok"]
    _same(_ms(merged["latency_uncorrected"]), doc["latency_uncorrected_ms"])
    _same(_ms(merged["ttft"]), doc["llm"]["ttft_ms"])
    _same(_ms(merged["itl"]), doc["llm"]["itl_ms"])
    # Per-request keys: `|` kept, the space of "long words" mapped (tags cannot hold it).
    assert hlog_tag("latency|long words") == "latency|long_words"
    by_name = doc["requests_by_name"]
    _same(_ms(merged["latency|long_words"]), by_name["long words"]["latency_ms"])
    _same(_ms(merged["latency|short"]), by_name["short"]["latency_ms"])
    _same(_ms(merged["ttft|short"]), by_name["short"]["ttft_ms"])
    assert {"schedule_lag", "loop_lag", "tpot"} <= set(merged)


@pytest.mark.skipif(
    shutil.which("java") is None or not HDR_JAR.is_file(), reason="no JVM or HdrHistogram jar"
)
def test_hdr_log_is_read_by_the_java_histogram_log_processor(stored: Stored) -> None:
    out = stored.root / "java.hlog"
    assert stored.export("--format", "hdr", "--out", str(out)).returncode == 0
    java = ["java", "-cp", str(HDR_JAR), "org.HdrHistogram.HistogramLogProcessor", "-i", str(out)]
    tags = subprocess.run([*java, "-listtags"], capture_output=True, text=True, timeout=60)
    assert tags.returncode == 0, tags.stderr
    assert {"latency", "latency|long_words", "ttft|short"} <= set(tags.stdout.split())
    done = subprocess.run(
        [*java, "-tag", "latency", "-outputValueUnitRatio", "1000"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    found = re.search(r"#\[Max\s*=\s*([\d.]+), Total count\s*=\s*(\d+)\]", done.stdout)
    assert found, done.stdout
    assert float(found[1]) == stored.doc["latency_ms"]["max"]
    assert int(found[2]) == stored.doc["requests"]["ok"]


def test_include_warmup_and_metric_select_histograms(stored: Stored) -> None:
    done = stored.export(
        "--format", "hdr", "--metric", "latency", "--include-warmup", "--out", "-"
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = stored.root / "warm.hlog"
    out.write_text(done.stdout)
    merged, intervals = _read_hlog(out)
    assert set(merged) == {"latency"}
    assert min(start for _, start, _ in intervals) == 0.0
    assert "#[warm-up window 0 " in done.stdout
    warm = [i for i, w in stored.windows() if w]
    assert warm == [0]
    assert merged["latency"].get_total_count() > stored.doc["requests"]["ok"]


def test_csv_has_a_row_per_window_and_metric(stored: Stored) -> None:
    out = stored.root / "run.csv"
    done = stored.export("--format", "csv", "--out", str(out))
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert tuple(rows[0]) == CSV_COLUMNS
    windows = [i for i, warm in stored.windows() if not warm]
    metrics = {r["metric"] for r in rows}
    assert {"latency", "latency|long words", "ttft", "itl", "tpot", "schedule_lag"} <= metrics
    assert len(rows) == len(windows) * len(metrics)
    assert {(int(r["window"]), r["metric"]) for r in rows} == {
        (w, m) for w in windows for m in metrics
    }
    for r in rows:
        assert r["warmup"] == "0"
        assert 0 < float(r["duration_s"]) <= 1.0 and float(r["start_s"]) >= 1.0
        if int(r["count"]):
            values = [float(r[c]) for c in CSV_COLUMNS if c.endswith("_ms")]
            assert all(v > 0 for v in values), r
            assert float(r["p50_ms"]) <= float(r["p99_ms"]) <= float(r["max_ms"])
        else:
            assert all(r[c] == "" for c in CSV_COLUMNS if c.endswith("_ms")), r
    latency = [r for r in rows if r["metric"] == "latency"]
    doc = stored.doc
    assert sum(int(r["count"]) for r in latency) == doc["requests"]["ok"]
    assert sum(int(r["ok"]) for r in latency) == doc["requests"]["ok"]
    assert max(float(r["max_ms"]) for r in latency if r["max_ms"]) == doc["latency_ms"]["max"]

    picked = stored.export("--format", "csv", "--metric", "ttft", "--metric", "latency|short",
                           "--out", "-")  # fmt: skip
    assert picked.returncode == 0, picked.stderr
    rows = list(csv.DictReader(io.StringIO(picked.stdout)))
    # Each window's rows in report order: the latency family before TTFT.
    assert [r["metric"] for r in rows[:2]] == ["latency|short", "ttft"]
    assert len(rows) == 2 * len(windows)


def test_summary_equals_the_histograms_own() -> None:
    rng = random.Random(7)
    for n in (1, 2, 5, 50, 1000):
        for scale_ms in (0.002, 0.5, 40.0, 3_000.0, 5_000_000.0):
            h = Histogram()
            for _ in range(n):
                h.record_ms(rng.lognormvariate(0, 1.5) * scale_ms)
            decoded = Histogram.decode(h.encode())
            assert summary_ms(decoded) == decoded.summary_ms(), (n, scale_ms)
    assert summary_ms(Histogram()) is None


def _error(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """The CLI's one error line for `perfsleuth ARGS` (in process: only the message and the
    exit code are checked, and an interpreter start per case would double this file's time)."""
    from tracker.cli import main

    handler = signal.getsignal(signal.SIGTERM)  # main() routes SIGTERM to Ctrl-C
    try:
        with pytest.raises(SystemExit) as exited:
            main(list(args))
    finally:
        signal.signal(signal.SIGTERM, handler)
    err = capsys.readouterr().err
    assert exited.value.code == 2, err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


def test_a_run_without_windows_is_one_clear_line(
    stored: Stored, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = f"sqlite:///{tmp_path / 'attach.db'}"
    attach = perfsleuth("attach", str(stored.server_pid), "--duration", "1s", "--db", db,
                        cwd=tmp_path)  # fmt: skip
    assert attach.returncode == 0, attach.stderr
    out = tmp_path / "x.hlog"
    line = _error(capsys, "export", "latest", "--format", "hdr", "--out", str(out), "--db", db)
    assert line.startswith("perfsleuth: error: run ") and "has no load windows" in line, line
    assert not out.exists()


def test_bad_flags_and_unwritable_out(
    stored: Stored, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def export(*args: str) -> str:
        return _error(capsys, "export", str(stored.doc["run_id"]), *args, "--db", stored.db)

    assert "Invalid value for '--format'" in export("--format", "xml", "--out", "-")
    assert "--out: " in (named_a_dir := export("--format", "csv", "--out", str(tmp_path)))
    assert "is a directory; name a file in it" in named_a_dir
    missing = tmp_path / "no" / "x.hlog"
    assert "--out: directory" in export("--format", "hdr", "--out", str(missing))
    typo = export("--format", "csv", "--metric", "latncy", "--out", "-")
    assert "did you mean 'latency'?" in typo, typo
    stacks = export("--metric", "latency", "--out", "-")
    assert "apply to --format hdr and csv only" in stacks
