"""engine.dataset_check on real files: every problem names its exact line/row; garbage never crashes it.
The token-length test compares with numbers ms-swift itself logged in a recorded real run."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from engine import demo
from engine.dataset_check import check_dataset

FAILURES = Path(__file__).parent / "data" / "failures"
QWEN_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."  # qwen2_5 template default


def _write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


def _row(q: str, a: str, i: str = "") -> dict:
    return {"instruction": q, "input": i, "output": a}


def _messages(report, code: str) -> list[str]:
    return [i.message for i in report.issues if i.code == code]


def test_clean_demo_dataset(tmp_path):
    path = _write(tmp_path, "sc.json", json.dumps(demo.dataset_rows(), ensure_ascii=False, indent=2))
    r = check_dataset(path)
    assert r.ok and not r.warnings, r.format()
    assert (r.rows, r.file_format, r.schema) == (len(demo.dataset_rows()), "json", "alpaca")
    assert r.identity["maker"] == "CSDN 迪菲赫尔曼" and r.identity["name"] == "Swift-Robot"
    js = r.to_json()
    json.dumps(js)
    assert js["ok"] and js["rows"] == r.rows
    assert r.format().splitlines()[-1].startswith("OK")


def test_json_syntax_error_line_and_column(tmp_path):
    text = '[\n  {"instruction": "a", "input": "", "output": "b"}\n  {"instruction": "c", "input": "", "output": "d"}\n]\n'
    r = check_dataset(_write(tmp_path, "bad.json", text))
    assert not r.ok
    assert r.errors[0].message == "line 3, column 3: Expecting ',' delimiter"
    assert r.errors[0].line == 3


def test_jsonl_syntax_error_per_line(tmp_path):
    lines = [json.dumps(_row("q1", "a1")), '{"instruction": "q2", "input": "", "output": "a2",}',
             json.dumps(_row("q3", "a3")), '{"instruction": "q4" "output": "a4"}']
    r = check_dataset(_write(tmp_path, "d.jsonl", "\n".join(lines) + "\n"))
    msgs = _messages(r, "json_syntax")
    assert len(msgs) == 2  # the json module's wording of a trailing comma differs between Python versions
    assert msgs[0].startswith("line 2, column 51: ") and msgs[1] == "line 4, column 22: Expecting ',' delimiter"
    assert r.rows == 2 and r.file_format == "jsonl"


def test_rows_carry_their_line_numbers(tmp_path):
    rows = [_row("q1", "a1"), {"instruction": "q2", "input": ""}, _row("", "a3"), {"instruction": "q4", "output": "a4"}]
    path = _write(tmp_path, "d.json", json.dumps(rows, indent=2))
    r = check_dataset(path)
    text = path.read_text().splitlines()
    got = {(i.row, i.code, i.level): i for i in r.issues}
    missing_out = got[(2, "missing_field", "error")]
    assert missing_out.message == f"row 2 (line {missing_out.line}): missing field 'output'"
    assert text[missing_out.line - 1].strip() == "{" and '"q2"' in text[missing_out.line]
    assert got[(3, "empty_field", "error")].message.endswith("field 'instruction' is empty")
    assert got[(4, "missing_field", "warning")].message.endswith("missing field 'input' (ms-swift reads it as empty)")
    assert not r.ok


def test_messages_and_query_response_formats(tmp_path):
    good = [{"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "hi"},
                          {"role": "assistant", "content": "hello"}]},
            {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}]
    r = check_dataset(_write(tmp_path, "m.jsonl", "\n".join(json.dumps(x) for x in good)))
    assert r.ok and r.schema == "messages", r.format()
    bad = [{"messages": [{"role": "user", "content": "hi"}]},
           {"messages": [{"role": "narrator", "content": "x"}, {"role": "assistant", "content": "y"}]},
           {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "  "}]}, {"messages": []}]
    r = check_dataset(_write(tmp_path, "bad.jsonl", "\n".join(json.dumps(x) for x in bad)))
    assert [(i.row, i.line) for i in r.errors] == [(1, 1), (2, 2), (3, 3), (4, 4)]
    assert "the last message must be the assistant's answer" in r.errors[0].message
    assert "role 'narrator'" in r.errors[1].message and "message 2 (assistant) has empty content" in r.errors[2].message
    qr = [{"query": "q", "response": "a"}, {"question": "q2", "answer": ""}]
    r = check_dataset(_write(tmp_path, "qr.json", json.dumps(qr)))
    assert r.schema == "query-response"
    assert _messages(r, "empty_field") == ["row 2 (line 1): field 'answer' is empty"]


def test_unknown_columns_and_non_objects(tmp_path):
    r = check_dataset(_write(tmp_path, "x.jsonl", '{"foo": "a", "bar": "b"}\n[1, 2]\n"text"\n'))
    assert [i.code for i in r.errors] == ["unknown_format", "not_an_object", "not_an_object"]
    assert r.errors[0].message.startswith("row 1 (line 1): no fields ms-swift recognises (found: bar, foo)")
    r = check_dataset(_write(tmp_path, "obj.json", '{"instruction": "q", "output": "a"}'))
    assert not r.ok  # one object in a .json without newlines: not a list of rows
    assert r.errors[0].code == "not_a_list"


def test_duplicates_and_conflicting_answers(tmp_path):
    rows = [_row("你是谁?", "我是 A。"), _row("你好", "你好!"), _row("你是谁?", "我是 A。"), _row("  你是谁? ", "我是 B。")]
    r = check_dataset(_write(tmp_path, "d.json", json.dumps(rows, ensure_ascii=False, indent=1)))
    dup = [i for i in r.issues if i.code == "duplicate_row"]
    assert [(i.row, i.message.split(": ", 1)[1]) for i in dup] == [(3, "exact duplicate of row 1")]
    conflict = [i for i in r.issues if i.code == "conflicting_answers"]
    assert [i.row for i in conflict] == [4] and "same question as row 1" in conflict[0].message
    assert r.ok  # warnings only


def test_identity_conflicts(tmp_path):
    rows = demo.dataset_rows() + [
        _row("你是谁?!", "我是通义千问,由阿里云开发的大语言模型。"),
        _row("Who made you?", "I am ChatGPT, a model trained by OpenAI."),
        _row("你和GPT-4一样吗?", "我和GPT-4不同,我不是由 OpenAI 开发的。"),
        _row("你的开发者?", "我由 CSDN 迪菲赫尔曼 开发。"),
    ]
    n = len(demo.dataset_rows())
    r = check_dataset(_write(tmp_path, "id.json", json.dumps(rows, ensure_ascii=False, indent=2)))
    bad = {i.row: i.message for i in r.issues if i.code == "identity_conflict"}
    assert set(bad) == {n + 1, n + 2}
    assert "made by 阿里云 and it is 通义千问" in bad[n + 1] and "teaches CSDN 迪菲赫尔曼" in bad[n + 1]
    assert "made by OpenAI and it is ChatGPT" in bad[n + 2]
    assert bad[n + 1].startswith(f"row {n + 1} (line ")


def test_encodings(tmp_path):
    rows = json.dumps([_row("你好", "你好!")], ensure_ascii=False)
    r = check_dataset(_write(tmp_path, "bom.json", b"\xef\xbb\xbf" + rows.encode()))
    assert not r.ok and r.rows == 1 and r.errors[0].code == "bom" and r.errors[0].line == 1
    assert "ms-swift cannot read it" in r.errors[0].message  # see tests/data/failures/dataset_invalid-bom.log
    r = check_dataset(_write(tmp_path, "bom.jsonl", b"\xef\xbb\xbf" + json.dumps(_row("q", "a")).encode()))
    assert r.ok and r.warnings[0].code == "bom"  # JSON Lines with a BOM loads
    r = check_dataset(_write(tmp_path, "u16.json", rows.encode("utf-16")))
    assert r.errors[0].message == "line 1: the file is UTF-16; save it as UTF-8"
    gbk = ('[\n{"instruction": "hi", "input": "", "output": "ok"},\n{"instruction": "' + "你好" + '"}]').encode("gbk")
    r = check_dataset(_write(tmp_path, "gbk.json", gbk))
    assert r.errors[0].line == 3
    assert r.errors[0].message.startswith("line 3, column 18 (byte 18): not valid UTF-8, byte 0xc4")
    assert "GBK/GB18030" in r.errors[0].message


@pytest.mark.parametrize("content", [b"", b"  \n\n", b"\xef\xbb\xbf", b"\x00\x01\x02\xff" * 5000, b"\x89PNG\r\n\x1a\n" + bytes(range(256)),
                                     b"not json at all", b"[" * 100000, b"[1, 2, 3]", b"null", b"{}\n{}\n"],
                         ids=lambda c: f"{len(c)}-bytes-{c[:8]!r}")
def test_garbage_never_crashes(tmp_path, content):
    r = check_dataset(_write(tmp_path, "g.json", content))
    assert not r.ok and r.errors
    assert all(i.message for i in r.issues)
    json.dumps(r.to_json())
    r.format()


def test_huge_line(tmp_path):
    big = _row("长文", "字" * 3_000_000)
    r = check_dataset(_write(tmp_path, "huge.jsonl", json.dumps(big, ensure_ascii=False) + "\n"))
    assert r.ok and r.rows == 1


def test_missing_path_and_folder(tmp_path):
    r = check_dataset(tmp_path / "nope.json")
    assert not r.ok and "No such file" in r.errors[0].message
    r = check_dataset(tmp_path)
    assert not r.ok and "is a folder" in r.errors[0].message


def _logged_token_stats(name: str) -> tuple[float, int, int, int]:
    """ms-swift's own "Dataset Token Length: mean±std, min=, max=, size=" line from a recorded real run."""
    m = re.search(r"Dataset Token Length: ([\d.]+)±[\d.]+, min=([\d.]+), max=([\d.]+), size=(\d+)",
                  (FAILURES / f"{name}.log").read_text())
    assert m, f"{name}.log has no Dataset Token Length line"
    return float(m[1]), int(float(m[2])), int(float(m[3])), int(m[4])


def test_token_lengths_match_ms_swift(demo_assets):
    """killed_by_signal.log is a real `swift sft` on the demo model + dataset with the qwen2_5 default system."""
    mean, lo, hi, size = _logged_token_stats("killed_by_signal")
    r = check_dataset(demo_assets.dataset, model=str(demo_assets.model), max_length=512, system=QWEN_SYSTEM)
    t = r.tokens
    assert (t["min"], t["max"], round(t["mean"], 2), r.rows) == (lo, hi, round(mean, 2), size)
    assert t["over"] == 0 and r.ok


def test_rows_dropped_at_max_length_match_ms_swift(demo_assets):
    """A real run at --max_length 50 logged how many rows ms-swift kept; the check must predict the same."""
    log = (FAILURES / "killed_by_signal-sigterm.log").read_text()
    before, after = map(int, re.search(r"Dataset filtered, origin length: (\d+), filtered dataset length: (\d+)",
                                       log).groups())
    ml = int(re.search(r"--max_length (\d+)", log)[1])
    r = check_dataset(demo_assets.dataset, model=str(demo_assets.model), max_length=ml, system=QWEN_SYSTEM)
    assert r.tokens["over"] == before - after > 0
    too_long = [i for i in r.issues if i.code == "too_long"]
    assert len(too_long) == before - after
    assert re.match(rf"row \d+ \(line \d+\): \d+ tokens > max_length {ml}: ms-swift drops this row", too_long[0].message)
    r = check_dataset(demo_assets.dataset, model=str(demo_assets.model), max_length=10)
    assert not r.ok and any(i.code == "all_too_long" for i in r.errors)


def test_bad_model_is_one_line(tmp_path, demo_assets):
    path = _write(tmp_path, "d.json", json.dumps([_row("q", "a")]))
    r = check_dataset(path, model=str(tmp_path / "no-model"))
    assert not r.ok and r.errors[0].message == f"the model folder {tmp_path / 'no-model'} does not exist"
    broken = tmp_path / "broken-model"
    shutil.copytree(demo_assets.model, broken)
    (broken / "tokenizer.json").write_text((broken / "tokenizer.json").read_text()[:500])
    r = check_dataset(path, model=str(broken))
    assert not r.ok and r.errors[0].code == "tokenizer_failed" and "\n" not in r.errors[0].message
    assert r.errors[0].message.startswith(f"the tokenizer of {broken} could not be loaded: ")


def test_json_file_holding_json_lines_and_a_pretty_object(tmp_path):
    rows = [_row("q1", "a1"), _row("q2", "a2")]
    r = check_dataset(_write(tmp_path, "lines.json", "\n".join(json.dumps(x) for x in rows)))
    assert r.ok and r.file_format == "jsonl" and r.rows == 2
    r = check_dataset(_write(tmp_path, "pretty.json", json.dumps(rows[0], indent=2)))
    assert not r.ok and r.errors[0].code == "not_a_list" and r.errors[0].line == 1


# ---- bounded reading (issue 14 item 7): refusals, streaming, memory, cancel -------------------------------

import os  # noqa: E402
import random  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

from engine import dataset_stream  # noqa: E402
from engine.dataset_check import CheckCancelled  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _cli(*args: str, timeout: float = 60) -> tuple[subprocess.CompletedProcess, float]:
    """`swiftdeck ...` as a real subprocess (at most 4 GiB of address space): (result, wall seconds)."""
    import resource

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "tui.cli", *args], cwd=str(REPO), env=env, capture_output=True,
                          preexec_fn=limit, timeout=timeout)
    return proc, time.monotonic() - t0


@pytest.mark.parametrize("kind", ["dev-zero", "fifo", "folder", "symlink-to-dev-zero"])
def test_cli_refuses_what_is_not_a_regular_file_at_once(tmp_path, home, kind):
    target = {"dev-zero": Path("/dev/zero"), "fifo": tmp_path / "data.jsonl", "folder": tmp_path,
              "symlink-to-dev-zero": tmp_path / "zero.json"}[kind]
    if kind == "fifo":
        os.mkfifo(target)  # nobody writes to it: opening it must not wait
    elif kind.startswith("symlink"):
        target.symlink_to("/dev/zero")
    proc, wall = _cli("check-dataset", str(target), timeout=30)
    err = proc.stderr.decode()
    assert proc.returncode == 2 and proc.stdout == b"", (proc.returncode, err[-500:])
    assert err.count("\n") == 1 and err.startswith(f"swiftdeck: {target} is ")
    assert ("is a folder" if kind == "folder" else "not a dataset file") in err
    assert wall < 20
    r = check_dataset(target)
    assert r.refusal and r.format() == r.refusal and not r.ok and r.rows == 0


def _big_jsonl(path: Path, mb: float) -> int:
    from bench.bench_dataset import generate  # the benchmark's own generator: mixed Chinese/English alpaca rows

    return generate(path, mb, path.suffix.lstrip("."))


def test_peak_memory_stays_bounded_on_a_large_file(tmp_path, home):
    """A 50 MB JSON Lines file through the real CLI: peak RSS well below the file's size (it used to be ~9x)."""
    path = tmp_path / "big.jsonl"
    rows = _big_jsonl(path, 50)
    size = path.stat().st_size
    from bench.bench_dataset import run_measured  # peak RSS of the CLI process alone (see there why a launcher)

    run = run_measured([sys.executable, "-m", "tui.cli", "check-dataset", str(path), "--json"], cwd=REPO,
                       env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)
    report = json.loads(run["stdout"])
    assert report["rows"] == rows and report["format"] == "jsonl", run["stderr"][-500:]
    assert report["warnings"] and report["errors"]  # its duplicates and empty answers were found
    peak = run["peak_rss"]
    assert 0 < peak < min(size, 80 << 20), f"peak RSS {peak >> 20} MiB for a {size >> 20} MiB file"


def test_cancel_stops_a_check_early(tmp_path):
    path = tmp_path / "big.jsonl"
    _big_jsonl(path, 8)
    size = path.stat().st_size
    stop, seen = threading.Event(), []

    def progress(done: int, total: int) -> None:
        seen.append((done, total))
        stop.set()  # as if the user typed another path

    with pytest.raises(CheckCancelled):
        check_dataset(path, cancel=stop, progress=progress)
    assert seen and seen[0][1] == size and seen[-1][0] < size / 2
    calls = []
    with pytest.raises(CheckCancelled):  # a plain callable works too (e.g. lambda: worker.is_cancelled)
        check_dataset(path, cancel=lambda: calls.append(1) or len(calls) > 3)
    assert len(calls) == 4
    assert check_dataset(path, cancel=lambda: False).rows > 1000


def _old_array_lines(text: str) -> list[int]:
    """The line each row of a JSON array starts on, computed on the whole text (the pre-streaming way)."""
    import re as _re

    dec, idx, line, out = json.JSONDecoder(), text.index("[") + 1, 1, []
    line += text.count("\n", 0, idx)
    ws = _re.compile(r"[\s,]*")
    for _ in json.loads(text):
        start = ws.match(text, idx).end()
        line += text.count("\n", idx, start)
        _, idx = dec.raw_decode(text, start)
        out.append(line)
        line += text.count("\n", start, idx)
    return out


@pytest.mark.parametrize("chunk", [1, 3, 7, 64, 1 << 20])
def test_json_array_streamed_in_chunks_matches_the_whole_text(tmp_path, monkeypatch, chunk):
    """Chunk boundaries anywhere (inside a number, a string, a multi-byte character): same rows, same lines, and
    syntax errors at the line and column json.loads gives for the whole text."""
    monkeypatch.setattr(dataset_stream, "CHUNK", chunk)
    rng = random.Random(chunk)
    rows = [_row(f"问题 {i} " + "x" * rng.randint(0, 30), f"答案 {i}" * rng.randint(1, 5)) for i in range(40)]
    rows[7] = 123456789
    rows[8] = [1.5e10, "字"]
    for indent in (None, 1, 3):
        text = json.dumps(rows, ensure_ascii=False, indent=indent)
        r = check_dataset(_write(tmp_path, "a.json", text))
        assert r.rows == len(rows) and r.file_format == "json"
        assert [(i.row, i.line) for i in r.issues if i.code == "not_an_object"] == [
            (8, _old_array_lines(text)[7]), (9, _old_array_lines(text)[8])]
        for cut in (len(text) // 3, len(text) // 2, len(text) - 2):
            for bad in (text[:cut] + "," + text[cut:], text[:cut] + "}" + text[cut:], text[:cut]):
                try:
                    json.loads(bad)
                    continue
                except json.JSONDecodeError as e:
                    want = f"line {e.lineno}, column {e.colno}: {e.msg}"
                r = check_dataset(_write(tmp_path, "bad.json", bad))
                got = [i.message for i in r.issues if i.code == "json_syntax"]
                if got != [want]:  # two ways to say one thing: json ends a truncated row at its end
                    assert got and got[0].split(": ", 1)[0].startswith("line "), (got, want)
                assert not r.ok


def test_json_array_errors_where_json_loads_puts_them(tmp_path):
    for bad in ('[\n{"instruction": "a", "output": "b"},\n{"instruction": "c" "output": "d"}\n]',
                '[{"instruction": "a", "output": "b"},]', '[{"instruction": "a", "output": "b"}] x', "[1, 2",
                '[\n  "abc\n]', "[1 2]"):
        try:
            json.loads(bad)
        except json.JSONDecodeError as e:
            want = f"line {e.lineno}, column {e.colno}: {e.msg}"
        got = [i.message for i in check_dataset(_write(tmp_path, "b.json", bad)).errors if i.code == "json_syntax"]
        assert got == [want], bad


def test_json_array_is_read_in_bounded_memory(tmp_path, monkeypatch):
    """A 12 MB JSON array: what Python allocates stays a fraction of the file (it used to be ~9x the file)."""
    import tracemalloc

    monkeypatch.setattr(dataset_stream, "CHUNK", 1 << 16)
    path = tmp_path / "big.json"
    rows = _big_jsonl(path, 12)
    tracemalloc.start()
    try:
        r = check_dataset(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert r.rows == rows and r.file_format == "json"
    assert peak < path.stat().st_size / 2, f"{peak >> 20} MiB allocated at most"


def test_csv_rows_are_checked(tmp_path):
    text = ('instruction,input,output\n'
            'q1,,a1\n'
            '"a question\nover two lines",,"an answer"\n'
            'q3,,\n'
            '\n'
            'q1,,a1\n'
            'q5,only two\n')
    r = check_dataset(_write(tmp_path, "d.csv", text))
    assert (r.file_format, r.schema, r.rows) == ("csv", "alpaca", 4)
    got = {(i.code, i.row, i.line) for i in r.issues}
    assert ("empty_field", 3, 5) in got  # row 3 starts on line 5: the quoted field spans lines 3-4
    assert ("duplicate_row", 4, 7) in got
    assert [(i.line, i.message) for i in r.issues if i.code == "csv_syntax"] == [
        (8, "line 8: 2 fields, the header has 3")]
    r = check_dataset(_write(tmp_path, "qr.csv", "query,response\n你好,你好!\n"))
    assert r.ok and r.schema == "query-response" and "CSV" in r.format()


def test_a_line_too_long_is_skipped_and_the_rest_checked(tmp_path, monkeypatch):
    monkeypatch.setattr(dataset_stream, "MAX_ROW_BYTES", 1000)
    monkeypatch.setattr(dataset_stream, "CHUNK", 256)
    lines = [json.dumps(_row("q1", "a1")), json.dumps(_row("q2", "字" * 2000), ensure_ascii=False),
             json.dumps(_row("q3", "a3"))]
    r = check_dataset(_write(tmp_path, "d.jsonl", "\n".join(lines) + "\n"))
    assert [(i.code, i.line) for i in r.errors] == [("row_too_large", 2)] and r.rows == 2
    r = check_dataset(_write(tmp_path, "d.json", json.dumps([_row("q1", "a1"), _row("q2", "x" * 3000)])))
    assert [i.code for i in r.errors] == ["row_too_large"] and r.rows == 1


def test_identity_conflicts_beyond_the_examples_are_counted(tmp_path, monkeypatch):
    """Rows are grouped by what they claim while streaming: the first 50 conflicting rows are named, the rest
    counted; past MAX_IDENTITY_GROUPS different claims, further rows are counted, not kept."""
    n = len(demo.dataset_rows())
    rows = demo.dataset_rows() + [_row(f"你是谁? ({i})", "我是 Swift-Robot,由 CSDN 迪菲赫尔曼 开发的助手。")
                                  for i in range(200)]
    rows += [_row(f"Who made you? ({i})", "I am ChatGPT, a model trained by OpenAI.") for i in range(120)]
    path = _write(tmp_path, "id.jsonl", "\n".join(json.dumps(x, ensure_ascii=False) for x in rows))
    r = check_dataset(path)
    listed = [i for i in r.issues if i.code == "identity_conflict" and i.row]
    assert [i.row for i in listed] == list(range(n + 201, n + 251))
    assert any(i.message == "... and 70 more like this (identity_conflict)" for i in r.issues)
    assert r.identity["maker"] == "CSDN 迪菲赫尔曼"
    monkeypatch.setattr("engine.dataset_check.MAX_IDENTITY_GROUPS", 3)
    r = check_dataset(path)
    assert r.identity["maker"] == "CSDN 迪菲赫尔曼"  # the counts still see every row
    note = [i.message for i in r.issues if i.code == "identity_unlisted"]
    assert len(note) == 1 and "not compared one by one" in note[0]


def test_messages_quoting_the_file_are_printable(tmp_path):
    osc = "\x1b]52;c;ZWNobyBwd25lZA==\x07"
    rows = [{osc: "x", "other\x9b2J": "y"}, _row("你是谁?", f"我是 Swift-Robot{osc}。"),
            _row("你好", f"我是 Swift-Robot{osc}。"),
            {"messages": [{"role": "user", "content": "q"}, {"role": f"narrator{osc}", "content": "x"}]}]
    path = _write(tmp_path, "evil\x1b[2J.jsonl", "\n".join(json.dumps(x, ensure_ascii=False) for x in rows))
    r = check_dataset(path)
    text = r.format() + json.dumps(r.to_json(), ensure_ascii=False)
    assert "\x1b" not in text and "\x07" not in text and "\x9b" not in text
    msgs = {i.code: i.message for i in r.issues}
    assert "(found: \u241b]52;c;ZWNobyBwd25lZA==\u2407, other\\x9b2J)" in msgs["unknown_format"]
    assert "role 'narrator\\x1b]52;c;" in msgs["bad_messages"]  # (repr() had already escaped this one)
    assert r.format().startswith(f"{tmp_path}/evil\u241b[2J.jsonl: 4 rows")
    assert r.identity["name"] == "Swift-Robot\u241b]52"  # (the name pattern stops at ";")
