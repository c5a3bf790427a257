"""Every gzip path of gz.py, on CPython, the PyPI MicroPython and the native 1.23, checked by CPython's gzip."""
import gzip
import os
import subprocess

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.mark.parametrize("rt_name", ["cpython", "micropython", "mpy1.23"])
def test_each_method_makes_valid_gzip(rt_name, tmp_path, runtime_argv):
    r = subprocess.run(runtime_argv(rt_name) + [os.path.join(HERE, "scenarios", "gz_methods.py"), str(tmp_path)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    data = (tmp_path / "input").read_bytes()
    wrote = [line.split()[1] for line in r.stdout.splitlines() if line.startswith("wrote")]
    want = {"system", "stored", "stored-file"} | ({"zlib"} if rt_name == "cpython" else set())
    # MicroPython's deflate module compresses only when built with it; this
    # build cannot, and gz must then say so rather than fail later.
    assert want <= set(wrote), r.stdout
    for m in wrote:
        gz_bytes = (tmp_path / (m + ".gz")).read_bytes()
        assert gzip.decompress(gz_bytes) == data, m
        if m not in ("stored", "stored-file"):
            assert len(gz_bytes) < len(data) / 5, (m, len(gz_bytes))
    stored = (tmp_path / "stored.gz").read_bytes()
    assert len(data) < len(stored) < len(data) + 200


def test_stored_blocks_edge_sizes():
    from socketman.stats import gz
    for n in (0, 1, 65534, 65535, 65536, 131071, 131072, 200000):
        data = bytes((i * 7) & 0xFF for i in range(n))
        assert gzip.decompress(gz.stored(data)) == data, n


def test_stored_file_edge_sizes(tmp_path):
    from socketman.stats import gz
    for n in (0, 1, 4095, 4096, 4097, 65536, 200000):
        src = tmp_path / "in"
        src.write_bytes(bytes((i * 7) & 0xFF for i in range(n)))
        gz.stored_file(str(src), str(tmp_path / "out.gz"))
        assert gzip.decompress((tmp_path / "out.gz").read_bytes()) == src.read_bytes(), n
