"""File formats: read a list of files into one block, write one block to one file.

Readers run inside read tasks (``ReadTask(read_files, files, options)``); writers inside the fused
write task.  Paths given by the user are resolved in the driver by ``resolve_paths`` (a file, a
directory walked recursively, or a glob; ``file://`` accepted), so a bad path fails at once and
names itself.
"""
from __future__ import annotations

import glob
import json
import os

import numpy as np
import pyarrow as pa

from miniray.data import block as B

EXTENSIONS = {"csv": ["csv"], "json": ["json", "jsonl"], "parquet": ["parquet"], "text": None,
              "numpy": ["npy"], "binary": None}


def strip_scheme(path: str, op: str) -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{op}: paths are strings (or lists of them), got {type(path).__name__}.")
    path = os.fspath(path)
    for scheme in ("file://", "local://"):
        if path.startswith(scheme):
            return path[len(scheme):]
    if "://" in path:
        raise ValueError(f"{op}: only local paths and file:// are supported, not {path!r}.")
    return os.path.expanduser(path)


def resolve_paths(paths, op: str, extensions=None) -> tuple[list, list]:
    """(files, sizes) for a path, a directory, a glob, or a list of them."""
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not items:
        raise ValueError(f"{op}: no paths given.")
    files = []
    for p in items:
        p = strip_scheme(p, op)
        if os.path.isdir(p):
            found = []
            for root, dirs, names in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")))
                found += [os.path.join(root, n) for n in sorted(names) if not n.startswith((".", "_"))]
            if extensions:
                found = [f for f in found if f.rsplit(".", 1)[-1].lower() in extensions]
            files += found
        elif os.path.isfile(p):
            files.append(p)
        elif any(c in p for c in "*?["):
            matched = sorted(f for f in glob.glob(p, recursive=True) if os.path.isfile(f))
            if not matched:
                raise FileNotFoundError(f"{op}: the pattern {p!r} matches no files.")
            files += matched
        else:
            raise FileNotFoundError(f"{op}: no such file or directory: {p!r}.")
    if not files:
        raise FileNotFoundError(f"{op}: found no files to read in {paths!r}"
                                + (f" (looked for extensions {extensions})." if extensions else "."))
    return files, [os.path.getsize(f) for f in files]


def _count_one(path: str, fmt: str, o: dict):
    """Rows of a file without converting its values (None: read it normally)."""
    if fmt == "parquet":
        import pyarrow.parquet as pq
        return pq.ParquetFile(path).metadata.num_rows
    if fmt == "csv" and not any(o.get(k) for k in ("read_options", "parse_options", "convert_options")):
        import csv as pycsv
        import pyarrow.csv as pcsv
        with open(path, newline="") as f:
            header = next(pycsv.reader([f.readline()]), None)
        if not header:
            return 0
        conv = pcsv.ConvertOptions(include_columns=[header[0]], column_types={header[0]: pa.string()})
        return pcsv.read_csv(path, convert_options=conv).num_rows
    return None


def _read_one(path: str, fmt: str, o: dict) -> pa.Table:
    if o.get("count_only"):
        n = _count_one(path, fmt, o)
        if n is not None:
            return pa.table({"__rows": pa.nulls(n)})
    if fmt == "csv":
        import pyarrow.csv as pcsv
        return pcsv.read_csv(path, read_options=o.get("read_options"),
                             parse_options=o.get("parse_options"),
                             convert_options=o.get("convert_options"))
    if fmt == "parquet":
        import pyarrow.parquet as pq
        return pq.read_table(path, columns=o.get("columns"), filters=o.get("filters"))
    if fmt == "json":
        return _read_json(path, o)
    if fmt == "text":
        with open(path, encoding=o.get("encoding", "utf-8")) as f:
            lines = f.read().splitlines()
        if o.get("drop_empty_lines", True):
            lines = [ln for ln in lines if ln.strip()]
        return pa.table({"text": pa.array(lines, pa.string())})
    if fmt == "numpy":
        arr = np.load(path, allow_pickle=False)
        return pa.table({"data": B.array_to_column(arr)})
    if fmt == "binary":
        with open(path, "rb") as f:
            return pa.table({"bytes": pa.array([f.read()], pa.binary())})
    raise ValueError(f"unknown format {fmt!r}")


def _read_json(path, o):
    import pyarrow.json as pjson
    try:
        return pjson.read_json(path, read_options=o.get("read_options"),
                               parse_options=o.get("parse_options"))
    except pa.ArrowInvalid:
        with open(path) as f:  # a JSON array of records, which Ray reads too
            data = json.load(f)
        if isinstance(data, dict):
            data = [data]
        return B.from_rows(data, f"the JSON file {path}")


def read_files(files: list, fmt: str, options: dict) -> pa.Table:
    tables = []
    for path in files:
        try:
            t = _read_one(path, fmt, options)
        except (pa.ArrowInvalid, ValueError, OSError) as e:
            raise type(e)(f"read_{fmt} could not read {path!r}: {e}") from e
        if options.get("include_paths"):
            t = t.append_column("path", pa.array([path] * t.num_rows, pa.string()))
        tables.append(t)
    return B.concat(tables)


def prepare_dir(path: str, op: str) -> str:
    path = strip_scheme(path, op)
    if os.path.exists(path) and not os.path.isdir(path):
        raise FileExistsError(f"{op}: {path!r} is a file; give a directory to write the files into.")
    os.makedirs(path, exist_ok=True)
    return path


def write(block: pa.Table, file: str, fmt: str, o: dict) -> None:
    if fmt == "parquet":
        import pyarrow.parquet as pq
        pq.write_table(block, file, **o.get("arrow_parquet_args", {}))
    elif fmt == "csv":
        import pyarrow.csv as pcsv
        pcsv.write_csv(block, file)
    elif fmt == "json":
        df = B.to_pandas(block)
        df.to_json(file, orient="records", lines=True, **o.get("pandas_json_args", {}))
    elif fmt == "numpy":
        col = o["column"]
        B.check_columns(block, [col], "write_numpy")
        np.save(file, B.column_to_numpy(block.column(col)))
