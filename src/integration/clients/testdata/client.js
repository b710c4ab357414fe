// An app's use of Redis through a Node client, as the client suite runs it:
//
//   VCAP_SERVICES=... MODE=plain|tls|tls-only|password-only RUN_ID=... node client.js ioredis|node-redis
//
// It finds its service in VCAP_SERVICES by the tag "redis", as apps do,
// connects as MODE says (see connect below), runs each operation and prints
// one JSON line per operation: {"op": NAME, "value": STRING} with what it
// read back, or {"op": NAME, "error": MESSAGE}. It exits 1 when an
// operation failed. It never prints the credentials.
"use strict";

const lib = process.argv[2];
const mode = process.env.MODE;
const id = process.env.RUN_ID;

// The suite waits for the whole run; this ends a run a hung library left.
setTimeout(() => {
  console.log(JSON.stringify({ op: "timeout", error: "the run did not end within 60 s" }));
  process.exit(3);
}, 60000).unref();

function credentials() {
  const services = JSON.parse(process.env.VCAP_SERVICES || "{}");
  for (const label of Object.keys(services)) {
    for (const s of services[label]) {
      if ((s.tags || []).includes("redis")) return s.credentials;
    }
  }
  throw new Error("no service tagged redis in VCAP_SERVICES");
}

// connect returns a function that opens a new connected client.
//   plain:         host, port, username, password (ioredis); uri (node-redis)
//   tls:           tls_port (ioredis) or tls_uri (node-redis), verifying tls_ca
//   tls-only:      host, port (ioredis) or uri (node-redis), with TLS and tls_ca
//   password-only: host, port, password (ioredis); uri redis://:password@host:port (node-redis)
function connect(c) {
  const tls = mode === "tls" || mode === "tls-only";
  if (lib === "ioredis") {
    const Redis = require("ioredis");
    const opts = {
      host: c.host,
      port: mode === "tls" ? c.tls_port : c.port,
      password: c.password,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
      lazyConnect: true,
    };
    if (mode !== "password-only") opts.username = c.username;
    if (tls) opts.tls = { ca: c.tls_ca };
    // ioredis names its command methods in lower case.
    const lower = (cmds) => cmds.map(([name, ...args]) => [name.toLowerCase(), ...args]);
    const replies = (rs) => rs.map(([err, v]) => { if (err) throw err; return v; });
    return async () => {
      const r = new Redis(opts);
      // Each command reports its own failure; a failed connection says
      // only "Connection is closed", so its cause is kept.
      let cause;
      r.on("error", (e) => { cause = e; });
      await r.connect().catch((e) => { throw cause || e; });
      return {
        call: (...args) => r.call(...args),
        pipeline: (cmds) => r.pipeline(lower(cmds)).exec().then(replies),
        multi: (cmds) => r.multi(lower(cmds)).exec().then(replies),
        subscribe: async (channel, onMessage) => {
          r.on("message", (ch, msg) => { if (ch === channel) onMessage(msg); });
          await r.subscribe(channel);
        },
        close: () => r.quit().catch(() => r.disconnect()),
      };
    };
  }
  if (lib === "node-redis") {
    const { createClient } = require("redis");
    const opts = { url: mode === "tls" ? c.tls_uri : c.uri, socket: { reconnectStrategy: false } };
    if (tls) Object.assign(opts.socket, { tls: true, ca: c.tls_ca });
    return async () => {
      const r = createClient(opts);
      r.on("error", () => {}); // each command reports its own failure
      await r.connect();
      const batch = (cmds) => cmds.reduce((m, cmd) => m.addCommand(cmd), r.multi());
      return {
        call: (...args) => r.sendCommand(args.map(String)),
        pipeline: (cmds) => batch(cmds).execAsPipeline(),
        multi: (cmds) => batch(cmds).exec(),
        subscribe: (channel, onMessage) => r.subscribe(channel, onMessage),
        close: () => r.close().catch(() => r.destroy()),
      };
    };
  }
  throw new Error(`unknown library ${lib}: ioredis or node-redis`);
}

const EVAL_SCRIPT = "redis.call('SET', KEYS[1], ARGV[1]) return redis.call('GET', KEYS[1]) .. ':' .. redis.call('STRLEN', KEYS[1])";

async function main() {
  const open = connect(credentials());
  let failed = false;
  const opened = [];
  const conn = async () => { const c = await open(); opened.push(c); return c; };
  const run = async (op, fn) => {
    try {
      console.log(JSON.stringify({ op, value: String(await fn()) }));
    } catch (e) {
      failed = true;
      console.log(JSON.stringify({ op, error: String(e && e.message ? e.message : e) }));
    }
  };
  let r;
  await run("connect", async () => { r = await conn(); return "ok"; });
  if (r) {
    await run("whoami", () => r.call("ACL", "WHOAMI"));
    await run("port", async () => /laddr=\S+:(\d+)/.exec(await r.call("CLIENT", "INFO"))[1]);
    await run("set_get", async () => {
      await r.call("SET", `${id}:str`, id);
      return r.call("GET", `${id}:str`);
    });
    await run("pipeline", async () => {
      const rs = await r.pipeline([["SET", `${id}:p`, id], ["INCRBY", `${id}:n`, "20"], ["INCRBY", `${id}:n`, "22"], ["GET", `${id}:p`]]);
      return `${rs[2]} ${rs[3]}`;
    });
    await run("multi", async () => {
      const rs = await r.multi([["SET", `${id}:m`, id], ["INCR", `${id}:mn`], ["INCR", `${id}:mn`], ["GET", `${id}:m`]]);
      return `${rs[2]} ${rs[3]}`;
    });
    await run("eval", () => r.call("EVAL", EVAL_SCRIPT, "1", `${id}:e`, id));
    await run("pubsub", async () => {
      const sub = await conn();
      let received;
      const got = new Promise((resolve) => { received = resolve; });
      await sub.subscribe(`${id}:c`, received);
      const receivers = await r.call("PUBLISH", `${id}:c`, id);
      return `${receivers} ${await got}`;
    });
  }
  for (const c of opened) await c.close();
  process.exit(failed ? 1 : 0);
}

main().catch((e) => {
  console.log(JSON.stringify({ op: "main", error: String(e && e.message ? e.message : e) }));
  process.exit(1);
});
