"""The restricted ``.npy`` loader for official boundary files: real files load, pickles that
carry code are refused without running anything."""

from __future__ import annotations

import codecs
import copyreg
import io
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from idinvert.core.boundaries import load_boundary, load_official_boundary, read_npy_restricted
from idinvert.core.errors import ModelFormatError

REFERENCE = Path(__file__).resolve().parent / "data" / "reference"
OFFICIAL = REFERENCE / "boundaries"
#: Default layers of the official boundaries (reference SUMMARY §7).
EXPECTED_LAYERS = {
    "stylegan_ffhq256": {
        "age": list(range(6)),
        "expression": [2, 3, 4, 5],
        "eyeglasses": [0, 1, 2],
        "gender": [2, 3, 4],
        "pose": [0, 1, 2],
    },
    "stylegan_bedroom256": {
        n: list(range(14))
        for n in ("cloth", "cluttered_space", "indoor_lighting", "scary", "soothing", "wood")
    },
    "stylegan_tower256": {n: list(range(14)) for n in ("clouds", "sunny", "vegetation")},
}


@pytest.mark.parametrize("domain", sorted(EXPECTED_LAYERS))
def test_official_boundary_files_load(domain: str) -> None:
    files = sorted((OFFICIAL / domain).glob("*.npy"))
    assert {f.stem for f in files} == set(EXPECTED_LAYERS[domain])
    for f in files:
        b = load_official_boundary(f)
        assert b.name == f.stem and b.direction.shape == (14, 512)
        assert b.direction.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(b.direction, axis=1), 1.0, atol=1e-5)
        assert b.layers == EXPECTED_LAYERS[domain][f.stem]
        assert load_boundary(f).layers == b.layers  # the generic entry point agrees


def test_official_file_matches_trusted_numpy_load() -> None:
    """Same values as numpy's own (unsafe) loader, on a file we trust."""
    f = OFFICIAL / "stylegan_ffhq256" / "age.npy"
    trusted = np.load(f, allow_pickle=True)[()]
    ours = read_npy_restricted(f)
    np.testing.assert_array_equal(ours["boundary"], trusted["boundary"])
    assert ours["meta_data"] == trusted["meta_data"]


def test_plain_and_fresh_dict_formats(tmp_path: Path) -> None:
    arr = np.random.default_rng(0).standard_normal((1, 10, 64)).astype(np.float32)
    np.save(tmp_path / "plain.npy", arr)
    b = load_official_boundary(tmp_path / "plain.npy")
    assert b.direction.shape == (10, 64) and b.layers == []
    obj = np.array({"boundary": arr, "meta_data": {"manipulate_layers": "0-3"}}, dtype=object)
    np.save(tmp_path / "dict.npy", obj, allow_pickle=True)  # numpy 2 pickle, protocol 3
    b = load_official_boundary(tmp_path / "dict.npy")
    np.testing.assert_array_equal(b.direction, arr[0])
    assert b.layers == [0, 1, 2, 3]
    with open(tmp_path / "p2.npy", "wb") as fh:  # protocol 2, like the official files
        np.lib.format.write_array_header_1_0(
            fh, {"descr": "|O", "fortran_order": False, "shape": ()}
        )
        pickle.dump(obj, fh, protocol=2)
    assert load_official_boundary(tmp_path / "p2.npy").layers == [0, 1, 2, 3]


class _Payload:
    """Pickles to ``func(*args)``: what an attacker puts in a .npy object array."""

    def __init__(self, func: object, *args: object) -> None:
        self.func, self.args = func, args

    def __reduce__(self):  # noqa: ANN204
        return self.func, self.args


def _evil_npy(path: Path, payload: object, protocol: int = 3, wrap: bool = True) -> Path:
    """A .npy with an object header whose pickle runs ``payload`` when unpickled."""
    obj = (
        {"boundary": np.zeros((1, 14, 512), np.float32), "meta_data": payload} if wrap else payload
    )
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(
            fh, {"descr": "|O", "fortran_order": False, "shape": ()}
        )
        pickle.dump(np.array(obj, dtype=object) if wrap else obj, fh, protocol=protocol)
    return path


def _payloads(marker: Path) -> dict[str, object]:
    import builtins
    import subprocess

    cmd = f"touch {marker}"
    return {
        "os.system": _Payload(os.system, cmd),
        "subprocess.Popen": _Payload(subprocess.Popen, ["touch", str(marker)]),
        "builtins.exec": _Payload(builtins.exec, f"open({str(marker)!r}, 'w').close()"),
        "builtins.eval": _Payload(builtins.eval, f"open({str(marker)!r}, 'w')"),
        "numpy.load": _Payload(np.load, str(marker)),
        "copyreg._reconstructor": _Payload(copyreg._reconstructor, object, object, None),
        "codecs.encode(zlib)": _Payload(codecs.encode, b"x" * 10, "zlib"),
    }


@pytest.mark.parametrize("name", list(_payloads(Path("m"))))
@pytest.mark.parametrize("wrap", [True, False], ids=["inside-dict", "bare"])
def test_malicious_pickles_are_refused(tmp_path: Path, name: str, wrap: bool) -> None:
    marker = tmp_path / "PWNED"
    path = _evil_npy(tmp_path / "evil.npy", _payloads(marker)[name], wrap=wrap)
    with pytest.raises(ModelFormatError, match="refus"):
        load_official_boundary(path)
    with pytest.raises(ModelFormatError):
        load_boundary(path)
    assert not marker.exists(), "the payload ran"


def test_codecs_encode_only_for_latin1(tmp_path: Path) -> None:
    """Protocol-2 pickles encode bytes as _codecs.encode(s, 'latin1'); other codecs: refused."""
    import _codecs

    marker = tmp_path / "m"
    path = _evil_npy(tmp_path / "rot.npy", _Payload(_codecs.encode, "text", "rot13"), protocol=2)
    with pytest.raises(ModelFormatError, match="refus"):
        read_npy_restricted(path)
    assert not marker.exists()


def test_extension_registry_goes_through_the_allow_list(tmp_path: Path) -> None:
    """EXT opcodes resolve globals through copyreg's registry; they must hit find_class too."""
    code = 0x7FFFF0
    copyreg.add_extension("posix", "system", code)
    try:
        data = pickle.dumps(_Payload(os.system, f"touch {tmp_path / 'x'}"), protocol=2)
    finally:
        copyreg.remove_extension("posix", "system", code)
    assert b"\x84" in data or b"\x83" in data or b"\x82" in data  # EXT1/2/4 was used
    copyreg.add_extension("posix", "system", code)
    try:
        path = tmp_path / "ext.npy"
        with open(path, "wb") as fh:
            np.lib.format.write_array_header_1_0(
                fh, {"descr": "|O", "fortran_order": False, "shape": ()}
            )
            fh.write(data)
        with pytest.raises(ModelFormatError, match="refus"):
            read_npy_restricted(path)
    finally:
        copyreg.remove_extension("posix", "system", code)
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    "case", ["not-npy", "truncated-header", "truncated-pickle", "truncated-array", "bad-header"]
)
def test_damaged_files_give_clear_errors(tmp_path: Path, case: str) -> None:
    arr = np.ones((1, 10, 64), np.float32)
    buf = io.BytesIO()
    np.save(buf, np.array({"boundary": arr}, dtype=object), allow_pickle=True)
    obj_bytes = buf.getvalue()
    buf = io.BytesIO()
    np.save(buf, arr)
    raw = {
        "not-npy": b"PK\x03\x04 a zip, not a npy",
        "truncated-header": obj_bytes[:20],
        "truncated-pickle": obj_bytes[:-30],
        "truncated-array": buf.getvalue()[:-100],
        "bad-header": b"\x93NUMPY\x01\x00\x10\x00{'descr': os}     \n",
    }[case]
    path = tmp_path / f"{case}.npy"
    path.write_bytes(raw)
    with pytest.raises(ModelFormatError) as exc:
        load_official_boundary(path)
    assert str(path) in str(exc.value) and "\n" not in str(exc.value)


def test_object_payload_types_are_checked(tmp_path: Path) -> None:
    """Only plain data may come out: a set (buildable without globals) is rejected."""
    path = _evil_npy(tmp_path / "set.npy", {1, 2, 3})
    with pytest.raises(ModelFormatError):
        load_official_boundary(path)
