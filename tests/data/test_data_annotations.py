"""Split files -> annotation JSON: schema, hold-out, UCF51, errors and reports."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from data_helpers import (
    CORRUPT,
    N_FRAMES,
    assert_one_line_error,
    digest,
    run_cli,
    write_ucf_splits,
)

from ccl.cli import main as ccl_main
from ccl.data.annotations import (
    AnnotationFormatError,
    hold_out_groups,
    iter_subset,
    load_annotations,
)
from ccl.data.splits import (
    build_activitynet,
    build_csv,
    build_ucf101,
    build_vggsound,
    ucf101_group,
)
from ccl.data.store import write_frame_store


def _frames(n: int, h: int = 8, w: int = 8):
    return (np.full((h, w, 3), k * 5 % 256, dtype=np.uint8) for k in range(n))


def test_ucf101_schema_and_group_holdout(prepared, tmp_path: Path) -> None:
    stores, _ = prepared
    splits = write_ucf_splits(tmp_path / "splits")
    ann = build_ucf101(splits, stores, split=1, val_fraction=0.3, seed=3)
    data = ann.to_json()
    assert data["labels"] == ["ApplyEyeMakeup", "Basketball", "HandstandPushups"]
    db = data["database"]
    entry = db["v_ApplyEyeMakeup_g01_c01"]
    assert entry["subset"] == "testing"
    assert entry["annotations"] == {"label": "ApplyEyeMakeup", "segment": [1, 31]}
    assert "video_path" not in entry  # stored at <label>/<id>.hdf5
    for vid, e in db.items():
        assert e["annotations"]["segment"] == [1, N_FRAMES[vid] + 1]
    # whole groups held out: a group number is never in both training and validation
    train_groups = {ucf101_group(v) for v, e in db.items() if e["subset"] == "training"}
    val_groups = {ucf101_group(v) for v, e in db.items() if e["subset"] == "validation"}
    assert val_groups and train_groups and not train_groups & val_groups
    assert {ucf101_group(v) for v, e in db.items() if e["subset"] == "testing"} == {"g01"}
    # deterministic by seed
    again = build_ucf101(splits, stores, split=1, val_fraction=0.3, seed=3).to_json()
    assert again == data
    # the failed (corrupt) video is listed but has no store: reported, counted
    assert [m["video"] for m in ann.report.missing_videos] == [Path(CORRUPT[1]).stem]
    assert "1 listed videos without a frame store" in ann.report.summary()
    assert sum(ann.report.counts.values()) == len(db) == 8


def test_validate_on_test_is_the_reference_protocol(prepared, tmp_path: Path) -> None:
    stores, _ = prepared
    splits = write_ucf_splits(tmp_path / "splits")
    ann = build_ucf101(splits, stores, validate_on_test=True)
    data = ann.to_json()
    assert data["validation_subset"] == "testing"
    assert not any(e["subset"] == "validation" for e in data["database"].values())
    val = dict(iter_subset(data, "validation"))
    assert set(val) == {v for v, e in data["database"].items() if e["subset"] == "testing"}
    none = build_ucf101(splits, stores, val_fraction=0).to_json()
    assert "validation_subset" not in none
    assert not any(e["subset"] == "validation" for e in none["database"].values())


@pytest.mark.parametrize("audio_folder", ["HandstandPushups", "HandStandPushups"])
def test_ucf51_classes_from_audio_folders(prepared, tmp_path: Path, audio_folder: str) -> None:
    stores, _ = prepared
    splits = write_ucf_splits(tmp_path / "splits")
    audio = tmp_path / "audio"
    for c in ("ApplyEyeMakeup", audio_folder):
        (audio / c).mkdir(parents=True)
    (audio / "._ApplyEyeMakeup").write_bytes(b"junk")  # macOS junk entry
    ann = build_ucf101(splits, stores, audio_features_dir=audio, val_fraction=0)
    data = ann.to_json()
    assert data["labels"] == sorted(["ApplyEyeMakeup", audio_folder])
    assert ann.report.dataset == "ucf51"
    labels = {e["annotations"]["label"] for e in data["database"].values()}
    assert labels == set(data["labels"])
    hs = [v for v in data["database"] if v.startswith("v_HandStandPushups")]
    assert len(hs) == 3  # the folder/file case mismatch does not lose videos
    assert ann.report.filtered_out == 3  # Basketball rows (incl. the corrupt one)
    assert not ann.report.unknown_labels and not ann.report.missing_videos


def test_malformed_split_lines_name_file_and_line(prepared, tmp_path: Path) -> None:
    stores, _ = prepared
    splits = write_ucf_splits(tmp_path / "splits")
    lines = (splits / "trainlist01.txt").read_text().splitlines()
    lines.insert(2, "ApplyEyeMakeup v_ApplyEyeMakeup_g11_c01.avi")
    (splits / "trainlist01.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(AnnotationFormatError, match=r"trainlist01\.txt:3: expected"):
        build_ucf101(splits, stores)
    lines[2] = "ApplyEyeMakeup/v_ApplyEyeMakeup_g11_c01.avi 3"  # index 3 = HandstandPushups
    (splits / "trainlist01.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(AnnotationFormatError, match=r"trainlist01\.txt:3: class index 3"):
        build_ucf101(splits, stores)
    (splits / "classInd.txt").write_text("1 ApplyEyeMakeup\nBasketball\n")
    with pytest.raises(AnnotationFormatError, match=r"classInd\.txt:2"):
        build_ucf101(splits, stores)


def test_unknown_labels_are_reported(prepared, tmp_path: Path, capsys) -> None:
    stores, _ = prepared
    splits = write_ucf_splits(tmp_path / "splits", extra_train=["Skiing/v_Skiing_g08_c01.avi"])
    ann = build_ucf101(splits, stores)
    assert ann.report.unknown_labels == [
        {
            "file": str(splits / "trainlist01.txt"),
            "line": 6,
            "label": "Skiing",
            "video": "v_Skiing_g08_c01",
        }
    ]
    assert "v_Skiing_g08_c01" not in ann.database
    assert "1 rows with unknown labels" in ann.report.summary()
    out = tmp_path / "ucf.json"
    code = ccl_main(
        [
            "prepare",
            "annotations",
            "ucf101",
            "--splits",
            str(splits),
            "--videos",
            str(stores),
            "--out",
            str(out),
            "--strict",
        ]
    )
    printed = capsys.readouterr()
    assert code == 1  # --strict: rows were left out
    assert "unknown labels" in printed.out and "Skiing" in printed.out
    n_left_out = ann.report.n_problems
    assert printed.err.strip() == f"ccl prepare: error: {n_left_out} rows left out (--strict)"
    assert load_annotations(out)["labels"] == ann.labels
    assert json.loads(out.with_name("ucf.report.json").read_text())["unknown_labels"]
    assert (
        ccl_main(
            [
                "prepare",
                "annotations",
                "ucf101",
                "--splits",
                str(splits),
                "--videos",
                str(stores),
                "--out",
                str(out),
            ]
        )
        == 0
    )


def test_activitynet_segments(tmp_path: Path) -> None:
    stores = tmp_path / "stores"
    write_frame_store(stores / "v_vid1.hdf5", _frames(50), fps=10)
    write_frame_store(stores / "vid2.hdf5", _frames(30), fps=10)
    database = {
        "vid1": {
            "subset": "training",
            "duration": 5.0,
            "annotations": [
                {"label": "Surfing", "segment": [1.0, 2.5]},
                {"label": "Diving", "segment": [3.05, 9.0]},
            ],
        },
        "vid2": {
            "subset": "validation",
            "duration": 3.0,
            "annotations": [{"label": "Surfing", "segment": [0.0, 3.0]}],
        },
        "vid3": {
            "subset": "training",
            "duration": 3.0,
            "annotations": [{"label": "Surfing", "segment": [0.0, 1.0]}],
        },
        "vid4": {"subset": "testing", "duration": 3.0, "annotations": []},
    }
    src = tmp_path / "activity_net.v1-3.min.json"
    src.write_text(json.dumps({"version": "VERSION 1.3", "database": database}))
    ann = build_activitynet(src, stores, val_fraction=0)
    db = ann.to_json()["database"]
    assert ann.labels == ["Diving", "Surfing"]
    assert db["vid1_0"] == {
        "subset": "training",
        "video_path": "v_vid1.hdf5",
        "annotations": {"label": "Surfing", "segment": [11, 26]},
    }
    assert db["vid1_1"]["annotations"]["segment"] == [31, 51]  # clipped to the video
    assert db["vid2_0"]["subset"] == "testing"
    assert db["vid2_0"]["annotations"]["segment"] == [1, 31]
    assert [m["video"] for m in ann.report.missing_videos] == ["vid3"]
    assert ann.report.skipped == [{"video": "vid4", "reason": "official testing (unlabelled)"}]
    held = build_activitynet(src, stores, val_fraction=0.5, seed=0).to_json()["database"]
    # segments of one YouTube video stay together
    assert held["vid1_0"]["subset"] == held["vid1_1"]["subset"]


def test_vggsound_csv(tmp_path: Path) -> None:
    stores = tmp_path / "stores"
    write_frame_store(stores / "x" / "abc_000030.hdf5", _frames(12), fps=5)
    write_frame_store(stores / "x" / "def_000000.hdf5", _frames(7), fps=5)
    csv = tmp_path / "vggsound.csv"
    csv.write_text(
        'abc,30,"cattle, bovinae cowbell",train\ndef,0,dog barking,test\nghi,10,dog barking,train\n'
    )
    ann = build_vggsound(csv, stores, val_fraction=0)
    db = ann.to_json()["database"]
    assert ann.labels == ["cattle, bovinae cowbell", "dog barking"]
    assert db["abc_000030"]["subset"] == "training"
    assert db["abc_000030"]["video_path"] == "x/abc_000030.hdf5"
    assert db["def_000000"]["annotations"]["segment"] == [1, 8]
    assert ann.report.missing_videos == [{"file": str(csv), "line": 3, "video": "ghi_000010"}]
    csv.write_text("abc,thirty,dog barking,train\n")
    with pytest.raises(AnnotationFormatError, match=r"vggsound\.csv:1: start_seconds"):
        build_vggsound(csv, stores)


def test_generic_csv(tmp_path: Path) -> None:
    stores = tmp_path / "stores"
    for i in range(6):
        write_frame_store(stores / f"c{i % 2}" / f"v{i}.hdf5", _frames(5 + i), fps=5)
    csv = tmp_path / "list.csv"
    rows = ["video_id,label,split"] + [f"v{i},c{i % 2},train" for i in range(5)] + ["v5,c1,test"]
    csv.write_text("\n".join(rows) + "\n")
    labels = tmp_path / "labels.txt"
    labels.write_text("c0\nc1\n")
    ann = build_csv(csv, stores, labels_file=labels, val_fraction=0.4, seed=0)
    counts = ann.report.counts
    assert counts == {"training": 3, "validation": 2, "testing": 1}
    assert ann.database["v5"]["annotations"]["segment"] == [1, 11]
    labels.write_text("c0\n")
    partial = build_csv(csv, stores, labels_file=labels, val_fraction=0)
    assert len(partial.report.unknown_labels) == 3
    csv.write_text("v0,c0,train\nv1,c1,holdout\n")
    with pytest.raises(AnnotationFormatError, match=r"list\.csv:2: unknown split 'holdout'"):
        build_csv(csv, stores)
    csv.write_text("v0,c0\n")
    with pytest.raises(AnnotationFormatError, match=r"list\.csv:1: expected 3"):
        build_csv(csv, stores)


def test_hold_out_groups_fraction_and_determinism() -> None:
    groups = {f"s{i}": f"g{i // 3}" for i in range(30)}
    held = hold_out_groups(groups, 0.2, seed=7)
    assert held == hold_out_groups(groups, 0.2, seed=7)
    assert len(held) == 6 and len({groups[k] for k in held}) == 2
    assert hold_out_groups(groups, 0.0, seed=7) == set()


def test_outputs_that_are_inputs_are_refused(prepared, tmp_path: Path, capsys) -> None:
    stores, _ = prepared
    splits = write_ucf_splits(tmp_path / "splits")
    (tmp_path / "notes.txt").write_text("my notes\n")
    before, stores_before = digest(tmp_path), digest(stores)
    ucf = ["prepare", "annotations", "ucf101", "--splits", str(splits), "--videos", str(stores)]
    proc = run_cli(*ucf, "--out", str(splits / "trainlist01.txt"))
    assert_one_line_error(proc, "trainlist01.txt is one of the inputs")
    for out in (splits / "classInd.txt", splits / "testlist02.txt", tmp_path / "notes.txt"):
        assert ccl_main([*ucf, "--out", str(out)]) == 1
        assert str(out) in capsys.readouterr().err
    # the report written next to the output must not replace an input either
    csv = tmp_path / "list.report.json"
    csv.write_text("v_Basketball_g01_c01,Basketball,train\n")
    before = digest(tmp_path)
    args = ["annotations", "csv", "--csv", str(csv), "--videos", str(stores)]
    assert ccl_main(["prepare", *args, "--out", str(tmp_path / "list.json")]) == 1
    assert "list.report.json is one of the inputs" in capsys.readouterr().err
    assert digest(tmp_path) == before and digest(stores) == stores_before


def test_the_report_beside_out_replaces_only_an_earlier_report(prepared, tmp_path, capsys):
    stores, _ = prepared
    csv = tmp_path / "list.csv"
    csv.write_text("v_Basketball_g01_c01,Basketball,train\n")
    report = tmp_path / "list.report.json"
    report.write_text('{"my": "own notes"}\n')
    before = digest(tmp_path)
    args = ["prepare", "annotations", "csv", "--csv", str(csv), "--videos", str(stores)]
    args += ["--out", str(tmp_path / "list.json")]
    assert ccl_main(args) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{report} exists and is not the report" in err, err
    assert digest(tmp_path) == before
    report.unlink()
    assert ccl_main(args) == 0 and ccl_main(args) == 0  # a re-run replaces its own report
    assert json.loads(report.read_text())["dataset"] == "csv"


def test_annotation_output_os_error_is_one_line(prepared, tmp_path: Path, capsys) -> None:
    stores, _ = prepared
    splits = write_ucf_splits(tmp_path / "splits")
    (tmp_path / "file").write_text("x")
    out = tmp_path / "file" / "ucf.json"
    ucf = ["prepare", "annotations", "ucf101", "--splits", str(splits), "--videos", str(stores)]
    assert ccl_main([*ucf, "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    where = tmp_path / "file"
    assert err == [
        f"ccl prepare: error: cannot write {out} ({where}: a file where a folder is expected)"
    ]


def test_val_fraction_outside_zero_one_is_refused(prepared, tmp_path: Path, capsys) -> None:
    stores, _ = prepared
    splits = write_ucf_splits(tmp_path / "splits")
    out = tmp_path / "ucf.json"
    ucf = ["prepare", "annotations", "ucf101", "--splits", str(splits), "--videos", str(stores)]
    for bad in ("-1", "1", "nan"):
        with pytest.raises(SystemExit) as exit_info:
            ccl_main([*ucf, "--out", str(out), "--val-fraction", bad])
        assert exit_info.value.code == 2
        assert "validation fraction must be in [0, 1)" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"must be in \[0, 1\).*got -1"):
        build_ucf101(splits, stores, val_fraction=-1)
    assert not out.exists()


def test_input_file_errors_name_the_file(tmp_path: Path, capsys) -> None:
    stores = tmp_path / "stores"
    write_frame_store(stores / "c0" / "v0.hdf5", _frames(5), fps=5)
    csv = tmp_path / "list.csv"
    csv.write_text("v0,c0,train\n")
    missing = tmp_path / "labels.txt"
    with pytest.raises(FileNotFoundError, match=f"labels file not found: {missing}"):
        build_csv(csv, stores, labels_file=missing)
    csv.write_bytes("v0,c0,train\nv1,caf\xe9,test\n".encode("latin-1"))
    with pytest.raises(AnnotationFormatError, match=r"list\.csv:2: not UTF-8 text \(byte 0xe9\)"):
        build_csv(csv, stores)
    out = tmp_path / "out.json"
    args = ["annotations", "csv", "--csv", str(csv), "--videos", str(stores), "--out", str(out)]
    assert ccl_main(["prepare", *args]) == 1
    assert f"{csv}:2: not UTF-8" in capsys.readouterr().err
    assert not out.exists()


def test_subset_unions_are_literal() -> None:
    data = {
        "labels": ["a"],
        "validation_subset": "testing",
        "database": {
            v: {"subset": s, "annotations": {"label": "a", "segment": [1, 2]}}
            for v, s in (("t", "training"), ("h", "validation"), ("q", "testing"))
        },
    }
    assert [v for v, _ in iter_subset(data, "validation")] == ["q"]  # the file's alias
    assert [v for v, _ in iter_subset(data, "training+validation")] == ["t", "h"]
    assert [v for v, _ in iter_subset(data, "testing+training")] == ["t", "q"]  # file order
    with pytest.raises(ValueError, match="'train' is not one of"):
        list(iter_subset(data, "train+validation"))
