import os


def detached(work):
    """Run `work` in a grandchild of a session of its own (double fork, setsid: it leaves the
    provider's process group and session); the caller goes on at once."""
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            try:
                work()
            finally:
                os._exit(0)
        os._exit(0)
