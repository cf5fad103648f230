"""Export formats: a name → writer registry on the app (`app.extensions["rebound.export_formats"]`).

A writer turns a stream of rows into a stream of bytes and holds only a bounded amount
of either: CSV and JSON write as they read; XLSX goes through XlsxWriter's
constant-memory mode into a temporary file, which is then read back in chunks.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Final

import xlsxwriter
from flask import Flask, current_app

from course.exports.cells import csv_cell, neutralise
from course.exports.rows import FIELD_NAMES, FIELDS, ExportRow

EXTENSION_KEY: Final = "rebound.export_formats"
BOM: Final = "\ufeff".encode()
CHUNK_BYTES: Final = 64 * 1024
# An Excel worksheet holds 1,048,576 rows; more continue on the next sheet, under a header.
XLSX_MAX_ROWS: Final = 1_048_576
XLSX_MIMETYPE: Final = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

Writer = Callable[[Iterable[ExportRow]], Iterator[bytes]]


@dataclass(frozen=True)
class ExportFormat:
    """One way of writing an export: its name, file type and writer."""

    name: str
    label: str
    mimetype: str
    extension: str
    write: Writer


def write_csv(rows: Iterable[ExportRow]) -> Iterator[bytes]:
    """UTF-8 CSV with a byte-order mark (so Excel reads accents right), a header, CRLF lines."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(FIELD_NAMES)
    yield BOM + buffer.getvalue().encode()
    buffer.seek(0)
    buffer.truncate()
    for row in rows:
        writer.writerow([csv_cell(value) for value in row.values()])
        if buffer.tell() >= CHUNK_BYTES:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode()


def write_json(rows: Iterable[ExportRow]) -> Iterator[bytes]:
    """One JSON array of row objects, written as it is read; values are raw (not neutralised)."""
    parts: list[str] = ["["]
    size = 1
    separator = "\n"
    for row in rows:
        text = separator + json.dumps(row.as_dict(), ensure_ascii=False, separators=(",", ":"))
        separator = ",\n"
        parts.append(text)
        size += len(text)
        if size >= CHUNK_BYTES:
            yield "".join(parts).encode()
            parts, size = [], 0
    parts.append("\n]\n")
    yield "".join(parts).encode()


def write_xlsx(rows: Iterable[ExportRow], *, max_rows: int = XLSX_MAX_ROWS) -> Iterator[bytes]:
    """An XLSX workbook: a header row, then a row per learner; numbers as numbers, text neutralised."""
    with tempfile.TemporaryDirectory(prefix="rebound-xlsx-") as folder:
        path = os.path.join(folder, "export.xlsx")
        workbook = xlsxwriter.Workbook(
            path,
            {
                "constant_memory": True,
                "tmpdir": folder,
                # Text is text: never turned into formulas, links or numbers behind our back.
                "strings_to_formulas": False,
                "strings_to_urls": False,
                "strings_to_numbers": False,
            },
        )
        bold = workbook.add_format({"bold": True})
        sheets = 0

        def new_sheet() -> xlsxwriter.worksheet.Worksheet:
            nonlocal sheets
            sheets += 1
            sheet = workbook.add_worksheet("Completions" if sheets == 1 else f"Completions {sheets}")
            sheet.freeze_panes(1, 0)
            sheet.set_column(0, len(FIELDS) - 1, 18)
            for column, name in enumerate(FIELD_NAMES):
                sheet.write_string(0, column, name, bold)
            return sheet

        sheet = new_sheet()
        line = 1
        for row in rows:
            if line >= max_rows:
                sheet, line = new_sheet(), 1
            for column, ((_, kind), value) in enumerate(zip(FIELDS, row.values(), strict=True)):
                if value is None:
                    continue
                if kind == "number":
                    sheet.write_number(line, column, value)
                else:
                    sheet.write_string(line, column, neutralise(str(value)))
            line += 1
        workbook.close()
        with open(path, "rb") as finished:
            while chunk := finished.read(CHUNK_BYTES):
                yield chunk


def builtin_formats() -> dict[str, ExportFormat]:
    """The formats Rebound ships."""
    return {
        "csv": ExportFormat("csv", "CSV", "text/csv; charset=utf-8", "csv", write_csv),
        "xlsx": ExportFormat(
            "xlsx", "Excel (XLSX)", XLSX_MIMETYPE, "xlsx", write_xlsx
        ),
        "json": ExportFormat("json", "JSON", "application/json", "json", write_json),
    }


def export_formats(app: Flask | None = None) -> dict[str, ExportFormat]:
    """The app's export formats by name (register a new one by adding to this mapping)."""
    return (app or current_app).extensions.setdefault(EXTENSION_KEY, {})  # type: ignore[no-any-return]
