"""The shared file helpers: CSR matrices as named state arrays, JSON reports written whole."""

import json

import numpy as np
import pytest
import scipy.sparse as sp

from recgraph.files import (
    csr_arrays,
    csr_from_arrays,
    load_arrays,
    save_arrays,
    saved_folder,
    write_json,
)


def test_a_csr_matrix_round_trips_through_named_state_arrays(tmp_path):
    matrix = sp.csr_matrix(np.array([[0, 2.5, 0], [0, 0, 0], [1, 0, 3]], np.float32))
    arrays = {"other": np.arange(3), **csr_arrays("m", matrix)}
    assert sorted(arrays) == ["m.data", "m.indices", "m.indptr", "other"]
    save_arrays(tmp_path / "state.npz", arrays)
    back = csr_from_arrays(load_arrays(tmp_path / "state.npz"), "m", (3, 3))
    assert (back != matrix).nnz == 0 and back.dtype == np.float32


def test_a_matrix_saved_without_data_reads_as_ones():
    matrix = sp.csr_matrix(np.array([[0, 7], [5, 0]], np.float32))
    arrays = {k: v for k, v in csr_arrays("seen", matrix).items() if k != "seen.data"}
    back = csr_from_arrays(arrays, "seen", (2, 2))
    assert back.toarray().tolist() == [[0, 1], [1, 0]]


def test_write_json_writes_indented_text_and_leaves_the_old_file_on_failure(tmp_path):
    target = tmp_path / "report.json"
    text = write_json(target, {"a": [1, 2]})
    assert target.read_text() == text and text.endswith("\n") and json.loads(text) == {"a": [1, 2]}
    with pytest.raises(TypeError):
        write_json(target, {"b": object()})
    assert json.loads(target.read_text()) == {"a": [1, 2]}
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]  # no temporary file left


def test_write_json_keeps_a_symlink_and_writes_through_a_fifo(tmp_path):
    real = tmp_path / "real.json"
    link = tmp_path / "link.json"
    real.write_text("{}")
    link.symlink_to(real)
    write_json(link, {"a": 1})
    assert link.is_symlink() and json.loads(real.read_text()) == {"a": 1}

    import os
    import threading

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()))
    reader.start()
    write_json(fifo, {"b": 2})
    reader.join(timeout=10)
    assert json.loads(got[0]) == {"b": 2} and not fifo.is_file()


def test_saved_folder_writes_the_manifest_last_and_never_after_a_failed_save(tmp_path):
    seen = []

    def manifest():
        seen.append(sorted(p.name for p in (tmp_path / "m").iterdir()))
        return {"n": 1}

    with saved_folder(tmp_path / "m", "m.json", manifest) as folder:
        (folder / "state.npz").write_bytes(b"x")
    assert seen == [["state.npz"]]  # asked for after the parts were written
    assert json.loads((folder / "m.json").read_text()) == {"n": 1}

    with pytest.raises(RuntimeError), saved_folder(tmp_path / "broken", "m.json", manifest):
        raise RuntimeError("disk full")
    assert (tmp_path / "broken").is_dir() and not (tmp_path / "broken" / "m.json").exists()
