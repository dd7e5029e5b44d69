"""``uses: file``: write rows as CSV, JSON or XLSX to the run's output folder in the
artifact store, or read such a file back into rows."""

from __future__ import annotations

import csv
import io
import json
import posixpath
import re
from typing import Any

from runwright.artifacts.keys import job_prefix, output_key
from runwright.errors import StoreError
from runwright.model.context import FileMetadata
from runwright.model.steps import FileInputs
from runwright.worker.steps.common import StepEnv, StepFailed, json_safe

MIME_TYPES = {
    "csv": "text/csv",
    "json": "application/json",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
MAX_READ_BYTES = 200 * 1024 * 1024
_FILENAME = re.compile(
    r"^[A-Za-z0-9][A-Za-z0-9._ -]{0,199}(/[A-Za-z0-9][A-Za-z0-9._ -]{0,199}){0,4}$"
)


def check_filename(name: str) -> str:
    """A relative name inside the output folder: no '..', no absolute path."""
    if not _FILENAME.match(name) or ".." in name.split("/"):
        raise StepFailed(
            f"filename {name!r} is not allowed: use letters, digits, '.', '_', '-' and spaces, "
            "optionally in up to 4 subfolders (reports/2026/summary.xlsx).",
            "input",
        )
    return name


def file_format(explicit: str | None, name: str) -> str:
    if explicit:
        return explicit
    extension = posixpath.splitext(name)[1].lower().lstrip(".")
    if extension in MIME_TYPES:
        return extension
    raise StepFailed(
        f"Cannot tell the format of {name!r}; give format: csv, json or xlsx.", "input"
    )


def run_file(inputs: FileInputs, env: StepEnv) -> dict[str, Any]:
    return _write(inputs, env) if inputs.action == "write" else _read(inputs, env)


def _table(inputs: FileInputs) -> tuple[list[str], list[list[Any]]]:
    rows = inputs.rows or []
    if all(isinstance(row, dict) for row in rows):
        columns = list(inputs.columns or [])
        if not columns:
            for row in rows:
                columns.extend(key for key in row if key not in columns)
        return columns, [[row.get(c) for c in columns] for row in rows]
    if all(isinstance(row, list) for row in rows):
        return list(inputs.columns or []), [list(row) for row in rows]
    raise StepFailed("rows must be a list of objects or a list of lists, not a mix.", "input")


def _cell(value: Any) -> Any:
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return value


def _write(inputs: FileInputs, env: StepEnv) -> dict[str, Any]:
    filename = check_filename(inputs.filename or "")
    kind = file_format(inputs.format, filename)
    columns, table = _table(inputs)
    if kind == "json":
        data = json.dumps(inputs.rows, indent=2, default=str).encode()
    elif kind == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        if columns:
            writer.writerow(columns)
        writer.writerows([[_cell(v) for v in row] for row in table])
        data = buffer.getvalue().encode("utf-8")
    else:
        data = _xlsx(columns, table, inputs.sheet or "Sheet1")
    key = output_key(env.job_id, env.run_id, filename)
    try:
        env.store.put(key, data)
    except StoreError as exc:
        raise StepFailed(
            f"Could not save {filename} to the artifact store: {exc}", "store"
        ) from exc
    metadata = FileMetadata(
        path=key,
        filename=posixpath.basename(filename),
        size=len(data),
        mime_type=MIME_TYPES[kind],
        row_count=len(table),
        step_id=env.step_id,
    )
    env.record_file(metadata)
    env.info(f"Wrote {filename}: {len(table):,} rows, {len(data):,} bytes ({kind})")
    return {"path": key, "filename": filename, "size": len(data), "row_count": len(table)}


def _xlsx(columns: list[str], table: list[list[Any]], sheet: str) -> bytes:
    from openpyxl import Workbook  # imported when needed: it takes ~100 ms

    workbook = Workbook(write_only=True)
    worksheet = workbook.create_sheet(sheet[:31])
    if columns:
        worksheet.append(columns)
    for row in table:
        worksheet.append([_cell(v) for v in row])
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def _read(inputs: FileInputs, env: StepEnv) -> dict[str, Any]:
    path = inputs.path or ""
    if not path.startswith(job_prefix(env.job_id)) or ".." in path.split("/"):
        raise StepFailed(
            f"path {path!r} is not a file of job {env.job}: read files this job wrote "
            "(e.g. '{{ files[0].path }}').",
            "input",
        )
    kind = file_format(inputs.format, path)
    try:
        size = env.store.size(path)
        if size > MAX_READ_BYTES:
            raise StepFailed(
                f"{path} is {size:,} bytes; the file step reads at most {MAX_READ_BYTES:,}.",
                "input",
            )
        data = env.store.get(path)
    except StoreError as exc:
        raise StepFailed(f"Could not read {path}: {exc}", "store") from exc
    try:
        rows, columns = _parse(kind, data, inputs)
    except (ValueError, KeyError, UnicodeDecodeError, OSError) as exc:
        raise StepFailed(f"{path} is not a readable {kind} file: {exc}", "input") from exc
    truncated = len(rows) > inputs.max_rows
    rows = rows[: inputs.max_rows]
    env.record_file(
        FileMetadata(
            path=path,
            filename=posixpath.basename(path),
            size=len(data),
            mime_type=MIME_TYPES[kind],
            row_count=len(rows),
            step_id=env.step_id,
        )
    )
    env.info(f"Read {posixpath.basename(path)}: {len(rows):,} rows")
    output: dict[str, Any] = {"rows": rows, "row_count": len(rows), "columns": columns}
    if truncated:
        output["truncated"] = True
    return output


def _parse(kind: str, data: bytes, inputs: FileInputs) -> tuple[list[Any], list[str]]:
    if kind == "json":
        value = json.loads(data)
        rows = value if isinstance(value, list) else [value]
        columns = list(rows[0]) if rows and isinstance(rows[0], dict) else []
        return rows, columns
    if kind == "csv":
        reader = csv.DictReader(io.StringIO(data.decode("utf-8-sig")))
        rows = [dict(row) for _, row in zip(range(inputs.max_rows + 1), reader, strict=False)]
        return rows, list(reader.fieldnames or [])
    from openpyxl import load_workbook

    workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    try:
        sheet = workbook[inputs.sheet] if inputs.sheet else workbook.worksheets[0]
        lines = sheet.iter_rows(values_only=True)
        header = [
            str(c) if c is not None else f"column{i + 1}" for i, c in enumerate(next(lines, ()))
        ]
        rows = []
        for line in lines:
            if len(rows) > inputs.max_rows:
                break
            rows.append(json_safe(dict(zip(header, line, strict=False))))
        return rows, header
    finally:
        workbook.close()
