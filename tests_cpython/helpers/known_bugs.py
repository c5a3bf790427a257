"""Agent faults known on some runtimes only, for pytest.mark.xfail_on (see
conftest.py). Remove the mark when the fault is fixed."""

# Native MicroPython 1.23 (x86-64 and MIPS; not 1.28, not the PyPI 1.29): a
# SIGINT that lands while the agent is busy (right after an upload: the next
# collection, the spool) sometimes never stops it. The process waits for
# ever in pthread_mutex_lock inside micropython (gdb: futex_wait <-
# __lll_lock_wait <- pthread_mutex_lock <- micropython), i.e. the
# KeyboardInterrupt was raised while MicroPython held its own (GC) mutex,
# which rt.after_interrupt() does not release. About 1 stop in 30 when the
# SIGINT comes within 0.2 s of an upload; procd's stop (SIGTERM -> the
# launcher's SIGINT) then ends in the launcher's SIGKILL after 8 s, so the
# broker publishes the will instead of the agent's own online "0".
# Random, so the mark is not strict.
STOP_HANGS_ON_1_23 = ("native MicroPython 1.23: a SIGINT during a garbage collection leaves MicroPython's "
                      "mutex held and the clean stop hangs (agent bug, see helpers/known_bugs.py)")

# MicroPython 1.23 on 32-bit big-endian MIPS (qemu): the MQTT TLS connect
# sometimes never completes. The TCP connect succeeds, then nothing: no
# error, no CONNACK, and after the 10 s connect deadline the agent logs
# "connect timed out", closes, and the broker logs "unexpected eof while
# reading" for that connection (it never got the client's next handshake
# flight). Other tries connect in 0.4 s; about 1 try in 3 stalls. Not seen
# on x86-64 1.23/1.28 or the PyPI MicroPython. A guess to check first: the
# handshake waits for POLLIN on the socket while mbedtls already holds the
# broker's records it read ahead, which a slow CPU makes likely.
# Reproduce: tests_cpython/test_session_e2e.py -k "test_tls and mips".
TLS_CONNECT_STALLS_ON_MIPS = ("MicroPython 1.23 on MIPS: the MQTT TLS handshake sometimes stalls until the "
                              "connect deadline (agent bug, see helpers/known_bugs.py)")
