// Package s3store keeps backups in an S3-compatible bucket (AWS S3, MinIO,
// Ceph, ...), through minio-go's low-level Core API so that the upload is
// ours to shape: an archive streams in parts of PartSize bytes, a few parts
// in flight, so memory stays bounded and nothing is staged on disk. An
// archive smaller than one part goes up in one PUT. Either way S3 shows the
// object under its name only when it is complete (a multipart upload is
// invisible until CompleteMultipartUpload), and a failed upload is aborted,
// so no partial object is ever left under a final name.
package s3store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/cf-redis/redis-for-cf/src/internal/store"
	"github.com/cf-redis/redis-for-cf/src/internal/tlsca"
)

// Defaults for the zero values of Config.
const (
	// DefaultPartSize is the PartSize of a Config that sets none.
	DefaultPartSize = 16 << 20
	// DefaultConcurrency is the Concurrency of a Config that sets none.
	DefaultConcurrency = 3
	// minPartSize is S3's smallest part but the last.
	minPartSize = 5 << 20
	// maxParts is S3's limit of parts per upload.
	maxParts = 10000
)

// Config says where the bucket is and how to reach it.
type Config struct {
	// Endpoint is the S3 API's URL, e.g. "https://s3.eu-west-1.amazonaws.com"
	// or "http://127.0.0.1:9000".
	Endpoint string
	// Region is the bucket's region; empty lets the client ask S3.
	Region string
	// Bucket must exist.
	Bucket string
	// AccessKeyID and SecretAccessKey sign every request.
	AccessKeyID, SecretAccessKey string
	// PathStyle puts the bucket in the path (http://host/bucket/key), as
	// MinIO and most S3-compatible stores want; false puts it in the host
	// name (virtual-hosted style, AWS's default).
	PathStyle bool
	// CACert is a PEM CA for an https endpoint with a private certificate;
	// empty means the system roots.
	CACert string
	// PartSize is the size of each part of a multipart upload (at least
	// 5 MiB); zero means DefaultPartSize.
	PartSize int64
	// Concurrency is the number of parts uploaded at once; zero means
	// DefaultConcurrency. Memory use is about PartSize × (Concurrency+1).
	Concurrency int
	// MaxRetries is how often a failed request is sent again; zero means 3.
	MaxRetries int
}

// Store is a bucket of backups. The zero value is not usable; call New.
type Store struct {
	cfg  Config
	core *minio.Core
}

var _ store.Store = (*Store)(nil)

// New returns a Store for cfg. It sends no request.
func New(cfg Config) (*Store, error) {
	u, err := url.Parse(cfg.Endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return nil, fmt.Errorf("s3 endpoint %q must be an http or https URL without a path", cfg.Endpoint)
	}
	if cfg.Bucket == "" || cfg.AccessKeyID == "" || cfg.SecretAccessKey == "" {
		return nil, errors.New("s3 bucket, access key id and secret access key are required")
	}
	if cfg.PartSize == 0 {
		cfg.PartSize = DefaultPartSize
	}
	if cfg.PartSize < minPartSize {
		return nil, fmt.Errorf("s3 part size %d is below S3's minimum of 5 MiB", cfg.PartSize)
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	if cfg.MaxRetries <= 0 {
		cfg.MaxRetries = 3
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.DialContext = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	transport.ResponseHeaderTimeout = 5 * time.Minute
	if cfg.CACert != "" {
		if transport.TLSClientConfig, err = tlsca.ClientConfig(cfg.CACert); err != nil {
			return nil, fmt.Errorf("s3 ca_cert %w", err)
		}
	}
	lookup := minio.BucketLookupDNS
	if cfg.PathStyle {
		lookup = minio.BucketLookupPath
	}
	core, err := minio.NewCore(u.Host, &minio.Options{
		Creds:        credentials.NewStaticV4(cfg.AccessKeyID, cfg.SecretAccessKey, ""),
		Secure:       u.Scheme == "https",
		Region:       cfg.Region,
		BucketLookup: lookup,
		Transport:    transport,
		MaxRetries:   cfg.MaxRetries,
	})
	if err != nil {
		return nil, fmt.Errorf("s3 client: %w", err)
	}
	return &Store{cfg: cfg, core: core}, nil
}

// Where returns "s3://bucket/name".
func (s *Store) Where(name string) string { return "s3://" + s.cfg.Bucket + "/" + name }

// Put uploads r under name: in one PUT when r ends within the first part,
// otherwise as a multipart upload with Concurrency parts in flight, which is
// aborted on any error and completed only after the last part.
func (s *Store) Put(ctx context.Context, name string, r io.Reader) (int64, error) {
	if err := store.CheckName(name); err != nil {
		return 0, err
	}
	s.abortStale(ctx, path.Dir(name)+"/")
	opts := minio.PutObjectOptions{ContentType: "application/gzip"}
	first := make([]byte, s.cfg.PartSize)
	n, err := io.ReadFull(r, first)
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		head, err := store.HeadOf(r, int64(n))
		if err != nil {
			return 0, err
		}
		copy(first, head)
		if _, err := s.core.PutObject(ctx, s.cfg.Bucket, name, bytes.NewReader(first[:n]), int64(n), "", "", opts); err != nil {
			return 0, s.describe("uploading "+name, err)
		}
		return int64(n), s.verify(ctx, name, int64(n))
	case err != nil:
		return 0, fmt.Errorf("reading the backup: %w", err)
	}
	uploadID, err := s.core.NewMultipartUpload(ctx, s.cfg.Bucket, name, opts)
	if err != nil {
		return 0, s.describe("starting the upload of "+name, err)
	}
	total, err := s.uploadParts(ctx, name, uploadID, first, r)
	if err != nil {
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if aerr := s.core.AbortMultipartUpload(actx, s.cfg.Bucket, name, uploadID); aerr != nil {
			err = fmt.Errorf("%w (aborting the incomplete upload failed too, S3 keeps its parts until a lifecycle rule removes them: %v)", err, s.describe("", aerr))
		}
		return total, err
	}
	return total, s.verify(ctx, name, total)
}

// uploadParts sends first (a full part) and then the rest of r as parts,
// Concurrency at a time, and completes the upload. When r has a late head
// (store.LateHead), first goes up last, once the head is written over its
// start.
func (s *Store) uploadParts(ctx context.Context, name, uploadID string, first []byte, r io.Reader) (int64, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu       sync.Mutex
		parts    []minio.CompletePart
		firstErr error
		wg       sync.WaitGroup
	)
	fail := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		mu.Unlock()
		cancel()
	}
	// Concurrency buffers besides first: one part is read while the others
	// go up.
	free := make(chan []byte, s.cfg.Concurrency+1)
	for range s.cfg.Concurrency {
		free <- make([]byte, s.cfg.PartSize)
	}
	upload := func(number int, buf []byte, n int) {
		defer wg.Done()
		part, err := s.core.PutObjectPart(ctx, s.cfg.Bucket, name, uploadID, number, bytes.NewReader(buf[:n]), int64(n), minio.PutObjectPartOptions{})
		free <- buf
		if err != nil {
			fail(s.describe(fmt.Sprintf("uploading part %d of %s", number, name), err))
			return
		}
		mu.Lock()
		parts = append(parts, minio.CompletePart{PartNumber: number, ETag: part.ETag})
		mu.Unlock()
	}
	var total int64
	_, late := r.(store.LateHead)
	buf, n, last := first, len(first), false
loop:
	for number := 1; ; number++ {
		if number > maxParts {
			fail(fmt.Errorf("the backup needs more than %d parts of %d MiB: raise the part size", maxParts, s.cfg.PartSize>>20))
			break
		}
		total += int64(n)
		if !(late && number == 1) {
			wg.Add(1)
			go upload(number, buf, n)
		}
		if last {
			break
		}
		select {
		case buf = <-free:
		case <-ctx.Done():
			fail(ctx.Err())
			break loop
		}
		var err error
		n, err = io.ReadFull(r, buf)
		switch {
		case errors.Is(err, io.EOF):
			break loop // the part before was the last
		case errors.Is(err, io.ErrUnexpectedEOF):
			last = true
		case err != nil:
			fail(fmt.Errorf("reading the backup: %w", err))
			break loop
		}
	}
	if late {
		mu.Lock()
		failed := firstErr != nil
		mu.Unlock()
		if !failed {
			if head, err := store.HeadOf(r, int64(len(first))); err != nil {
				fail(err)
			} else {
				copy(first, head)
				wg.Add(1)
				go upload(1, first, len(first))
			}
		}
	}
	wg.Wait()
	mu.Lock()
	err := firstErr
	mu.Unlock()
	if err != nil {
		return total, err
	}
	slices.SortFunc(parts, func(a, b minio.CompletePart) int { return a.PartNumber - b.PartNumber })
	if _, err := s.core.CompleteMultipartUpload(ctx, s.cfg.Bucket, name, uploadID, parts, minio.PutObjectOptions{}); err != nil {
		return total, s.describe("completing the upload of "+name, err)
	}
	return total, nil
}

// verify checks that the stored object has the size that was sent.
func (s *Store) verify(ctx context.Context, name string, size int64) error {
	info, err := s.core.StatObject(ctx, s.cfg.Bucket, name, minio.StatObjectOptions{})
	if err != nil {
		return s.describe("checking the uploaded "+name, err)
	}
	if info.Size != size {
		return fmt.Errorf("S3 holds %d bytes of %s, %d were sent", info.Size, name, size)
	}
	return nil
}

// staleUpload is the age after which an incomplete multipart upload is a
// crash's leftover and not an upload in progress.
const staleUpload = 24 * time.Hour

// abortStale aborts incomplete uploads under prefix that a crashed Put left
// behind. Best effort: S3 hides them anyway, a bucket lifecycle rule
// (AbortIncompleteMultipartUpload) is the other way to bound them.
func (s *Store) abortStale(ctx context.Context, prefix string) {
	res, err := s.core.ListMultipartUploads(ctx, s.cfg.Bucket, prefix, "", "", "", 100)
	if err != nil {
		return
	}
	for _, u := range res.Uploads {
		if time.Since(u.Initiated) > staleUpload {
			_ = s.core.AbortMultipartUpload(ctx, s.cfg.Bucket, u.Key, u.UploadID)
		}
	}
}

// Get opens the object name.
func (s *Store) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	if err := store.CheckName(name); err != nil {
		return nil, err
	}
	body, _, _, err := s.core.GetObject(ctx, s.cfg.Bucket, name, minio.GetObjectOptions{})
	if err != nil {
		if minio.ToErrorResponse(err).Code == "NoSuchKey" {
			return nil, fmt.Errorf("%w: %s", store.ErrNotFound, s.Where(name))
		}
		return nil, s.describe("downloading "+name, err)
	}
	return body, nil
}

// List lists the objects under prefix.
func (s *Store) List(ctx context.Context, prefix string) ([]store.Object, error) {
	var out []store.Object
	for o := range s.core.Client.ListObjects(ctx, s.cfg.Bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if o.Err != nil {
			return nil, s.describe("listing "+s.Where(prefix), o.Err)
		}
		out = append(out, store.Object{Name: o.Key, Size: o.Size, Modified: o.LastModified})
	}
	return out, nil
}

// Delete removes the object name.
func (s *Store) Delete(ctx context.Context, name string) error {
	if err := store.CheckName(name); err != nil {
		return err
	}
	if err := s.core.RemoveObject(ctx, s.cfg.Bucket, name, minio.RemoveObjectOptions{}); err != nil {
		return s.describe("deleting "+name, err)
	}
	return nil
}

// describe turns an S3 error into one an operator can act on. It never
// carries a credential: minio-go's errors hold none.
func (s *Store) describe(doing string, err error) error {
	if doing != "" {
		doing += ": "
	}
	er := minio.ToErrorResponse(err)
	switch er.Code {
	case "":
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("%s%w", doing, err)
		}
		return fmt.Errorf("%sS3 endpoint %s is unreachable: %w", doing, s.cfg.Endpoint, err)
	case "NoSuchBucket":
		return fmt.Errorf("%sbucket %q does not exist at %s", doing, s.cfg.Bucket, s.cfg.Endpoint)
	case "InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "InvalidToken", "ExpiredToken":
		return fmt.Errorf("%sS3 at %s refused the access key %q (%s): check the access key and secret", doing, s.cfg.Endpoint, s.cfg.AccessKeyID, er.Code)
	default:
		msg := er.Message
		if msg == "" {
			msg = strings.TrimSpace(err.Error())
		}
		return fmt.Errorf("%sS3 at %s answered %s: %s", doing, s.cfg.Endpoint, er.Code, msg)
	}
}
