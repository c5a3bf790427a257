# The job flow (PROTOCOL 4.1): queue.py checks and queues, dispatch.py runs
# one job at a time through runner.py (or netjob.py), reporter.py answers.
