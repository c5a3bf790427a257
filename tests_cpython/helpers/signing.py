"""The operator's side of PROTOCOL 9: tools/sign_job.py, loaded as a module
(it is the same code an operator runs), and what the tests build with it."""
import importlib.util
import os
import secrets

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOL = os.path.join(ROOT, "tools", "sign_job.py")

_spec = importlib.util.spec_from_file_location("sign_job", TOOL)
sign_job = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sign_job)

# Not ASCII on purpose: the key is used as its UTF-8 bytes on both sides.
JOB_KEY = "fl\u00ebet-\u043a\u043b\u044e\u0447-\u2713-" + secrets.token_hex(8)


def signed(job_id, msg, kind="cmd", timestamp=None, key=JOB_KEY):
    """A signed job dict (sign_job.signed_job)."""
    return sign_job.signed_job(key, job_id, msg, kind, timestamp)
