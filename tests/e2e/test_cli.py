"""End-to-end: command lines, configuration errors, secrets, Redis AUTH with
an ACL user and over the Unix socket, and SIGHUP reload (valid and invalid)
with the real binaries, Kafka and Redis."""
import json
import os
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
        path = jdtest.write_config("t", "d", "p", "g", "journey:\n  history_max: 0\n")
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
        self.assertEqual(d.stop(), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
