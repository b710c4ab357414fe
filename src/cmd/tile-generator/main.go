// Command tile-generator builds the Ops Manager tile of Redis for Cloud
// Foundry, NAME-VERSION.pivotal, from the tile description (config/tile/tile.yml),
// the BOSH release tarballs it packs and its migrations, and checks a built
// tile:
//
//	tile-generator -release TARBALL [-release TARBALL...] [-tile config/tile/tile.yml]
//	    [-migrations DIR] [-version VERSION] [-output DIR]
//	tile-generator check FILE.pivotal
//
// It writes nothing unless every check passes, and then writes the tile in
// one step (a temporary file renamed). It prints the tile's path; what the
// description marks pending and the tile leaves out goes to stderr.
//
// Exit status: 0 done, 1 the tile is wrong (every problem is on stderr), 2
// bad usage.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/cf-redis/redis-for-cf/src/internal/buildinfo"
	"github.com/cf-redis/redis-for-cf/src/release/tile"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

const usage = `usage:
  tile-generator -release TARBALL [-release TARBALL...] [-tile config/tile/tile.yml] [-migrations DIR] [-version VERSION] [-output DIR]
  tile-generator check FILE.pivotal
  tile-generator version                 the generator's own version`

// files collects a repeated flag.
type files []string

func (f *files) String() string     { return fmt.Sprint(*f) }
func (f *files) Set(v string) error { *f = append(*f, v); return nil }

func run(args []string, stdout, stderr io.Writer) int {
	// -version is the tile's version, so the generator's own is a verb.
	if len(args) == 1 && args[0] == "version" {
		fmt.Fprintln(stdout, buildinfo.Line("tile-generator"))
		return 0
	}
	if len(args) > 0 && args[0] == "check" {
		if len(args) != 2 {
			fmt.Fprintln(stderr, usage)
			return 2
		}
		return check(args[1], stdout, stderr)
	}
	fs := flag.NewFlagSet("tile-generator", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var releases files
	fs.Var(&releases, "release", "a BOSH release tarball the tile packs (once per release the description names)")
	desc := fs.String("tile", "config/tile/tile.yml", "the tile description")
	migrations := fs.String("migrations", "", "the migrations folder (default: migrations/v1 beside the description)")
	version := fs.String("version", "", "the tile's version (default: from the first release's version)")
	output := fs.String("output", ".", "the folder the tile is written into")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 || len(releases) == 0 {
		fmt.Fprintln(stderr, usage)
		return 2
	}
	if *migrations == "" {
		*migrations = filepath.Join(filepath.Dir(*desc), "migrations", "v1")
	}
	path, left, err := build(*desc, releases, *migrations, *version, *output)
	for _, l := range left {
		fmt.Fprintln(stderr, "tile-generator: left out:", l)
	}
	if err != nil {
		fmt.Fprintln(stderr, "tile-generator: no tile written:")
		for _, e := range unjoin(err) {
			fmt.Fprintln(stderr, "  -", e)
		}
		return 1
	}
	fmt.Fprintln(stdout, path)
	return 0
}

func build(descPath string, tarballs []string, migrationsDir, version, output string) (string, []string, error) {
	d, err := tile.LoadDescription(descPath)
	if err != nil {
		return "", nil, err
	}
	var releases []*tile.Release
	var errs []error
	for _, t := range tarballs {
		r, err := tile.ReadRelease(t)
		errs = append(errs, err)
		if err == nil {
			releases = append(releases, r)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return "", nil, err
	}
	migrations, err := tile.LoadMigrations(migrationsDir)
	if err != nil {
		return "", nil, err
	}
	if st, err := os.Stat(output); err != nil || !st.IsDir() {
		return "", nil, fmt.Errorf("output folder %s: not a folder", output)
	}
	b, err := tile.Build(d, tile.Options{Dir: filepath.Dir(descPath), Releases: releases, Version: version, Migrations: migrations})
	if err != nil {
		return "", nil, err
	}
	path, err := b.Write(output)
	return path, b.Left, err
}

func check(file string, stdout, stderr io.Writer) int {
	b, err := tile.Read(file)
	if err == nil {
		err = tile.Check(b.Metadata, b.Releases)
	}
	if err != nil {
		fmt.Fprintf(stderr, "tile-generator: %s fails its checks:\n", file)
		for _, e := range unjoin(err) {
			fmt.Fprintln(stderr, "  -", e)
		}
		return 1
	}
	fmt.Fprintf(stdout, "%s: %s %s passes its checks\n", file, b.Metadata.Name, b.Metadata.ProductVersion)
	return 0
}

// unjoin lists the errors an errors.Join holds, one per line of output.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, unjoin(e)...)
		}
		return out
	}
	return []error{err}
}
