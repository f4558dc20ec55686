#!/usr/bin/python3
"""Footprint benchmark (issue #3): journeyd's peak RSS and Redis bytes per
journey for 10,000, 100,000 and 1,000,000 customers (about ten events each),
MessagePack, 12 partitions, drained as in throughput.py. Appends the raw
numbers to tests/bench/results.tsv.

With --open, every customer arrives within 10 minutes of event time, the
stream stops after about 3 events per customer and the generator sends no
heartbeats, so (nearly) every journey is still open at the end, each with its
timer: the table then also gives the timers'
Redis bytes (MEMORY USAGE of the per-partition sorted sets).

With --baseline REV, journeyd built from git revision REV drains the same
topic too, for its peak RSS beside this commit's.

Usage: tests/bench/footprint.py [--customers 10000,100000,1000000] [--open] [--baseline REV]
"""
import argparse
import datetime
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "e2e"))
import jdtest  # noqa: E402
from throughput import PARTITIONS, build_baseline, machine, run_journeyd  # noqa: E402


def timers(r, prefix):
    """Open timers and their Redis memory, before run_journeyd cleans up."""
    n = size = 0
    for k in r.scan_iter("%s:{*}:t" % prefix, count=10000):
        n += r.zcard(k)
        size += r.memory_usage(k, samples=0) or 0
    return {"timers": n, "timer_bytes": size}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--customers", default="10000,100000,1000000")
    ap.add_argument("--open", action="store_true", help="no heartbeats: every journey stays open")
    ap.add_argument("--baseline", help="git revision to compare peak RSS with")
    a = ap.parse_args()
    base_bin = build_baseline(a.baseline) if a.baseline else None
    commit = subprocess.run(["git", "-C", HERE, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    date = datetime.datetime.utcnow().strftime("%Y-%m-%dT%H:%M:%SZ")
    rows = []
    for n in [int(x) for x in a.customers.split(",")]:
        topic, dlq = jdtest.unique("fp"), jdtest.unique("fp-dlq")
        jdtest.create_topic(topic, PARTITIONS)
        jdtest.create_topic(dlq, 1)
        subprocess.run([jdtest.JOURNEYCTL, "gen", "--seed", "11", "--customers", str(n),
                        "--encoding", "msgpack", "--topic", topic, "--brokers", jdtest.BROKERS,
                        "--heartbeats", "0" if a.open else "1"] +
                       # open: every customer arrives within 10 minutes and the stream
                       # stops after 3 events each, inside the first phase's timeout
                       (["--period", "10m", "--events", str(3 * n)] if a.open else []),
                       check=True, capture_output=True)
        total = sum(jdtest.high_watermarks(topic, PARTITIONS).values())
        m = run_journeyd(topic, dlq, total, inspect=timers)
        if base_bin:
            bm = run_journeyd(topic, dlq, total, base_bin)
            print("%8d customers: baseline %s peak RSS %.1f MiB, %.0f events/s" % (
                n, a.baseline, bm["rss_kb"] / 1024, bm["eps_owned"]), flush=True)
            with open(os.path.join(HERE, "results.tsv"), "a") as f:
                f.write("\t".join(str(x) for x in [date, a.baseline, machine(), "footprint-baseline", "msgpack",
                                                    total, n, bm["journeys"], bm["rss_kb"],
                                                    "%.0f" % bm["redis_bytes_per_journey"],
                                                    "%.0f" % bm["eps_owned"]]) + "\n")
        jdtest.delete_topics(topic, dlq)
        rows.append((n, total, m))
        if a.open:
            print("%8d customers: %d open timers, %.1f MiB of sorted sets in Redis, %.0f bytes/timer; "
                  "journeyd holds %d close records, %.1f MiB (%.0f bytes each, allocator overhead not counted)" % (
                      n, m["timers"], m["timer_bytes"] / 1048576, m["timer_bytes"] / max(m["timers"], 1),
                      m["close_records"], m["close_record_bytes"] / 1048576,
                      m["close_record_bytes"] / max(m["close_records"], 1)), flush=True)
        with open(os.path.join(HERE, "results.tsv"), "a") as f:
            f.write("\t".join(str(x) for x in [date, commit, machine(), "footprint", "msgpack", total, n,
                                                m["journeys"], m["rss_kb"], "%.0f" % m["redis_bytes_per_journey"],
                                                "%.0f" % m["eps_owned"], "open" if a.open else "closed",
                                                m["timers"], m["timer_bytes"], m["close_records"],
                                                m["close_record_bytes"]]) + "\n")
        print("%8d customers: %9d events, %8d journeys, journeyd peak RSS %6.1f MiB, "
              "Redis %4.0f bytes/journey, %.0f events/s" % (n, total, m["journeys"], m["rss_kb"] / 1024,
                                                            m["redis_bytes_per_journey"], m["eps_owned"]),
              flush=True)
    print("\nmachine: %s; commit %s; %s" % (machine(), commit, date))


if __name__ == "__main__":
    main()
