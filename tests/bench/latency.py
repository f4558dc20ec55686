#!/usr/bin/python3
"""Latency benchmark (issue #3): open-loop load at increasing rates. For each
rate, `journeyctl gen --rate R` sends events into a fresh 12-partition topic,
each stamped with its scheduled send time; journeyd consumes them; a poller
records, every 2 ms, the offsets committed in Redis. An event's latency is the
first time its offset is seen committed minus its scheduled time (the poll
interval bounds the error); the first second of each run is warm-up (the
consumer's first fetches), reported apart. Prints p50/p90/p99 per rate and whether the
generator kept up; appends the raw numbers to tests/bench/results.tsv.

With --stitch, journeyd runs with identity stitching across partitions
(`input.partitioner: consistent_random`, issue #7) and --gen-args adds to
the generator's arguments ("--anon-rate 0.2 --anon-key anon": a fifth of
the customers anonymous until identified mid-journey, their anonymous
events on other partitions): the sustained rate of a live stream, where
the partitions' clocks run together, beside the backlog drain that
throughput.py --stitch measures.

Usage: tests/bench/latency.py [--rates 50000,100000,150000] [--seconds 8]
       [--stitch] [--gen-args ARGS]
Needs the local services (deploy/local/up.sh) and a build in build/.
"""
import argparse
import bisect
import datetime
import os
import re
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "e2e"))
import jdtest  # noqa: E402
from throughput import machine  # noqa: E402
from confluent_kafka import Consumer  # noqa: E402

PARTITIONS = 12
WARMUP_MS = 1000
TS = re.compile(rb'"timestamp":(\d+)')


class Poller(threading.Thread):
    """Records (time, committed offset) per partition whenever it changes."""

    def __init__(self, prefix, topic):
        super().__init__(daemon=True)
        self.keys = ["%s:{%s:%d}:o" % (prefix, topic, p) for p in range(PARTITIONS)]
        self.hist = {p: ([], []) for p in range(PARTITIONS)}  # times, offsets
        self.stop = False

    def run(self):
        r = jdtest.redis_client()
        last = [None] * PARTITIONS
        while not self.stop:
            vals = r.mget(self.keys)
            now = time.time() * 1000.0
            for p, v in enumerate(vals):
                if v is not None and v != last[p]:
                    last[p] = v
                    self.hist[p][0].append(now)
                    self.hist[p][1].append(int(v))
            time.sleep(0.002)

    def committed_at(self, p, offset):
        times, offs = self.hist[p]
        i = bisect.bisect_right(offs, offset)  # first stored offset > offset
        return times[i] if i < len(times) else None


def read_back(topic, total):
    c = Consumer({"bootstrap.servers": jdtest.BROKERS, "group.id": jdtest.unique("lat"),
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    out, idle = [], 0
    while len(out) < total and idle < 20:
        msgs = c.consume(10000, 0.5)
        idle = idle + 1 if not msgs else 0
        for m in msgs:
            if m.error():
                continue
            t = TS.search(m.value())
            if t:
                out.append((m.partition(), m.offset(), int(t.group(1))))
    c.close()
    return out


def pct(xs, q):
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def open_loop(cfg, prefix, topic, rate, seconds, gen_args=()):
    """journeyd on cfg, a Poller of its commits, then rate events/s for
    seconds, each stamped with its scheduled send time, until every one is
    committed: (daemon, poller, events, whether the generator kept up)."""
    d = jdtest.Daemon(cfg)
    deadline = time.time() + 30
    while d.logtext().count("partition assigned") < PARTITIONS and time.time() < deadline:
        time.sleep(0.05)
    poller = Poller(prefix, topic)
    poller.start()
    events = int(rate * seconds)
    g = subprocess.run([jdtest.JOURNEYCTL, "gen", "--seed", "3", "--customers", str(max(events // 10, 1)),
                        "--events", str(events), "--rate", str(rate), "--epoch-ms", "--heartbeats", "0",
                        "--topic", topic, "--brokers", jdtest.BROKERS] + list(gen_args), capture_output=True, text=True)
    if g.returncode not in (0, 3):
        raise RuntimeError(g.stderr)
    jdtest.wait_committed(prefix, topic, PARTITIONS, timeout=300, proc=d.proc)
    return d, poller, events, g.returncode == 0


def run_rate(rate, seconds, stitch=False, gen_args=()):
    topic, dlq = jdtest.unique("lat"), jdtest.unique("lat-dlq")
    prefix = jdtest.unique("lat")
    jdtest.create_topic(topic, PARTITIONS)
    jdtest.create_topic(dlq, 1)
    cfg = jdtest.write_config(topic, dlq, prefix, jdtest.unique("lat-g"),
                              input_extra="  partitioner: consistent_random\n" if stitch else "")
    d, poller, events, kept_up = open_loop(cfg, prefix, topic, rate, seconds, gen_args)
    time.sleep(0.05)
    poller.stop = True
    poller.join()
    d.stop()
    msgs = read_back(topic, events)
    # the first second is warm-up (the consumer's first fetches of fresh
    # partitions): measured apart, not in the percentiles
    t0 = min(ts for _, _, ts in msgs)
    lat = sorted(poller.committed_at(p, o) - ts for p, o, ts in msgs if ts >= t0 + WARMUP_MS)
    warm = sorted(poller.committed_at(p, o) - ts for p, o, ts in msgs if ts < t0 + WARMUP_MS)
    jdtest.drop_prefix(prefix)
    jdtest.delete_topics(topic, dlq, *([jdtest.INTERNAL_TOPICS[prefix]] if prefix in jdtest.INTERNAL_TOPICS else []))
    return {"rate": rate, "events": len(msgs), "kept_up": kept_up,
            "p50": pct(lat, 0.50), "p90": pct(lat, 0.90), "p99": pct(lat, 0.99), "max": lat[-1],
            "warmup_p99": pct(warm, 0.99)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rates", default="50000,100000,150000")
    ap.add_argument("--seconds", type=float, default=8)
    ap.add_argument("--stitch", action="store_true", help="identity stitching across partitions on")
    ap.add_argument("--gen-args", default="", help="more arguments for journeyctl gen")
    a = ap.parse_args()
    kind = "latency-stitch" if a.stitch else "latency"
    commit = subprocess.run(["git", "-C", HERE, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    date = datetime.datetime.utcnow().strftime("%Y-%m-%dT%H:%M:%SZ")
    rows = []
    for rate in [int(x) for x in a.rates.split(",")]:
        m = run_rate(rate, a.seconds, a.stitch, a.gen_args.split())
        rows.append(m)
        with open(os.path.join(HERE, "results.tsv"), "a") as f:
            f.write("\t".join(str(x) for x in [date, commit, machine(), kind, "json", m["events"],
                                                rate, int(m["kept_up"]), "%.1f" % m["p50"],
                                                "%.1f" % m["p90"], "%.1f" % m["p99"], "%.1f" % m["max"],
                                                "%.1f" % m["warmup_p99"]]) + "\n")
        print("rate %7d/s: %8d events, generator %s, latency ms p50 %.1f p90 %.1f p99 %.1f max %.1f "
              "(first second: p99 %.1f)" % (
                  rate, m["events"], "kept up" if m["kept_up"] else "FELL BEHIND (run invalid)",
                  m["p50"], m["p90"], m["p99"], m["max"], m["warmup_p99"]), flush=True)
    print("\nmachine: %s; commit %s; %s; %.0f s per rate; poll interval 2 ms%s" % (
        machine(), commit, date, a.seconds, "; stitching, gen " + a.gen_args if a.stitch else ""))
    print("%9s %9s %8s %9s %9s %9s" % ("rate/s", "events", "kept up", "p50 ms", "p90 ms", "p99 ms"))
    for m in rows:
        print("%9d %9d %8s %9.1f %9.1f %9.1f" % (m["rate"], m["events"], "yes" if m["kept_up"] else "NO",
                                                m["p50"], m["p90"], m["p99"]))


if __name__ == "__main__":
    main()
