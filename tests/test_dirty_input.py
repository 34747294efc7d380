"""Dirty input is quarantined row by row with every reason, or rejected with one clear message;
input rows always equal valid + quarantined rows, and no traceback ever reaches a person."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from pathlib import Path

import polars as pl
import pytest

from kare_rules import categorize
from kare_rules.cli import main
from kare_rules.errors import DataError
from kare_rules.loader import load_rules, load_rules_text
from kare_rules.sources import read_source
from kare_rules.synth import synthesize
from kare_rules.validation import validate_accounts

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("KARE_RULES_DIR", str(ROOT / "rules"))  # before anything imports pipelines
USES_PIPELINE_SETTINGS = True  # tests/conftest.py: the Dagster layer reads them
RULES_DIR = ROOT / "rules" / "cloudnine"
RULES = load_rules(RULES_DIR)
AS_OF = dt.date(2026, 10, 31)
FLAG_RULES = load_rules_text(
    "format: kare/v1\norganization: flags\nversion: 1.0.0\ninputs:\n  account_id: {type: string, key: true}\n"
    "  flag: {type: boolean}\n  v: {type: integer}\nprofiles:\n  keep: {when: {flag: true}}\n",
    "rules/flags/kare.yaml",
)
HEADER = (
    "account_id,account_owner,plan,segment,is_customer,arr,seats,seats_used,nps,employees,churned_on,"
    "payment_overdue_days"
)
GOOD = "{id},ana,team,smb,true,1000,10,5,10,50,,0"


def _checked_csv(tmp_path: Path, lines: list[str]):
    path = tmp_path / "accounts.csv"
    path.write_text("\n".join([HEADER, *lines]) + "\n")
    checked = validate_accounts(RULES, read_source(path).collect())
    assert checked.valid.height + checked.quarantine.height == len(lines)
    return checked


def _reasons(checked) -> dict[int, list[str]]:
    return {r["row_number"]: r["reasons"] for r in checked.quarantine.iter_rows(named=True)}


def test_null_keys_are_quarantined_as_missing_not_as_duplicates(tmp_path):
    checked = _checked_csv(tmp_path, [GOOD.format(id="A"), GOOD.format(id=""), GOOD.format(id="")])
    assert _reasons(checked) == {
        2: ["account_id: missing value (the column is not nullable)"],
        3: ["account_id: missing value (the column is not nullable)"],
    }
    assert checked.quarantine["account_id"].to_list() == [None, None]
    assert checked.valid["account_id"].to_list() == ["A"]


def test_a_quoted_empty_cell_is_a_missing_value_like_an_unquoted_one(tmp_path):
    # Exporters that quote every field write an empty cell as "": it is missing, in a text column too.
    checked = _checked_csv(
        tmp_path,
        [
            '"A","","team","smb","true","","10","5","","","",0',  # every nullable cell empty: valid
            '"","ana","team","smb","true","1000","10","5","10","50","","0"',  # no key
            '"C","ana"," ","smb","true","1000","10","5","10","50","","0"',  # a blank plan
        ],
    )
    assert _reasons(checked) == {
        2: ["account_id: missing value (the column is not nullable)"],
        3: ["plan: missing value (the column is not nullable)"],
    }
    valid = checked.valid.row(0, named=True)
    assert (valid["account_id"], valid["account_owner"], valid["arr"], valid["nps"], valid["churned_on"]) == (
        "A", None, None, None, None,
    )  # fmt: skip


def test_previous_values_with_quoted_empty_cells_are_no_previous_value(tmp_path):
    from kare_rules.sources import read_previous

    path = tmp_path / "before.csv"
    path.write_text('account_id,arr\n"A",""\n"B","1000"\n')
    previous = read_previous(RULES, path)
    assert previous.select("account_id", "arr").rows() == [("A", None), ("B", 1000.0)]
    path.write_text('account_id,arr\n"","5"\n')
    with pytest.raises(DataError, match="have a row without a key"):
        read_previous(RULES, path)


def test_previous_values_without_a_key_name_the_row_and_a_blank_line_as_one(tmp_path):
    """Last run's extract ending in a blank line was refused with 'have a row without a key' and no row."""
    from kare_rules.sources import read_previous

    path = tmp_path / "before.csv"
    path.write_text("account_id,arr\nA,1\nB,2\n\n")
    with pytest.raises(DataError, match=r"row 3 after the header \(it is empty: a blank line, delete it\);"):
        read_previous(RULES, path)
    path.write_text("account_id,arr\nA,1\n,2\n")
    with pytest.raises(DataError, match=r"without a key \(account_id\), row 2 after the header; every row"):
        read_previous(RULES, path)


def test_previous_values_whose_key_is_not_of_the_key_s_type_say_so_not_that_the_key_is_missing(tmp_path):
    # With an integer key, previous values keyed 'C-100' read "have a row without a key": every row had one.
    from kare_rules.sources import read_previous

    rules = load_rules_text(
        "format: kare/v1\norganization: bolt\nversion: 1.0.0\ninputs:\n  customer_no: {type: integer, key: true}\n"
        "  revenue: {type: float}\nderived:\n  revenue_change: {change_of: revenue}\n"
        "profiles:\n  keep: {when: {revenue_change: {gte: 0}}}\n",
        "rules/bolt/kare.yaml",
    )
    path = tmp_path / "before.csv"
    path.write_text("customer_no,revenue\n100,5\nC-101,6\n")
    with pytest.raises(DataError) as caught:
        read_previous(rules, path)
    assert str(caught.value) == (
        f"previous values {path}: the key 'C-101' is not an integer, as customer_no is declared in inputs; "
        "give the accounts' keys as the input has them"
    )
    path.write_text("customer_no,revenue\n100,5\n,6\n")  # a key really missing is still said so
    with pytest.raises(DataError, match="have a row without a key"):
        read_previous(rules, path)


@pytest.mark.parametrize("dtype", [pl.Int64, pl.UInt8, pl.Float64])
def test_a_number_in_a_boolean_column_is_true_or_false_only_as_1_or_0(dtype):
    # As in text ('1'/'0'): a cast would make 2 or -1 true without a word.
    accounts = pl.DataFrame(
        {"account_id": ["A", "B", "C", "D"], "flag": pl.Series([1, 0, 2, None], dtype=dtype), "v": [1, 1, 1, 1]}
    )
    if dtype == pl.Int64:
        accounts = accounts.with_columns(pl.Series("flag", [1, 0, -1, None], dtype=pl.Int64))
    checked = validate_accounts(FLAG_RULES, accounts)
    assert checked.valid.select("account_id", "flag").rows() == [("A", True), ("B", False)]
    bad = "-1" if dtype == pl.Int64 else "2.0" if dtype == pl.Float64 else "2"
    assert _reasons(checked) == {
        3: [f"flag: {bad} is not a valid boolean"],
        4: ["flag: missing value (the column is not nullable)"],
    }


def test_nan_is_a_missing_number_not_one_above_every_threshold():
    # pandas writes a missing number as NaN; kept, it passed min/max and compared greater than any number.
    nan = float("nan")
    accounts = _rows(arr=[nan, 2_000_000.0, None], nps=[10, 10, 10], seats=[10.0, nan, 10.0])
    checked = validate_accounts(RULES, accounts)
    assert _reasons(checked) == {2: ["seats: missing value (the column is not nullable)"]}
    assert checked.valid["arr"].to_list() == [None, None]  # nullable: NaN is null, so {arr: {gte: ...}} is false


def test_the_text_nan_in_an_integer_column_is_a_missing_number_as_in_a_float_column(tmp_path):
    # Python's csv module writes pandas' float64 of whole numbers as '3.0' and a missing one as 'nan'.
    checked = _checked_csv(
        tmp_path,
        ["A,ana,team,smb,true,nan,10.0,5,nan,50,,0", "B,ana,team,smb,true,1000,NaN,5,10,50,,0"],
    )
    assert _reasons(checked) == {2: ["seats: missing value (the column is not nullable)"]}
    assert checked.valid.select("arr", "seats", "nps").rows() == [(None, 10, None)]


def test_the_text_nan_of_an_integer_in_previous_values_is_no_previous_value(tmp_path):
    from kare_rules.sources import read_previous

    rules = load_rules_text(
        "format: kare/v1\norganization: seats\nversion: 1.0.0\ninputs:\n  account_id: {type: string, key: true}\n"
        "  seats: {type: integer}\nderived:\n  seats_change: {change_of: seats}\n"
        "profiles:\n  keep: {when: {seats_change: {gt: 0}}}\n",
        "rules/seats/kare.yaml",
    )
    path = tmp_path / "before.csv"
    path.write_text("account_id,seats\nA,nan\nB,3.0\n")
    assert read_previous(rules, path).select("account_id", "seats").rows() == [("A", None), ("B", 3.0)]


def test_previous_values_nan_is_no_previous_value(tmp_path):
    from kare_rules.sources import read_previous

    path = tmp_path / "before.parquet"
    pl.DataFrame({"account_id": ["A", "B"], "arr": [float("nan"), 1000.0]}).write_parquet(path)
    assert read_previous(RULES, path).select("account_id", "arr").rows() == [("A", None), ("B", 1000.0)]


def test_an_infinite_number_is_quarantined_not_compared_as_above_every_threshold(tmp_path):
    # A division by zero in an export writes inf: it passed `min: 0` and {arr: {gte: 100000}}.
    inf = float("inf")
    checked = validate_accounts(RULES, _rows(arr=[inf, 2_000.0, -inf]))
    assert _reasons(checked) == {
        1: ["arr: inf is not a finite number; fix the value, or leave it empty when it is unknown"],
        3: [
            "arr: -inf is not a finite number; fix the value, or leave it empty when it is unknown",
            "arr: -inf is below the minimum 0",
        ],
    }
    assert checked.valid["account_id"].to_list() == ["B"]
    path = tmp_path / "accounts.csv"
    path.write_text(HEADER + "\n" + GOOD.format(id="A").replace(",1000,", ",inf,") + "\n", encoding="utf-8")
    assert _reasons(validate_accounts(RULES, read_source(str(path)))) == {
        1: ["arr: inf is not a finite number; fix the value, or leave it empty when it is unknown"]
    }


def test_the_record_of_a_row_quarantined_for_an_infinite_number_shows_the_infinity():
    """JSON has no infinity: a Parquet float inf was recorded as null, beside the reason 'inf is not a
    finite number', so the record said the value was missing."""
    checked = validate_accounts(RULES, _rows(arr=[float("inf"), 2_000.0, 1_500.5], seats=[10, 10, -1]))
    records = [json.loads(r) for r in checked.quarantine.sort("row_number")["record"]]
    assert [r["arr"] for r in records] == ["inf", "1500.5"]


def test_a_32_bit_float_is_read_as_the_decimal_it_holds_not_a_hair_below_it():
    """A float32 Parquet column (pandas float32, Spark FloatType) holding 0.7 was read as 0.699999988, so
    {gte: 0.7} was false for it, silently; it is read as the 0.7 the export wrote."""
    arr = pl.Series([0.7, 100_000.1, float("nan"), None], dtype=pl.Float32)
    checked = validate_accounts(RULES, _rows(arr=arr))
    assert checked.valid["arr"].to_list() == [0.7, 100_000.1, None, None]
    inf = validate_accounts(RULES, _rows(arr=pl.Series([float("inf")], dtype=pl.Float32)))
    assert inf.valid.height == 0 and "arr: inf is not a finite number" in inf.quarantine["reasons"][0][0]


def test_bad_values_only_in_a_later_chunk_of_the_input_are_quarantined_not_a_crash():
    # A CSV or Parquet file is read in chunks; filtering the bad rows left the first chunk empty, and
    # pl.format beside it panicked in Polars (a Rust backtrace and a PanicException for kare run).
    # (text longer than 12 bytes: Polars keeps shorter text inline, and then it did not panic)
    good = _rows(seats=["10", "10"], arr=[1000.0, 1000.0])
    bad = _rows(seats=["ten thousand seats", "ten thousand seats"], arr=[float("inf"), -float("inf")])
    bad = bad.with_columns(pl.Series("account_id", ["C", "D"]))
    frame = pl.concat([good, bad], rechunk=False)
    assert frame.n_chunks() == 2
    assert _reasons(validate_accounts(RULES, frame)) == {
        3: [
            "seats: ten thousand seats is not a valid integer; write a whole number such as 1200, "
            "without thousands separators or units",
            "arr: inf is not a finite number; fix the value, or leave it empty when it is unknown",
        ],
        4: [
            "seats: ten thousand seats is not a valid integer; write a whole number such as 1200, "
            "without thousands separators or units",
            "arr: -inf is not a finite number; fix the value, or leave it empty when it is unknown",
            "arr: -inf is below the minimum 0",
        ],
    }


def test_previous_values_inf_is_refused_with_the_account(tmp_path):
    from kare_rules.sources import read_previous

    path = tmp_path / "before.csv"
    path.write_text("account_id,arr\nA,1000\nB,inf\n", encoding="utf-8")
    with pytest.raises(DataError, match="account 'B' has arr = 'inf', not a finite number; fix the value"):
        read_previous(RULES, path)


@pytest.mark.parametrize(
    ("header", "hint"),
    [
        (HEADER.replace(",", ";"), "The file looks separated by ';', not commas: save it as comma-separated CSV"),
        (HEADER.replace(",", "\t"),
         "The file looks separated by tabs, not commas: name it .tsv, or save it as comma-separated CSV"),
        (HEADER.replace("account_id", "Account_ID").replace(",arr,", ", arr ,"),
         "Column names match exactly, case and spaces included: the input has 'Account_ID' for 'account_id', "
         "' arr ' for 'arr'"),
        # an API export's camelCase headers (accountId, lastLogin): their snake_case was not seen
        (HEADER.replace("account_id", "accountId").replace("payment_overdue_days", "PaymentOverdueDays"),
         "Column names match exactly, case and spaces included: the input has 'accountId' for 'account_id', "
         "'PaymentOverdueDays' for 'payment_overdue_days'"),
    ],
    ids=["semicolons", "tabs", "case-and-spaces", "camel-case"],
)  # fmt: skip
def test_missing_columns_say_when_the_separator_or_the_case_of_a_name_is_the_cause(tmp_path, header, hint):
    # A ';'-separated export reads as one column named 'account_id;account_owner;...': the message listed
    # every input as missing without saying why.
    path = tmp_path / "accounts.csv"
    path.write_text(header + "\n", encoding="utf-8")
    with pytest.raises(DataError) as exc:
        validate_accounts(RULES, read_source(str(path)))
    assert str(exc.value).endswith("Rename the column in the source or change 'inputs:'. " + hint)


def _rows(**columns) -> pl.DataFrame:
    """cloudnine accounts A, B, C... with valid values, but for the columns given."""
    n = len(next(iter(columns.values())))
    base = {
        "account_id": [chr(65 + i) for i in range(n)], "account_owner": ["ana"] * n, "plan": ["team"] * n,
        "segment": ["smb"] * n, "is_customer": [True] * n, "arr": [1000.0] * n, "seats": [10] * n,
        "seats_used": [5] * n, "nps": [10] * n, "employees": [50] * n, "churned_on": [None] * n,
        "payment_overdue_days": [0] * n,
    }  # fmt: skip
    return pl.DataFrame(base | columns, schema_overrides={"churned_on": pl.Date})


def test_every_row_of_a_duplicated_key_is_quarantined_with_a_reason_naming_it(tmp_path):
    checked = _checked_csv(
        tmp_path, [GOOD.format(id="D"), GOOD.format(id="A"), GOOD.format(id="D"), GOOD.format(id="D")]
    )
    assert _reasons(checked) == {
        n: ["account_id: D appears more than once (the key must be unique)"] for n in (1, 3, 4)
    }
    assert checked.valid["account_id"].to_list() == ["A"]


def test_out_of_range_and_not_allowed_values_are_quarantined_with_every_reason(tmp_path):
    checked = _checked_csv(tmp_path, [GOOD.format(id="A"), "B,ana,gold,smb,true,-5,10,5,500,50,,0"])
    assert _reasons(checked) == {
        2: [
            "plan: 'gold' is not one of the allowed values (free, team, business, enterprise)",
            "arr: -5.0 is below the minimum 0",
            "nps: 500 is above the maximum 100",
        ]
    }


def test_wrong_types_in_csv_are_quarantined_with_the_value_and_the_type(tmp_path):
    checked = _checked_csv(
        tmp_path,
        [
            GOOD.format(id="A"),
            "B,ana,team,smb,maybe,1000,abc,5,10,50,,0",
            "C,ana,team,smb,true,1000,10.5,5,10,50,2026-13-01,0",
            "D,ana,team,smb,yes,1e3,10,5,10,50,2026-01-31,0",  # 'yes' and 1e3 are fine
        ],
    )
    assert _reasons(checked) == {
        2: [
            "is_customer: maybe is not a valid boolean; write true or false (or yes/no, y/n, t/f, 1/0)",
            "seats: abc is not a valid integer; write a whole number such as 1200, without thousands "
            "separators or units",
        ],
        3: [
            "seats: 10.5 is not a valid integer; write a whole number such as 1200, without thousands "
            "separators or units",
            "churned_on: 2026-13-01 is not a valid date; write YYYY-MM-DD",
        ],
    }
    valid = checked.valid.sort("account_id")
    assert valid["account_id"].to_list() == ["A", "D"]
    assert valid.schema["seats"] == pl.Int64 and valid.schema["is_customer"] == pl.Boolean
    assert valid.row(1, named=True)["arr"] == 1000.0
    # The quarantined record keeps the row exactly as read, for the person who fixes the source.
    assert '"seats":"abc"' in checked.quarantine["record"][0]


def test_an_exports_n_a_in_a_nullable_column_says_that_a_missing_value_is_an_empty_cell(tmp_path):
    """'N/A', 'null' and '-' in nullable columns were quarantined with 'write a whole number such as 1200'
    alone: a data engineer whose export writes missing values so was not told how to write one."""
    checked = _checked_csv(
        tmp_path,
        [
            "A,ana,team,smb,true,null,10,5,N/A,50, - ,0",
            "B,ana,team,smb,true,1000,N/A,5,1x,50,,0",  # seats is not nullable; '1x' is no missing value
        ],
    )
    empty = "; for a missing value leave the cell empty (the column is nullable)"
    reasons = _reasons(checked)
    assert reasons[1] == [
        "arr: null is not a valid float; write a number such as 1200.5 (a point for decimals), without thousands "
        f"separators, currency or %{empty}",
        "nps: N/A is not a valid integer; write a whole number such as 1200, without thousands separators or "
        f"units{empty}",
        f"churned_on:  -  is not a valid date; write YYYY-MM-DD{empty}",
    ]
    assert not any(empty in r for r in reasons[2])


def test_a_blank_line_is_quarantined_as_an_empty_row_with_one_reason(tmp_path):
    """Blank lines at the end of an export (or a line of commas only) were quarantined with a 'missing value'
    for every column that is not nullable and no key, which did not say where to look."""
    checked = _checked_csv(tmp_path, [GOOD.format(id="A"), "", ",,,,,,,,,,,", GOOD.format(id="B"), ""])
    empty = [
        "the row is empty: every value is missing (a blank line, or a line of separators only, as spreadsheets "
        "leave at the end of an export); delete it from the export"
    ]
    assert _reasons(checked) == {2: empty, 3: empty, 5: empty}
    # a row with one value is no empty row: its reasons name the columns
    one = _checked_csv(tmp_path, [",,,,,,,,,,,7"])
    assert "account_id: missing value (the column is not nullable)" in _reasons(one)[1]


def test_a_date_written_with_its_time_says_to_drop_the_time_or_declare_a_datetime(tmp_path):
    """An export's '2026-01-31 00:00:00' in a date column read 'write YYYY-MM-DD', which it seemingly was."""
    rows = [GOOD.format(id=k).replace(",,0", f",{d},0") for k, d in (("A", "2026-01-31 00:00:00"), ("B", "31/01/2026"))]
    assert _reasons(_checked_csv(tmp_path, rows)) == {
        1: ["churned_on: 2026-01-31 00:00:00 is not a valid date; write YYYY-MM-DD (the date alone, without the "
            "time), or declare the column 'type: datetime'"],
        2: ["churned_on: 31/01/2026 is not a valid date; write YYYY-MM-DD"],
    }  # fmt: skip


def test_input_rows_equal_valid_plus_quarantined_on_a_large_dirty_frame():
    df = synthesize(RULES, 5000, AS_OF, seed=3)
    i = pl.int_range(pl.len())
    dirty = df.with_columns(
        pl.when(i % 7 == 0).then(None).otherwise(pl.col("account_id")).alias("account_id"),
        pl.when(i % 11 == 0).then(-1).otherwise(pl.col("seats")).alias("seats"),
        pl.when(i % 13 == 0).then(pl.lit("gold")).otherwise(pl.col("plan")).alias("plan"),
    )
    dirty = pl.concat([dirty, dirty.slice(1, 5)])  # five duplicated keys
    checked = validate_accounts(RULES, dirty)
    assert checked.valid.height + checked.quarantine.height == dirty.height
    bad = (dirty["account_id"].is_null() | (dirty["seats"] == -1) | (dirty["plan"] == "gold")).sum()
    assert checked.quarantine.height == bad + 10 - 0  # each duplicated pair: both rows
    assert checked.valid["account_id"].is_duplicated().sum() == 0
    assert checked.quarantine["reasons"].list.len().min() >= 1


def test_a_missing_column_is_a_data_error_naming_the_column_and_the_rule_file():
    df = synthesize(RULES, 10, AS_OF).drop("nps")
    with pytest.raises(DataError) as info:
        validate_accounts(RULES, df)
    text = str(info.value)
    assert "'nps'" in text and "kare.yaml" in text and "present:" in text


def test_kare_categorize_with_a_missing_column_exits_1_with_one_paragraph(tmp_path, capsys):
    source = tmp_path / "accounts.parquet"
    synthesize(RULES, 10, AS_OF).drop("nps").write_parquet(source)
    code = main(
        [
            "categorize",
            "--rules",
            str(RULES_DIR),
            "--input",
            str(source),
            "--output",
            str(tmp_path / "out.parquet"),
            "--as-of",
            str(AS_OF),
        ]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("kare categorize: the input has no column 'nps'")
    assert "kare.yaml" in err and "Traceback" not in err
    assert err.strip().count("\n") == 0


@pytest.mark.parametrize(
    ("first", "separator", "said"),
    [
        ("sep=,", ",", "accounts.csv:1: the first line is 'sep=,', Excel's separator hint, not the header; delete "
         "that line\n"),
        ("sep=;", ";", "The first line is 'sep=;', Excel's separator hint, not the header; delete that line (and "
         "save the file comma-separated)\n"),
    ],
)  # fmt: skip
def test_excels_separator_line_before_the_header_is_named(tmp_path, capsys, first, separator, said):
    """Excel's 'sep=,' first line made the header two columns: 'accounts.csv:2: 12 fields where the header has
    2; quote values that contain the separator', which sent people to their rows."""
    source = tmp_path / "accounts.csv"
    source.write_text(first + "\n" + f"{HEADER}\n{GOOD.format(id='A')}\n".replace(",", separator))
    out = str(tmp_path / "out.csv")
    code = main(
        ["categorize", "--rules", str(RULES_DIR), "--input", str(source), "--output", out, "--as-of", "2026-10-31"]
    )
    err = capsys.readouterr().err
    assert code == 1 and err.endswith(said) and "Traceback" not in err


def test_a_workbook_a_compressed_file_json_or_utf16_text_says_what_it_is_and_what_to_do(tmp_path):
    """A gzip or Excel export named .csv read as 'the header row is not UTF-8 text; save the file as UTF-8 CSV',
    and an .xlsx, .csv.gz or .jsonl file as 'cannot tell the format'."""
    import gzip
    import zipfile

    from kare_rules.errors import UsageError

    text = f"{HEADER}\n{GOOD.format(id='A')}\n"
    (tmp_path / "gz.csv").write_bytes(gzip.compress(text.encode()))
    with zipfile.ZipFile(tmp_path / "book.csv", "w", zipfile.ZIP_DEFLATED) as book:
        book.writestr("xl/workbook.xml", "\x00\xff" * 100)
    (tmp_path / "unicode.csv").write_text(text, encoding="utf-16")
    said = {
        "gz.csv": "is a compressed file (gzip), not UTF-8 CSV text; decompress it",
        "book.csv": "is a zip archive (an Excel workbook, or a compressed file), not UTF-8 CSV text; save an Excel "
        "sheet as 'CSV UTF-8 (comma delimited)', or unzip",
        "unicode.csv": "is UTF-16 text (as Excel's 'Unicode Text' writes), not UTF-8 CSV text; save the file as 'CSV",
    }
    for name, what in said.items():
        with pytest.raises(DataError, match=re.escape(f"input {tmp_path / name} {what}")):
            read_source(tmp_path / name)
    for name, what in {"a.xlsx": "an Excel workbook", "a.csv.gz": "a compressed file", "a.jsonl": "JSON"}.items():
        (tmp_path / name).write_bytes(b"x")
        with pytest.raises(UsageError, match=f": it looks like {what}, which is not read; "):
            read_source(tmp_path / name)


def test_kare_run_with_a_missing_column_exits_1_with_one_paragraph_and_publishes_nothing(tmp_path, capsys):
    source = tmp_path / "accounts.parquet"
    synthesize(RULES, 10, AS_OF).drop("nps").write_parquet(source)
    warehouse = tmp_path / "wh.duckdb"
    code = main(
        [
            "run",
            "--org",
            "cloudnine",
            "--rules-dir",
            str(ROOT / "rules"),
            "--input",
            str(source),
            "--as-of",
            str(AS_OF),
            "--warehouse",
            str(warehouse),
        ]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert "Traceback" not in err and "dagster." not in err.lower()  # no Dagster frames (the path may say dagster)
    first = err.strip().splitlines()[0]
    assert first.startswith("kare run: cloudnine: the input has no column 'nps'")
    assert "kare.yaml" in first
    import duckdb

    with duckdb.connect(str(warehouse), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM kare.account_categories").fetchall() == [(0,)]
        assert con.execute("SELECT status FROM kare.runs").fetchall() == [("failed",)]


def test_integer_text_with_a_zero_fraction_is_accepted_and_a_real_fraction_is_not(tmp_path):
    rows = [GOOD.format(id="A").replace(",10,5,", ",10.0,5,"), GOOD.format(id="B").replace(",10,5,", ",10.5,5,")]
    checked = _checked_csv(tmp_path, rows)
    assert checked.valid.select("account_id", "seats").rows() == [("A", 10)]
    assert _reasons(checked)[2][0].startswith("seats: 10.5 is not")


def test_a_single_missing_key_among_distinct_ones_is_missing_not_duplicated(tmp_path):
    """Distinct key hashes skip Pandera's uniqueness check; one null among them hashes once."""
    checked = _checked_csv(tmp_path, [GOOD.format(id="A"), GOOD.format(id=""), GOOD.format(id="B")])
    assert _reasons(checked) == {2: ["account_id: missing value (the column is not nullable)"]}
    assert checked.valid["account_id"].to_list() == ["A", "B"]


def test_uniqueness_is_proven_by_hashes_only_when_every_hash_differs():
    from kare_rules.validation import _distinct

    assert _distinct(pl.Series(["a", "b", "c"]))
    assert not _distinct(pl.Series(["a", "b", "a"]))
    assert not _distinct(pl.Series(["a", None, None]))
    assert _distinct(pl.Series([3, 1, 2]))
    assert _distinct(pl.Series([], dtype=pl.String))


def test_a_zoned_datetime_counts_by_its_local_time_as_does_text_with_an_offset():
    # 00:30 on 30 October in Berlin is 30 October there (22:30 on the 29th in UTC): one day before as_of.
    rules = load_rules_text(
        "format: kare/v1\norganization: zones\nversion: 1.0.0\ninputs:\n  account_id: {type: string, key: true}\n"
        "  seen: {type: datetime}\n  day: {type: date}\nderived:\n  idle: {days_since: seen}\n"
        "profiles:\n  keep: {when: {all: [{idle: {lte: 1}}, {day: {gte: 2026-10-30}}]}}\n",
        "rules/zones/kare.yaml",
    )
    local = dt.datetime(2026, 10, 30, 0, 30)
    zoned = pl.DataFrame({"account_id": ["a"], "seen": [local], "day": [local]}).with_columns(
        pl.col("seen", "day").dt.replace_time_zone("Europe/Berlin")
    )
    text = pl.DataFrame({"account_id": ["b", "c"], "seen": ["2026-10-30T00:30:00+02:00", "2026-10-30 00:30Z"],
                         "day": ["2026-10-30", "2026-10-30"]})  # fmt: skip
    for frame in (zoned, text):
        checked = validate_accounts(rules, frame)
        assert checked.quarantine.height == 0
        assert checked.valid["seen"].to_list() == [local] * frame.height
        result = categorize(rules, checked.valid, AS_OF)
        assert result["category"].to_list() == ["keep"] * frame.height, result["reason"].to_list()


@pytest.mark.parametrize("source", ["duckdb:{db}:accounts", "sql:duckdb:///{db}::SELECT * FROM accounts"])
def test_a_timestamptz_from_duckdb_counts_by_its_utc_date_whatever_the_machine_zone(source, tmp_path):
    # DuckDB gave a TIMESTAMPTZ in the machine's zone: in California 00:30 UTC on 31 October was 17:30 on
    # the 30th, two days before as_of instead of one, so the same table gave another category there.
    import subprocess
    import sys

    import duckdb

    rules = tmp_path / "rules" / "zones" / "kare.yaml"
    rules.parent.mkdir(parents=True)
    rules.write_text(
        "format: kare/v1\norganization: zones\nversion: 1.0.0\ninputs:\n  account_id: {type: string, key: true}\n"
        "  seen: {type: datetime}\nderived:\n  idle: {days_since: seen}\nprofiles:\n  keep: {when: {idle: {lte: 1}}}\n"
    )
    db = tmp_path / "crm.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute("CREATE TABLE accounts AS SELECT 'a' AS account_id, TIMESTAMPTZ '2026-10-31 00:30:00+00' AS seen")
    out = tmp_path / "out.csv"
    for zone in ("America/Los_Angeles", "Asia/Tokyo", "UTC"):
        done = subprocess.run(
            [sys.executable, "-m", "kare_rules.cli", "categorize", "--rules", str(rules), "--input",
             source.format(db=db), "--as-of", "2026-11-01", "--output", str(out)],
            env={**os.environ, "TZ": zone, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert pl.read_csv(out)["category"].to_list() == ["keep"], zone


@pytest.mark.parametrize("blank", ["", " ", "\t", "\u00a0", "\u3000", "\u0085 "])
@pytest.mark.parametrize("others", [["b", "c"], ["b", " d"], ["é", "c"]])
def test_a_blank_key_is_missing_whatever_the_other_keys_look_like(blank, others):
    # Text columns whose values all start after ' ' and before U+0085 are not stripped row by row: a
    # blank value anywhere (empty, ASCII or Unicode whitespace) must still be found and be missing,
    # and a value that only starts with a space is kept as it is.
    frame = pl.DataFrame({"account_id": [*others, blank], "flag": [True] * 3, "v": [1] * 3})
    checked = validate_accounts(FLAG_RULES, frame)
    assert checked.valid["account_id"].to_list() == others
    assert checked.quarantine["row_number"].to_list() == [3]
    assert any("missing" in r for r in checked.quarantine["reasons"][0])


def test_input_columns_named_like_the_quarantines_own_do_not_take_their_place():
    accounts = synthesize(RULES, 3, dt.date(2026, 11, 1), seed=5).with_columns(
        pl.Series("reasons", ["not ours"] * 3), pl.Series("record", ["nor this"] * 3),
        pl.Series("nps", [500, 10, 10]),  # the first row fails: above the maximum
    )  # fmt: skip
    checked = validate_accounts(RULES, accounts)
    row = checked.quarantine.row(0, named=True)
    assert row["reasons"] == ["nps: 500 is above the maximum 100"]
    assert '"reasons":"not ours"' in row["record"] and row["account_id"] == accounts["account_id"][0]


BLANK_RULES = """\
format: kare/v1
organization: blanks
version: 1.0.0
inputs:
  id:  {type: string, key: true}
  seg: {type: string}
precedence: [keep]
profiles:
  keep: {when: {seg: {is_null: false}}}
"""


@pytest.mark.parametrize("blank", ["  ", "\t\t", " \u00a0", ""])
@pytest.mark.parametrize("categorical", [False, True])
def test_a_blank_value_is_missing_whatever_the_other_rows_and_the_column_type(blank, categorical):
    rules = load_rules_text(BLANK_RULES, "blanks")
    # The blank is the column's least value (no ' ' elsewhere), and categories are text too.
    frame = pl.DataFrame({"id": ["A", "B", blank], "seg": ["x", blank, "y"]})
    if categorical:
        frame = frame.with_columns(pl.col("id", "seg").cast(pl.Categorical))
    checked = validate_accounts(rules, frame)
    assert checked.valid["id"].to_list() == ["A"]
    assert checked.quarantine["reasons"].to_list() == [
        ["seg: missing value (the column is not nullable)"], ["id: missing value (the column is not nullable)"],
    ]  # fmt: skip


TREND_KEY_RULES = """\
format: kare/v1
organization: spaced
version: 1.0.0
inputs:
  account_id: {type: string, key: true}
  arr: {type: float}
derived:
  arr_change: {change_of: arr}
precedence: [keep]
profiles:
  keep: {when: {arr_change: {lt: 0}}}
"""


def test_previous_values_match_the_key_as_written_like_the_accounts(tmp_path):
    from kare_rules.sources import read_previous

    rules = load_rules_text(TREND_KEY_RULES, "spaced")
    (tmp_path / "before.csv").write_text('account_id,arr\n" S-1",9000\nS-2,9000\n')
    previous = read_previous(rules, tmp_path / "before.csv")
    now = pl.DataFrame({"account_id": [" S-1", "S-1", "S-2"], "arr": [5000.0, 5000.0, 5000.0]})
    result = categorize(rules, now, "2026-11-01", previous=previous)
    # ' S-1' and 'S-1' are two accounts (as in the input); only ' S-1' was in the previous run.
    assert result["category"].to_list() == ["keep", "unassigned", "keep"]
    assert previous["account_id"].to_list() == [" S-1", "S-2"]


@pytest.mark.parametrize("name", ["next_category", "next_move_on", "edge_value", "edge_change", "watches"])
def test_an_input_named_like_an_early_warning_column_is_refused_where_it_is_declared(name):
    from kare_rules.errors import RuleFileError

    text = BLANK_RULES.replace("  seg: {type: string}", f"  seg: {{type: string}}\n  {name}: {{type: float}}")
    with pytest.raises(RuleFileError, match=f"blanks:7:3: the input column '{name}' has the name of a result column"):
        load_rules_text(text, "blanks")


def test_many_failures_get_the_same_reasons_as_a_few():
    """An export whose column came out empty fails every row: each still says why, in the same words."""
    rules = load_rules_text(BLANK_RULES.replace("  seg: {type: string}", "  seg: {type: string, allowed: [smb]}\n"
                                                "  arr: {type: float, min: 0}"), "blanks")  # fmt: skip
    for n in (10, 120_000):
        frame = pl.DataFrame({"id": [f"A{i}" for i in range(n)], "seg": ["ent"] * n, "arr": [None] * (n - 1) + [-5.0]})
        reasons = validate_accounts(rules, frame).quarantine["reasons"]
        assert reasons.len() == n
        assert sorted(reasons[0].to_list()) == ["arr: missing value (the column is not nullable)",
                                                "seg: 'ent' is not one of the allowed values (smb)"]  # fmt: skip
        assert sorted(reasons[-1].to_list()) == ["arr: -5.0 is below the minimum 0",
                                                 "seg: 'ent' is not one of the allowed values (smb)"]  # fmt: skip


TYPES_RULES = """\
format: kare/v1
organization: typed
version: 1.0.0
inputs:
  id:    {type: string, key: true}
  seats: {type: integer, nullable: true}
  since: {type: date, nullable: true}
  owner: {type: string, nullable: true}
precedence: [keep]
profiles:
  keep: {when: {seats: {gte: 100}}}
"""


@pytest.mark.parametrize(
    ("column", "values", "reason"),
    [
        ("seats", pl.Series([99.9, 100.0]).cast(pl.Decimal(10, 1)), "seats: 99.9 is not a valid integer"),
        ("since", pl.Series([20250115, None]), "since: 20250115 is not a valid date; write YYYY-MM-DD"),
        ("since", pl.Series([1.0, None]), "since: 1.0 is not a valid date; write YYYY-MM-DD"),
    ],
)
def test_a_number_that_is_not_a_value_of_the_declared_type_is_set_aside_not_converted(column, values, reason):
    rules = load_rules_text(TYPES_RULES, "typed")
    nulls = {"seats": pl.Int64, "since": pl.Date, "owner": pl.String}
    frame = pl.DataFrame({"id": ["A", "B"], **{c: pl.Series([None, None], dtype=t) for c, t in nulls.items()}})
    frame = frame.with_columns(values.alias(column))
    checked = validate_accounts(rules, frame)
    assert checked.quarantine["reasons"].to_list() == [[reason]]
    assert checked.valid["id"].to_list() == ["B"]


KINDS_RULES = """\
format: kare/v1
organization: kinds
version: 1.0.0
inputs:
  id:     {type: string, key: true}
  seats:  {type: integer, nullable: true}
  amount: {type: float, nullable: true}
  since:  {type: date, nullable: true}
  flag:   {type: boolean, nullable: true}
precedence: [keep]
profiles:
  keep: {when: {seats: {gte: 100}}}
"""


@pytest.mark.parametrize(
    ("column", "values", "reason"),
    [
        ("seats", pl.Series([dt.date(2017, 1, 1), None]), "seats: 2017-01-01 is not a valid integer"),
        ("seats", pl.Series([True, None]), "seats: true is not a valid integer"),
        (
            "amount",
            pl.Series([dt.datetime(2017, 1, 1, 5), None]),
            "amount: 2017-01-01 05:00:00.000000 is not a valid float",
        ),
        ("flag", pl.Series([dt.date(2017, 1, 1), None]), "flag: 2017-01-01 is not a valid boolean"),
        # a duration (Parquet INTERVAL, pandas timedelta) was a raw Polars error: Duration cannot be cast to text
        ("seats", pl.Series([dt.timedelta(days=3, hours=4), None]), "seats: 3d 4h is not a valid integer"),
        ("amount", pl.Series([dt.timedelta(seconds=90), None]), "amount: 1m 30s is not a valid float"),
        ("since", pl.Series([True, None]), "since: true is not a valid date; write YYYY-MM-DD"),
    ],
)
def test_a_value_of_another_kind_is_set_aside_not_converted(column, values, reason):
    """A Parquet export with a column of the wrong kind: a date where a count is declared was days since 1970,
    a flag 1 or 0, and a date where a boolean is declared a traceback."""
    rules = load_rules_text(KINDS_RULES, "kinds")
    frame = pl.DataFrame({"id": ["A", "B"]}).with_columns(values.alias(column))
    for c in rules.inputs:
        if c.name not in frame.columns:
            frame = frame.with_columns(pl.lit(None).alias(c.name))
    checked = validate_accounts(rules, frame)
    assert [r[0].split(" is not")[0] for r in checked.quarantine["reasons"]] == [reason.split(" is not")[0]]
    assert checked.quarantine["reasons"].to_list()[0][0].startswith(reason)
    assert checked.valid["id"].to_list() == ["B"]


def test_a_quarantined_row_with_bytes_keeps_its_record_and_names_its_key():
    """Parquet BINARY columns (a hash, a blob; text written without its UTF-8 annotation): Polars panics
    writing bytes to JSON, so one invalid row among them ended the run with a Rust backtrace."""
    rules = load_rules_text(KINDS_RULES, "kinds")
    frame = pl.DataFrame(
        {
            "id": pl.Series([b"A", b"\xff\x00", b"C"], dtype=pl.Binary),  # B's key is no text: set aside
            "seats": [1, 2, None],
            "amount": pl.Series([None, None, None], dtype=pl.Float64),
            "since": pl.Series([None, None, None], dtype=pl.Date),
            "flag": pl.Series([True, None, None], dtype=pl.Boolean),
            "hash": pl.Series([b"\xff\x01", b"\xff\x02", b"\x03"], dtype=pl.Binary),
            "parts": pl.Series([[b"a"], [b"\xfe"], None], dtype=pl.List(pl.Binary)),
        }
    )
    checked = validate_accounts(rules, frame)
    assert checked.valid["id"].to_list() == ["A", "C"]
    (row,) = checked.quarantine.iter_rows(named=True)
    assert row["row_number"] == 2 and row["account_id"] == "0xff00"
    record = json.loads(row["record"])
    assert record["hash"] == "0xff02" and record["parts"] == "[b'\\xfe']" and record["seats"] == 2


def test_nan_in_a_text_column_is_a_missing_value_not_the_text_nan():
    rules = load_rules_text(TYPES_RULES, "typed")
    # What pandas writes for a text column that is empty in every row: float64 NaN.
    types = {"id": pl.String, "seats": pl.Int64, "since": pl.Date, "owner": pl.Float64}
    frame = pl.DataFrame({"id": ["A"], "seats": [None], "since": [None], "owner": [float("nan")]}, schema=types)
    checked = validate_accounts(rules, frame)
    assert checked.valid["owner"].to_list() == [None]


def test_previous_values_of_an_integer_key_match_however_the_key_is_written(tmp_path):
    from kare_rules.sources import read_previous

    text = TREND_KEY_RULES.replace("account_id: {type: string, key: true}", "account_id: {type: integer, key: true}")
    rules = load_rules_text(text, "spaced")
    (tmp_path / "before.csv").write_text("account_id,arr\n5.0,9000\n07,9000\n")
    previous = read_previous(rules, tmp_path / "before.csv")
    assert previous["account_id"].to_list() == ["5", "7"]
    result = categorize(rules, pl.DataFrame({"account_id": [5, 7], "arr": [5000.0, 5000.0]}), "2026-11-01",
                        previous=previous)  # fmt: skip
    assert result["category"].to_list() == ["keep", "keep"]  # both trends found


@pytest.mark.parametrize("buckets", ["1", "2"])
def test_a_key_of_bytes_that_are_not_utf8_is_set_aside_in_a_sliced_run_too(tmp_path, buckets):
    """Polars refuses to cast a column of bytes holding any value that is not UTF-8 to text, even leniently:
    slicing a run by its keys failed the whole run on one such key (ComputeError: invalid utf8)."""
    rules_dir = tmp_path / "rules"
    (rules_dir / "kinds").mkdir(parents=True)
    (rules_dir / "kinds" / "kare.yaml").write_text(KINDS_RULES)
    source = tmp_path / "accounts.parquet"
    keys = pl.Series([b"A", b"\xffB", b"C", b"D"], dtype=pl.Binary)
    pl.DataFrame({"id": keys, "seats": [100, 200, 5, 300]}).with_columns(
        pl.lit(None, dtype=pl.Float64).alias("amount"),
        pl.lit(None, dtype=pl.Date).alias("since"),
        pl.lit(None, dtype=pl.Boolean).alias("flag"),
    ).write_parquet(source)
    warehouse = tmp_path / "wh.duckdb"
    code = main(["run", "--org", "kinds", "--rules-dir", str(rules_dir), "--input", str(source),
                 "--as-of", str(AS_OF), "--warehouse", str(warehouse), "--buckets", buckets,
                 "--max-quarantine-share", "0.5"])  # fmt: skip
    assert code == 0
    import duckdb

    with duckdb.connect(str(warehouse), read_only=True) as con:
        held = con.sql("SELECT account_id, reasons FROM kare.quarantine").fetchall()
        published = con.sql("SELECT account_id, category FROM kare.account_categories ORDER BY 1").fetchall()
    assert held == [("0xff42", ["id: 0xff42 is not a valid string"])]
    assert published == [("A", "keep"), ("C", "unassigned"), ("D", "keep")]
