// Package archive reads and writes backup archives: one tar.gz holding a
// folder named for the instance and the time of the snapshot, with Redis's
// files exactly as redis-server reads them and a manifest.json:
//
//	<instance-id>-<20060102T150405Z>/dump.rdb
//	<instance-id>-<20060102T150405Z>/appendonlydir/appendonly.aof.N.base.rdb
//	<instance-id>-<20060102T150405Z>/appendonlydir/appendonly.aof.M.incr.aof
//	<instance-id>-<20060102T150405Z>/appendonlydir/appendonly.aof.manifest
//	<instance-id>-<20060102T150405Z>/manifest.json
//
// So `tar xzf X.tar.gz && cd <folder> && redis-server` reads the data from
// dump.rdb, and `redis-server --appendonly yes` from appendonlydir/. The
// manifest comes last, because the checksums it holds are computed while the
// files stream past: nothing is read twice and nothing is staged.
//
// Write produces an archive; Extract unpacks one into a directory, refusing
// any name outside the layout above, and verifies every file against the
// manifest before it returns.
package archive

import (
	"errors"
	"fmt"
	"maps"
	"path"
	"regexp"
	"slices"
	"time"
)

// Format is the manifest format this package writes and reads.
const Format = 1

// Names inside an archive's folder.
const (
	ManifestName = "manifest.json"
	RDBName      = "dump.rdb"
	AOFDir       = "appendonlydir"
)

// ErrCorrupt marks an archive that is damaged or was not written by this
// package: a bad checksum, a truncated stream, a name outside the layout.
var ErrCorrupt = errors.New("backup archive is damaged or not a backup")

// Manifest describes a backup. The zero value describes nothing; Write fills
// in Files.
type Manifest struct {
	Format     int    `json:"format"`
	InstanceID string `json:"instance_id"`
	// Plan is "shared-vm" or "dedicated-vm".
	Plan         string `json:"plan"`
	RedisVersion string `json:"redis_version"`
	// CreatedAt is the instant of the snapshot (the fork), in UTC.
	CreatedAt time.Time `json:"created_at"`
	// Keys counts the keys of every database at that instant.
	Keys int64 `json:"keys"`
	// Expires counts the keys among them that had a TTL: they may have
	// expired by the time the backup is restored.
	Expires int64 `json:"expires"`
	// Files maps each file's path inside the folder ("dump.rdb",
	// "appendonlydir/...") to its size and SHA-256.
	Files map[string]File `json:"files"`
}

// File is one file of a backup.
type File struct {
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Folder is the name of the archive's top folder for m: the instance id and
// the snapshot's UTC time, so two archives extracted side by side never mix.
func Folder(m Manifest) string {
	return m.InstanceID + "-" + m.CreatedAt.UTC().Format("20060102T150405Z")
}

// aofFilePattern is what a file of appendonlydir may be called.
var aofFilePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$`)

// validPath reports whether p is a file path an archive may hold.
func validPath(p string) bool {
	if p == RDBName || p == ManifestName {
		return true
	}
	dir, file := path.Split(p)
	return dir == AOFDir+"/" && aofFilePattern.MatchString(file)
}

// Check verifies that m lists dump.rdb and only paths of the layout.
func (m Manifest) Check() error {
	if m.Format != Format {
		return fmt.Errorf("%w: manifest format %d, this version reads format %d", ErrCorrupt, m.Format, Format)
	}
	if m.InstanceID == "" || m.CreatedAt.IsZero() {
		return fmt.Errorf("%w: the manifest names no instance or time", ErrCorrupt)
	}
	if _, ok := m.Files[RDBName]; !ok {
		return fmt.Errorf("%w: the manifest lists no %s", ErrCorrupt, RDBName)
	}
	for _, p := range slices.Sorted(maps.Keys(m.Files)) {
		if !validPath(p) || p == ManifestName {
			return fmt.Errorf("%w: the manifest lists %q, which is not a file of a backup", ErrCorrupt, p)
		}
		if m.Files[p].Size < 0 || len(m.Files[p].SHA256) != 64 {
			return fmt.Errorf("%w: the manifest's entry for %s has no valid size and SHA-256", ErrCorrupt, p)
		}
	}
	return nil
}
