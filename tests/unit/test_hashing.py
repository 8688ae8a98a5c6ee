

def test_ls_dates_do_not_count():
    """`ls -la` in a rerun a minute (or a day) later lists the same state."""
    from agentrm.hashing import normalise_observation_text as norm

    before = "drwxr-xr-x 2 agent agent 4096 Dec  4 03:40 .\n-rw-r--r-- 1 agent agent 12 Jan  2  2020 old"
    after = "drwxr-xr-x 2 agent agent 4096 Dec  5 11:02 .\n-rw-r--r-- 1 agent agent 12 Jan  2  2020 old"
    assert norm(before) == norm(after)
    assert norm(before) != norm(after.replace("4096", "4097"))  # a size still counts
    assert norm("Decimal 12:30 and March 4") == "Decimal 12:30 and March 4"
    iso = "-rw-r--r-- 1 agent agent 12 2026-12-04 03:59 seed.txt"  # ls --time-style=long-iso
    assert norm(iso) == norm(iso.replace("2026-12-04 03:59", "2026-12-05 11:02"))
