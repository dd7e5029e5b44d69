"""Job packages: deterministic builds, validation, and extraction that never writes
outside its folder, against zips crafted by hand the way an attacker would."""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import struct
import zipfile
from pathlib import Path

import pytest

from runwright.artifacts.package import (
    FIXED_TIME,
    Limits,
    build_from_files,
    build_package,
    collect_files,
    inspect_package,
    safe_extract,
)
from runwright.errors import InvalidRequest

MB = 1024 * 1024
MANIFEST = 'entrypoint = "main.py"\n'


# -- helpers ---------------------------------------------------------------------------------
def write_tree(root: Path, files: dict[str, str | bytes]) -> Path:
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            path.write_text(content)
        else:
            path.write_bytes(content)
    return root


JOB_FILES: dict[str, str | bytes] = {
    "runwright.toml": 'entrypoint = "main.py"\nrequirements = ["tinypkg==0.1"]\n',
    "main.py": "from lib.util import hello\nprint(hello())\n",
    "lib/__init__.py": "",
    "lib/util.py": "def hello():\n    return 'hello'\n",
    "config.json": '{"db": {"host": "localhost"}}',
    "config.prod.json": '{"db": {"host": "prod-db"}}',
    "data/rows.bin": bytes(range(256)) * 8,
}


def make_zip(entries: list[tuple[zipfile.ZipInfo | str, bytes | str]]) -> bytes:
    """A zip written entry by entry, exactly as given (no sanitising)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for info, content in entries:
            zf.writestr(info, content)
    return buffer.getvalue()


def with_manifest(*entries: tuple[zipfile.ZipInfo | str, bytes | str]) -> bytes:
    return make_zip([("runwright.toml", MANIFEST), ("main.py", "print(1)\n"), *entries])


def raw_name(name: str, mode: int = 0o100644) -> zipfile.ZipInfo:
    """A ZipInfo whose name is kept verbatim (ZipFile.write would normalise it)."""
    info = zipfile.ZipInfo("placeholder", date_time=FIXED_TIME)
    info.filename = name
    info.orig_filename = name
    info.external_attr = mode << 16
    info.create_system = 3
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


def patch_sizes(data: bytes, name: str, claimed: int) -> bytes:
    """Make the local and central headers of ``name`` claim ``claimed`` unpacked bytes."""
    patched = bytearray(data)
    encoded = name.encode()
    for signature, size_at, name_length_at, name_at in (
        (b"PK\x03\x04", 22, 26, 30),
        (b"PK\x01\x02", 24, 28, 46),
    ):
        start = 0
        while (found := patched.find(signature, start)) >= 0:
            (length,) = struct.unpack_from("<H", patched, found + name_length_at)
            if patched[found + name_at : found + name_at + length] == encoded:
                struct.pack_into("<I", patched, found + size_at, claimed)
            start = found + 4
    return bytes(patched)


def corrupt_crc(data: bytes, name: str) -> bytes:
    patched = bytearray(data)
    encoded = name.encode()
    for signature, crc_at, name_length_at, name_at in (
        (b"PK\x03\x04", 14, 26, 30),
        (b"PK\x01\x02", 16, 28, 46),
    ):
        start = 0
        while (found := patched.find(signature, start)) >= 0:
            (length,) = struct.unpack_from("<H", patched, found + name_length_at)
            if patched[found + name_at : found + name_at + length] == encoded:
                struct.pack_into("<I", patched, found + crc_at, 0xDEADBEEF)
            start = found + 4
    return bytes(patched)


def all_files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if not p.is_dir()}


@pytest.fixture
def sandbox(tmp_path: Path) -> tuple[Path, Path]:
    """(outer folder, extraction target inside it): anything written outside the target
    shows up in the outer folder."""
    outer = tmp_path / "outer"
    target = outer / "a" / "b" / "target"
    target.mkdir(parents=True)
    return outer, target


def extract_bytes(data: bytes, target: Path, limits: Limits = Limits()) -> None:
    archive = target.parent / "package.zip"
    archive.write_bytes(data)
    try:
        safe_extract(archive, target, limits=limits)
    finally:
        archive.unlink()


# -- deterministic builds --------------------------------------------------------------------
def test_same_files_give_the_same_bytes_whatever_the_order_and_mtimes(tmp_path: Path) -> None:
    first = write_tree(tmp_path / "first", JOB_FILES)
    second = tmp_path / "second"
    for relative in reversed(list(JOB_FILES)):  # created in the other order
        write_tree(second, {relative: JOB_FILES[relative]})
    for i, path in enumerate(sorted(p for p in second.rglob("*") if p.is_file())):
        os.utime(path, (1_000_000_000 + i * 7777, 1_000_000_000 + i * 7777))
    a, b = build_package(first), build_package(second)
    assert a.data == b.data
    assert a.sha256 == b.sha256 == hashlib.sha256(a.data).hexdigest()
    assert a.short_hash == a.sha256[:12]
    assert a.files == tuple(sorted(JOB_FILES))
    # and again, after touching every file
    for path in first.rglob("*"):
        path.touch()
    assert build_package(first).data == a.data


def test_built_zip_entries_are_sorted_with_fixed_times_and_normal_modes(tmp_path: Path) -> None:
    folder = write_tree(tmp_path / "job", JOB_FILES)
    (folder / "main.py").chmod(0o700)  # owner rwx, nothing else: normalised to 755
    (folder / "lib" / "util.py").chmod(0o600)  # normalised to 644
    built = build_package(folder)
    with zipfile.ZipFile(io.BytesIO(built.data)) as zf:
        infos = zf.infolist()
    assert [i.filename for i in infos] == sorted(JOB_FILES)
    assert {i.date_time for i in infos} == {FIXED_TIME}
    modes = {i.filename: i.external_attr >> 16 for i in infos}
    assert modes["main.py"] == 0o100755
    assert modes["lib/util.py"] == 0o100644
    assert built.manifest.requirements == ("tinypkg==0.1",)
    assert built.manifest.environments == ("prod",)


def test_caches_and_tool_folders_are_left_out(tmp_path: Path) -> None:
    clean = write_tree(tmp_path / "clean", JOB_FILES)
    messy = write_tree(
        tmp_path / "messy",
        {
            **JOB_FILES,
            "__pycache__/main.cpython-311.pyc": b"\x00compiled",
            "lib/__pycache__/util.cpython-311.pyc": b"\x00compiled",
            "lib/stale.pyc": b"\x00",
            ".git/config": "[core]\n",
            ".git/objects/ab/cdef": b"blob",
            ".venv/bin/python": "#!/bin/sh\n",
            "venv/lib/site.py": "x = 1\n",
            "node_modules/left-pad/index.js": "module.exports = 1\n",
            ".mypy_cache/3.11/x.json": "{}",
            ".pytest_cache/v/cache": "{}",
            ".ruff_cache/0.1/x": "",
            ".idea/workspace.xml": "<x/>",
            ".vscode/settings.json": "{}",
            ".runwright/state": "",
            "tinyjob.egg-info/PKG-INFO": "Name: tinyjob\n",
            ".DS_Store": b"\x00\x00",
        },
    )
    assert collect_files(messy) == sorted(JOB_FILES)
    assert build_package(messy).sha256 == build_package(clean).sha256


def test_a_changed_file_or_mode_changes_the_hash(tmp_path: Path) -> None:
    folder = write_tree(tmp_path / "job", JOB_FILES)
    before = build_package(folder).sha256
    (folder / "main.py").write_text("print('changed')\n")
    changed = build_package(folder).sha256
    (folder / "main.py").chmod(0o755)
    assert len({before, changed, build_package(folder).sha256}) == 3


def test_build_from_files_ignores_the_order_of_entries() -> None:
    entries = [("runwright.toml", MANIFEST.encode(), False), ("main.py", b"print(1)\n", False)]
    assert build_from_files(entries).data == build_from_files(list(reversed(entries))).data


def test_a_folder_without_a_manifest_is_refused_with_the_line_to_write(tmp_path: Path) -> None:
    folder = write_tree(tmp_path / "job", {"main.py": "print(1)\n"})
    with pytest.raises(InvalidRequest) as caught:
        build_package(folder)
    assert "runwright.toml" in caught.value.message
    assert 'entrypoint = "main.py"' in caught.value.message


def test_a_symbolic_link_in_the_folder_is_refused(tmp_path: Path) -> None:
    folder = write_tree(tmp_path / "job", {"runwright.toml": MANIFEST, "main.py": "print(1)\n"})
    (tmp_path / "secret.txt").write_text("outside")
    (folder / "data.txt").symlink_to(tmp_path / "secret.txt")
    with pytest.raises(InvalidRequest, match=r"data\.txt is a symbolic link"):
        build_package(folder)


def test_a_linked_folder_is_refused(tmp_path: Path) -> None:
    folder = write_tree(tmp_path / "job", {"runwright.toml": MANIFEST, "main.py": "print(1)\n"})
    (tmp_path / "elsewhere").mkdir()
    (folder / "shared").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    with pytest.raises(InvalidRequest, match="shared is a symbolic link to a folder"):
        build_package(folder)


def test_not_a_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest, match="is not a folder"):
        build_package(tmp_path / "missing")


def test_build_enforces_the_file_limit(tmp_path: Path) -> None:
    folder = write_tree(tmp_path / "job", JOB_FILES)
    with pytest.raises(InvalidRequest, match="the limit is 3"):
        build_package(folder, limits=Limits(max_files=3))


# -- inspect_package: what a package must contain ----------------------------------------------
def test_inspect_returns_the_manifest_with_environments(tmp_path: Path) -> None:
    data = make_zip(
        [
            ("runwright.toml", 'entrypoint = "app.jobs:main"\ndescription = "d"\n'),
            ("app/__init__.py", ""),
            ("app/jobs.py", "def main():\n    return 1\n"),
            ("config.json", "{}"),
            ("config.staging.json", '{"a": 1}'),
            ("config.prod.json", '{"a": 2}'),
        ]
    )
    manifest = inspect_package(data)
    assert manifest.entrypoint == "app.jobs:main"
    assert manifest.environments == ("prod", "staging")
    archive = tmp_path / "p.zip"
    archive.write_bytes(data)
    assert inspect_package(archive) == manifest  # a path works as well as bytes


def test_a_module_entrypoint_may_be_a_package(tmp_path: Path) -> None:
    data = make_zip(
        [("runwright.toml", 'entrypoint = "app:main"\n'), ("app/__init__.py", "def main(): ...")]
    )
    assert inspect_package(data).entrypoint == "app:main"


@pytest.mark.parametrize(
    ("entries", "fragments"),
    [
        pytest.param(
            [("main.py", "print(1)")],
            ["no runwright.toml (or job.yaml) at its top level", "runwright package build"],
            id="no-manifest",
        ),
        pytest.param(
            [("sub/runwright.toml", MANIFEST), ("sub/main.py", "")],
            ["no runwright.toml (or job.yaml) at its top level"],
            id="manifest-in-a-subfolder",
        ),
        pytest.param(
            [("runwright.toml", 'entrypoint = "run.py"\n'), ("main.py", ""), ("lib/x.py", "")],
            ["entrypoint run.py is not in the package", "lib/x.py", "main.py"],
            id="entrypoint-missing",
        ),
        pytest.param(
            [("runwright.toml", 'entrypoint = "../main.py"\n'), ("main.py", "")],
            ["entrypoint ../main.py is not in the package"],
            id="entrypoint-outside",
        ),
        pytest.param(
            [("runwright.toml", 'entrypoint = "app.jobs:main"\n'), ("app/__init__.py", "")],
            ["entrypoint module app/jobs.py is not in the package"],
            id="module-missing",
        ),
        pytest.param(
            [("runwright.toml", MANIFEST), ("main.py", ""), ("config.json", "{'db': 1}")],
            ["config.json is not valid JSON"],
            id="config-not-json",
        ),
        pytest.param(
            [("runwright.toml", MANIFEST), ("main.py", ""), ("config.json", "[1, 2]")],
            ["config.json must contain a JSON object"],
            id="config-not-object",
        ),
        pytest.param(
            [("runwright.toml", MANIFEST), ("main.py", ""), ("config.prod.json", "{,}")],
            ["config.prod.json is not valid JSON"],
            id="environment-config-not-json",
        ),
        pytest.param(
            [("runwright.toml", "entrypoint = 1\n"), ("main.py", "")],
            ['entrypoint = "module:function" or "file.py"'],
            id="bad-manifest",
        ),
    ],
)
def test_inspect_refuses_incomplete_packages(
    entries: list[tuple[str, str]], fragments: list[str]
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        inspect_package(make_zip(entries))  # type: ignore[arg-type]
    for fragment in fragments:
        assert fragment in caught.value.message, caught.value.message


def test_inspect_refuses_what_is_not_a_zip() -> None:
    with pytest.raises(InvalidRequest, match="not a valid zip file"):
        inspect_package(b"PK\x03\x04 but not really a zip")
    with pytest.raises(InvalidRequest, match="not a valid zip file"):
        inspect_package(b"")


def test_inspect_refuses_a_package_over_the_size_limit() -> None:
    data = with_manifest(("blob.bin", os.urandom(300_000)))
    with pytest.raises(InvalidRequest, match=r"The package is .*; the limit is"):
        inspect_package(data, limits=Limits(max_package_bytes=200_000))


# -- malicious zips: refused by inspect_package and safe_extract, nothing written anywhere ------
EVIL = "pwned by the package\n"


@pytest.mark.parametrize(
    ("info", "fragment"),
    [
        pytest.param(raw_name("../evil"), "leaving its folder", id="dot-dot"),
        pytest.param(raw_name("../../../evil"), "leaving its folder", id="dot-dot-deep"),
        pytest.param(raw_name("lib/../../evil"), "leaving its folder", id="dot-dot-inside"),
        pytest.param(raw_name("/etc/evil"), "absolute path", id="absolute"),
        pytest.param(raw_name("//server/share/evil"), "absolute path", id="unc"),
        pytest.param(raw_name("C:/evil"), "absolute path", id="drive"),
        pytest.param(raw_name("..\\evil"), "absolute path", id="backslash"),
        pytest.param(
            raw_name("link", mode=stat.S_IFLNK | 0o777), "symbolic link", id="symlink-entry"
        ),
    ],
)
def test_malicious_entries_are_refused_and_nothing_is_written(
    info: zipfile.ZipInfo, fragment: str, sandbox: tuple[Path, Path]
) -> None:
    outer, target = sandbox
    content = "/etc/passwd" if stat.S_ISLNK(info.external_attr >> 16) else EVIL
    data = with_manifest((info, content))
    with pytest.raises(InvalidRequest) as caught:
        inspect_package(data)
    assert fragment in caught.value.message
    assert "refused" in caught.value.message
    with pytest.raises(InvalidRequest, match=fragment):
        extract_bytes(data, target)
    assert all_files(outer) == set(), "nothing may be written, inside or outside the target"
    assert not (target / "link").is_symlink()


def test_a_symlink_entry_followed_by_a_write_through_it_is_refused(
    sandbox: tuple[Path, Path],
) -> None:
    outer, target = sandbox
    data = with_manifest(
        (raw_name("escape", mode=stat.S_IFLNK | 0o777), str(outer)),
        (raw_name("escape/evil"), EVIL),
    )
    with pytest.raises(InvalidRequest, match="symbolic link"):
        extract_bytes(data, target)
    assert all_files(outer) == set()


def test_extraction_never_follows_a_link_already_in_the_target(
    sandbox: tuple[Path, Path],
) -> None:
    outer, target = sandbox
    (target / "lib").symlink_to(outer, target_is_directory=True)
    data = with_manifest((raw_name("lib/evil"), EVIL))
    with pytest.raises(InvalidRequest, match="outside the run folder"):
        extract_bytes(data, target)
    assert not (outer / "evil").exists()


def test_a_zip_bomb_is_refused_by_its_ratio_and_by_the_unpacked_limit(
    sandbox: tuple[Path, Path],
) -> None:
    outer, target = sandbox
    data = with_manifest(("zeros.bin", b"\0" * (8 * MB)))
    assert len(data) < 16_000  # a few KB...
    assert 8 * MB / len(data) > 200  # ...expanding more than 200 times
    with pytest.raises(InvalidRequest, match="looks like a zip bomb"):
        inspect_package(data)  # default limits: the ratio
    low = Limits(max_unpacked_bytes=4 * MB)
    with pytest.raises(InvalidRequest, match="the limit is 4 MB"):
        inspect_package(data, limits=low)
    with pytest.raises(InvalidRequest):
        extract_bytes(data, target, low)
    with pytest.raises(InvalidRequest, match="zip bomb"):
        extract_bytes(data, target)
    assert all_files(outer) == set()


def test_a_zip_bomb_spread_over_many_small_entries_is_refused() -> None:
    """Limits.max_ratio is 'uncompressed / compressed, per entry and in total': forty
    entries just under 1 MB each are each below the per-entry threshold, but the 45 KB
    zip expands about 900 times in total."""
    data = with_manifest(*[(f"part{i:02d}.bin", b"\0" * (MB - 1)) for i in range(40)])
    assert 40 * MB / len(data) > 500
    with pytest.raises(InvalidRequest, match="zip bomb"):
        inspect_package(data, limits=Limits(max_unpacked_bytes=100 * MB))


def test_too_many_files_are_refused(sandbox: tuple[Path, Path]) -> None:
    outer, target = sandbox
    data = with_manifest(*[(f"f{i}.txt", "x") for i in range(10)])
    limits = Limits(max_files=5)
    with pytest.raises(InvalidRequest, match="12 files; the limit is 5"):
        inspect_package(data, limits=limits)
    with pytest.raises(InvalidRequest, match="the limit is 5"):
        extract_bytes(data, target, limits)
    assert all_files(outer) == set()


def test_headers_that_lie_about_the_size_never_let_more_than_the_limit_out(
    sandbox: tuple[Path, Path],
) -> None:
    outer, target = sandbox
    honest = with_manifest(("data.bin", b"\0" * (3 * MB)))
    lying = patch_sizes(honest, "data.bin", 1000)  # "1000 bytes", really 3 MB
    limits = Limits(max_unpacked_bytes=MB)
    assert inspect_package(lying, limits=limits).entrypoint == "main.py"  # headers look fine
    with pytest.raises(Exception):  # noqa: B017,PT011 - any refusal; what matters is below
        extract_bytes(lying, target, limits)
    written = sum(p.stat().st_size for p in outer.rglob("*") if p.is_file())
    assert written <= MB
    assert all_files(outer) <= {
        "a/b/target/" + name for name in ("runwright.toml", "main.py", "data.bin")
    }


def test_headers_that_lie_about_the_size_are_refused_as_an_invalid_package(
    sandbox: tuple[Path, Path],
) -> None:
    """The executor turns InvalidRequest into 'Package vN of job J was refused: ...';
    anything else (zipfile.BadZipFile) ends the run with an internal traceback."""
    _, target = sandbox
    lying = patch_sizes(with_manifest(("data.bin", b"\0" * (3 * MB))), "data.bin", 1000)
    with pytest.raises(InvalidRequest):
        extract_bytes(lying, target, Limits(max_unpacked_bytes=MB))


def test_a_corrupt_manifest_is_an_invalid_package_not_a_crash() -> None:
    """An uploaded zip whose runwright.toml fails its CRC check must be refused with a
    message (HTTP 422), not raise zipfile.BadZipFile (HTTP 500)."""
    data = corrupt_crc(with_manifest(), "runwright.toml")
    with pytest.raises(InvalidRequest):
        inspect_package(data)


# -- safe_extract of a good package --------------------------------------------------------
def test_safe_extract_writes_every_file_with_its_content_and_mode(tmp_path: Path) -> None:
    folder = write_tree(tmp_path / "job", JOB_FILES)
    (folder / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (folder / "run.sh").chmod(0o755)
    built = build_package(folder)
    archive = tmp_path / "p.zip"
    archive.write_bytes(built.data)
    target = tmp_path / "out"
    safe_extract(archive, target)
    assert all_files(target) == set(built.files)
    for relative, content in JOB_FILES.items():
        expected = content.encode() if isinstance(content, str) else content
        assert (target / relative).read_bytes() == expected
    assert os.access(target / "run.sh", os.X_OK)
    assert not os.access(target / "main.py", os.X_OK)
    assert json.loads((target / "config.prod.json").read_text()) == {"db": {"host": "prod-db"}}


def test_safe_extract_enforces_the_unpacked_limit(tmp_path: Path) -> None:
    data = with_manifest(("random.bin", os.urandom(2 * MB)))
    with pytest.raises(InvalidRequest, match="the limit is 1 MB"):
        extract_bytes(data, tmp_path, Limits(max_unpacked_bytes=MB))
