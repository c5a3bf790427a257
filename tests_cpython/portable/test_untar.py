# The update archive's unpacker (untar.py, PROTOCOL 10): archives made by
# real tools (fixtures/untar) and hand-made headers for every entry it must
# refuse, under every runtime.
from portable.support import FIXTURES, raises, read, tmpdir, write
from socketman import untar
from socketman.stats import gz

DEEP = ("lib/socketman/a_directory_with_a_rather_long_name_to_need_more_than_one_hundred_bytes_in_all/"
        "and_then_some_more_of_it/deep_file_with_a_long_name.txt")


def header(name, size=0, kind=b"0", link=b"", magic=b"ustar\x0000", prefix=b"", size_field=None):
    """One tar header block (bytes), checksum filled in."""
    h = bytearray(512)
    h[0:len(name)] = name
    h[100:108] = b"0000644\0"
    h[108:116] = b"0000000\0"
    h[116:124] = b"0000000\0"
    h[124:136] = size_field or ("%011o" % size).encode() + b"\0"
    h[136:148] = b"14000000000\0"
    h[148:156] = b"        "
    h[156] = kind[0]
    h[157:157 + len(link)] = link
    h[257:265] = magic
    h[345:345 + len(prefix)] = prefix
    h[148:156] = ("%06o" % sum(h)).encode() + b"\0 "
    return bytes(h)


def member(name, data=b"", kind=b"0", **kw):
    pad = (512 - len(data) % 512) % 512
    return header(name, len(data), kind, **kw) + data + bytes(pad)


def archive(*members, end=True):
    """A gzip'd tar (stored deflate blocks: every runtime can write it)."""
    return gz.stored(b"".join(members) + (bytes(1024) if end else b""))


def unpack(data, max_bytes=1 << 20, budget=32768):
    d = tmpdir("untar")
    src = write(d + "/a.tar.gz", data)
    u = untar.Unpacker(src, d + "/out", max_bytes)
    steps = 0
    while not u.step(budget):
        steps += 1
        assert steps < 100000
    return d + "/out", steps


def refused(data, max_bytes=1 << 20):
    return str(raises(untar.Refused, unpack, data, max_bytes))


def test_archives_of_real_tools():
    for name in ("gnutar", "posix", "ustar", "busybox", "python-pax"):
        out, _ = unpack(read(FIXTURES + "/untar/%s.tar.gz" % name))
        assert read(out + "/main.py") == b'print("main")\n', name
        assert read(out + "/lib/socketman/__init__.py") == b'VERSION = "9.9.9"\n', name
        assert read(out + "/" + DEEP) == b"deep\n", name


def test_a_real_symlink_is_refused():
    why = refused(read(FIXTURES + "/untar/gnutar-symlink.tar.gz"))
    assert why == "a link: lib/evil", why


def test_files_directories_prefix_and_dot_names():
    out, _ = unpack(archive(member(b"./", kind=b"5"), member(b"./main.py", b"x = 1\n"),
                            member(b"lib/", kind=b"5"), member(b"lib/socketman/", kind=b"5"),
                            member(b"lib/socketman/__init__.py", b'VERSION = "2.0"\n'),
                            member(b"c.txt", b"in b", prefix=b"a/b"),
                            member(b"no/dir/entry/before.txt", b"made"),
                            member(b"empty", b""), member(b"old_style", b"v7", magic=bytes(8))))
    assert read(out + "/main.py") == b"x = 1\n"
    assert read(out + "/lib/socketman/__init__.py") == b'VERSION = "2.0"\n'
    assert read(out + "/a/b/c.txt") == b"in b"
    assert read(out + "/no/dir/entry/before.txt") == b"made"
    assert read(out + "/empty") == b"" and read(out + "/old_style") == b"v7"


def test_gnu_long_names_and_pax_paths():
    long = ("d" * 120 + "/" + "f" * 130).encode()
    rec = b" path=" + long + b"\n"
    n = len(rec) + 3  # "NNN" digits
    pax = ("%d" % n).encode() + rec
    out, _ = unpack(archive(member(b"././@LongLink", long + b"\0", kind=b"L", magic=b"ustar  \0"),
                            member(b"cut", b"gnu", magic=b"ustar  \0"),
                            member(b"PaxHeaders/x", pax, kind=b"x"), member(b"cut2", b"pax"),
                            member(b"global", b"10 c=hey\n", kind=b"g"), member(b"after", b"ok")))
    assert read(out + "/" + long.decode()) == b"pax"  # the pax path came later and wins
    assert read(out + "/after") == b"ok"


def test_paths_that_leave_the_directory_are_refused():
    for name, why in ((b"/etc/passwd", "an absolute path: /etc/passwd"),
                      (b"../x", "a path that leaves the directory: ../x"),
                      (b"lib/../../x", "a path that leaves the directory: lib/../../x"),
                      (b"a/..", "a path that leaves the directory: a/..")):
        assert refused(archive(member(b"main.py", b"ok"), member(name, b"evil"))) == why, name
    long = b"x/" * 10 + b"../../../../../../../../../../../etc/cron"
    assert "leaves the directory" in refused(archive(member(b"././@LongLink", long + b"\0", kind=b"L"),
                                                     member(b"cut", b"e")))
    assert "leaves the directory" in refused(archive(member(b"e", b"e", prefix=b"../..")))
    assert "not UTF-8" in refused(archive(member(b"bad\xff", b"e")))


def test_links_devices_and_fifos_are_refused():
    cases = ((b"1", "a link: lib/hard"), (b"2", "a link: lib/hard"), (b"3", "a device file: lib/hard"),
             (b"4", "a device file: lib/hard"), (b"6", "a FIFO: lib/hard"))
    for kind, why in cases:
        got = refused(archive(member(b"main.py", b"ok"), member(b"lib/hard", kind=kind, link=b"/etc/shadow")))
        assert got == why, (kind, got)
    assert refused(archive(member(b"././@LongLink", b"/etc/shadow\0", kind=b"K"),
                           member(b"lnk", kind=b"2"))).startswith("a link: ")
    pax = b"20 linkpath=/etc/sh\n"
    assert refused(archive(member(b"P", pax, kind=b"x"), member(b"f", b"x"))) == "a link: /etc/sh"
    assert "not a file or directory" in refused(archive(member(b"sparse", kind=b"S")))


def test_broken_archives_are_refused():
    good = member(b"main.py", b"x" * 600)
    bad = bytearray(good)
    bad[0] = ord("n")  # the checksum no longer fits
    assert "checksum" in refused(archive(bytes(bad)))
    assert "cut short" in refused(gz.stored(good[:700]))
    assert "cut short" in refused(archive(good, end=False))
    why = refused(b"this is not gzip at all, not even close" * 10)
    assert "gzip" in why, why
    whole = archive(good)
    why = refused(whole[:len(whole) // 2])
    assert "cut short" in why or "gzip" in why, why
    assert "bad size" in refused(archive(header(b"x", size_field=b"0000000001z\0")))


def test_the_unpacked_bytes_are_capped():
    ok = archive(member(b"a", b"1" * 3000), member(b"b", b"2" * 3000))
    unpack(ok, max_bytes=6000)
    assert refused(ok, max_bytes=5999) == "more than 5999 bytes unpacked"


def test_a_big_file_goes_in_steps_of_bounded_size():
    data = bytes(range(256)) * 256  # 64 KiB: the test's own copies must fit a 32-bit heap
    out, steps = unpack(archive(member(b"big.bin", data)), budget=4096)
    assert read(out + "/big.bin") == data
    assert steps >= 16  # many loop steps, never the whole file at once


def test_safe_path():
    assert untar.safe_path(b"./a//b/./c") == "a/b/c"
    assert untar.safe_path(b".") == "" and untar.safe_path(b"./") == ""
    assert untar.safe_path(b"a..b/..c") == "a..b/..c"
