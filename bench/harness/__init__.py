"""The benchmark harness behind bench/run.py: standard library only, so any Python 3.11 runs it."""

# Servers under test listen here, and nowhere else is loaded.
HOST = "127.0.0.1"

# The data sets, each on its own database and server: one user's 1000 tasks; the same with
# taskd's list page cache off, so that every list is a miss (taskd and the floor: the reference
# has no cache, and its list from one-user is the comparison); and many users under a Zipf spread.
ONE_USER = "one-user"
LIST_MISS = "list-miss"
MANY_USERS = "many-users"
SETS = (ONE_USER, LIST_MISS, MANY_USERS)


class BenchError(Exception):
    """The benchmark could not run; the message says what to fix."""
