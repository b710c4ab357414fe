# An app's use of Redis through redis-rb (Debian's ruby-redis), as the client
# suite runs it:
#
#   VCAP_SERVICES=... MODE=plain|tls|tls-only|password-only RUN_ID=... /usr/bin/ruby client.rb
#
# It finds its service in VCAP_SERVICES by the tag "redis", as apps do,
# connects as MODE says (see connect below), runs each operation and prints
# one JSON line per operation: {"op": NAME, "value": STRING} with what it read
# back, or {"op": NAME, "error": MESSAGE}. It exits 1 when an operation
# failed. It never prints the credentials.
require "json"
require "openssl"
require "redis"
require "timeout"

$stdout.sync = true
MODE = ENV["MODE"]
ID = ENV["RUN_ID"]
EVAL_SCRIPT = "redis.call('SET', KEYS[1], ARGV[1]) " \
              "return redis.call('GET', KEYS[1]) .. ':' .. redis.call('STRLEN', KEYS[1])"

def credentials
  services = JSON.parse(ENV["VCAP_SERVICES"] || "{}")
  services.each_value do |instances|
    instances.each { |s| return s["credentials"] if (s["tags"] || []).include?("redis") }
  end
  raise "no service tagged redis in VCAP_SERVICES"
end

# connect returns a new client, reading the URI as Ruby apps (Sidekiq, Resque,
# Rails' cache store) are configured:
#   plain:         uri
#   tls:           tls_uri, verifying tls_ca
#   tls-only:      uri (rediss://), verifying tls_ca
#   password-only: uri redis://:password@host:port
def connect(c)
  url = MODE == "tls" ? c["tls_uri"] : c["uri"]
  opts = { url: url, connect_timeout: 10, timeout: 20, reconnect_attempts: 0 }
  if MODE == "tls" || MODE == "tls-only"
    store = OpenSSL::X509::Store.new
    store.add_cert(OpenSSL::X509::Certificate.new(c["tls_ca"]))
    opts[:ssl_params] = { cert_store: store, verify_mode: OpenSSL::SSL::VERIFY_PEER }
  end
  Redis.new(opts)
end

$failed = false

def run(op)
  puts JSON.generate({ op: op, value: yield.to_s })
  true
rescue StandardError, Timeout::Error => e
  $failed = true
  puts JSON.generate({ op: op, error: "#{e.class}: #{e.message}" })
  false
end

def pubsub(r, sub)
  ready = Queue.new
  got = Queue.new
  listener = Thread.new do
    sub.subscribe("#{ID}:c") do |on|
      on.subscribe { ready << true }
      on.message do |_channel, message|
        got << message
        sub.unsubscribe
      end
    end
  rescue StandardError => e
    ready << e
    got << e
  end
  Timeout.timeout(20) do
    confirmed = ready.pop
    raise confirmed if confirmed.is_a?(Exception)
    receivers = r.publish("#{ID}:c", ID)
    message = got.pop
    raise message if message.is_a?(Exception)
    listener.join
    "#{receivers} #{message}"
  end
ensure
  listener&.kill
end

def main
  c = credentials
  r = connect(c)
  return unless run("connect") { r.ping && "ok" }

  run("whoami") { r.call("ACL", "WHOAMI") }
  run("port") { r.call("CLIENT", "INFO")[/laddr=\S+:(\d+)/, 1] }
  run("set_get") do
    r.set("#{ID}:str", ID)
    r.get("#{ID}:str")
  end
  run("pipeline") do
    rs = r.pipelined do |p|
      p.set("#{ID}:p", ID)
      p.incrby("#{ID}:n", 20)
      p.incrby("#{ID}:n", 22)
      p.get("#{ID}:p")
    end
    "#{rs[2]} #{rs[3]}"
  end
  run("multi") do
    rs = r.multi do |m|
      m.set("#{ID}:m", ID)
      m.incr("#{ID}:mn")
      m.incr("#{ID}:mn")
      m.get("#{ID}:m")
    end
    "#{rs[2]} #{rs[3]}"
  end
  run("eval") { r.eval(EVAL_SCRIPT, keys: ["#{ID}:e"], argv: [ID]) }
  run("pubsub") { pubsub(r, connect(c)) }
end

begin
  main
rescue StandardError => e
  puts JSON.generate({ op: "main", error: "#{e.class}: #{e.message}" })
  $failed = true
end
exit($failed ? 1 : 0)
