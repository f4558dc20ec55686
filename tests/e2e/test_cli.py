"""End-to-end: command lines, configuration errors, secrets, Redis AUTH with
an ACL user and over the Unix socket, and SIGHUP reload (valid and invalid)
with the real binaries, Kafka and Redis."""
import json
import os
import re
import signal
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jdtest  # noqa: E402


def run(*args):
    return subprocess.run(list(args), capture_output=True, text=True)


def ev(mid, user, event, ts="2026-01-05T10:00:00Z"):
    return json.dumps({"messageId": mid, "type": "track", "event": event, "userId": user,
                       "timestamp": ts, "context": {"channel": "web"}}).encode()


def wait_for(pred, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False


class CliTest(unittest.TestCase):
    def test_usage_on_bad_arguments(self):
        for args in ([], ["--bogus"], ["-c"], ["-c", "a.yaml", "extra"]):
            r = run(jdtest.JOURNEYD, *args)
            self.assertEqual(r.returncode, 2, args)
            self.assertIn("usage: journeyd -c FILE", r.stderr)
        for args in ([], ["frobnicate"], ["journey"], ["stats", "x"], ["gen", "--bogus"]):
            r = run(jdtest.JOURNEYCTL, *args)
            self.assertEqual(r.returncode, 2, args)
            self.assertIn("usage: journeyctl", r.stderr)

    def test_check_config(self):
        r = run(jdtest.JOURNEYD, "--check-config", os.path.join(jdtest.SRC, "config", "journeyd.yaml"))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(r.stdout.startswith("# effective configuration of "))
        path = jdtest.write_config("t", "d", "p", "g", "journey:\n  history_max: 0\n", http=False)
        r = run(jdtest.JOURNEYD, "--check-config", path)
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stderr, "%s:15: journey.history_max: 0 is out of range 1..1000\n" % path)
        r = run(jdtest.JOURNEYCTL, "check-config", path)
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stderr, "%s:15: journey.history_max: 0 is out of range 1..1000\n" % path)

    def test_secrets_never_printed(self):
        path = jdtest.write_config("t", "d", "p", "g")
        with open(path) as f:
            text = f.read()
        text = text.replace("kafka:\n", "kafka:\n  sasl.password: \"kafka-s3cret\"\n", 1)
        text = text.replace("redis:\n", "redis:\n  password: \"redis-s3cret\"\n", 1)
        with open(path, "w") as f:
            f.write(text)
        r = run(jdtest.JOURNEYD, "--check-config", path)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("s3cret", r.stdout + r.stderr)
        self.assertEqual(r.stdout.count('"***"'), 2)
        # the daemon cannot authenticate (the server has no password): it
        # says so, retries, never logs the secret, and stops on SIGTERM
        d = jdtest.Daemon(path)
        self.assertTrue(wait_for(lambda: "redis unavailable" in d.logtext()))
        self.assertEqual(d.stop(), 1)
        self.assertNotIn("s3cret", d.logtext())


class AuthAndReloadTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.topic, cls.dlq = jdtest.unique("cli"), jdtest.unique("cli-dlq")
        cls.prefixes = []
        jdtest.create_topic(cls.topic, 1)
        jdtest.create_topic(cls.dlq, 1)
        r = jdtest.redis_client()
        r.execute_command("ACL", "SETUSER", "jd-e2e", "on", ">e2e-pw-123", "~*", "+@all")

    @classmethod
    def tearDownClass(cls):
        jdtest.redis_client().execute_command("ACL", "DELUSER", "jd-e2e")
        jdtest.drop_prefix(*cls.prefixes)
        jdtest.delete_topics(cls.topic, cls.dlq)

    def config(self, extra_redis="", rules=""):
        prefix = jdtest.unique("cli")
        self.prefixes.append(prefix)
        path = jdtest.write_config(self.topic, self.dlq, prefix, jdtest.unique("g"), rules)
        with open(path) as f:
            text = f.read()
        with open(path, "w") as f:
            f.write(text.replace("redis:\n", "redis:\n" + extra_redis, 1))
        return path, prefix

    def test_acl_user_over_unix_socket(self):
        sock = os.environ.get("JD_REDIS_SOCKET", "/var/tmp/journeyd-local/redis/redis.sock")
        path, prefix = self.config("  user: jd-e2e\n  password: \"e2e-pw-123\"\n  unix_socket: %s\n" % sock)
        p = jdtest.Producer1()
        p.send(self.topic, ev("auth-1", "acl-user", "Product Added"), b"acl-user")
        d = jdtest.Daemon(path)
        jdtest.wait_committed(prefix, self.topic, 1, proc=d.proc)
        self.assertEqual(d.stop(), 0, d.logtext())
        self.assertNotIn("e2e-pw-123", d.logtext())
        j = json.loads(jdtest.journeyctl(path, "journey", "acl-user", "--json").stdout)
        self.assertEqual((j["phase"], j["last_touchpoint"]), ("purchase", "cart"))

    def test_sighup_reload(self):
        rule = ("phases:\n  - {name: search, timeout: 30m}\n  - {name: information, timeout: 3d}\n"
                "  - {name: purchase, timeout: 2h}\n  - {name: loyalty, timeout: 4w}\n"
                "rules:\n  - match: {event: \"Gift Card Redeemed\"}\n    phase: purchase\n"
                "    touchpoint: gift_card\n")
        path, prefix = self.config()
        p = jdtest.Producer1()
        d = jdtest.Daemon(path)
        p.send(self.topic, ev("hup-1", "hup-a", "Gift Card Redeemed"), b"hup-a")
        jdtest.wait_committed(prefix, self.topic, 1, proc=d.proc)
        j = json.loads(jdtest.journeyctl(path, "journey", "hup-a", "--json").stdout)
        self.assertEqual((j["phase"], j["last_touchpoint"]), ("none", "web"))  # unclassified
        with open(path, "a") as f:
            f.write(rule)
        d.proc.send_signal(signal.SIGHUP)
        self.assertTrue(wait_for(lambda: "configuration reloaded" in d.logtext()), d.logtext())
        p.send(self.topic, ev("hup-2", "hup-b", "Gift Card Redeemed"), b"hup-b")
        jdtest.wait_committed(prefix, self.topic, 1, proc=d.proc)
        j = json.loads(jdtest.journeyctl(path, "journey", "hup-b", "--json").stdout)
        self.assertEqual((j["phase"], j["last_touchpoint"]), ("purchase", "gift_card"))
        # an invalid file is refused and the running rules stay
        valid = path + ".valid.yaml"
        with open(path) as f, open(valid, "w") as g:
            g.write(f.read())
        with open(path, "a") as f:
            f.write("bogus_section: 1\n")
        d.proc.send_signal(signal.SIGHUP)
        self.assertTrue(wait_for(lambda: "reload refused" in d.logtext()), d.logtext())
        self.assertIn("unknown section 'bogus_section'", d.logtext())
        p.send(self.topic, ev("hup-3", "hup-c", "Gift Card Redeemed"), b"hup-c")
        jdtest.wait_committed(prefix, self.topic, 1, proc=d.proc)
        j = json.loads(jdtest.journeyctl(valid, "journey", "hup-c", "--json").stdout)
        self.assertEqual((j["phase"], j["last_touchpoint"]), ("purchase", "gift_card"))
        # a valid file whose funnel windows differ needs a restart: the
        # counters in memory are bucketed by the windows
        with open(valid) as f, open(path, "w") as g:
            g.write(f.read() + "metrics:\n  windows: [2h]\n")
        refused = d.logtext().count("reload refused")
        d.proc.send_signal(signal.SIGHUP)
        self.assertTrue(wait_for(lambda: d.logtext().count("reload refused") > refused), d.logtext())
        self.assertIn("satisfaction or funnel windows", d.logtext())
        self.assertEqual(d.stop(), 0)


class SatisfactionTableTest(unittest.TestCase):
    """`journeyctl satisfaction`: the table says what `metrics --json` says,
    block by block and line by line, for a small generated stream."""
    MIN_N = 3

    @classmethod
    def setUpClass(cls):
        cls.topic, cls.dlq = jdtest.unique("clisat"), jdtest.unique("clisat-dlq")
        jdtest.create_topic(cls.topic, 2)
        jdtest.create_topic(cls.dlq, 1)
        r = run(jdtest.JOURNEYCTL, "gen", "--seed", "7", "--customers", "40", "--survey-rate", "0.3",
                "--heartbeats", "0", "--topic", cls.topic, "--brokers", jdtest.BROKERS)
        if r.returncode:
            raise RuntimeError(r.stderr)
        cls.prefix = jdtest.unique("clisat")
        cls.cfg = jdtest.write_config(cls.topic, cls.dlq, cls.prefix, jdtest.unique("g"),
                                      "satisfaction:\n  min_n: %d\n" % cls.MIN_N)
        d = jdtest.Daemon(cls.cfg)
        jdtest.wait_committed(cls.prefix, cls.topic, 2, proc=d.proc)
        assert d.stop() == 0

    @classmethod
    def tearDownClass(cls):
        jdtest.drop_prefix(cls.prefix)
        jdtest.delete_topics(cls.topic, cls.dlq)

    @staticmethod
    def parse(text):
        """{heading: {(metric, label): [n, score, n, score, gap]}} (None: no answers)."""
        blocks, cur, metric = {}, None, None
        for line in text.split("\n"):
            if " \u2014 " in line and not line.startswith(" "):
                head, _, rest = line.partition(": ")
                cur = None if rest == "no answers" else {}
                blocks[head] = cur
            elif line.startswith("  ") and cur is not None and not line.startswith("  metric"):
                cells = re.split(r" {2,}", line.strip())
                if cells[0] in ("NPS", "CSAT", "CES"):
                    metric = cells.pop(0)
                cur[(metric, cells[0])] = cells[1:]
        return blocks

    def check_cell(self, got, m, v, where):
        if v["n"] == 0:
            self.assertEqual(got, "-", where)
        elif not v["sufficient"]:
            self.assertEqual(got, "n<%d" % self.MIN_N, where)
        else:
            score, moe = got.rstrip("%").split(" \u00b1 ") if m != "csat" else got.split("% \u00b1 ")
            tol = 0.0051 if m == "ces" else 0.051
            self.assertAlmostEqual(float(score), v["score"], delta=tol, msg=where)
            self.assertAlmostEqual(float(moe), v["moe"], delta=tol, msg=where)

    def test_table_matches_the_snapshot(self):
        r = jdtest.journeyctl(self.cfg, "satisfaction", "--touchpoint", "--segment")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(all(len(line) <= 120 for line in r.stdout.split("\n")))
        doc = json.loads(jdtest.journeyctl(self.cfg, "metrics", "--json").stdout)
        sat = doc["satisfaction"]
        self.assertTrue(r.stdout.startswith("complete to %s (lowest partition watermark)\n" % doc["complete_to"]))
        blocks = self.parse(r.stdout)
        windows = [w["window"] for w in sat["windows"]]
        self.assertEqual(len(blocks), len(doc["phases"]) * len(windows))
        answered = set()
        for phase in doc["phases"]:
            for w in windows:
                head = "%s \u2014 %s" % (phase, "all time" if w == "all" else w + " window")
                heads = [h for h in blocks if h == head or h.startswith(head + " (")]
                self.assertEqual(len(heads), 1, head)
                rows = [s for s in sat["series"] if s["phase"] == phase and s["window"] == w]
                block = blocks[heads[0]]
                if not rows:
                    self.assertIsNone(block, head)
                    continue
                answered.add(phase)
                want = set()
                for s in rows:
                    label = "all" if s["breakdown"] == "all" else "%s %s" % (s["breakdown"], s["name"])
                    for m in ("nps", "csat", "ces"):
                        t, j = s["touchpoint_scope"][m], s["journey_scope"][m]
                        if s["breakdown"] != "all" and t["n"] + j["n"] == 0:
                            continue
                        key = (m.upper(), label)
                        want.add(key)
                        where = "%s %s %s" % (head, m, label)
                        n_t, cell_t, n_j, cell_j, gap = block[key]
                        self.assertEqual((int(n_t), int(n_j)), (t["n"], j["n"]), where)
                        self.check_cell(cell_t, m, t, where)
                        self.check_cell(cell_j, m, j, where)
                        if s["gap"][m] is None:
                            self.assertEqual(gap, "-", where)
                        else:
                            self.assertAlmostEqual(float(gap), s["gap"][m], delta=0.051, msg=where)
                self.assertEqual(set(block), want, head)
        # the generated stream has answers in every phase
        self.assertEqual(answered, set(doc["phases"]))

    def test_one_phase_and_window(self):
        r = jdtest.journeyctl(self.cfg, "satisfaction", "--window", "all", "--phase", "purchase")
        self.assertEqual(r.returncode, 0, r.stderr)
        blocks = self.parse(r.stdout)
        self.assertEqual(list(blocks), ["purchase \u2014 all time"])
        self.assertEqual(sorted(blocks["purchase \u2014 all time"]),
                         [("CES", "all"), ("CSAT", "all"), ("NPS", "all")])

    def test_bad_arguments(self):
        for args, err in ((["--window", "nope"], "unknown window 'nope' (windows: 1h 1d 1w 30d all)"),
                          (["--phase", "nope"], "unknown phase 'nope'"),
                          (["--window"], "unexpected argument '--window'"),
                          (["--json"], "wrong arguments"),
                          (["extra"], "wrong arguments")):
            r = jdtest.journeyctl(self.cfg, "satisfaction", *args, check=False)
            self.assertEqual(r.returncode, 2, args)
            self.assertIn(err, r.stderr)
            self.assertIn("usage: journeyctl", r.stderr)
            self.assertEqual(r.stdout, "")


if __name__ == "__main__":
    unittest.main(verbosity=2)
