"""End-to-end against the generator's ground truth: `journeyctl gen` writes a
realistic stream with duplicates, out-of-order delivery, anonymous customers
identified later and invalid events into Kafka; journeyd consumes it; every
journey in Redis must match, field by field, what the simulation says that
customer did, and every counter must match the truth."""
import datetime
import json
import os
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jdtest  # noqa: E402

PARTITIONS = 6


def iso(ms):
    t = datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (ms % 1000)


class GeneratedTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.topic, cls.dlq = jdtest.unique("gen"), jdtest.unique("gen-dlq")
        cls.prefix, group = jdtest.unique("gen"), jdtest.unique("g")
        jdtest.create_topic(cls.topic, PARTITIONS)
        jdtest.create_topic(cls.dlq, 1)
        d = tempfile.mkdtemp(prefix="jd-gen-")
        cls.jpath, cls.tpath = os.path.join(d, "journeys.ndjson"), os.path.join(d, "truth.json")
        r = subprocess.run([jdtest.JOURNEYCTL, "gen", "--seed", "7", "--customers", "3000",
                            "--topic", cls.topic, "--brokers", jdtest.BROKERS, "--encoding", "msgpack",
                            "--dup-rate", "0.02", "--ooo-rate", "0.05", "--anon-rate", "0.2",
                            "--invalid-rate", "0.01", "--return-rate", "0",
                            "--journeys", cls.jpath, "--truth", cls.tpath],
                           capture_output=True, text=True)
        if r.returncode:
            raise RuntimeError(r.stderr)
        cls.config = jdtest.write_config(cls.topic, cls.dlq, cls.prefix, group)
        daemon = jdtest.Daemon(cls.config)
        jdtest.wait_committed(cls.prefix, cls.topic, PARTITIONS, proc=daemon.proc)
        assert daemon.stop() == 0
        cls.dump = [json.loads(l) for l in jdtest.journeyctl(cls.config, "dump").stdout.splitlines()]
        with open(cls.jpath) as f:
            cls.truth_journeys = [json.loads(l) for l in f]
        with open(cls.tpath) as f:
            cls.truth = json.load(f)

    @classmethod
    def tearDownClass(cls):
        jdtest.drop_prefix(cls.prefix)
        jdtest.delete_topics(cls.topic, cls.dlq)

    def test_every_journey_matches_the_simulation(self):
        got = {d["id"]: d["journey"] for d in self.dump if "journey" in d}
        self.assertEqual(len(got), len(self.truth_journeys))
        self.assertEqual(len(got), self.truth["journeys"])
        for t in self.truth_journeys:
            j = got[t["customer"]]
            where = t["customer"]
            self.assertEqual(j["phase"], t["phase"], where)
            self.assertEqual(j["events"], t["events"], where)
            self.assertEqual(j["start"], iso(t["first_ts"]), where)
            self.assertEqual(j["last_event"], iso(t["last_ts"]), where)
            self.assertEqual(j["last_touchpoint"], t["last_touchpoint"], where)
            self.assertEqual(j["phase_entered"], t["phase_entered"], where)
            self.assertEqual(j["segment"], t["segment"], where)
            self.assertEqual(j["merged_ids"], t["merged"], where)
            self.assertEqual([h["touchpoint"] for h in j["history"]], t["touchpoints"][-50:], where)
            if t["satisfaction"]:
                s = j["satisfaction"]
                self.assertEqual((s["metric"], s["score"], s["time"]),
                                 (t["satisfaction"]["metric"], t["satisfaction"]["score"],
                                  iso(t["satisfaction"]["time"])), where)
            else:
                self.assertIsNone(j["satisfaction"], where)

    def test_identified_anonymous_ids_redirect(self):
        redirects = [d for d in self.dump if "redirect" in d]
        self.assertEqual(len(redirects), self.truth["identifies"])
        merged = sum(t["merged"] for t in self.truth_journeys)
        self.assertEqual(len(redirects), merged)

    def test_counters_match_the_truth(self):
        total = json.loads(jdtest.journeyctl(self.config, "stats", "--json").stdout)["total"]
        t = self.truth
        self.assertEqual(total["consumed"], t["messages"])
        self.assertEqual(total["duplicate"], t["duplicates"])
        self.assertEqual(total["deadletter"], t["invalid"])
        self.assertEqual(total["applied"], t["valid"])
        self.assertEqual(total["linked"], t["identifies"])
        self.assertEqual(total["heartbeat"], t["heartbeats"])
        self.assertEqual(t["heartbeats"], PARTITIONS)  # one to every partition
        self.assertEqual(total.get("deadletter.bad_score", 0), t["invalid_by_kind"]["nps_out_of_range"])
        self.assertEqual(total.get("deadletter.bad_timestamp", 0), t["invalid_by_kind"]["bad_timestamp"])
        self.assertEqual(total.get("deadletter.bad_event_type", 0), t["invalid_by_kind"]["unknown_type"])
        self.assertEqual(total.get("deadletter.id_too_long", 0), t["invalid_by_kind"]["long_message_id"])
        self.assertEqual(total.get("deadletter.missing", 0), t["invalid_by_kind"]["missing_message_id"])
        self.assertEqual(total.get("deadletter.syntax", 0), t["invalid_by_kind"]["bad_json"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
