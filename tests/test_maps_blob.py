"""A maps blob from a hostile store (a zip bomb, a header declaring 10^12 elements, a truncated
stream, a dtype attn never writes) is refused in the store's one line, in bounded time and memory,
and the rest of the store stays readable: through the library, `attn runs show` and an import."""
from __future__ import annotations

import json
import sqlite3
import struct
import time
import tracemalloc
import zlib

import numpy as np
import pytest

from attn.runs import RunStore, RunStoreError
from attn.runs import maps_blob
from attn.runs.maps_blob import MAX_MAPS_BYTES, MapsTooLarge, decode_maps, encode_maps
from tests import fuzz_inputs as F

BOMB_BYTES = 2 * 2**30  # what the bomb inflates to
QUICK_S = 5.0
SMALL_PEAK = 64 * 2**20  # the most a refusal may allocate on the way (chunks are 16 MiB)


def blob_prefix(arrays: list[dict], tree: object = None) -> bytes:
    """The start of a blob as encode_maps lays it out: header length, header."""
    header = json.dumps({"tree": {"values": {"$array": 0}} if tree is None else tree, "arrays": arrays}).encode()
    return struct.pack("<I", len(header)) + header


def zip_bomb(prefix: bytes, zeros: int = BOMB_BYTES) -> bytes:
    """A valid zlib stream of `prefix` and then `zeros` zero bytes, about 1,000 times smaller, built
    in a fraction of a second: after a full flush the compressor starts afresh, so 16 MiB of zeros
    compress to the same bytes every time and one chunk's output is repeated; the checksum of the
    whole is worked out (adler32 over n zeros: a stays, b grows by n * a)."""
    chunk = 2**24
    assert zeros % chunk == 0
    packer = zlib.compressobj(9)
    start = packer.compress(prefix) + packer.flush(zlib.Z_FULL_FLUSH)
    zero = packer.compress(bytes(chunk)) + packer.flush(zlib.Z_FULL_FLUSH)
    end = packer.flush()[:-4]  # the last, empty block; its checksum covers one chunk only
    adler = zlib.adler32(prefix)
    a, b = adler & 0xFFFF, adler >> 16
    checksum = ((b + zeros * a) % 65521) << 16 | a
    return start + zero * (zeros // chunk) + end + struct.pack(">I", checksum)


def refused(blob: bytes, says: str) -> str:
    """decode_maps(blob) raises RunStoreError in one line saying `says`, quickly and small."""
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(RunStoreError) as caught:
            decode_maps(blob)
        seconds, (_, peak) = time.perf_counter() - start, tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    message = str(caught.value)
    assert F.one_line(caught.value) and says in message, message
    assert message.startswith("the saved maps are damaged (") and message.endswith("restore the file")
    assert seconds < QUICK_S and peak < SMALL_PEAK, (seconds, peak)
    return message


def test_the_bomb_is_what_it_says():
    small = zip_bomb(b"attn", 2**26)  # the same construction, 64 MiB: inflated whole, checksum and all
    assert zlib.decompress(small) == b"attn" + bytes(2**26)
    bomb = zip_bomb(b"attn")
    assert len(bomb) < BOMB_BYTES // 500
    inflate = zlib.decompressobj()
    assert len(inflate.decompress(bomb, 2**26)) == 2**26 and inflate.unconsumed_tail  # and more to come


# -- the library ----------------------------------------------------------------------------------
def test_a_zip_bomb_after_a_valid_header_is_refused_at_its_first_extra_byte():
    prefix = blob_prefix([{"dtype": "<f4", "shape": [4, 4]}])
    refused(zip_bomb(prefix + np.eye(4, dtype="<f4").tobytes()),
            "they decompress to more bytes than their header declares")


def test_a_zip_bomb_of_zeros_alone_is_refused():
    refused(zip_bomb(b""), "JSONDecodeError")  # a header of 0 bytes


def test_a_zip_bomb_whose_header_declares_it_is_refused_before_it_inflates():
    prefix = blob_prefix([{"dtype": "<f4", "shape": [BOMB_BYTES // 4]}])
    refused(zip_bomb(prefix), "their header declares 2 GiB, past the 1 GiB a run's maps may hold")


@pytest.mark.parametrize("shape", [[10**12], [10**6, 10**6, 10**6], [2**62, 2**62], [MAX_MAPS_BYTES // 4 + 1]])
def test_a_huge_shape_is_refused_not_allocated(shape):
    refused(zlib.compress(blob_prefix([{"dtype": "<f4", "shape": shape}]) + bytes(64)), "past the 1 GiB")


@pytest.mark.parametrize("shape", [[-1], [4, -4], [True, 2], [2.0], "4", None, [1] * 33])
def test_a_shape_that_is_no_shape_is_refused(shape):
    refused(zlib.compress(blob_prefix([{"dtype": "<f4", "shape": shape}]) + bytes(64)), "an array of shape")


@pytest.mark.parametrize("dtype", ["|O", "<c16", "<U10", ">f4", "|V8", "<f8", "float32", 5, None])
def test_a_dtype_attn_never_writes_is_refused(dtype):
    refused(zlib.compress(blob_prefix([{"dtype": dtype, "shape": [2]}]) + bytes(64)), "an array of dtype")


def test_a_header_length_past_the_bound_is_refused():
    refused(zlib.compress(struct.pack("<I", 2**31) + b"{}"), "a header of 2 GiB, past the 16 MiB")


def test_a_reference_to_an_array_that_is_not_there_is_refused():
    for index in (1, -1, True, "0"):
        prefix = blob_prefix([{"dtype": "|u1", "shape": [2]}], tree={"x": {"$array": index}})
        refused(zlib.compress(prefix + b"\x01\x02"), "a reference to array")


@pytest.fixture
def real_blob() -> bytes:
    return encode_maps({"values": np.arange(4096, dtype=np.float32).reshape(64, 64), "exact": True})


def test_a_truncated_blob_is_refused(real_blob):
    refused(real_blob[: len(real_blob) // 2], "truncated")
    refused(real_blob[:-2], "truncated: the compressed stream does not end")  # every array there, no end


def test_a_blob_that_is_not_bytes_is_refused():
    for data in (10**12, "text", None):
        refused(data, "where a blob should be")


def test_what_attn_writes_reads_back_writable_and_in_place(real_blob):
    maps = decode_maps(real_blob)
    assert maps["exact"] is True and maps["values"].flags.writeable
    np.testing.assert_array_equal(maps["values"], np.arange(4096, dtype=np.float32).reshape(64, 64))


def test_maps_past_the_bound_are_refused_when_saved_too(monkeypatch, tmp_path):
    monkeypatch.setattr(maps_blob, "MAX_MAPS_BYTES", 4096)
    store = RunStore(tmp_path / "runs.sqlite")
    with pytest.raises(MapsTooLarge, match=r"maps of 4\.\d+ KiB are more than a run keeps \(4 KiB"):
        store.save("maps", {}, {}, maps={"values": np.zeros(1024, np.float32)})
    assert store.list() == [], "nothing saved"
    assert isinstance(MapsTooLarge("x"), ValueError)


# -- a store that holds a hostile blob ---------------------------------------------------------------
BAD_BLOBS = {
    "bomb": zip_bomb(blob_prefix([{"dtype": "<f4", "shape": [2]}]) + bytes(8)),
    "shape": zlib.compress(blob_prefix([{"dtype": "<f4", "shape": [10**12]}])),
    "dtype": zlib.compress(blob_prefix([{"dtype": "|O", "shape": [2]}]) + bytes(16)),
}


def with_bad_maps(store: RunStore, blob: bytes) -> tuple[int, int]:
    """(a run whose maps are `blob`, a run whose maps are good) saved in `store`."""
    bad = store.save("maps", {"seq": 64}, {"latency_ms": 1.0}, variant="dense", maps={"values": np.eye(2)})
    good = store.save("maps", {"seq": 64}, {"latency_ms": 2.0}, variant="dense", maps={"values": np.eye(3)})
    with sqlite3.connect(store.path) as db:
        db.execute("UPDATE run_maps SET data = ? WHERE run_id = ?", (blob, bad))
    return bad, good


@pytest.mark.parametrize("kind", sorted(BAD_BLOBS))
def test_a_bad_blob_is_one_line_and_the_rest_of_the_store_reads(tmp_path, kind):
    store = RunStore(tmp_path / "runs.sqlite")
    bad, good = with_bad_maps(store, BAD_BLOBS[kind])
    assert [(s.id, s.has_maps) for s in store.list()] == [(good, True), (bad, True)]
    with pytest.raises(RunStoreError, match=rf"^run {bad}'s maps are damaged \(") as caught:
        store.get(bad)
    assert F.one_line(caught.value)
    np.testing.assert_array_equal(store.get(good).maps["values"], np.eye(3, dtype=np.float32))


@pytest.mark.parametrize("kind", sorted(BAD_BLOBS))
def test_runs_show_of_a_bad_blob_exits_2_in_one_line(kind):
    bad, good = with_bad_maps(RunStore(), BAD_BLOBS[kind])
    shown = F.call_cli(["runs", "show", str(bad)])
    assert shown.kind == "error" and f"run {bad}'s maps are damaged" in shown.detail, shown.detail
    assert shown.seconds < QUICK_S
    assert F.call_cli(["runs", "export", str(bad), "--format", "json"]).kind == "error"
    assert F.call_cli(["runs", "list"]).kind == "result"
    assert F.call_cli(["runs", "show", str(good)]).kind == "result"


def test_an_imported_store_with_bad_blobs_imports_and_refuses_each_in_one_line(tmp_path):
    other = RunStore(tmp_path / "other.sqlite")
    pairs = {kind: with_bad_maps(other, blob) for kind, blob in BAD_BLOBS.items()}
    other.close()
    imported = F.call_cli(["runs", "import", str(other.path), "--json"])
    assert imported.kind == "result", imported.detail
    here = RunStore()
    assert len(here.list()) == 2 * len(BAD_BLOBS)
    ids = {run.id: run for run in here.list()}
    opened = {}
    for run_id in ids:
        try:
            opened[run_id] = here.get(run_id).maps["values"].shape
        except RunStoreError as error:
            assert F.one_line(error) and f"run {run_id}'s maps are damaged" in str(error)
            assert F.call_cli(["runs", "show", str(run_id)]).kind == "error"
    assert sorted(opened.values()) == [(3, 3)] * len(pairs), "every good run opens, every bad one is refused"


def test_an_import_whose_maps_are_not_a_blob_is_refused_before_anything_is_allocated(tmp_path):
    other = RunStore(tmp_path / "other.sqlite")
    bad, _ = with_bad_maps(other, b"")
    with sqlite3.connect(other.path) as db:  # bytes(10**12) would have asked for a terabyte
        db.execute("UPDATE run_maps SET data = ? WHERE run_id = ?", (10**12, bad))
    other.close()
    outcome = F.call_cli(["runs", "import", str(other.path)])
    assert outcome.kind == "error" and f"the maps of run {bad} are not a blob; nothing was imported" in outcome.detail
    assert RunStore().list() == []


def test_the_runs_page_shows_a_bad_blob_as_one_error_and_keeps_working():
    from tests.conftest import open_app

    bad, good = with_bad_maps(RunStore(), BAD_BLOBS["bomb"])
    at = open_app("views/runs.py", runs=str(bad))
    assert not at.exception, at.exception
    assert len(at.dataframe[0].value) == 2, "the list reads"
    assert any(f"run {bad}'s maps are damaged" in e.value for e in at.error), [e.value for e in at.error]
    at.multiselect(key="rn_selected").set_value([good]).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
