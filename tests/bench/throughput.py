#!/usr/bin/python3
"""Throughput benchmark (issue #2): a 12-partition topic pre-filled with
1,000,000 realistic events from 100,000 customers, drained by journeyd until
every offset is committed in Redis. Per encoding (MessagePack, JSON) and run:

  - journeyd events/s (from the moment it owns its partitions to the last
    offset committed in Redis, and from process start),
  - the ceilings: `kcat -C -e` draining the same topic, and `redis-benchmark
    -P 64` (pipelined SETs of 700-byte values), in the same run,
  - Redis commands and round trips per event (Redis INFO commandstats and
    journeyd's own counters),
  - journeyd peak RSS (VmHWM) and Redis bytes per journey.

Prints a table of medians and appends every raw run to
tests/bench/results.tsv with the machine, date and commit.

With --baseline REV, every run also drains the topic with journeyd built
from git revision REV (in /var/tmp/journeyd-baseline-REV), the two in
alternating order, and the table gives the ratio of their medians and the
median of the per-pair ratios: what a feature costs, measured in the same
runs. With --baseline-extra TEXT instead, the baseline is this same build
with TEXT added to its config: --baseline-extra "output:\n  publish_interval: 1h\n"
gives the cost of publishing the metrics and evaluating the alert rules
(issue #6), with no other difference between the two. With --stitch, this
build runs with `input.partitioner: consistent_random` (identity stitching
across partitions, issue #7) and the baseline is the same build without it
(the core pipeline), on the same stream: --gen-args "--anon-rate 0.2
--anon-key anon" makes a fifth of the customers anonymous until they are
identified mid-journey, their anonymous events on other partitions. Before
every run Redis is let settle (background frees of the last run's keys, an
AOF rewrite), so neither binary pays for the other.

Usage: tests/bench/throughput.py [--events N] [--customers N] [--runs N]
       [--encodings msgpack,json] [--gen-args ARGS]
       [--baseline REV | --baseline-extra TEXT | --stitch] [--foreign-keys]
Needs the local services (deploy/local/up.sh), an empty Redis (it refuses
to run beside keys of something else, unless --foreign-keys) and a build
in build/.
"""
import argparse
import datetime
import os
import platform
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "e2e"))
import jdtest  # noqa: E402

PARTITIONS = 12


def redis_cmdstats(r):
    calls = 0
    for k, v in r.info("commandstats").items():
        calls += v["calls"]
    return calls


def kcat_ceiling(topic, total):
    t0 = time.monotonic()
    r = subprocess.run(["kcat", "-C", "-e", "-q", "-b", jdtest.BROKERS, "-t", topic, "-o",
                        "beginning", "-f", "%o\n"], stdout=subprocess.PIPE)
    dt = time.monotonic() - t0
    n = r.stdout.count(b"\n")
    if n != total:
        raise RuntimeError("kcat read %d of %d" % (n, total))
    return total / dt


def redis_ceiling():
    """redis-benchmark -P 64: pipelined SETs of a journey-sized value."""
    db = "15"  # its own database, emptied afterwards
    r = subprocess.run(["redis-benchmark", "-p", str(jdtest.REDIS_PORT), "--dbnum", db, "-P", "64",
                        "-n", "1000000", "-t", "set", "-d", "700", "-r", "100000", "-q"],
                       capture_output=True, text=True)
    subprocess.run(["redis-cli", "-p", str(jdtest.REDIS_PORT), "-n", db, "flushdb"], capture_output=True)
    for line in r.stdout.replace("\r", "\n").splitlines():
        if line.startswith("SET:") and "requests per second" in line:
            return float(line.split()[1])
    raise RuntimeError("redis-benchmark: " + r.stdout[-200:] + r.stderr[-200:])


def settle(r):
    """Let Redis finish what the previous run left behind before the next one
    starts: freeing its deleted keys in the background, and an AOF rewrite
    (started here, so it does not start in the middle of a run). Without
    this, whichever binary runs second in a pair pays for the first."""
    while r.info("memory").get("lazyfree_pending_objects", 0):
        time.sleep(0.05)
    if r.config_get("appendonly").get("appendonly") == "yes":
        if not r.info("persistence")["aof_rewrite_in_progress"]:
            try:
                r.bgrewriteaof()
            except Exception:  # one is already scheduled
                pass
        while True:
            p = r.info("persistence")
            if not p["aof_rewrite_in_progress"] and not p["aof_rewrite_scheduled"]:
                break
            time.sleep(0.05)


def redis_main_cpu(r):
    c = r.info("cpu")
    return c["used_cpu_user_main_thread"] + c["used_cpu_sys_main_thread"]


def proc_cpu(pid):
    with open("/proc/%d/stat" % pid) as f:
        st = f.read().rsplit(")", 1)[1].split()
    return (int(st[11]) + int(st[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def thread_cpu(pid, name):
    """CPU seconds of pid's threads called name (the publisher is jd-publish)."""
    total = 0.0
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/comm" % (pid, tid)) as f:
                if f.read().strip() != name:
                    continue
            with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                st = f.read().rsplit(")", 1)[1].split()
            total += (int(st[11]) + int(st[12])) / os.sysconf("SC_CLK_TCK")
        except FileNotFoundError:
            pass
    return total


def rss_peak_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def build_baseline(rev):
    """journeyd of git revision rev, built once outside the tree with the
    build type tests/run.sh gives build/ (RelWithDebInfo: -O2 -g), so the
    two binaries differ by their code only (until 2026-12-04 the baseline
    was built Release, -O3, against an -O2 build/: see the README)."""
    src = "/var/tmp/journeyd-baseline-%s-relwithdebinfo" % rev
    binary = os.path.join(src, "build", "journeyd")
    if not os.path.exists(binary):
        subprocess.run("rm -rf %s && mkdir -p %s && git -C %s archive %s | tar -x -C %s" %
                       (src, src, os.path.dirname(os.path.dirname(HERE)), rev, src), shell=True, check=True)
        subprocess.run(["cmake", "-S", src, "-B", os.path.join(src, "build"), "-G", "Ninja",
                        "-DCMAKE_BUILD_TYPE=RelWithDebInfo"], check=True, capture_output=True)
        subprocess.run(["cmake", "--build", os.path.join(src, "build"), "--target", "journeyd"],
                       check=True, capture_output=True)
    return binary


def knows_http(binary):
    """Whether binary takes the http section (older revisions refuse it)."""
    cfg = jdtest.write_config("t", "d", "p", "g")
    return subprocess.run([binary or jdtest.JOURNEYD, "--check-config", cfg], capture_output=True).returncode == 0


def run_journeyd(topic, dlq, total, binary=None, inspect=None, extra="", input_extra=""):
    r = jdtest.redis_client()
    prefix, group = jdtest.unique("bench"), jdtest.unique("bench-g")
    cfg = jdtest.write_config(topic, dlq, prefix, group, extra, http=knows_http(binary), input_extra=input_extra)
    settle(r)
    mem0 = r.info("memory")["used_memory"]
    cmds0 = redis_cmdstats(r)
    net0 = r.info("stats")
    rcpu0 = redis_main_cpu(r)
    t0 = time.monotonic()
    d = jdtest.Daemon(cfg, binary=binary)
    t_owned = None
    hw = jdtest.high_watermarks(topic, PARTITIONS)
    while True:
        offs = jdtest.redis_offsets(prefix, topic, PARTITIONS)
        if t_owned is None and any(v >= 0 for v in offs.values()):
            t_owned = time.monotonic()
        # done: every offset committed and every timer the watermark has
        # passed worked off (the heartbeats at the end make them all due)
        if all(offs[p] == hw[p] for p in hw) and jdtest.due_timers(prefix, topic, PARTITIONS) == 0 and \
                jdtest.internal_caught_up(prefix, PARTITIONS):
            break
        if d.proc.poll() is not None:
            raise RuntimeError("journeyd exited: " + d.logtext()[-2000:])
        time.sleep(0.01)
    t1 = time.monotonic()
    rss = rss_peak_kb(d.proc.pid)
    pub_cpu = thread_cpu(d.proc.pid, "jd-publish")
    cpu = proc_cpu(d.proc.pid) + redis_main_cpu(r) - rcpu0
    net1 = r.info("stats")  # bytes Redis received and sent (this script's polling included)
    net_in = net1["total_net_input_bytes"] - net0["total_net_input_bytes"]
    net_out = net1["total_net_output_bytes"] - net0["total_net_output_bytes"]
    if d.stop() != 0:
        raise RuntimeError("journeyd did not stop cleanly")
    cmds = redis_cmdstats(r) - cmds0 - 2 * (len(hw))  # minus this script's polling, roughly
    journeys = sum(1 for _ in r.scan_iter("%s:{*}:j:*" % prefix, count=10000))
    mem = r.info("memory")["used_memory"] - mem0
    extra = inspect(r, prefix) if inspect else {}
    rt = recs = rec_bytes = 0
    for line in d.logtext().splitlines():
        if "msg=\"shutting down\"" in line or "redis_round_trips=" in line:
            for kv in line.split():
                if kv.startswith("redis_round_trips="):
                    rt = int(kv.split("=")[1])
                elif kv.startswith("close_records="):  # held at shutdown (closes.h)
                    recs = int(kv.split("=")[1])
                elif kv.startswith("close_records_bytes="):
                    rec_bytes = int(kv.split("=")[1])
    if prefix in jdtest.INTERNAL_TOPICS:
        extra["forwarded"] = sum(int(r.hget("%s:{%s:%d}:s" % (prefix, topic, p), "forwarded") or 0)
                                 for p in range(PARTITIONS))
        jdtest.delete_topics(jdtest.INTERNAL_TOPICS[prefix])
    # clean up so Redis memory stays comparable between runs
    for k in r.scan_iter("%s:*" % prefix, count=10000):
        r.unlink(k)
    settle(r)
    return {
        "eps_owned": total / (t1 - (t_owned or t0)), "eps_start": total / (t1 - t0),
        "cpu_s": cpu, "publisher_cpu_s": pub_cpu, "redis_in_mb": net_in / 1e6, "redis_out_mb": net_out / 1e6,
        "rss_kb": rss, "redis_cmds_per_event": cmds / total,
        "round_trips_per_event": rt / total if rt else float("nan"),
        "redis_bytes_per_journey": mem / max(journeys, 1), "journeys": journeys,
        "close_records": recs, "close_record_bytes": rec_bytes, **extra,
    }


def machine():
    cpu = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return "%s, %d cores, %s" % (cpu, os.cpu_count(), platform.release())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1000000)
    ap.add_argument("--customers", type=int, default=100000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--encodings", default="msgpack,json")
    ap.add_argument("--baseline", help="git revision to compare with, in the same runs")
    ap.add_argument("--baseline-extra", help="compare with this build run with TEXT added to its config")
    ap.add_argument("--stitch", action="store_true",
                    help="run with identity stitching across partitions, against the same build without")
    ap.add_argument("--gen-args", default="", help="more arguments for journeyctl gen")
    ap.add_argument("--foreign-keys", action="store_true",
                    help="run even if Redis holds keys of something else")
    a = ap.parse_args()
    if sum(map(bool, (a.baseline, a.baseline_extra, a.stitch))) > 1:
        ap.error("--baseline, --baseline-extra and --stitch exclude each other")
    foreign = jdtest.redis_client().dbsize()
    if foreign and not a.foreign_keys:
        # keys left by other runs slow Redis, and not evenly for the two
        # sides of a comparison (2026-12-04: 478,000 of them made the
        # stitching ratio 0.747, an empty Redis 0.668)
        ap.error("Redis holds %d keys of something else (flush them, or --foreign-keys)" % foreign)
    stitch = "  partitioner: consistent_random\n" if a.stitch else ""
    if a.stitch:
        a.baseline_extra = "\n"  # the same build, as it is
    base_extra = a.baseline_extra.replace("\\n", "\n") if a.baseline_extra else ""
    base_bin = build_baseline(a.baseline) if a.baseline else jdtest.JOURNEYD if a.baseline_extra else None
    if a.baseline_extra:
        a.baseline = "same build without stitching" if a.stitch else "same build + %r" % base_extra
    commit = subprocess.run(["git", "-C", HERE, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    date = datetime.datetime.utcnow().strftime("%Y-%m-%dT%H:%M:%SZ")
    results = os.path.join(HERE, "results.tsv")
    rows, all_runs = [], {}
    for enc in a.encodings.split(","):
        topic, dlq = jdtest.unique("bench-" + enc), jdtest.unique("bench-dlq")
        jdtest.create_topic(topic, PARTITIONS)
        jdtest.create_topic(dlq, 1)
        t0 = time.monotonic()
        subprocess.run([jdtest.JOURNEYCTL, "gen", "--seed", "1", "--customers", str(a.customers),
                        "--events", str(a.events), "--encoding", enc, "--topic", topic,
                        "--brokers", jdtest.BROKERS] + a.gen_args.split(), check=True)
        total = sum(jdtest.high_watermarks(topic, PARTITIONS).values())
        print("%s: pre-filled %d events in %.1fs" % (enc, total, time.monotonic() - t0))
        runs, base = [], []
        for i in range(a.runs):
            ceiling = kcat_ceiling(topic, total)
            if base_bin and i % 2 == 0:
                base.append(run_journeyd(topic, dlq, total, base_bin, extra=base_extra))
            m = run_journeyd(topic, dlq, total, input_extra=stitch)
            if base_bin and i % 2 == 1:
                base.append(run_journeyd(topic, dlq, total, base_bin, extra=base_extra))
            if base_bin:
                m["baseline_eps"] = base[-1]["eps_owned"]
                m["baseline_cpu_s"] = base[-1]["cpu_s"]
                with open(results, "a") as f:
                    f.write("\t".join(str(x) for x in [date, a.baseline, machine(), "throughput-baseline", enc,
                                                        total, i, "%.0f" % base[-1]["eps_owned"],
                                                        "%.2f" % base[-1]["cpu_s"]]) + "\n")
                print("  run %d: baseline %s %.0f ev/s, cpu %.2f s, redis in/out %.1f/%.1f MB" % (
                    i, a.baseline, base[-1]["eps_owned"], base[-1]["cpu_s"], base[-1]["redis_in_mb"],
                    base[-1]["redis_out_mb"]))
            m["redis_sets"] = redis_ceiling()
            m["kcat_eps"] = ceiling
            m["ratio"] = m["eps_owned"] / ceiling
            runs.append(m)
            with open(results, "a") as f:
                f.write("\t".join(str(x) for x in [
                    date, commit, machine(), "throughput", enc, total, i,
                    "%.0f" % m["eps_owned"], "%.0f" % m["eps_start"], "%.0f" % ceiling,
                    "%.3f" % m["ratio"], "%.4f" % m["redis_cmds_per_event"],
                    "%.5f" % m["round_trips_per_event"], m["rss_kb"],
                    "%.0f" % m["redis_bytes_per_journey"], m["journeys"], "%.0f" % m["redis_sets"]]) + "\n")
            print("  run %d: %.0f ev/s (%.0f from start), cpu %.2f s (publisher thread %.2f s), "
                  "redis in/out %.1f/%.1f MB, kcat %.0f ev/s, "
                  "redis-benchmark -P 64 %.0f SET/s, ratio %.2f, "
                  "redis cmds/ev %.4f, round trips/ev %.5f, rss %d KiB, %.0f B/journey%s"
                  % (i, m["eps_owned"], m["eps_start"], m["cpu_s"], m["publisher_cpu_s"], m["redis_in_mb"],
                     m["redis_out_mb"], ceiling,
                     m["redis_sets"], m["ratio"],
                     m["redis_cmds_per_event"], m["round_trips_per_event"], m["rss_kb"],
                     m["redis_bytes_per_journey"],
                     ", %d records forwarded" % m["forwarded"] if "forwarded" in m else ""))
        jdtest.delete_topics(topic, dlq)
        all_runs[enc] = runs
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        rows.append((enc, total, med))
    print()
    print("machine: %s; commit %s; %s; medians of %d runs" % (machine(), commit, date, a.runs))
    print("%-8s %9s %12s %12s %12s %12s %6s %9s %10s %9s %10s" % (
        "encoding", "events", "journeyd/s", "(from start)", "kcat -C -e/s", "redis SET/s", "ratio",
        "cmds/ev", "rtrips/ev", "RSS MiB", "B/journey"))
    for enc, total, m in rows:
        print("%-8s %9d %12.0f %12.0f %12.0f %12.0f %6.2f %9.4f %10.5f %9.1f %10.0f" % (
            enc, total, m["eps_owned"], m["eps_start"], m["kcat_eps"], m["redis_sets"], m["ratio"],
            m["redis_cmds_per_event"], m["round_trips_per_event"], m["rss_kb"] / 1024,
            m["redis_bytes_per_journey"]))
    if base_bin:
        print()
        for enc, total, m in rows:
            pairs = [r["eps_owned"] / r["baseline_eps"] for r in all_runs[enc]]
            cpus = [r["baseline_cpu_s"] / r["cpu_s"] for r in all_runs[enc]]
            print("%-8s baseline %s median %.0f ev/s; this commit / baseline = %.3f "
                  "(per pair %s; median of the pairs %.3f)" % (
                      enc, a.baseline, m["baseline_eps"], m["eps_owned"] / m["baseline_eps"],
                      " ".join("%.2f" % x for x in pairs), statistics.median(pairs)))
            print("%-8s CPU seconds (journeyd + Redis main thread) baseline / this commit: per pair %s; "
                  "median %.3f" % (enc, " ".join("%.2f" % x for x in cpus), statistics.median(cpus)))
            pub = [r["publisher_cpu_s"] / r["cpu_s"] for r in all_runs[enc]]
            print("%-8s the publisher thread's share of those CPU seconds (this commit): per run %s; median %.3f" % (
                enc, " ".join("%.3f" % x for x in pub), statistics.median(pub)))


if __name__ == "__main__":
    main()
