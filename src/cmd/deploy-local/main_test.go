package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cf-redis/redis-for-cf/src/release/localbosh"
)

func TestPrintBackups(t *testing.T) {
	s3 := &localbosh.S3{Endpoint: localbosh.S3Endpoint, Bucket: localbosh.S3Bucket}
	at := time.Date(2026, 1, 21, 3, 0, 0, 0, time.UTC)
	var out strings.Builder
	printBackups(&out, s3, []localbosh.S3Object{
		{Name: "a/20260121T030000.000Z.tar.gz", Size: 800, LastModified: at},
		{Name: "b/20260121T030001.000Z.tar.gz", Size: 3 << 20, LastModified: at.Add(time.Second)},
	})
	want := `  s3://redis-backups at http://10.244.0.3:9000 holds 2 objects, 3.0 MiB:
         800 B  2026-01-21T03:00:00Z  a/20260121T030000.000Z.tar.gz
       3.0 MiB  2026-01-21T03:00:01Z  b/20260121T030001.000Z.tar.gz
`
	if out.String() != want {
		t.Errorf("got\n%s\nwant\n%s", out.String(), want)
	}

	out.Reset()
	printBackups(&out, s3, nil)
	if !strings.Contains(out.String(), "holds 0 objects") || !strings.Contains(out.String(), "none: no service instance exists yet") {
		t.Errorf("an empty bucket: %s", out.String())
	}

	// Many: the newest maxListed, in name order, and how many more.
	var many []localbosh.S3Object
	for i := range maxListed + 5 {
		many = append(many, localbosh.S3Object{Name: fmt.Sprintf("x/%03d.tar.gz", i), Size: 1, LastModified: at.Add(time.Duration(i) * time.Minute)})
	}
	out.Reset()
	printBackups(&out, s3, many)
	lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
	if len(lines) != 1+maxListed+1 {
		t.Fatalf("%d lines:\n%s", len(lines), out.String())
	}
	if !strings.HasSuffix(lines[1], "x/005.tar.gz") || !strings.HasSuffix(lines[maxListed], fmt.Sprintf("x/%03d.tar.gz", maxListed+4)) {
		t.Errorf("not the newest, in order:\n%s", out.String())
	}
	if lines[len(lines)-1] != "    ... and 5 older ones" {
		t.Errorf("last line %q", lines[len(lines)-1])
	}
}

func TestSize(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 5 << 20: "5.0 MiB"} {
		if got := size(n); got != want {
			t.Errorf("size(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestS3Flags(t *testing.T) {
	var stdout, stderr strings.Builder
	if code := run([]string{"-h"}, &stdout, &stderr); code != 2 {
		t.Fatalf("-h: exit code %d", code)
	}
	for _, want := range []string{"-s3", "-no-s3", "backups-s3.yml", "backup_s3_endpoint", localbosh.S3Endpoint, "NAME-s3"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("the help does not mention %q:\n%s", want, stderr.String())
		}
	}
}
