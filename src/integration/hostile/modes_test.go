package hostile_test

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	. "github.com/onsi/gomega"

	"github.com/cf-redis/redis-for-cf/src/internal/instance"
	"github.com/cf-redis/redis-for-cf/src/testkit/systemspec"
)

// expectFileModes: after an instance of p was provisioned and written to
// (with the append-only file on, as every instance has it), its files and
// its agent's folders are closed to other users of the VM: state folders
// 0700, data files, redis.conf and the ACL file 0600, logs 0640 or tighter.
func expectFileModes(sys *system, p plan) {
	id := newID("modes")
	sys.provisionForSpec(p, id)
	app := client(sys.bind(p, id, newID("app")))
	systemspec.WriteKeys(ctx, app, "data", 1000)
	systemspec.WaitForAOF()
	pl := sys.locate(p, id)
	paths := instance.PathsIn(pl.dir, pl.log)

	var wrong []string
	check := func(path string, most os.FileMode) {
		info, err := os.Stat(path)
		if err != nil {
			wrong = append(wrong, fmt.Sprintf("%s: %v", path, err))
			return
		}
		if extra := info.Mode().Perm() &^ most; extra != 0 {
			wrong = append(wrong, fmt.Sprintf("%s is %04o, wants %04o or tighter", path, info.Mode().Perm(), most))
		}
	}
	check(pl.stateDir, 0o700)
	if p == sharedPlan {
		check(filepath.Dir(pl.dir), 0o700) // the agent's instances folder
	}
	check(paths.Dir, 0o700)
	check(paths.Data, 0o700)
	check(paths.Conf, 0o600)
	check(paths.ACL, 0o600)
	check(paths.Log, 0o640)
	aof := filepath.Join(paths.Data, "appendonlydir")
	check(aof, 0o700)
	files := 0
	Expect(filepath.WalkDir(aof, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files++
			check(path, 0o600)
		}
		return err
	})).To(Succeed())
	Expect(files).To(BeNumerically(">", 0), "the append-only files in %s", aof)
	if _, err := os.Stat(filepath.Join(paths.Data, "dump.rdb")); err == nil {
		check(filepath.Join(paths.Data, "dump.rdb"), 0o600)
	}
	Expect(wrong).To(BeEmpty(), "files and folders of instance %s (%s) open to other users of the VM", id, p.name)
}
