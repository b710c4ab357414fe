package spec

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

// inNamespaces runs a bash script as root in new mount and network
// namespaces, where /var is an empty tmpfs (for /var/vcap), /etc/sysctl.d
// and /proc/sys/vm/overcommit_memory are files of the test, and the network
// settings are the namespace's own: what a job script does there leaves the
// machine as it was. It returns the combined output.
func inNamespaces(script string, env ...string) (string, error) {
	GinkgoHelper()
	if os.Geteuid() != 0 {
		Skip("the job scripts run as root, in namespaces of their own")
	}
	dir := GinkgoT().TempDir()
	Expect(os.Mkdir(filepath.Join(dir, "sysctl.d"), 0o755)).To(Succeed())
	Expect(os.WriteFile(filepath.Join(dir, "overcommit_memory"), []byte("0\n"), 0o644)).To(Succeed())
	setup := `set -euo pipefail
mount --bind "$T/sysctl.d" /etc/sysctl.d
mount --bind "$T/overcommit_memory" /proc/sys/vm/overcommit_memory
mount -t tmpfs tmpfs /var
ip link set lo up
`
	cmd := exec.Command("unshare", "--mount", "--net", "--propagation", "private", "--fork", "bash", "-c", setup+script)
	cmd.Env = append(append(os.Environ(), "T="+dir), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// renderScript renders the job's template whose destination is script (e.g.
// "bin/drain") into a file and returns its path.
func renderScript(job, script string, p map[string]any) string {
	GinkgoHelper()
	j := mustLoadJob(job)
	for src, dst := range j.Templates {
		if dst == script {
			out, err := j.render(src, p, group(job, 1, 40)[0], nil)
			Expect(err).NotTo(HaveOccurred())
			return writeTemp(filepath.Base(script), out)
		}
	}
	Fail(job + " has no " + script)
	return ""
}

var _ = Describe("pre-start", func() {
	It("of the shared agent moves the ephemeral ports off the instances' range, reserves it, and keeps outgoing connections working", func() {
		preStart := renderScript("redis-shared-agent", "bin/pre-start", props("api.password", "s"))
		out, err := inNamespaces(`
mkdir -p /var/vcap/store && mount -t tmpfs tmpfs /var/vcap/store
bash "$PRE_START"
echo "range=$(sysctl -n net.ipv4.ip_local_port_range | tr -s '\t ' ' ')"
echo "reserved=$(sysctl -n net.ipv4.ip_local_reserved_ports)"
echo "overcommit=$(cat /proc/sys/vm/overcommit_memory)"
cat /etc/sysctl.d/60-redis-shared-agent.conf
# An outgoing connection gets a source port outside the instances' range.
redis-server --port 7001 --bind 127.0.0.1 --save '' --appendonly no --dir "$T" --daemonize no >/dev/null &
for _ in $(seq 50); do redis-cli -p 7001 ping >/dev/null 2>&1 && break; sleep 0.1; done
echo "client=$(redis-cli -p 7001 client list | grep -o 'addr=[0-9.:]*' | head -1)"
redis-cli -p 7001 shutdown nosave >/dev/null 2>&1 || true
# The instances' ports can still be bound explicitly.
redis-server --port 32768 --bind 127.0.0.1 --save '' --appendonly no --dir "$T" --daemonize no >/dev/null &
for _ in $(seq 50); do redis-cli -p 32768 ping >/dev/null 2>&1 && break; sleep 0.1; done
echo "instance=$(redis-cli -p 32768 ping)"
redis-cli -p 32768 shutdown nosave >/dev/null 2>&1 || true
wait
`, "PRE_START="+preStart)
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(ContainSubstring("range=61001 65535\n"))
		Expect(out).To(ContainSubstring("reserved=32768-61000\n"))
		Expect(out).To(ContainSubstring("overcommit=1\n"))
		Expect(out).To(ContainSubstring("net.ipv4.ip_local_port_range = 61001 65535\n"))
		Expect(out).To(MatchRegexp(`client=addr=127\.0\.0\.1:(6100[1-9]|610[1-9]\d|61[1-9]\d\d|6[2-5]\d\d\d)\n`))
		Expect(out).To(ContainSubstring("instance=PONG\n"))
	})

	for _, job := range []string{"redis-shared-agent", "redis-node"} {
		It("of "+job+" refuses to run without a persistent disk", func() {
			preStart := renderScript(job, "bin/pre-start", props("api.password", "s"))
			out, err := inNamespaces(`mkdir -p /var/vcap/store; bash "$PRE_START"`, "PRE_START="+preStart)
			Expect(err).To(HaveOccurred())
			Expect(out).To(ContainSubstring(job + ": /var/vcap/store is not a mounted persistent disk"))
		})
	}

	It("of the node sets vm.overcommit_memory", func() {
		preStart := renderScript("redis-node", "bin/pre-start", props())
		out, err := inNamespaces(`
mkdir -p /var/vcap/store && mount -t tmpfs tmpfs /var/vcap/store
bash "$PRE_START"
echo "overcommit=$(cat /proc/sys/vm/overcommit_memory)"
`, "PRE_START="+preStart)
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(ContainSubstring("overcommit=1\n"))
	})
})

var _ = Describe("drain", func() {
	// A stand-in for bpm: "pid" prints the pid of the process under test,
	// "stop" notes whether that process was still alive when it was called.
	const fakeBPM = `
mkdir -p /var/vcap/jobs/bpm/bin
cat >/var/vcap/jobs/bpm/bin/bpm <<'BPM'
#!/usr/bin/env bash
case "$1" in
pid) [ -s /var/vcap/fake.pid ] && cat /var/vcap/fake.pid || { echo "job is not running" >&2; exit 1; } ;;
stop) if kill -0 "$(cat /var/vcap/fake.pid)" 2>/dev/null; then echo "stop $2 alive"; else echo "stop $2 gone"; fi >>/var/vcap/bpm.calls ;;
esac
BPM
chmod +x /var/vcap/jobs/bpm/bin/bpm
`
	for _, job := range []string{"redis-shared-agent", "redis-node"} {
		It("of "+job+" stops the process and waits for it past bpm's 20 s window, then lets bpm clean up", func() {
			drain := renderScript(job, "bin/drain", props())
			out, err := inNamespaces(fakeBPM+`
# The "agent": exits 2 s after SIGTERM, like one whose redis-servers take a while.
bash -c 'trap "sleep 2; exit 0" TERM; while :; do sleep 0.05; done' &
echo $! >/var/vcap/fake.pid
sleep 0.2
start=$(date +%s%N)
printf 'stdout=[%s]\n' "$(bash "$DRAIN" job_shutdown hash_unchanged)"
echo "elapsed_ms=$(( ($(date +%s%N) - start) / 1000000 ))"
cat /var/vcap/bpm.calls
cat /var/vcap/sys/log/`+job+`/drain.log
`, "DRAIN="+drain)
			Expect(err).NotTo(HaveOccurred(), out)
			Expect(out).To(ContainSubstring("stdout=[0]\n"), "BOSH reads one integer, 0: no dynamic wait")
			Expect(out).To(MatchRegexp(`elapsed_ms=(19\d\d|[2-9]\d\d\d)\n`), "waited for the exit, about 2 s")
			Expect(out).To(ContainSubstring("stop " + job + " gone\n"))
			Expect(out).To(MatchRegexp(`drain: ` + job + ` stopped after [2-9]s`))
		})

		It("of "+job+" fails the update, and leaves the process to finish, when it has not stopped within drain.timeout_seconds", func() {
			drain := renderScript(job, "bin/drain", props("drain.timeout_seconds", 1))
			out, err := inNamespaces(fakeBPM+`
# The "agent": ignores SIGTERM, like one whose redis-server is still writing a large snapshot.
bash -c 'trap "" TERM; while :; do sleep 0.05; done' &
agent=$!
echo $agent >/var/vcap/fake.pid
sleep 0.2
status=0
stdout=$(bash "$DRAIN" job_shutdown hash_unchanged) || status=$?
echo "status=$status stdout=[$stdout]"
kill -0 $agent && echo "agent still runs"
cat /var/vcap/bpm.calls 2>/dev/null || echo "no bpm stop"
cat /var/vcap/sys/log/`+job+`/drain.log
kill -KILL $agent
`, "DRAIN="+drain)
			Expect(err).NotTo(HaveOccurred(), out)
			Expect(out).To(ContainSubstring("status=1 stdout=[]\n"), "a non-zero exit fails the BOSH update")
			Expect(out).To(ContainSubstring("agent still runs\n"), "no SIGKILL: its redis-servers finish writing")
			Expect(out).To(ContainSubstring("no bpm stop"))
			Expect(out).To(ContainSubstring("drain: FAILED: " + job + " still runs after 1s (drain.timeout_seconds)"))
		})

		It("of "+job+" waits 600 s by default", func() {
			drain := renderScript(job, "bin/drain", props())
			Expect(drain).To(BeAnExistingFile())
			data, err := os.ReadFile(drain)
			Expect(err).NotTo(HaveOccurred())
			Expect(string(data)).To(ContainSubstring("\nlimit=600\n"))
			j := mustLoadJob(job)
			Expect(j.Properties).To(HaveKey("drain.timeout_seconds"))
			Expect(j.Properties["drain.timeout_seconds"].Default).To(BeEquivalentTo(600))
		})

		It("of "+job+" does nothing when it is not running", func() {
			drain := renderScript(job, "bin/drain", props())
			out, err := inNamespaces(fakeBPM+`
printf 'stdout=[%s]\n' "$(bash "$DRAIN" job_shutdown hash_unchanged)"
cat /var/vcap/bpm.calls 2>/dev/null || echo "no bpm stop"
`, "DRAIN="+drain)
			Expect(err).NotTo(HaveOccurred(), out)
			Expect(out).To(ContainSubstring("stdout=[0]\n"))
			Expect(out).To(ContainSubstring("no bpm stop"))
			Expect(strings.Count(out, "stdout=")).To(Equal(1))
		})
	}
})
