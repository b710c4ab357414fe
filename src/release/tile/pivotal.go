package tile

import (
	"archive/zip"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/cf-redis/redis-for-cf/src/internal/statefile"
)

// Migration is one JavaScript file of the tile's migrations/v1: Ops Manager
// runs, once each and in the order of their names, the ones an installation
// has not run yet, passing the installation's property values to
// exports.migrate and keeping what it returns.
type Migration struct {
	Name   string
	Source []byte
}

// migrationNameRe is Ops Manager's TIMESTAMP_NAME.js, the timestamp being
// YYYYMMDDHHMM: the names sort in the order the migrations were written.
var migrationNameRe = regexp.MustCompile(`^(\d{12})_[a-z0-9_-]+\.js$`)

// LoadMigrations reads the migrations in dir (config/tile/migrations/v1), in the
// order Ops Manager runs them. A missing dir means none.
func LoadMigrations(dir string) ([]Migration, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Migration
	for _, e := range entries {
		m := migrationNameRe.FindStringSubmatch(e.Name())
		if m == nil || !e.Type().IsRegular() {
			return nil, fmt.Errorf("migrations: %s is not a migration file named YYYYMMDDHHMM_name.js", e.Name())
		}
		if _, err := time.Parse("200601021504", m[1]); err != nil {
			return nil, fmt.Errorf("migrations: %s: %s is not a time (YYYYMMDDHHMM)", e.Name(), m[1])
		}
		src, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		if !bytes.Contains(src, []byte("exports.migrate")) {
			return nil, fmt.Errorf("migrations: %s defines no exports.migrate", e.Name())
		}
		out = append(out, Migration{Name: e.Name(), Source: src})
	}
	return out, nil
}

// MetadataFile is the metadata's path in the tile.
func (m *Metadata) MetadataFile() string { return "metadata/" + m.Name + ".yml" }

// FileName is the tile's file name: NAME-VERSION.pivotal.
func (m *Metadata) FileName() string { return m.Name + "-" + m.ProductVersion + ".pivotal" }

// Write writes the tile into dir as NAME-VERSION.pivotal and returns its
// path. The file appears whole or not at all: it is written under a
// temporary name, synced, and renamed; on any error the temporary file is
// removed and an earlier tile of the same name is left as it was.
func (b *Built) Write(dir string) (string, error) {
	meta, err := marshal(b.Metadata)
	if err != nil {
		return "", err
	}
	final := filepath.Join(dir, b.Metadata.FileName())
	tmp, err := os.CreateTemp(dir, "."+b.Metadata.FileName()+".*.tmp")
	if err != nil {
		return "", err
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	zw := zip.NewWriter(tmp)
	add := func(name string, method uint16, r io.Reader) error {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: name, Method: method, Modified: time.Now()})
		if err != nil {
			return err
		}
		_, err = io.Copy(w, r)
		return err
	}
	if err := add(b.Metadata.MetadataFile(), zip.Deflate, bytes.NewReader(meta)); err != nil {
		return "", err
	}
	for _, mg := range b.Migrations {
		if err := add("migrations/v1/"+mg.Name, zip.Deflate, bytes.NewReader(mg.Source)); err != nil {
			return "", err
		}
	}
	for _, r := range b.Releases {
		if err := addRelease(add, r); err != nil {
			return "", err
		}
	}
	if err := zw.Close(); err != nil {
		return "", err
	}
	if err := tmp.Sync(); err != nil {
		return "", err
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	if err := os.Rename(tmp.Name(), final); err != nil {
		return "", err
	}
	ok = true
	// The tile is complete whether or not its name survives a power cut.
	_ = statefile.SyncDir(dir)
	return final, nil
}

// addRelease copies a release tarball into the tile, stored as it is (it is
// compressed already), and checks it is still the release that was read.
func addRelease(add func(string, uint16, io.Reader) error, r *Release) error {
	f, err := os.Open(r.Path)
	if err != nil {
		return fmt.Errorf("release tarball %s: %w", r.Path, err)
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || st.Size() != r.size {
		return fmt.Errorf("release tarball %s changed since it was read", r.Path)
	}
	if err := add("releases/"+r.File(), zip.Store, f); err != nil {
		return fmt.Errorf("release tarball %s: %w", r.Path, err)
	}
	return nil
}

// Read reads a tile: its metadata, the releases it carries and its
// migrations.
func Read(file string) (*Built, error) {
	zr, err := zip.OpenReader(file)
	if err != nil {
		return nil, err
	}
	defer zr.Close()
	b := &Built{}
	var metas []string
	for _, f := range zr.File {
		name := path.Clean(f.Name)
		switch {
		case f.FileInfo().IsDir():
		case strings.HasPrefix(name, "metadata/") && strings.HasSuffix(name, ".yml"):
			metas = append(metas, name)
			data, err := readZipFile(f)
			if err != nil {
				return nil, err
			}
			b.Metadata = &Metadata{}
			if err := yaml.Unmarshal(data, b.Metadata); err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
		case strings.HasPrefix(name, "releases/") && strings.HasSuffix(name, ".tgz"):
			rc, err := f.Open()
			if err != nil {
				return nil, err
			}
			r, err := ReadReleaseFrom(rc)
			rc.Close()
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			if path.Base(name) != r.File() {
				return nil, fmt.Errorf("%s holds release %s", name, r)
			}
			b.Releases = append(b.Releases, r)
		case strings.HasPrefix(name, "migrations/v1/"):
			data, err := readZipFile(f)
			if err != nil {
				return nil, err
			}
			b.Migrations = append(b.Migrations, Migration{Name: path.Base(name), Source: data})
		default:
			return nil, fmt.Errorf("%s: not a metadata, release or migration file", name)
		}
	}
	if len(metas) != 1 {
		return nil, fmt.Errorf("a tile holds one metadata/*.yml, not %d", len(metas))
	}
	if metas[0] != b.Metadata.MetadataFile() {
		return nil, fmt.Errorf("%s holds the metadata of product %q", metas[0], b.Metadata.Name)
	}
	return b, nil
}

func readZipFile(f *zip.File) ([]byte, error) {
	rc, err := f.Open()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}
