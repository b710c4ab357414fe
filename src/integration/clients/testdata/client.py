"""An app's use of Redis through redis-py (Debian's python3-redis), as the
client suite runs it:

  VCAP_SERVICES=... MODE=plain|tls|tls-only|password-only RUN_ID=... /usr/bin/python3 client.py

It finds its service in VCAP_SERVICES by the tag "redis", as apps do,
connects as MODE says (see connect below), runs each operation and prints one
JSON line per operation: {"op": NAME, "value": STRING} with what it read
back, or {"op": NAME, "error": MESSAGE}. It exits 1 when an operation failed.
It never prints the credentials.
"""
import json
import os
import re
import sys
import time

import redis

MODE = os.environ.get("MODE")
ID = os.environ.get("RUN_ID")
EVAL_SCRIPT = ("redis.call('SET', KEYS[1], ARGV[1]) "
               "return redis.call('GET', KEYS[1]) .. ':' .. redis.call('STRLEN', KEYS[1])")


def credentials():
    services = json.loads(os.environ.get("VCAP_SERVICES") or "{}")
    for instances in services.values():
        for s in instances:
            if "redis" in (s.get("tags") or []):
                return s["credentials"]
    raise RuntimeError("no service tagged redis in VCAP_SERVICES")


def connect(c):
    """Returns a new client:
      plain:         host, port, username, password
      tls:           host, tls_port, username, password, verifying tls_ca
      tls-only:      host, port, username, password, with TLS and tls_ca
      password-only: host, port, password
    """
    kwargs = dict(host=c["host"], port=c["port"], password=c["password"],
                  decode_responses=True, socket_timeout=20, socket_connect_timeout=10)
    if MODE != "password-only":
        kwargs["username"] = c["username"]
    if MODE == "tls":
        kwargs["port"] = c["tls_port"]
    if MODE in ("tls", "tls-only"):
        kwargs.update(ssl=True, ssl_cert_reqs="required", ssl_ca_data=c["tls_ca"])
    return redis.Redis(**kwargs)


failed = False


def run(op, fn):
    global failed
    try:
        print(json.dumps({"op": op, "value": str(fn())}), flush=True)
        return True
    except Exception as e:  # every failure is reported, then the next operation runs
        failed = True
        print(json.dumps({"op": op, "error": "%s: %s" % (type(e).__name__, e)}), flush=True)
        return False


def pubsub(r, sub):
    p = sub.pubsub()
    p.subscribe(ID + ":c")
    deadline = time.monotonic() + 20
    confirmed = None
    while confirmed is None and time.monotonic() < deadline:
        confirmed = p.get_message(timeout=1)
    if confirmed is None or confirmed["type"] != "subscribe":
        raise RuntimeError("no subscribe confirmation: %r" % (confirmed,))
    receivers = r.publish(ID + ":c", ID)
    while time.monotonic() < deadline:
        m = p.get_message(timeout=1)
        if m is not None and m["type"] == "message":
            p.close()
            return "%d %s" % (receivers, m["data"])
    raise RuntimeError("no message within 20 s")


def main():
    c = credentials()
    r = connect(c)
    if run("connect", lambda: r.ping() and "ok"):
        run("whoami", lambda: r.execute_command("ACL", "WHOAMI"))
        run("port", lambda: re.search(r"laddr=\S+:(\d+)", r.execute_command("CLIENT", "INFO")).group(1))

        def set_get():
            r.set(ID + ":str", ID)
            return r.get(ID + ":str")
        run("set_get", set_get)

        def pipeline():
            p = r.pipeline(transaction=False)
            p.set(ID + ":p", ID).incrby(ID + ":n", 20).incrby(ID + ":n", 22).get(ID + ":p")
            rs = p.execute()
            return "%s %s" % (rs[2], rs[3])
        run("pipeline", pipeline)

        def multi():
            p = r.pipeline(transaction=True)
            p.set(ID + ":m", ID).incr(ID + ":mn").incr(ID + ":mn").get(ID + ":m")
            rs = p.execute()
            return "%s %s" % (rs[2], rs[3])
        run("multi", multi)
        run("eval", lambda: r.eval(EVAL_SCRIPT, 1, ID + ":e", ID))
        run("pubsub", lambda: pubsub(r, connect(c)))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    try:
        main()
    except Exception as e:
        print(json.dumps({"op": "main", "error": "%s: %s" % (type(e).__name__, e)}), flush=True)
        sys.exit(1)
