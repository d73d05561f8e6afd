"""`tinylora-verl prepare` on hostile inputs: bad ground truths rejected with the reason, undecodable and
absurdly nested lines reported by file and line, empty sets refused with exit 2, and the output written
atomically (a failed run leaves no partial set and the previous set as it was)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import pytest

from tinylora_verl.cli import main
from tinylora_verl.data import prepare as prepare_module

GOOD = {"question": "What is 2+2?", "answer": "2+2=4\n#### 4"}


def _gsm8k(root: Path, train_lines: list[bytes | str], test_lines=None) -> Path:
    src = root / "src" / "gsm8k"
    src.mkdir(parents=True, exist_ok=True)
    for name, lines in (("train", train_lines), ("test", test_lines or [json.dumps(GOOD)])):
        data = b"".join((x if isinstance(x, bytes) else x.encode()) + b"\n" for x in lines)
        (src / f"{name}.jsonl").write_bytes(data)
    return root / "src"


def _single(root: Path, name: str, rows: list[str]) -> Path:
    src = root / "src" / name
    src.mkdir(parents=True, exist_ok=True)
    (src / "test.jsonl").write_text("".join(r + "\n" for r in rows))
    return root / "src"


def _prepare(name, out, src, capsys):
    code = main(["prepare", name, "--out", str(out), "--from-jsonl", str(src), "--no-progress"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _rejected(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "rejected.jsonl").read_text().splitlines()]


def _truths(path: Path) -> list[str]:
    return pd.read_parquet(path)["reward_model"].map(lambda r: r["ground_truth"]).tolist()


def test_gsm8k_ground_truths_must_be_one_finite_number(tmp_path, capsys):
    bad = ["nan", "inf", "abc", "1/2 or 3", "-Infinity", "4 apples"]
    lines = [json.dumps(GOOD)] + [json.dumps({"question": "q?", "answer": f"work\n#### {b}"}) for b in bad]
    lines.append(json.dumps({"question": "q?", "answer": "work\n#### "}))  # empty ground truth
    lines.append(json.dumps({"question": "q?", "answer": "work\n#### 1,234.5"}))
    src = _gsm8k(tmp_path, lines)
    code, out, _ = _prepare("gsm8k", tmp_path / "out", src, capsys)
    assert code == 0
    assert _truths(tmp_path / "out" / "train.parquet") == ["4", "1234.5"]
    rejected = _rejected(tmp_path / "out")
    assert [r["line"] for r in rejected] == [2, 3, 4, 5, 6, 7, 8]
    assert all(r["file"] == str(src / "gsm8k" / "train.jsonl") for r in rejected)
    reasons = [r["reason"] for r in rejected]
    assert reasons[0] == "the ground truth 'nan' is not a finite number"
    assert reasons[1] == "the ground truth 'inf' is not a finite number"
    assert "'abc' is not a single finite number" in reasons[2]
    assert "'1/2 or 3' is not a single finite number" in reasons[3]
    assert "'4 apples' is not a single finite number" in reasons[5]
    assert "nothing after '####'" in reasons[6]
    assert f"rejected {src / 'gsm8k' / 'train.jsonl'}:2: the ground truth 'nan'" in out


def test_answer_fields_numeric_and_expression_sets(tmp_path, capsys):
    raw_answers = ("NaN", "Infinity", '"abc"', '""', "27.0", '"12"')  # JSON literals, as written
    rows = ['{"problem": "p", "answer": ' + a + "}" for a in raw_answers]
    code, _, _ = _prepare("aime24", tmp_path / "aime", _single(tmp_path / "a", "aime24", rows), capsys)
    assert code == 0
    assert _truths(tmp_path / "aime" / "test.parquet") == ["27", "12"]
    assert [r["line"] for r in _rejected(tmp_path / "aime")] == [1, 2, 3, 4]
    answers = ["nan", "1/2 or 3", "\\frac{1}{2", "-2 \\text{ or } -12", "C", "(-\\infty, 3]", "abc"]
    rows = [json.dumps({"problem": "p", "answer": a, "solution": "s"}) for a in answers]
    code, _, _ = _prepare("math500", tmp_path / "m", _single(tmp_path / "b", "math500", rows), capsys)
    assert code == 0
    assert _truths(tmp_path / "m" / "test.parquet") == answers[3:]  # MATH has text and 'or' answers
    reasons = [r["reason"] for r in _rejected(tmp_path / "m")]
    assert reasons[0] == "the ground truth 'nan' is not a finite number"
    assert "bare 'or'" in reasons[1] and "unbalanced braces" in reasons[2]


def test_undecodable_and_deeply_nested_lines_are_rejected_by_file_and_line(tmp_path, capsys):
    deep = "[" * 100_000 + "]" * 100_000
    deep_obj = '{"question": "q", "answer": "#### 1", "x": ' + "[" * 100_000 + "]" * 100_000 + "}"
    lines = [
        json.dumps(GOOD),
        b'{"question": "caf\xe9?", "answer": "#### 1"}',
        deep,
        deep_obj,
        json.dumps(GOOD),
    ]
    src = _gsm8k(tmp_path, lines)
    t0 = time.perf_counter()
    code, out, err = _prepare("gsm8k", tmp_path / "out", src, capsys)
    assert code == 0 and "Traceback" not in err and time.perf_counter() - t0 < 30
    assert len(pd.read_parquet(tmp_path / "out" / "train.parquet")) == 2
    rejected = _rejected(tmp_path / "out")
    train = str(src / "gsm8k" / "train.jsonl")
    assert [(r["file"], r["line"]) for r in rejected] == [(train, 2), (train, 3), (train, 4)]
    assert rejected[0]["reason"] == "not UTF-8: byte 0xe9 at column 18"
    assert "\\xe9" in rejected[0]["raw"]
    assert rejected[1]["reason"].startswith("JSON nested 100000 levels deep")
    assert rejected[2]["reason"].startswith("JSON nested 100001 levels deep")
    assert f"{train}:2: not UTF-8" in out


def _listing(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    "train_lines,needle",
    [
        ([], "has no rows (empty input); nothing written"),
        (["", "  "], "has no rows (empty input); nothing written"),
        (
            [json.dumps({"question": "q", "answer": "#### nan"}), "{oops"],
            "no usable train row in {train} (2 rejected, 0 filtered out; first: {train}:1: the ground truth "
            "'nan' is not a finite number); nothing written",
        ),
    ],
)
def test_an_empty_set_fails_and_leaves_the_previous_set_untouched(tmp_path, capsys, train_lines, needle):
    out = tmp_path / "sets" / "gsm8k"
    good_src = _gsm8k(tmp_path / "good", [json.dumps(GOOD)])
    assert _prepare("gsm8k", out, good_src, capsys)[0] == 0
    before = _listing(tmp_path / "sets")
    assert sorted(before) == ["gsm8k/rejected.jsonl", "gsm8k/test.parquet", "gsm8k/train.parquet"]
    src = _gsm8k(tmp_path / "bad", train_lines)
    code, _, err = _prepare("gsm8k", out, src, capsys)
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert needle.format(train=src / "gsm8k" / "train.jsonl") in err
    assert _listing(tmp_path / "sets") == before  # same files, same bytes, no temp dirs left
    assert [p.name for p in (tmp_path / "sets").iterdir()] == ["gsm8k"]
    # into a new directory: nothing is created under its name
    assert _prepare("gsm8k", tmp_path / "new", src, capsys)[0] == 2
    assert not (tmp_path / "new").exists()


def test_a_crash_while_writing_leaves_no_partial_set(tmp_path, capsys, monkeypatch):
    out = tmp_path / "sets" / "gsm8k"
    assert _prepare("gsm8k", out, _gsm8k(tmp_path / "v1", [json.dumps(GOOD)]), capsys)[0] == 0
    before = _listing(tmp_path / "sets")
    real = prepare_module.build_split
    calls = []

    def crash_on_test_split(source, split, *args, **kwargs):
        calls.append(split)
        if split == "test":
            raise RuntimeError("disk on fire")
        return real(source, split, *args, **kwargs)

    monkeypatch.setattr(prepare_module, "build_split", crash_on_test_split)
    src = _gsm8k(tmp_path / "v2", [json.dumps(GOOD)] * 3)
    with pytest.raises(RuntimeError, match="disk on fire"):  # a bug, not a user error: traceback
        main(["prepare", "gsm8k", "--out", str(out), "--from-jsonl", str(src), "--no-progress"])
    assert calls == ["train", "test"]  # train.parquet was written (to the temporary directory)
    assert _listing(tmp_path / "sets") == before
    assert [p.name for p in (tmp_path / "sets").iterdir()] == ["gsm8k"]


def test_a_new_set_replaces_the_old_one_whole(tmp_path, capsys):
    out = tmp_path / "sets" / "gsm8k"
    assert _prepare("gsm8k", out, _gsm8k(tmp_path / "v1", [json.dumps(GOOD)]), capsys)[0] == 0
    out.chmod(0o750)
    assert _prepare("gsm8k", out, _gsm8k(tmp_path / "v2", [json.dumps(GOOD)] * 3 + ["{x"]), capsys)[0] == 0
    assert len(pd.read_parquet(out / "train.parquet")) == 3 and len(_rejected(out)) == 1
    assert [p.name for p in (tmp_path / "sets").iterdir()] == [
        "gsm8k"
    ] and out.stat().st_mode & 0o777 == 0o750


def test_out_that_is_a_file_or_holds_other_files_is_refused(tmp_path, capsys):
    src = _gsm8k(tmp_path, [json.dumps(GOOD)])
    blocker = tmp_path / "blocker"
    blocker.write_text("mine")
    code, _, err = _prepare("gsm8k", blocker, src, capsys)
    assert code == 2 and f"{blocker} is a file, not a directory" in err
    assert _prepare("gsm8k", blocker / "sub", src, capsys)[0] == 2
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "notes.md").write_text("my notes")
    (mixed / "train.parquet").write_text("old")
    code, _, err = _prepare("gsm8k", mixed, src, capsys)
    assert code == 2 and "holds files prepare did not write (notes.md)" in err
    assert blocker.read_text() == "mine" and _listing(mixed) == {
        "notes.md": b"my notes",
        "train.parquet": b"old",
    }


def test_bad_source_and_uncreatable_out_are_one_line_exit_2(tmp_path, capsys):
    src = _gsm8k(tmp_path, [json.dumps(GOOD)])
    a_file = src / "gsm8k" / "train.jsonl"
    code, _, err = _prepare("gsm8k", tmp_path / "o", a_file, capsys)
    assert code == 2 and f"--from-jsonl {a_file}: a file, not a directory" in err
    if Path("/proc").is_dir():  # a parent nobody can create a directory in, even root
        code, _, err = _prepare("gsm8k", "/proc/no-such-dir/set", src, capsys)
        assert code == 2 and "--out /proc/no-such-dir/set: cannot create a directory beside it" in err
    assert not (tmp_path / "o").exists()
