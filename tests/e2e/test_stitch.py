"""End-to-end test of identity stitching across partitions (issue #7).

`journeyctl gen --anon-key anon` keys every anonymous event by its
anonymousId and every identified one by its userId, so a customer's
anonymous events and identified events land on different partitions
(checked here with the producer's partitioner, CRC-32). journeyd runs with
`input.partitioner: consistent_random`: events, identity links and the
anonymous journeys go to their homes through the internal topic. Every
customer must end as one journey equal, field by field, to the simulation's
truth, and the funnel, the drop-offs and the satisfaction counts must equal
the truth exactly: once in a clean run, once through kill -9 restarts.

The configuration is the default one (5m lateness, 30m search timeout):
while the backlog is read the partitions' clocks drift days apart, and a
partition's watermark waits for what the others have announced, a journey
waiting for the answer to a link does not time out, and an anonymous id is
held open until its customer's claim comes back (README, "Identity
stitching across partitions"). The generator's heartbeats at the end close
every journey.
"""
import json
import os
import subprocess
import sys
import tempfile
import unittest
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jdtest  # noqa: E402

PARTITIONS = 6
CUSTOMERS = int(os.environ.get("JD_STITCH_CUSTOMERS", "20000"))
KILLS = int(os.environ.get("JD_STITCH_KILLS", "3"))
PHASES = ["search", "information", "purchase", "loyalty"]
INPUT = "  partitioner: consistent_random\n"
SCORE0 = {"nps": 0, "csat": 1, "ces": 1}


def gen(topic, tdir):
    paths = {k: os.path.join(tdir, k) for k in ("truth.json", "journeys.ndjson")}
    r = subprocess.run([jdtest.JOURNEYCTL, "gen", "--seed", "23", "--customers", str(CUSTOMERS),
                        "--topic", topic, "--brokers", jdtest.BROKERS, "--encoding", "msgpack",
                        "--anon-rate", "0.3", "--anon-key", "anon", "--dup-rate", "0.02",
                        "--return-rate", "0",
                        "--truth", paths["truth.json"], "--journeys", paths["journeys.ndjson"]],
                       capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(r.stderr)
    with open(paths["truth.json"]) as f:
        truth = json.load(f)
    with open(paths["journeys.ndjson"]) as f:
        journeys = [json.loads(line) for line in f]
    return truth, journeys


def result(cfg):
    dump = [json.loads(line) for line in jdtest.journeyctl(cfg, "dump").stdout.splitlines()]
    stats = json.loads(jdtest.journeyctl(cfg, "stats", "--json").stdout)["total"]
    return dump, stats, jdtest.metrics(cfg)


class StitchTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        tdir = tempfile.mkdtemp(prefix="jd-stitch-")
        cls.topics = [jdtest.unique("stitch"), jdtest.unique("stitch-k9")]
        cls.dlq = jdtest.unique("stitch-dlq")
        for t in cls.topics:
            jdtest.create_topic(t, PARTITIONS)
        jdtest.create_topic(cls.dlq, 1)
        cls.truth, cls.journeys = gen(cls.topics[0], tdir)
        gen(cls.topics[1], tdir)
        cls.prefixes, cls.groups, cls.runs = [], [], []
        # a clean run, then one killed with SIGKILL at random points
        for i, topic in enumerate(cls.topics):
            prefix, group = jdtest.unique("st"), jdtest.unique("g")
            cls.prefixes.append(prefix)
            cls.groups.append(group)
            cfg = jdtest.static_config(topic, cls.dlq, prefix, group, "", input_extra=INPUT)
            if i == 0:
                d = jdtest.Daemon(cfg)
                jdtest.wait_committed(prefix, topic, PARTITIONS, timeout=300, proc=d.proc)
                assert d.stop() == 0
            else:
                total = sum(jdtest.high_watermarks(topic, PARTITIONS).values())
                jdtest.run_with_kills(unittest.TestCase(), cfg, prefix, topic, PARTITIONS, total, KILLS, 23)
            cls.runs.append(result(cfg))
            r = jdtest.redis_client()
            cls.runs[-1][1]["outbox_left"] = sum(r.llen("%s:{%s:%d}:x" % (prefix, topic, p))
                                                 for p in range(PARTITIONS))

    @classmethod
    def tearDownClass(cls):
        jdtest.drop_prefix(*cls.prefixes)
        jdtest.delete_topics(cls.dlq, *cls.topics, *[g + ".internal" for g in cls.groups])

    def test_the_stream_spreads_customers_over_partitions(self):
        t = self.truth
        self.assertGreater(t["identifies"], CUSTOMERS // 8)
        dump = self.runs[0][0]
        apart = [d for d in dump if "redirect" in d and
                 zlib.crc32(d["id"].encode()) % PARTITIONS != zlib.crc32(d["redirect"].encode()) % PARTITIONS]
        # most anonymous ids live on another partition than their customer
        self.assertGreater(len(apart), t["identifies"] // 2)
        self.assertEqual(len([d for d in dump if "redirect" in d]), t["identifies"])

    def check_journeys(self, dump):
        got = {d["id"]: d["journey"] for d in dump if "journey" in d}
        self.assertEqual(len(got), len(self.journeys))
        for t in self.journeys:
            j, where = got[t["customer"]], t["customer"]
            self.assertEqual(j["phase"], t["phase"], where)
            self.assertEqual(j["events"], t["events"], where)
            self.assertEqual(j["start"], jdtest.iso(t["first_ts"]), where)
            self.assertEqual(j["last_event"], jdtest.iso(t["last_ts"]), where)
            self.assertEqual(j["last_touchpoint"], t["last_touchpoint"], where)
            self.assertEqual(j["phase_entered"], t["phase_entered"], where)
            self.assertEqual(j["segment"], t["segment"], where)
            self.assertEqual(j["merged_ids"], t["merged"], where)
            self.assertEqual([h["touchpoint"] for h in j["history"]], t["touchpoints"][-50:], where)
            self.assertEqual(j["status"], t["outcome"], where)

    def check_metrics(self, snap):
        funnel = {p["phase"]: p for p in next(f for f in snap["funnel"] if f["segment"] == "all")["phases"]}
        for ph in PHASES:
            for k in ("reached", "progressed", "dropped", "completed"):
                self.assertEqual(funnel[ph][k], self.truth["phases"][ph][k], (ph, k))
            self.assertEqual(funnel[ph]["active"], 0, ph)
        drops = {(ph, d["touchpoint"]): d["dropped"] for ph in PHASES for d in funnel[ph]["dropoff_points"]}
        want = {(ph, tp): n for ph, by in self.truth["dropoff_by_touchpoint"].items() for tp, n in by.items() if n}
        self.assertEqual(drops, want)
        got = {}
        for s in snap["satisfaction"]["series"]:
            if s["window"] != "all" or s["breakdown"] != "all":
                continue
            for scope in ("touchpoint", "journey"):
                for m, v in s[scope + "_scope"].items():
                    if v["n"]:
                        got[(m, s["phase"], scope)] = (v["n"], sum((i + SCORE0[m]) * c for i, c in
                                                                   enumerate(v["counts"])))
        want = {(m, ph, scope): (v["n"], v["sum"]) for m, by in self.truth["satisfaction"].items()
                for ph, scopes in by.items() for scope, v in scopes.items() if v["n"]}
        self.assertEqual(got, want)

    def check_counters(self, stats, clean):
        t = self.truth
        self.assertEqual(stats["consumed"], t["messages"])
        self.assertEqual(stats["applied"], t["valid"])
        self.assertEqual(stats["duplicate"], t["duplicates"])
        self.assertEqual(stats["linked"], t["identifies"])
        self.assertEqual(stats.get("link_conflict", 0), 0)
        self.assertEqual(stats.get("handoff_closed", 0), 0)
        self.assertEqual(stats.get("merged", 0), sum(j["merged"] for j in self.journeys))
        # the generator sends each partition's events in event-time order
        # (truth: out_of_order 0), so none is late: a partition behind the
        # others must not take their clocks for its own
        self.assertEqual(t["out_of_order"], 0)
        self.assertEqual(stats.get("late", 0), 0)
        self.assertGreater(stats["forwarded"], t["identifies"])
        # every record sent was applied exactly once, whatever was sent again
        # (the outbox of a daemon that stops is produced again by the next)
        self.assertEqual(stats["received"], stats["forwarded"])
        if not clean:
            self.assertGreater(stats.get("received_again", 0), 0)
        # delivered records are trimmed off the outboxes by later commits:
        # what is left is at most the last few batches' records, not all
        self.assertLess(stats["outbox_left"], stats["forwarded"] // 20)

    def test_clean_run_equals_the_truth(self):
        dump, stats, snap = self.runs[0]
        self.check_journeys(dump)
        self.check_metrics(snap)
        self.check_counters(stats, True)

    def test_kill9_run_equals_the_truth(self):
        dump, stats, snap = self.runs[1]
        self.check_journeys(dump)
        self.check_metrics(snap)
        self.check_counters(stats, False)


if __name__ == "__main__":
    unittest.main(verbosity=2)
