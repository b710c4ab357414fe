package snapshot

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// aofFile is one line of Redis 7's multi-part AOF manifest:
// "file appendonly.aof.3.base.rdb seq 3 type b".
type aofFile struct {
	Name string
	Seq  int64
	// Type is "b" (base), "i" (incremental) or "h" (history, about to be
	// deleted).
	Type string
}

// aofManifest is the parsed manifest of an appendonlydir.
type aofManifest []aofFile

// readAOFManifest reads and parses the manifest file at path.
func readAOFManifest(path string) (aofManifest, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parseAOFManifest(data)
}

func parseAOFManifest(data []byte) (aofManifest, error) {
	var m aofManifest
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields)%2 != 0 {
			return nil, fmt.Errorf("AOF manifest line %q is not key/value pairs", line)
		}
		var f aofFile
		for i := 0; i < len(fields); i += 2 {
			switch fields[i] {
			case "file":
				f.Name = fields[i+1]
			case "seq":
				seq, err := strconv.ParseInt(fields[i+1], 10, 64)
				if err != nil {
					return nil, fmt.Errorf("AOF manifest line %q: bad seq", line)
				}
				f.Seq = seq
			case "type":
				f.Type = fields[i+1]
			}
		}
		if f.Name == "" || strings.ContainsAny(f.Name, "/\\\"") || (f.Type != "b" && f.Type != "i" && f.Type != "h") {
			return nil, fmt.Errorf("AOF manifest line %q is not understood", line)
		}
		m = append(m, f)
	}
	return m, sc.Err()
}

// base returns the base file, or false when the manifest has none.
func (m aofManifest) base() (aofFile, bool) {
	for _, f := range m {
		if f.Type == "b" {
			return f, true
		}
	}
	return aofFile{}, false
}

// incrs returns the incremental files in order.
func (m aofManifest) incrs() []aofFile {
	var out []aofFile
	for _, f := range m {
		if f.Type == "i" {
			out = append(out, f)
		}
	}
	return out
}

// render writes the manifest as Redis does.
func (m aofManifest) render() []byte {
	var b bytes.Buffer
	for _, f := range m {
		fmt.Fprintf(&b, "file %s seq %d type %s\n", f.Name, f.Seq, f.Type)
	}
	return b.Bytes()
}
