package tile_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"go.yaml.in/yaml/v3"
)

func TestTile(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "tile")
}

// fakeJob is the part of a job spec the tile reads.
type fakeJob struct {
	Properties []string
	Consumes   []map[string]any
	Provides   []map[string]any
}

// writeRelease writes a release tarball as `bosh create-release` lays it
// out (release.MF, jobs/NAME.tgz holding ./job.MF, a package) and returns
// its path.
func writeRelease(dir, name, version string, jobs map[string]fakeJob) string {
	GinkgoHelper()
	var mfJobs []map[string]any
	var files []tarFile
	for jobName, j := range jobs {
		props := map[string]any{}
		for _, p := range j.Properties {
			props[p] = map[string]any{"description": p}
		}
		spec := map[string]any{"name": jobName, "templates": map[string]string{}, "properties": props}
		if j.Consumes != nil {
			spec["consumes"] = j.Consumes
		}
		if j.Provides != nil {
			spec["provides"] = j.Provides
		}
		data, err := yaml.Marshal(spec)
		Expect(err).NotTo(HaveOccurred())
		files = append(files, tarFile{"jobs/" + jobName + ".tgz", targz([]tarFile{{"./job.MF", data}, {"./monit", nil}})})
		mfJobs = append(mfJobs, map[string]any{"name": jobName, "version": "abc"})
	}
	mf, err := yaml.Marshal(map[string]any{"name": name, "version": version, "jobs": mfJobs})
	Expect(err).NotTo(HaveOccurred())
	files = append([]tarFile{{"release.MF", mf}}, files...)
	files = append(files, tarFile{"packages/pkg.tgz", targz([]tarFile{{"./packaging", []byte("true")}})})
	path := filepath.Join(dir, name+"-"+version+".tgz")
	Expect(os.WriteFile(path, targz(files), 0o644)).To(Succeed())
	return path
}

type tarFile struct {
	name string
	data []byte
}

func targz(files []tarFile) []byte {
	GinkgoHelper()
	var b bytes.Buffer
	gz := gzip.NewWriter(&b)
	tw := tar.NewWriter(gz)
	for _, f := range files {
		Expect(tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.data)), Typeflag: tar.TypeReg})).To(Succeed())
		_, err := tw.Write(f.data)
		Expect(err).NotTo(HaveOccurred())
	}
	Expect(tw.Close()).To(Succeed())
	Expect(gz.Close()).To(Succeed())
	return b.Bytes()
}

// pngBytes is a 1x1 PNG.
var pngBytes = []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00\x90wS\xde\x00\x00\x00\x0cIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N\x00\x00\x00\x00IEND\xaeB`\x82")
