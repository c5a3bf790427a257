import json
import os

from portable.support import read, tmpdir, write
from socketman.stats import spool as spool_mod
from socketman.stats.spool import Spool


def doc(i, pad=0):
    return (json.dumps({"device": {"n": i}, "pad": "x" * pad}) + "\n").encode()


def test_append_batch_commit_in_order():
    d = tmpdir()
    s = Spool(d + "/spool", 1 << 20)
    for i in range(5):
        s.append(doc(i))
    b = s.batch()
    assert b == b"".join(doc(i) for i in range(5))
    s.append(doc(5))  # arrives while the batch is being sent
    s.commit()
    assert read(d + "/spool") == doc(5)
    assert s.size == len(doc(5))


def test_failed_upload_keeps_everything():
    d = tmpdir()
    s = Spool(d + "/spool", 1 << 20)
    s.append(doc(1))
    s.batch()
    s.release()
    assert s.batch() == doc(1)


def test_batches_are_whole_lines_under_the_limit():
    d = tmpdir()
    s = Spool(d + "/spool", 1 << 20)
    for i in range(10):
        s.append(doc(i, pad=100))
    size = len(doc(0, pad=100))
    b = s.batch(limit=size * 3 + 5)
    assert b == b"".join(doc(i, pad=100) for i in range(3))
    s.commit()
    assert s.batch(limit=size * 3 + 5) == b"".join(doc(i, pad=100) for i in range(3, 6))


def test_default_batch_limit_is_256k():
    assert spool_mod.MAX_BATCH == 262144


def test_line_over_the_batch_limit_is_dropped_and_counted():
    d = tmpdir()
    s = Spool(d + "/spool", 1 << 20)
    s.append(doc(0, pad=500))
    s.append(doc(1))
    assert s.batch(limit=200) == doc(1)
    assert s.pending_drops() == 1


def test_cap_drops_oldest_and_counts():
    d = tmpdir()
    one = len(doc(0, pad=900))
    s = Spool(d + "/spool", 4096)
    for i in range(6):
        s.append(doc(i, pad=900))
    assert s.size <= 4096
    kept = read(d + "/spool")
    assert kept == b"".join(doc(i, pad=900) for i in range(6 - 4096 // one, 6))
    assert s.pending_drops() == 6 - 4096 // one
    n = s.pending_drops()
    s.append(doc(9), reported=n)  # the document that reports the drops
    assert s.pending_drops() == 0


def test_document_larger_than_the_cap():
    d = tmpdir()
    s = Spool(d + "/spool", 4096)
    assert not s.append(doc(0, pad=5000))
    assert s.pending_drops() == 1 and s.size == 0


def test_cap_waits_while_a_batch_is_in_flight():
    d = tmpdir()
    s = Spool(d + "/spool", 4096)
    s.append(doc(0, pad=1500))
    s.append(doc(1, pad=1500))
    b = s.batch()
    s.append(doc(2, pad=1500))  # over the cap, but the head is being sent
    assert s.size > 4096 and s.pending_drops() == 0
    s.commit()
    assert read(d + "/spool") == doc(2, pad=1500)
    assert b == doc(0, pad=1500) + doc(1, pad=1500)


def test_power_cut_repair_keeps_complete_lines():
    d = tmpdir()
    write(d + "/spool", doc(1) + doc(2) + b'{"device": {"n": 3')
    s = Spool(d + "/spool", 1 << 20)
    assert read(d + "/spool") == doc(1) + doc(2)
    assert s.size == len(doc(1) + doc(2))
    assert s.batch() == doc(1) + doc(2)


def test_repair_drops_garbled_lines_only():
    d = tmpdir()
    write(d + "/spool", doc(1) + b"\x00\x00\x00\x00\n" + doc(2) + b"not json\n")
    Spool(d + "/spool", 1 << 20)
    assert read(d + "/spool") == doc(1) + doc(2)


def test_clean_file_untouched_and_missing_file_fine():
    d = tmpdir()
    write(d + "/spool", doc(1))
    Spool(d + "/spool", 1 << 20)
    assert read(d + "/spool") == doc(1)
    s = Spool(d + "/nothing", 1 << 20)
    assert s.batch() == b""


def test_failed_write_drops_and_counts_then_repairs_the_torn_tail():
    d = tmpdir()
    s = Spool(d + "/spool", 1 << 20)
    s.append(doc(1))
    os.rename(d + "/spool", d + "/saved")
    os.mkdir(d + "/spool")  # now every write fails, like a full /tmp
    assert s.append(doc(2)) is False
    assert s.append(doc(3)) is False
    assert s.pending_drops() == 2
    os.rmdir(d + "/spool")
    write(d + "/spool", doc(1) + doc(2)[:10])  # what a write cut by ENOSPC leaves
    assert s.append(doc(4), reported=2)
    assert read(d + "/spool") == doc(1) + doc(4)
    assert s.pending_drops() == 0
    assert s.batch() == doc(1) + doc(4)


def test_sent_lines_are_blanked_when_the_spool_cannot_be_copied():
    d = tmpdir()
    s = Spool(d + "/spool", 1 << 20)
    for i in range(3):
        s.append(doc(i))
    sent = s.batch()
    s.append(doc(3))
    os.mkdir(d + "/spool.tmp")  # the copy cannot be made, like on a full /tmp
    s.commit()
    assert read(d + "/spool") == b" " * (len(sent) - 1) + b"\n" + doc(3)
    assert s.batch() == doc(3)  # the server's lines do not go out again
    s.append(doc(4))
    os.rmdir(d + "/spool.tmp")
    s.commit()
    assert read(d + "/spool") == doc(4)
    assert sent == doc(0) + doc(1) + doc(2)


def test_blank_head_is_cleared_on_start_and_not_counted_as_dropped():
    d = tmpdir()
    write(d + "/spool", b" " * 9 + b"\n" + doc(1))
    s = Spool(d + "/spool", 1 << 20)
    assert read(d + "/spool") == doc(1) and s.size == len(doc(1))
    size = len(doc(0))
    s = Spool(d + "/other", 3 * size)
    s.append(doc(0))
    s.append(doc(1))
    s.batch()
    s.append(doc(2))
    os.mkdir(d + "/other.tmp")
    s.commit()  # two blanked lines' worth, then doc 2
    os.rmdir(d + "/other.tmp")
    s.append(doc(3))  # over the cap: the blank goes, no document is lost
    assert read(d + "/other") == doc(2) + doc(3)
    assert s.pending_drops() == 0


def test_repair_after_a_failed_write_keeps_what_an_upload_counts():
    d = tmpdir()
    s = Spool(d + "/spool", 1 << 20)
    s.append(doc(0))
    s.batch()
    s.append(doc(1))
    os.mkdir(d + "/spool.tmp")
    s.commit()  # doc 0 blanked in place
    os.rmdir(d + "/spool.tmp")
    assert s.batch() == doc(1)  # in flight: the blank line and doc 1
    os.rename(d + "/spool", d + "/saved")
    os.mkdir(d + "/spool")
    assert s.append(doc(2)) is False  # the write fails
    os.rmdir(d + "/spool")
    os.rename(d + "/saved", d + "/spool")
    write(d + "/spool", read(d + "/spool") + doc(3)[:7])  # and left a part line
    assert s.append(doc(4), reported=1)
    s.commit()
    assert read(d + "/spool") == doc(4)


def test_batch_says_when_it_was_cut_so_only_a_backlog_goes_out_at_once():
    # A document appended while a batch was on the wire went out in a second
    # POST of its own at every heartbeat (issue 13): only a batch cut at its
    # limit calls for the next one at once.
    d = tmpdir()
    sp = Spool(d + "/spool.jsonl", 1 << 20)
    for i in range(10):
        sp.append(b'{"n":%d}\n' % i)
    b = sp.batch(30)
    assert b and sp.more
    sp.commit()
    b = sp.batch()
    assert b and not sp.more
    sp.commit()


def test_sent_lines_that_cannot_be_removed_are_never_sent_again():
    # issue 24, item 4: on a read-only cache_dir neither the copy of the
    # rest nor blanking in place can be written, nor the file removed; the
    # failed remove was ignored and the server's lines went out again.
    d = tmpdir()
    s = Spool(d + "/spool", 1 << 20)
    for i in range(3):
        s.append(doc(i))
    s.batch()
    s.append(doc(3))
    os.mkdir(d + "/spool.tmp")  # no copy

    def read_only(nbytes):
        raise OSError(30, "read-only file system")

    s._blank_head = read_only   # no blanking
    s.commit()
    assert s.batch() == doc(3)  # not doc 0..2 again
    real = spool_mod.fs.remove
    spool_mod.fs.remove = lambda path: False
    try:
        s.commit()  # the whole file was sent and cannot go
        assert s.batch() == b""
        s.release()
        assert s.append(doc(4)) is True  # written again: the sent lines go now
    finally:
        spool_mod.fs.remove = real
    os.rmdir(d + "/spool.tmp")
    assert s.append(doc(5)) is True
    assert read(d + "/spool") == doc(4) + doc(5)
    assert s.batch() == doc(4) + doc(5)
    assert s.pending_drops() == 0
