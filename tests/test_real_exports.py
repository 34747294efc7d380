"""Account snapshots as real systems export them (CRM CSV exports, spreadsheets saved as CSV): each value
reads as written or its row is set aside with a reason that says what to write; never a guess."""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import io
from pathlib import Path

import polars as pl

from kare_rules.cli import main
from kare_rules.loader import load_rules_text
from kare_rules.sources import read_previous, read_source
from kare_rules.validation import validate_accounts

SEEN_TEXT = (
    "format: kare/v1\norganization: seen\nversion: 1.0.0\ninputs:\n  account_id: {type: string, key: true}\n"
    "  seen: {type: datetime, nullable: true}\nprofiles:\n  keep: {when: {seen: {is_null: false}}}\n"
)
SEEN_RULES = load_rules_text(SEEN_TEXT, "rules/seen/kare.yaml")


def _checked(tmp_path: Path, rules, text: str):
    path = tmp_path / "accounts.csv"
    path.write_text(text)
    checked = validate_accounts(rules, read_source(path).collect())
    return checked, {r["account_id"]: r["reasons"] for r in checked.quarantine.iter_rows(named=True)}


def test_a_datetime_reads_the_same_whatever_the_first_row_looks_like(tmp_path):
    # Polars guessed the text's format from the first value: a first '01/05/2024 10:00' (a US export's
    # 5 January) made every such value day-first (1 May, silently) and set aside the ISO rows after it.
    # Only ISO order is read; a value with the day and month in doubt is set aside, wherever it is.
    rows = ["A,01/05/2024 10:00", "B,2024-01-05T10:00:00", "C,2024-01-05 10:00", "D,2024-01-05",
            "E,2024-01-05T10:00:00.250Z", "F,13/05/2024 10:00"]  # fmt: skip
    for order in (rows, rows[1:] + rows[:1]):
        checked, reasons = _checked(tmp_path, SEEN_RULES, "account_id,seen\n" + "\n".join(order) + "\n")
        ten = dt.datetime(2024, 1, 5, 10)
        assert dict(checked.valid.select("account_id", "seen").iter_rows()) == {
            "B": ten, "C": ten, "D": dt.datetime(2024, 1, 5), "E": ten + dt.timedelta(milliseconds=250)
        }  # fmt: skip
        assert sorted(reasons) == ["A", "F"]
        assert reasons["A"][0].startswith("seen: 01/05/2024 10:00 is not a valid datetime; write YYYY-MM-DD")


def _categorize(tmp_path: Path, text: str, rules_text: str = SEEN_TEXT) -> tuple[int, str]:
    """Exit code and stderr of `kare categorize` on a CSV file holding `text`."""
    rules = tmp_path / "rules" / "seen" / "kare.yaml"
    rules.parent.mkdir(parents=True, exist_ok=True)
    rules.write_text(rules_text)
    (tmp_path / "accounts.csv").write_bytes(text.encode() if isinstance(text, str) else text)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["categorize", "--rules", str(rules), "--input", str(tmp_path / "accounts.csv"),
                     "--as-of", "2026-11-01", "--output", str(tmp_path / "out.csv")])  # fmt: skip
    return code, err.getvalue()


def test_a_semicolon_export_with_decimal_commas_says_so_not_to_quote_values(tmp_path):
    # A European spreadsheet's CSV: ';' between fields and ',' in decimals. Read with ',' its header is one
    # column and a row with '0,3' has two fields, which was reported as a row whose values need quotes.
    code, err = _categorize(tmp_path, "account_id;seen;margin\nA;2024-01-05;12\nB;2024-01-05;0,3\n")
    assert code == 1
    assert err.strip() == (
        f"kare categorize: input {tmp_path / 'accounts.csv'}: the file looks separated by ';', not commas: "
        "save it as comma-separated CSV"
    )


def test_a_file_whose_lines_end_with_a_lone_cr_is_refused_with_what_to_do_not_a_traceback(tmp_path):
    # Excel for Mac's 'CSV (Macintosh)' ends lines with CR alone: the header row read up to the first LF
    # was the whole file, and Python's csv module raised on the CR inside it.
    code, err = _categorize(tmp_path, "account_id,seen\rA,2024-01-05\rB,\r")
    assert code == 1 and "Traceback" not in err
    assert err.strip() == (
        f"kare categorize: input {tmp_path / 'accounts.csv'}:1: the header row holds a carriage return (CR) that "
        "ends no line, as when a file's lines end with CR alone (Excel for Mac's 'CSV (Macintosh)'); save it "
        "as 'CSV UTF-8', with LF or CRLF line ends"
    )


def test_a_first_line_too_long_to_be_a_header_is_refused_not_a_traceback(tmp_path):
    # A file of another format named .csv (minified JSON or HTML): one value of 200,000 characters went past
    # the csv module's field limit while reading the header.
    code, err = _categorize(tmp_path, "x" * 200_000 + "\nA\n")
    assert code == 1 and "Traceback" not in err
    assert err.strip() == (
        f"kare categorize: input {tmp_path / 'accounts.csv'}:1: the first line holds a value of more than 131072 "
        "characters, which is no column name: the file does not look like CSV; give a CSV file whose first line "
        "names the columns"
    )


def test_a_long_last_line_cut_short_is_still_found_cut_short(tmp_path):
    # The last line without a line end was split by the csv module, whose field limit it went past.
    code, err = _categorize(tmp_path, "account_id,seen\nA,2024-01-05\n" + "B" * 200_000)
    assert code == 1 and "Traceback" not in err
    assert err.strip().endswith(
        "its last line has 1 field(s) where the header has 2, and no line end: the file looks cut short; copy or "
        "export it again"
    )


def test_a_row_with_too_many_fields_is_located_after_a_long_text_value(tmp_path):
    # A CRM's long text field (Salesforce allows 131072 characters) before the ragged row: finding the row
    # went past the csv module's field limit and ended in a traceback.
    note, limit = '"' + "n" * 200_000 + '"', csv.field_size_limit()
    code, err = _categorize(tmp_path, f"account_id,seen,notes\nA,,{note}\nB,2024-01-05,x,extra\n")
    assert code == 1 and "Traceback" not in err
    assert err.strip() == (
        f"kare categorize: input {tmp_path / 'accounts.csv'}:3: 4 fields where the header has 3; quote values that "
        "contain the separator, or fix the row"
    )
    assert csv.field_size_limit() == limit  # the process's limit is as it was


def test_a_spreadsheets_empty_columns_after_the_data_are_extra_columns_not_a_repeated_name(tmp_path):
    # Excel writes columns once used and now empty as trailing commas, header included: two blank names,
    # which were refused as one name given twice although no input can be named so.
    code, err = _categorize(tmp_path, "account_id,seen,,,\r\nA,2024-01-05,,,\r\nB,,,,\r\n")
    assert code == 0, err
    assert pl.read_csv(tmp_path / "out.csv")["category"].to_list() == ["keep", "unassigned"]
    # Every field still counts: a last line cut short is found with the header's 5 fields.
    code, err = _categorize(tmp_path, "account_id,seen,,,\nA,2024-01-05,,,\nB,,,")
    assert code == 1 and "its last line has 4 field(s) where the header has 5, and no line end" in err
    # A name given twice is still refused: the values under it could not be told apart.
    code, err = _categorize(tmp_path, "account_id,seen,x,x\nA,2024-01-05,1,2\n")
    assert code == 1 and "column 'x' appears twice in the header (fields 3 and 4)" in err


MONEY_RULES = load_rules_text(
    "format: kare/v1\norganization: money\nversion: 1.0.0\ninputs:\n  account_id: {type: string, key: true}\n"
    "  arr: {type: float, nullable: true}\n  seats: {type: integer, nullable: true}\n"
    "  paying: {type: boolean}\nprofiles:\n  keep: {when: {paying: true}}\n",
    "rules/money/kare.yaml",
)


def test_a_spreadsheets_money_percent_and_flag_text_is_set_aside_saying_what_is_read(tmp_path):
    # '$1,200.50', '1,200' (1200 in the US, 1.2 in much of Europe) and '12%' are not guessed at; the reason
    # said only 'is not a valid float', not what to write instead.
    checked, reasons = _checked(
        tmp_path,
        MONEY_RULES,
        'account_id,arr,seats,paying\nA,"$1,200.50",1,Yes\nB,"1,200",1,TRUE\nC,12%,1,1\nD,1200.5,"1,000",No\n'
        "E,1e3,10,x\nF,-0.5,0,no\n",
    )
    assert checked.valid.rows() == [("F", -0.5, 0, False)]
    number = "; write a number such as 1200.5 (a point for decimals), without thousands separators, currency or %"
    whole = "; write a whole number such as 1200, without thousands separators or units"
    assert reasons == {
        "A": [f"arr: $1,200.50 is not a valid float{number}"],
        "B": [f"arr: 1,200 is not a valid float{number}"],
        "C": [f"arr: 12% is not a valid float{number}"],
        "D": [f"seats: 1,000 is not a valid integer{whole}"],
        "E": ["paying: x is not a valid boolean; write true or false (or yes/no, y/n, t/f, 1/0)"],
    }


def test_a_crm_reports_header_names_say_which_input_they_are(tmp_path):
    # A CRM report names its columns 'Account ID', 'Last Seen': the message listed them as present, but the
    # hint for a name that differs only in its form (case, spaces) did not see 'Account ID' as account_id.
    rules = SEEN_TEXT.replace("  seen:", "  last_seen:").replace("{seen:", "{last_seen:")
    code, err = _categorize(tmp_path, "Account ID,Last Seen\nA,2024-01-05\n", rules)
    assert code == 1
    assert err.strip().endswith(
        "Rename the column in the source or change 'inputs:'. Column names match exactly, case and spaces included: "
        "the input has 'Account ID' for 'account_id', 'Last Seen' for 'last_seen'"
    )


def test_a_text_key_read_from_a_float_column_is_the_whole_number_not_its_float_text(tmp_path):
    # pandas writes an integer id column holding one missing value as floats: account 123 was published as
    # '123.0', another account than the '123' of a day whose ids were all there (or of a CSV export).
    frame = pl.DataFrame({"account_id": [123.0, 4.5, None, 2.0**60], "seen": [None] * 4})
    checked = validate_accounts(SEEN_RULES, frame.with_columns(pl.col("seen").cast(pl.String)))
    assert checked.valid["account_id"].to_list() == ["123", "4.5", str(2.0**60)]
    # The previous values of the trends read such a key the same way.
    rules = load_rules_text(
        SEEN_TEXT.replace("  seen:", "  arr: {type: float, nullable: true}\n  seen:")
        + "derived:\n  arr_change: {change_of: arr}\n",
        "rules/seen/kare.yaml",
    )
    pl.DataFrame({"account_id": [123.0, 7.5], "arr": [5.0, 1.0]}).write_parquet(tmp_path / "before.parquet")
    assert read_previous(rules, tmp_path / "before.parquet")["account_id"].to_list() == ["123", "7.5"]
    # And kare explain finds the account under the key it is published with.
    (tmp_path / "rules" / "seen").mkdir(parents=True)
    (tmp_path / "rules" / "seen" / "kare.yaml").write_text(SEEN_TEXT)
    frame.with_columns(pl.lit("2024-01-05").alias("seen")).write_parquet(tmp_path / "now.parquet")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["explain", "--rules", str(tmp_path / "rules" / "seen"), "--input", str(tmp_path / "now.parquet"),
                     "--as-of", "2026-11-01", "--account", "123"])  # fmt: skip
    assert code == 0 and out.getvalue().startswith("account 123 as of 2026-11-01 (seen 1.0.0): keep")


def test_kare_init_declares_a_date_only_for_text_validation_reads_as_one(tmp_path):
    # Polars read '01/05/2024' day first (1 May): kare init declared the column a date, wrote 2024-05-01 in
    # the test account, and the contract then set aside every row of the sample it was inferred from.
    sample = tmp_path / "crm.csv"
    sample.write_text("account_id,day,seen,iso\nA,01/05/2024,01/05/2024 10:00,2024-01-05\nB,,,\n")
    assert main(["init", "crm", "--from", str(sample), "--rules-dir", str(tmp_path / "rules")]) == 0
    written = (tmp_path / "rules" / "crm" / "kare.yaml").read_text()
    assert "  day:        {type: string, nullable: true}\n" in written
    assert "  seen:       {type: string, nullable: true}\n" in written
    assert "  iso:        {type: date, nullable: true}\n" in written
    assert 'day: "01/05/2024", seen: "01/05/2024 10:00", iso: 2024-01-05}' in written


def test_a_file_of_only_line_ends_or_a_byte_order_mark_is_empty_and_says_what_to_do(tmp_path):
    # Polars' own words were 'cannot read input …: empty CSV', without what to do.
    for content in (b"\n", b"\r\n\r\n", b"\xef\xbb\xbf"):
        code, err = _categorize(tmp_path, content)
        assert code == 1
        assert err.strip() == (
            f"kare categorize: input {tmp_path / 'accounts.csv'} is empty (no header, no rows: only line ends or a "
            "byte-order mark); check the export that wrote it"
        )
