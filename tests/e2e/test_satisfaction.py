"""End-to-end test of rolling satisfaction (issue #5) against the
generator's ground truth: a run of more than 200,000 events with duplicates,
anonymous customers identified later, returning customers and invalid events
(bad scores among them, dead-lettered); every count of every phase × window ×
breakdown × scope × metric in `journeyctl metrics --json` must equal what the
generator's per-answer truth (`journeyctl gen --answers`) gives, computed
here independently with the documented window rule, also after kill -9
restarts. The stream has no heartbeats, so the watermark stays near the last
events and the finite windows hold some of the answers.

Delivery is in order here: an answer that arrives before a touch that
precedes it in event time is attributed to the phase its journey had reached
when it arrived (README, "Satisfaction"), which the generator's truth does not
model."""
import collections
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
CUSTOMERS = int(os.environ.get("JD_SAT_CUSTOMERS", "19000"))
KILLS = int(os.environ.get("JD_SAT_KILLS", "3"))
WINDOWS = [("1h", 3600000), ("1d", 86400000), ("1w", 604800000), ("30d", 2592000000)]
BUCKETS = 12  # satisfaction.buckets_per_window's default
LO = {"nps": 0, "csat": 1, "ces": 1}
HI = {"nps": 10, "csat": 5, "ces": 7}


metrics = jdtest.metrics


def watermarks(cfg, topic):
    """Each partition's watermark (its clock - the default lateness, 5 min)."""
    stats = json.loads(jdtest.journeyctl(cfg, "stats", "--json").stdout)
    return {int(p["partition"].rsplit(":", 1)[1]): p["counters"]["clock"] - 300000
            for p in stats["partitions"] if p["partition"].startswith(topic + ":")}


def expected(answers, wms):
    """{(phase, window, breakdown, name, scope, metric): counts per score},
    each answer's finite windows taken at its partition's watermark (the
    producer's partitioner: CRC-32 of the key)."""
    want = collections.defaultdict(lambda: None)
    for a in answers:
        wm = wms[zlib.crc32(a["key"].encode()) % PARTITIONS]
        wins = ["all"]
        for name, length in WINDOWS:
            res = length // BUCKETS
            hi = wm // res
            if hi - BUCKETS < a["ts"] // res <= hi:
                wins.append(name)
        for w in wins:
            for bd, nm in (("all", "all"), ("touchpoint", a["touchpoint"]), ("segment", a["segment"])):
                k = (a["phase"], w, bd, nm, a["scope"], a["metric"])
                if want[k] is None:
                    want[k] = [0] * (HI[a["metric"]] - LO[a["metric"]] + 1)
                want[k][a["score"] - LO[a["metric"]]] += 1
    return {k: v for k, v in want.items() if v is not None}


def got_counts(doc):
    got = {}
    for s in doc["satisfaction"]["series"]:
        for scope in ("touchpoint", "journey"):
            for m, v in s[scope + "_scope"].items():
                if v["n"]:
                    got[(s["phase"], s["window"], s["breakdown"], s["name"], scope, m)] = v["counts"]
    return got


class SatisfactionTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.topic, cls.dlq = jdtest.unique("sat"), jdtest.unique("sat-dlq")
        jdtest.create_topic(cls.topic, PARTITIONS)
        jdtest.create_topic(cls.dlq, 1)
        d = tempfile.mkdtemp(prefix="jd-sat-")
        tpath, apath = os.path.join(d, "truth.json"), os.path.join(d, "answers.ndjson")
        r = subprocess.run([jdtest.JOURNEYCTL, "gen", "--seed", "23", "--customers", str(CUSTOMERS),
                            "--topic", cls.topic, "--brokers", jdtest.BROKERS,
                            "--dup-rate", "0.02", "--anon-rate", "0.2", "--heartbeats", "0",
                            "--invalid-rate", "0.01", "--return-rate", "0.1", "--truth", tpath,
                            "--answers", apath], capture_output=True, text=True)
        if r.returncode:
            raise RuntimeError(r.stderr)
        with open(tpath) as f:
            cls.truth = json.load(f)
        with open(apath) as f:
            cls.answers = [json.loads(line) for line in f]
        cls.total = sum(jdtest.high_watermarks(cls.topic, PARTITIONS).values())
        cls.prefixes = []
        prefix, group = jdtest.unique("sclean"), jdtest.unique("g")
        cls.prefixes.append(prefix)
        cls.clean_prefix = prefix
        cls.clean = jdtest.static_config(cls.topic, cls.dlq, prefix, group)
        dmn = jdtest.Daemon(cls.clean)
        jdtest.wait_committed(prefix, cls.topic, PARTITIONS, timeout=300, proc=dmn.proc)
        assert dmn.stop() == 0
        cls.snap = metrics(cls.clean)

    @classmethod
    def tearDownClass(cls):
        jdtest.drop_prefix(*cls.prefixes)
        jdtest.delete_topics(cls.topic, cls.dlq)

    def check_against_truth(self, cfg, doc):
        want, got = expected(self.answers, watermarks(cfg, self.topic)), got_counts(doc)
        self.assertEqual(sorted(got), sorted(want))
        for k in want:
            self.assertEqual(got[k], want[k], k)

    def test_the_run_is_big_and_dirty(self):
        t = self.truth
        self.assertGreaterEqual(t["messages"], 200000)
        self.assertGreater(t["duplicates"], 0)
        self.assertGreater(t["invalid"], 0)
        self.assertEqual(len(self.answers), t["surveys"])
        self.assertGreater(len(self.answers), 10000)
        # the finite windows hold some answers and not all of them
        got = got_counts(self.snap)
        n = {w: sum(sum(v) for k, v in got.items() if k[1] == w and k[2] == "all") for w, _ in WINDOWS}
        self.assertEqual(sum(sum(v) for k, v in got.items() if k[1] == "all" and k[2] == "all"),
                         len(self.answers))
        self.assertGreater(n["30d"], n["1h"])
        self.assertGreater(n["1h"], 0)

    def test_every_count_equals_the_truth(self):
        self.check_against_truth(self.clean, self.snap)

    def test_scores_follow_from_the_counts(self):
        min_n = self.snap["satisfaction"]["min_n"]
        for s in self.snap["satisfaction"]["series"]:
            nps = s["touchpoint_scope"]["nps"]
            c = nps["counts"]
            self.assertEqual(nps["n"], sum(c))
            self.assertEqual((nps["promoters"], nps["passives"], nps["detractors"]),
                             (c[9] + c[10], c[7] + c[8], sum(c[:7])))
            if nps["n"] >= min_n:
                self.assertAlmostEqual(nps["score"], 100.0 * (c[9] + c[10] - sum(c[:7])) / nps["n"], places=3)
            else:
                self.assertIsNone(nps["score"])
                self.assertFalse(nps["sufficient"])
            csat = s["journey_scope"]["csat"]
            if csat["sufficient"]:
                self.assertAlmostEqual(csat["score"], 100.0 * (csat["counts"][3] + csat["counts"][4]) / csat["n"],
                                       places=3)
            ces = s["touchpoint_scope"]["ces"]
            if ces["sufficient"]:
                mean = sum((i + 1) * k for i, k in enumerate(ces["counts"])) / ces["n"]
                self.assertAlmostEqual(ces["score"], mean, places=3)
            for m in ("nps", "csat", "ces"):
                a, b = s["journey_scope"][m], s["touchpoint_scope"][m]
                if a["sufficient"] and b["sufficient"]:
                    self.assertAlmostEqual(s["gap"][m], a["score"] - b["score"], places=3)
                else:
                    self.assertIsNone(s["gap"][m])

    def test_bad_scores_are_dead_lettered(self):
        stats = json.loads(jdtest.journeyctl(self.clean, "stats", "--json").stdout)["total"]
        self.assertGreater(stats.get("deadletter.bad_score", 0), 0)

    def test_the_clean_run_reads_counts_and_logs(self):
        # the default satisfaction.log_max_bytes leaves answers in the answer
        # logs of some partitions and checkpointed counts in all of them
        r = jdtest.redis_client()
        prefix = self.clean_prefix
        logs = [r.strlen("%s:{%s:%d}:ql" % (prefix, self.topic, p)) for p in range(PARTITIONS)]
        counts = [r.hlen("%s:{%s:%d}:q" % (prefix, self.topic, p)) for p in range(PARTITIONS)]
        self.assertTrue(any(logs), logs)
        self.assertTrue(all(counts), counts)

    def test_kill9_restarts_count_every_answer_once(self):
        # a small answer log: many checkpoints, and kills between them
        prefix, group = jdtest.unique("scrash"), jdtest.unique("g")
        self.prefixes.append(prefix)
        cfg = jdtest.static_config(self.topic, self.dlq, prefix, group,
                                   "satisfaction:\n  log_max_bytes: 4096\n")
        jdtest.run_with_kills(self, cfg, prefix, self.topic, PARTITIONS, self.total, KILLS, 5)
        self.check_against_truth(cfg, metrics(cfg))

    def test_counts_rewritten_at_every_commit_are_the_same(self):
        prefix, group = jdtest.unique("snolog"), jdtest.unique("g")
        self.prefixes.append(prefix)
        cfg = jdtest.static_config(self.topic, self.dlq, prefix, group, "satisfaction:\n  log_max_bytes: 0\n")
        dmn = jdtest.Daemon(cfg)
        jdtest.wait_committed(prefix, self.topic, PARTITIONS, timeout=300, proc=dmn.proc)
        assert dmn.stop() == 0
        r = jdtest.redis_client()
        # every commit is a checkpoint: each log holds its header ("#<offset>") alone
        for p in range(PARTITIONS):
            log = r.get("%s:{%s:%d}:ql" % (prefix, self.topic, p))
            self.assertRegex(log, rb"^#[0-9]+\x00$")
            self.assertLessEqual(int(log[1:-1]), jdtest.redis_offsets(prefix, self.topic, PARTITIONS)[p])
        self.check_against_truth(cfg, metrics(cfg))


if __name__ == "__main__":
    unittest.main(verbosity=2)
