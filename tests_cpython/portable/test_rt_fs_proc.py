from portable.support import read, tmpdir, write
from socketman import fs, proc, rt


def test_ms_is_monotonic():
    a = rt.ms()
    rt.sleep_ms(20)
    b = rt.ms()
    assert b - a >= 15


def test_read_file_safe():
    d = tmpdir()
    write(d + "/f", b"abcdef")
    assert fs.read_file(d + "/f") == b"abcdef"
    assert fs.read_file(d + "/f", 3) == b"abc"
    assert fs.read_file(d + "/missing") is None
    assert fs.read_file(d) is None  # a directory


def test_makedirs_and_remove():
    d = tmpdir()
    fs.makedirs(d + "/a/b/c")
    fs.makedirs(d + "/a/b/c")
    assert fs.stat(d + "/a/b/c")[2]
    write(d + "/a/x", "1")
    assert fs.remove(d + "/a/x")
    assert not fs.remove(d + "/a/x")


def test_write_atomic():
    d = tmpdir()
    fs.write_atomic(d + "/f", b"one")
    fs.write_atomic(d + "/f", b"two")
    assert read(d + "/f") == b"two"
    assert fs.listdir(d) == ["f"]


def test_system_exit_status():
    assert proc.system("true") == 0
    assert proc.system("exit 3") == 3


def test_shell_quote():
    d = tmpdir()
    s = "it's a \"test\" $HOME `x`"
    proc.system("printf %%s %s > %s/q" % (proc.shell_quote(s), d))
    assert read(d + "/q").decode() == s


def _wait_for(path, ms):
    end = rt.ms() + ms
    while rt.ms() < end:
        if fs.stat(path):
            return True
        rt.sleep_ms(10)
    return False


def test_spawn_output_status_and_pid():
    d = tmpdir()
    write(d + "/job.sh", "echo out; echo err >&2; exit 7\n")
    proc.spawn(d + "/job.sh", d, "t1" + d[-8:])
    end = rt.ms() + 5000
    while proc.exit_status(d) is None and rt.ms() < end:
        rt.sleep_ms(5)
    assert proc.exit_status(d) == 7
    assert read(d + "/out") == b"out\nerr\n"
    assert read(d + "/pid").strip().isdigit()


def test_spawn_does_not_wait():
    d = tmpdir()
    write(d + "/job.sh", "sleep 2\n")
    t0 = rt.ms()
    proc.spawn(d + "/job.sh", d, "t2" + d[-8:])
    assert rt.ms() - t0 < 1000
    assert proc.exit_status(d) is None
    proc.kill_tree("t2" + d[-8:])


def test_kill_tree_kills_children_and_orphans():
    d = tmpdir()
    tag = "t3" + d[-8:]
    # a child that outlives its parent shell, re-parented to init
    write(d + "/job.sh", "(sleep 30; echo late > %s/late) &\nsleep 30\n" % d)
    proc.spawn(d + "/job.sh", d, tag)
    assert _wait_for(d + "/pid", 5000)
    end = rt.ms() + 5000
    while len(proc.tagged_pids(tag)) < 3 and rt.ms() < end:
        rt.sleep_ms(20)
    assert len(proc.tagged_pids(tag)) >= 3
    assert proc.kill_tree(tag) >= 3
    end = rt.ms() + 5000
    while proc.tagged_pids(tag) and rt.ms() < end:
        rt.sleep_ms(20)
    assert proc.tagged_pids(tag) == []


def test_a_batch_never_reads_an_earlier_runs_status_or_outputs_whatever_the_listing_says():
    # qemu-user lists nothing on ext4 for a 32-bit program: the stats of a
    # MIPS agent were read from the last run's exit status while the new
    # commands were still writing (issue 15, item 7).
    d = tmpdir()
    b = proc.Batch(d + "/b", "t4" + d[-8:], 10000)
    write(d + "/b/rc", "0\n")        # an earlier run's status
    write(d + "/b/o", "old answer\n")  # and its output
    real = fs.listdir
    fs.listdir = lambda path: []
    try:
        b.start(["sleep 0.3", "[ -s o ] || echo new > o"])
        assert b.poll() is None  # the earlier "0" is not this run's status
    finally:
        fs.listdir = real
    end = rt.ms() + 5000
    done = None
    while done is None and rt.ms() < end:
        rt.sleep_ms(20)
        done = b.poll()
    assert done is True
    assert b.read("o") == b"new\n"


def test_kill_tree_kills_the_group_of_a_child_that_cleared_its_environment():
    # issue 24, item 2: `env -i` drops the tag the /proc sweep finds a
    # job's processes by; the job's process group still holds the child.
    d = tmpdir()
    tag = "t5" + d[-8:]
    write(d + "/job.sh", "env -i /bin/sh -c 'sleep 1; echo late > %s/late' &\nsleep 30\n" % d)
    proc.spawn(d + "/job.sh", d, tag)
    assert _wait_for(d + "/pid", 5000)
    rt.sleep_ms(200)
    assert proc.kill_tree(tag) >= 2
    rt.sleep_ms(1500)
    assert fs.stat(d + "/late") is None


def test_a_command_that_kills_its_own_shell_has_ended_without_an_exit_status():
    # issue 24, item 3: no rc will ever come; ended() says so at once.
    if proc.detach_mode() == proc.SHARED:
        return  # its `kill -9 0` would reach this test's own process group
    d = tmpdir()
    tag = "t6" + d[-8:]
    write(d + "/job.sh", "while [ ! -e %s/gate ]; do sleep 0.05; done; kill -9 0\n" % d)
    proc.spawn(d + "/job.sh", d, tag)
    try:
        assert _wait_for(d + "/pid", 5000)
        assert not proc.ended(d, tag)
        write(d + "/gate", "")
        end = rt.ms() + 5000
        while not proc.ended(d, tag) and rt.ms() < end:
            rt.sleep_ms(20)
        assert proc.ended(d, tag) and proc.exit_status(d) is None
        assert proc.lost(d) == "its shell ended without writing it"
    finally:
        proc.kill_tree(tag)  # nothing left waiting for the gate when a check failed
