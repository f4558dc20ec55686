#!/usr/bin/python3
"""Metric freshness benchmark (issue #6): how long after an event happens
is it in a snapshot published on the metric topic? Open-loop load (each event
stamped with its scheduled send time, `journeyctl gen --rate R --epoch-ms`)
into a fresh 12-partition topic; journeyd publishes to a fresh metric topic
every output.publish_interval (default 1 s). A poller records when each
partition's offsets are committed in Redis (every 2 ms, as latency.py does);
a consumer records every metric message as it arrives, with its
computed_at (when its snapshot's read began: it holds every commit made
before). An event's freshness is the arrival of the first metric message
computed after the event was committed, minus the event's time. The first
second is warm-up, reported apart. Prints p50/p90/p99 per rate; appends the
raw numbers to tests/bench/results.tsv.

Usage: tests/bench/freshness.py [--rates 75000] [--seconds 8] [--interval 1s]
Needs the local services (deploy/local/up.sh) and a build in build/.
"""
import argparse
import bisect
import datetime
import json
import os
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "e2e"))
import jdtest  # noqa: E402
from latency import WARMUP_MS, PARTITIONS, open_loop, pct, read_back  # noqa: E402
from throughput import machine  # noqa: E402
from confluent_kafka import Consumer  # noqa: E402


def iso_ms(s):
    d = datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc)
    return d.timestamp() * 1000.0


class MetricReader(threading.Thread):
    """(computed_at ms, arrival ms) of every metric message, as they arrive."""

    def __init__(self, topic):
        super().__init__(daemon=True)
        self.c = Consumer({"bootstrap.servers": jdtest.BROKERS, "group.id": jdtest.unique("fresh"),
                           "auto.offset.reset": "earliest", "enable.auto.commit": False})
        self.c.subscribe([topic])
        self.seen = []
        self.stop = False

    def run(self):
        while not self.stop:
            for m in self.c.consume(1000, 0.05):
                if m.error() or m.value() is None:
                    continue
                now = time.time() * 1000.0
                self.seen.append((iso_ms(json.loads(m.value())["computed_at"]), now))
        self.c.close()

    def first_after(self):
        """computed_at -> the earliest arrival of a message computed at or after it."""
        seen = sorted(self.seen)
        comp = [c for c, _ in seen]
        best, arr = float("inf"), [0.0] * len(seen)
        for i in range(len(seen) - 1, -1, -1):
            best = min(best, seen[i][1])
            arr[i] = best
        return lambda t: arr[bisect.bisect_left(comp, t)] if bisect.bisect_left(comp, t) < len(comp) else None


def run_rate(rate, seconds, interval):
    topic, dlq, mtopic = jdtest.unique("fresh"), jdtest.unique("fresh-dlq"), jdtest.unique("fresh-m")
    prefix = jdtest.unique("fresh")
    jdtest.create_topic(topic, PARTITIONS)
    jdtest.create_topic(dlq, 1)
    jdtest.create_topic(mtopic, 3, {"cleanup.policy": "compact"})
    cfg = jdtest.write_config(topic, dlq, prefix, jdtest.unique("fresh-g"),
                              "output:\n  metrics_topic: %s\n  publish_interval: %s\n" % (mtopic, interval))
    reader = MetricReader(mtopic)
    reader.start()
    d, poller, events, kept_up = open_loop(cfg, prefix, topic, rate, seconds)
    time.sleep(3 * float(interval.rstrip("ms")) / (1000 if interval.endswith("ms") else 1) + 1)
    poller.stop = reader.stop = True
    poller.join()
    reader.join()
    d.stop()
    msgs = read_back(topic, events)
    first = reader.first_after()
    t0 = min(ts for _, _, ts in msgs)
    fresh, warm, missing = [], [], 0
    for p, o, ts in msgs:
        c = poller.committed_at(p, o)
        a = first(c) if c is not None else None
        if a is None:
            missing += 1
            continue
        (fresh if ts >= t0 + WARMUP_MS else warm).append(a - ts)
    fresh.sort()
    warm.sort()
    jdtest.drop_prefix(prefix)
    jdtest.delete_topics(topic, dlq, mtopic)
    return {"rate": rate, "events": len(msgs), "kept_up": kept_up, "missing": missing,
            "p50": pct(fresh, 0.50), "p90": pct(fresh, 0.90), "p99": pct(fresh, 0.99), "max": fresh[-1],
            "warmup_p99": pct(warm, 0.99) if warm else float("nan"), "messages": len(reader.seen)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rates", default="75000")
    ap.add_argument("--seconds", type=float, default=8)
    ap.add_argument("--interval", default="1s")
    a = ap.parse_args()
    commit = subprocess.run(["git", "-C", HERE, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    date = datetime.datetime.utcnow().strftime("%Y-%m-%dT%H:%M:%SZ")
    for rate in [int(x) for x in a.rates.split(",")]:
        m = run_rate(rate, a.seconds, a.interval)
        with open(os.path.join(HERE, "results.tsv"), "a") as f:
            f.write("\t".join(str(x) for x in [date, commit, machine(), "freshness", a.interval, m["events"],
                                                rate, int(m["kept_up"]), "%.1f" % m["p50"], "%.1f" % m["p90"],
                                                "%.1f" % m["p99"], "%.1f" % m["max"], "%.1f" % m["warmup_p99"]])
                    + "\n")
        print("rate %7d/s: %8d events (%d without a later snapshot), generator %s, %d metric messages; "
              "freshness ms p50 %.1f p90 %.1f p99 %.1f max %.1f (first second: p99 %.1f)" % (
                  rate, m["events"], m["missing"], "kept up" if m["kept_up"] else "fell behind", m["messages"],
                  m["p50"], m["p90"], m["p99"], m["max"], m["warmup_p99"]))
    print("machine: %s; commit %s; %s" % (machine(), commit, date))


if __name__ == "__main__":
    main()
