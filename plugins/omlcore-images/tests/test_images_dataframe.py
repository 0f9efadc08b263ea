"""Every rule of the CSV format, with the line numbers and columns the report gives."""

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from omlcore_images.dataframe import MAX_LINES_SHOWN, Problem, Report, check_dataframe, read_dataframe
from omlcore_images.errors import DataFrameError

WriteCsv = Callable[..., Path]
HEAD = "label,path,split,is_query,is_gallery"
GOOD = [
    "0,images/a.png,train,,",
    "0,images/b.png,train,,",
    "1,images/a.png,validation,True,False",
    "1,images/b.png,validation,False,True",
]


def csv(*rows: str, head: str = HEAD) -> str:
    return "\n".join([head, *rows])


def problem(report: Report, code: str) -> Problem:
    found = [p for p in report.problems if p.code == code]
    assert found, f"no {code!r} problem in:\n{report.format()}"
    assert len(found) == 1, found
    return found[0]


def codes(report: Report) -> set[str]:
    return {p.code for p in report.problems}


def test_a_valid_file_has_no_problem(write_csv: WriteCsv) -> None:
    report = check_dataframe(write_csv(csv(*GOOD)))
    assert report.problems == []
    assert report.ok
    assert report.n_rows == 4


def test_missing_required_columns_are_all_named(write_csv: WriteCsv) -> None:
    report = check_dataframe(write_csv("label,path\n0,images/a.png"))
    p = problem(report, "missing_column")
    assert "split, is_query, is_gallery" in p.message
    assert p.severity == "error"


def test_unknown_split_with_lines_and_suggestion(write_csv: WriteCsv) -> None:
    report = check_dataframe(write_csv(csv(*GOOD, "1,images/a.png,val,True,True", "1,images/a.png,val,True,True")))
    p = problem(report, "bad_split")
    assert p.column == "split"
    assert p.lines == (6, 7)
    assert "'val'" in p.message
    assert "did you mean 'validation'" in p.message
    assert "column 'split'" in str(p)
    assert "lines 6, 7" in str(p)


@pytest.mark.parametrize("value", ["yes", "2", "maybe"])
def test_non_boolean_flags(write_csv: WriteCsv, value: str) -> None:
    report = check_dataframe(write_csv(csv(*GOOD, f"1,images/a.png,validation,{value},True")))
    p = problem(report, "bad_flag")
    assert p.column == "is_query"
    assert p.lines == (6,)
    assert repr(value) in p.message


@pytest.mark.parametrize(("q", "g"), [("1", "0"), ("true", "FALSE"), ("1.0", "0.0")])
def test_boolean_spellings_accepted(write_csv: WriteCsv, q: str, g: str) -> None:
    rows = [*GOOD[:2], f"1,images/a.png,validation,{q},{g}", "1,images/b.png,validation,0,1"]
    assert check_dataframe(write_csv(csv(*rows))).problems == []


def test_flags_on_train_rows_and_empty_flags_on_validation(write_csv: WriteCsv) -> None:
    report = check_dataframe(write_csv(csv(*GOOD, "0,images/a.png,train,True,", "1,images/b.png,validation,,True")))
    assert problem(report, "flag_on_train").lines == (6,)
    p = problem(report, "empty_flag")
    assert p.lines == (7,)
    assert p.column == "is_query"


def test_neither_query_nor_gallery(write_csv: WriteCsv) -> None:
    report = check_dataframe(write_csv(csv(*GOOD, "1,images/a.png,validation,False,False")))
    assert problem(report, "neither_query_nor_gallery").lines == (6,)


def test_query_without_gallery_is_a_warning(write_csv: WriteCsv) -> None:
    rows = [*GOOD, "2,images/a.png,validation,True,False", "3,images/a.png,validation,True,True"]
    report = check_dataframe(write_csv(csv(*rows)))
    p = problem(report, "query_without_gallery")
    # label 2: no gallery at all; label 3: its only gallery item is itself
    assert p.severity == "warning"
    assert p.lines == (6, 7)
    assert report.ok


def test_query_whose_gallery_is_all_in_its_sequence(write_csv: WriteCsv) -> None:
    rows = [
        "1,images/a.png,validation,True,False,s1",
        "1,images/b.png,validation,False,True,s1",
        "2,images/a.png,validation,True,False,s2",
        "2,images/b.png,validation,False,True,s3",
    ]
    report = check_dataframe(write_csv(csv(*rows, head=HEAD + ",sequence")))
    assert problem(report, "query_without_gallery").lines == (2,)


def test_bbox_rules(write_csv: WriteCsv) -> None:
    head = HEAD + ",x_1,x_2,y_1,y_2"
    rows = [
        "0,images/a.png,train,,,1,10,1,10",  # 2 fine
        "0,images/b.png,train,,,,,,",  # 3 whole image
        "0,images/a.png,train,,,1.5,10,1,10",  # 4 non-integral
        "0,images/a.png,train,,,10,10,1,10",  # 5 x_1 >= x_2
        "0,images/a.png,train,,,1,10,9,3",  # 6 y_1 >= y_2
        "0,images/a.png,train,,,1,10,,",  # 7 partial
        "0,images/a.png,train,,,-1,10,1,10",  # 8 negative
        "0,images/a.png,train,,,abc,10,1,10",  # 9 not a number
        "0,images/a.png,train,,,2.0,10,1,10",  # 10 integral float: fine
    ]
    report = check_dataframe(write_csv(csv(*rows, head=head)))
    assert problem(report, "bbox_x_order").lines == (5,)
    assert problem(report, "bbox_y_order").lines == (6,)
    assert problem(report, "partial_bbox").lines == (7,)
    assert problem(report, "negative_bbox").lines == (8,)
    bad = [p for p in report.problems if p.code == "bad_bbox_value"]
    assert {(p.lines, p.column, "not an integer" in p.message) for p in bad} == {
        ((4,), "x_1", True),
        ((9,), "x_1", False),
    }
    assert len(report.errors) == 6


def test_bbox_needs_all_four_columns(write_csv: WriteCsv) -> None:
    report = check_dataframe(
        write_csv(csv("0,images/a.png,train,,,1,5", "0,images/b.png,train,,,1,5", head=HEAD + ",x_1,x_2"))
    )
    assert "missing: y_1, y_2" in problem(report, "missing_column").message


def test_missing_files_are_reported_with_the_root(write_csv: WriteCsv, tmp_path: Path) -> None:
    report = check_dataframe(write_csv(csv(*GOOD, "0,images/nope.png,train,,", "0,/abs/nope.png,train,,")))
    p = problem(report, "missing_file")
    assert p.lines == (6, 7)
    assert p.column == "path"
    assert str(tmp_path) in p.message
    assert "nope.png" in p.message


def test_paths_resolve_against_root_or_absolute(write_csv: WriteCsv, tmp_path: Path) -> None:
    absolute = tmp_path / "images" / "a.png"
    path = write_csv(csv(f"0,{absolute},train,,", "0,b.png,train,,"), name="sub.csv")
    assert check_dataframe(path, root=tmp_path / "images").problems == []
    assert problem(check_dataframe(path), "missing_file").lines == (3,)


def test_empty_and_header_only_and_not_utf8(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert codes(check_dataframe(empty)) == {"empty"}
    header = tmp_path / "header.csv"
    header.write_text(HEAD + "\n")
    assert codes(check_dataframe(header)) == {"no_rows"}
    latin = tmp_path / "latin.csv"
    latin.write_bytes((HEAD + "\n0,images/caf\xe9.png,train,,\n").encode("latin-1"))
    report = check_dataframe(latin)
    p = problem(report, "not_utf8")
    assert p.lines == (2,)
    assert "0xe9" in p.message
    assert not check_dataframe(tmp_path / "absent.csv").ok


def test_wrong_number_of_fields(write_csv: WriteCsv) -> None:
    report = check_dataframe(write_csv(csv(*GOOD, "0,images/a.png,train")))
    assert problem(report, "bad_width").lines == (6,)


def test_string_labels_are_mapped_and_kept(write_csv: WriteCsv) -> None:
    rows = ["cat,images/a.png,train,,", "cat,images/b.png,train,,", "dog,images/a.png,validation,True,False"]
    rows.append("dog,images/b.png,validation,False,True")
    df = read_dataframe(write_csv(csv(*rows)))
    assert df["label"].tolist() == [0, 0, 1, 1]
    assert str(df["label"].dtype) == "int64"
    assert df["label_name"].tolist() == ["cat", "cat", "dog", "dog"]
    assert df.attrs["label_names"] == {0: "cat", 1: "dog"}
    assert df.index.name == "line"
    assert df.index.tolist() == [2, 3, 4, 5]


def test_read_dataframe_types_and_empty_bbox(write_csv: WriteCsv) -> None:
    head = HEAD + ",category,x_1,x_2,y_1,y_2,sequence"
    rows = [
        "0,images/a.png,train,,,c,1,5,2,6,",
        "0,images/b.png,train,,,c,,,,,",
        "1,images/a.png,validation,1,0,d,,,,,s",
    ]
    rows.append("1,images/b.png,validation,0,1,d,,,,,s2")
    df = read_dataframe(write_csv(csv(*rows, head=head)))
    assert df["is_query"].isna().tolist() == [True, True, False, False]
    assert df["is_query"].tolist()[2:] == [True, False]
    assert df["x_1"].tolist()[0] == 1
    assert pd.isna(df["x_1"].iloc[1])
    assert str(df["x_1"].dtype) == "Int64"
    assert [None if pd.isna(v) else v for v in df["sequence"]] == [None, None, "s", "s2"]


def test_read_dataframe_raises_with_every_error(write_csv: WriteCsv) -> None:
    path = write_csv(csv(*GOOD, "x,images/a.png,nope,1,1", "0,images/a.png,train,yes,"))
    with pytest.raises(DataFrameError) as info:
        read_dataframe(path)
    text = str(info.value)
    assert "bad_split" not in text  # codes are for programs; the message speaks words
    assert "'nope' is not a split" in text
    assert "line 6" in text
    assert "must be empty on train rows" in text
    assert "line 7" in text
    assert "header as line 1" in text
    assert len(info.value.report.errors) >= 2


def test_only_first_lines_are_listed(write_csv: WriteCsv) -> None:
    rows = [*GOOD, *("0,images/a.png,training,," for _ in range(25))]
    text = str(problem(check_dataframe(write_csv(csv(*rows))), "bad_split"))
    assert f"and {25 - MAX_LINES_SHOWN} more; 25 in all" in text
    assert "(lines 6, 7," in text
    assert "24, 25 and 5 more" in text
    assert "26" not in text


def test_dataframe_input_uses_the_same_line_numbers(write_csv: WriteCsv, tmp_path: Path) -> None:
    df = pd.DataFrame(
        {
            "label": [0, 0, 1],
            "path": ["images/a.png", "images/b.png", "images/a.png"],
            "split": ["train", "train", "valid"],
            "is_query": [None, None, True],
            "is_gallery": [None, None, True],
        }
    )
    report = check_dataframe(df, root=tmp_path)
    assert problem(report, "bad_split").lines == (4,)
    assert report.source == "<DataFrame>"


def test_validation_only_and_train_only_files(write_csv: WriteCsv) -> None:
    assert check_dataframe(write_csv(csv(*GOOD[:2]))).problems == []
    assert check_dataframe(write_csv(csv(*GOOD[2:]))).problems == []


def test_categories_and_single_image_labels_warn(write_csv: WriteCsv) -> None:
    rows = ["0,images/a.png,train,,,x", "0,images/b.png,train,,,y", "1,images/a.png,train,,,"]
    report = check_dataframe(write_csv(csv(*rows, head=HEAD + ",category")))
    assert problem(report, "empty_category").lines == (4,)
    assert problem(report, "label_in_several_categories").severity == "warning"
    assert problem(report, "single_image_label").lines == (4,)


def test_near_miss_column_names_warn(write_csv: WriteCsv) -> None:
    report = check_dataframe(
        write_csv(csv("0,images/a.png,train,,,s", "0,images/b.png,train,,,s", head=HEAD + ",sequnce"))
    )
    assert "did you mean 'sequence'" in problem(report, "unknown_column").message


def test_broken_images_and_bbox_outside_image(write_csv: WriteCsv, tmp_path: Path) -> None:
    (tmp_path / "images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    head = HEAD + ",x_1,x_2,y_1,y_2"
    rows = ["0,images/a.png,train,,,0,40,0,30", "0,images/b.png,train,,,0,41,0,30", "0,images/broken.png,train,,,,,,"]
    path = write_csv(csv(*rows, head=head))
    assert check_dataframe(path).ok  # decoding is opt-in
    report = check_dataframe(path, check_images=True, workers=2)
    assert problem(report, "broken_image").lines == (4,)
    assert problem(report, "bbox_outside_image").lines == (3,)
