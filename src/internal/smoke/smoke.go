// Package smoke runs the smoke tests of a deployed Redis service: through
// the broker's OSB API, as Cloud Controller would call it, it provisions an
// instance of each plan, binds, writes and reads with the binding's
// credentials, checks that a command the platform keeps for itself is
// refused, unbinds (and checks the credentials stop working) and
// deprovisions. The first failure stops the tests; whatever they created is
// then deleted, with retries, before the failure is returned.
//
// Nothing secret is written: the broker's password and the bindings'
// credentials are blanked out of every line, error messages included.
package smoke

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cf-redis/redis-for-cf/src/internal/osbhttp"
)

// StepError is the first failure of a run: the plan (empty before any plan
// was tested) and the step it happened in.
type StepError struct {
	Plan, Step string
	Err        error
}

func (e *StepError) Error() string {
	if e.Plan == "" {
		return fmt.Sprintf("step %q: %v", e.Step, e.Err)
	}
	return fmt.Sprintf("plan %s, step %q: %v", e.Plan, e.Step, e.Err)
}

func (e *StepError) Unwrap() error { return e.Err }

// ErrLeftBehind means the cleanup after a failure could not delete
// everything the run created.
var ErrLeftBehind = errors.New("left behind")

// Identities the smoke tests provision and bind as: Cloud Controller would
// send real guids; the broker needs only stable strings.
const (
	orgGUID   = "smoke-tests-org"
	spaceGUID = "smoke-tests-space"
	appGUID   = "smoke-tests-app"
)

// Outcome says which plans a run tested, and which it could not because the
// broker said they were full.
type Outcome struct {
	// Passed are the plans that passed every step, in the order tested.
	Passed []string
	// Full are the plans whose provision the broker refused as full (every
	// dedicated VM in use, every shared VM out of room): nothing of theirs
	// was tested. A full plan is the service working as designed, so it does
	// not fail the run: a deployment whose dedicated pool is all taken by
	// apps still passes its post-deploy errand.
	Full []string
}

// Run runs the smoke tests of cfg (which must have passed Validate) and
// writes what it does to out, one line per step. It returns what it tested,
// and nil when every plan passed or was full, or the first failure as a
// *StepError, after the cleanup.
func Run(ctx context.Context, cfg *Config, out io.Writer) (Outcome, error) {
	red := &redactor{out: out}
	red.add(cfg.Broker.Password)
	client, err := newBrokerClient(cfg.Broker)
	if err != nil {
		return Outcome{}, err
	}
	r := &runner{broker: client, out: red}

	runCtx, cancel := context.WithTimeout(ctx, cfg.timeout())
	failure := r.run(runCtx, cfg)
	cancel()
	if failure != nil {
		r.printf("FAILED: %v", failure)
	}
	// The cleanup goes on when the run was cancelled (a BOSH errand
	// cancelled, a timeout): it has its own time.
	cleanCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.cleanupTimeout())
	defer cancel()
	left := r.cleanUp(cleanCtx)

	var leftErr error
	if len(left) > 0 {
		leftErr = fmt.Errorf("%w: %s", ErrLeftBehind, strings.Join(left, "; "))
	}
	if failure == nil {
		return r.report, leftErr
	}
	// The message is blanked out here once: the caller prints it.
	failure = redacted(failure, red)
	if leftErr != nil {
		return r.report, fmt.Errorf("%w (and the cleanup %w)", failure, leftErr)
	}
	return r.report, failure
}

// redacted returns err with its message blanked out, keeping its step.
func redacted(err error, red *redactor) error {
	var se *StepError
	if errors.As(err, &se) {
		return &StepError{Plan: se.Plan, Step: se.Step, Err: errors.New(red.redact(se.Err.Error()))}
	}
	return errors.New(red.redact(err.Error()))
}

// runner is one run of the smoke tests.
type runner struct {
	broker *brokerClient
	out    *redactor
	// created is what the run created (or asked for) and has not deleted
	// yet, oldest first: the cleanup deletes it newest first.
	created []resource
	report  Outcome
}

// resource is an instance, or a binding of one, that the run created.
type resource struct {
	plan                  string
	instanceID, bindingID string // bindingID is empty for an instance
	serviceID, planID     string
}

func (r resource) String() string {
	if r.bindingID != "" {
		return fmt.Sprintf("binding %s of instance %s (plan %s)", r.bindingID, r.instanceID, r.plan)
	}
	return fmt.Sprintf("instance %s (plan %s)", r.instanceID, r.plan)
}

func (r *runner) printf(format string, args ...any) {
	fmt.Fprintf(r.out, format+"\n", args...)
}

func (r *runner) forget(res resource) {
	r.created = slices.DeleteFunc(r.created, func(c resource) bool { return c == res })
}

// step runs one step of a plan and reports it.
func (r *runner) step(plan, name string, f func() error) error {
	start := time.Now()
	if err := f(); err != nil {
		return &StepError{Plan: plan, Step: name, Err: err}
	}
	took := time.Since(start).Round(time.Millisecond)
	if plan == "" {
		r.printf("%s: ok (%s)", name, took)
	} else {
		r.printf("%s: %s: ok (%s)", plan, name, took)
	}
	return nil
}

func (r *runner) run(ctx context.Context, cfg *Config) error {
	var svc catalogService
	var plans []catalogPlan
	err := r.step("", "catalog", func() error {
		services, err := r.broker.catalog(ctx)
		if err != nil {
			return err
		}
		svc, plans, err = choose(services, cfg.Service, cfg.Plans)
		return err
	})
	if err != nil {
		return err
	}
	var names []string
	for _, p := range plans {
		names = append(names, p.Name)
	}
	r.printf("testing service %s (%s) at %s, plans %s", svc.Name, svc.ID, r.broker.base, strings.Join(names, ", "))
	start := time.Now()
	for _, p := range plans {
		full, err := r.plan(ctx, svc, p)
		if err != nil {
			return err
		}
		if full {
			r.report.Full = append(r.report.Full, p.Name)
		} else {
			r.report.Passed = append(r.report.Passed, p.Name)
		}
	}
	took := time.Since(start).Round(time.Millisecond)
	switch {
	case len(r.report.Full) == 0:
		r.printf("PASSED: %s (%s)", strings.Join(names, ", "), took)
	case len(r.report.Passed) == 0:
		r.printf("NOT TESTED: %s: full (%s)", strings.Join(r.report.Full, ", "), took)
	default:
		r.printf("PASSED: %s; NOT TESTED: %s: full (%s)", strings.Join(r.report.Passed, ", "), strings.Join(r.report.Full, ", "), took)
	}
	return nil
}

// planFull reports whether the broker refused a provision because the plan
// has no room: 422 with the broker's "plan is full" message (the broker's
// ErrPlanFull; the integration tests hold a real broker to this wording).
func planFull(err error) bool {
	var e *osbhttp.Error
	return errors.As(err, &e) && e.Status == http.StatusUnprocessableEntity && strings.Contains(e.Description, " plan is full")
}

// choose finds the offering and plans to test in the catalog.
func choose(services []catalogService, service string, planNames []string) (catalogService, []catalogPlan, error) {
	var svc *catalogService
	var offered []string
	for i, s := range services {
		offered = append(offered, s.Name)
		if service != "" && (s.ID == service || s.Name == service) {
			svc = &services[i]
		}
	}
	switch {
	case service == "" && len(services) == 1:
		svc = &services[0]
	case service == "" && len(services) == 0:
		return catalogService{}, nil, errors.New("the broker's catalog offers no service")
	case service == "":
		return catalogService{}, nil, fmt.Errorf("the catalog offers several services (%s): name one in the config's service", strings.Join(offered, ", "))
	case svc == nil:
		return catalogService{}, nil, fmt.Errorf("the catalog has no service %q (it offers %s)", service, strings.Join(offered, ", "))
	}
	var plans, available []string
	for _, p := range svc.Plans {
		available = append(available, p.Name)
	}
	var chosen []catalogPlan
	if len(planNames) == 0 {
		chosen = svc.Plans
	}
	for _, want := range planNames {
		i := slices.IndexFunc(svc.Plans, func(p catalogPlan) bool { return p.ID == want || p.Name == want })
		if i < 0 {
			plans = append(plans, want)
			continue
		}
		chosen = append(chosen, svc.Plans[i])
	}
	if len(plans) > 0 {
		return catalogService{}, nil, fmt.Errorf("service %s has no plan %s (its plans: %s)", svc.Name, strings.Join(plans, ", "), strings.Join(available, ", "))
	}
	if len(chosen) == 0 {
		return catalogService{}, nil, fmt.Errorf("service %s has no plans", svc.Name)
	}
	for _, p := range chosen {
		if !svc.Bindable && (p.Bindable == nil || !*p.Bindable) || p.Bindable != nil && !*p.Bindable {
			return catalogService{}, nil, fmt.Errorf("plan %s is not bindable: the smoke tests need a binding", p.Name)
		}
	}
	return *svc, chosen, nil
}

var notID = regexp.MustCompile(`[^a-z0-9]+`)

// newID makes an id for an instance or binding of the plan that says what
// made it.
func newID(plan string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := strings.Trim(notID.ReplaceAllString(strings.ToLower(plan), "-"), "-")
	if len(name) > 40 {
		name = name[:40]
	}
	return "smoke-tests-" + name + "-" + hex.EncodeToString(b)
}

// plan runs every step on one plan. It returns true, having tested
// nothing, when the broker says the plan is full.
func (r *runner) plan(ctx context.Context, svc catalogService, p catalogPlan) (full bool, err error) {
	inst := resource{plan: p.Name, instanceID: newID(p.Name), serviceID: svc.ID, planID: p.ID}
	r.printf("%s: provisioning instance %s", p.Name, inst.instanceID)
	err = r.step(p.Name, "provision", func() error {
		// Recorded before it is asked for: an answer lost on the way must
		// not leave an instance nobody deletes.
		r.created = append(r.created, inst)
		err := r.broker.provision(ctx, inst.instanceID, svc, p, orgGUID, spaceGUID)
		if planFull(err) {
			// Refused before anything was created.
			r.forget(inst)
			full = true
			r.printf("%s: NOT TESTED: the broker says the plan is full: %s", p.Name, err.(*osbhttp.Error).Description)
			return nil
		}
		return err
	})
	if err != nil || full {
		return full, err
	}
	return false, r.steps(ctx, svc, p, inst)
}

// steps runs the steps after the provision on one plan.
func (r *runner) steps(ctx context.Context, svc catalogService, p catalogPlan, inst resource) error {

	bnd := inst
	bnd.bindingID = newID(p.Name)
	var opts, tlsOpts *redis.Options
	err := r.step(p.Name, "bind", func() error {
		r.created = append(r.created, bnd)
		creds, err := r.broker.bind(ctx, inst.instanceID, bnd.bindingID, svc.ID, p.ID, appGUID)
		if err != nil {
			return err
		}
		r.out.add(creds.URI)
		r.out.add(creds.TLSURI)
		if opts, err = redisOptions(creds.URI, r.out); err != nil {
			return err
		}
		if creds.TLSURI != "" {
			tlsOpts, err = redisTLSOptions(creds.TLSURI, creds.TLSCA, r.out)
		}
		return err
	})
	if err != nil {
		return err
	}

	if err := r.step(p.Name, "write and read", func() error { return writeRead(ctx, opts, inst.instanceID) }); err != nil {
		return err
	}
	if tlsOpts != nil {
		// The binding has a TLS port: apps that use it must get through,
		// verifying the server with the binding's CA.
		if err := r.step(p.Name, "write and read over TLS", func() error { return writeRead(ctx, tlsOpts, inst.instanceID) }); err != nil {
			return err
		}
	}
	if err := r.step(p.Name, "CONFIG GET is refused with NOPERM", func() error { return forbidden(ctx, opts) }); err != nil {
		return err
	}
	err = r.step(p.Name, "unbind", func() error {
		if err := r.broker.unbind(ctx, inst.instanceID, bnd.bindingID, svc.ID, p.ID); err != nil {
			return err
		}
		r.forget(bnd)
		return nil
	})
	if err != nil {
		return err
	}
	if err := r.step(p.Name, "the unbound credentials are refused", func() error { return revoked(ctx, opts) }); err != nil {
		return err
	}
	return r.step(p.Name, "deprovision", func() error {
		gone, err := r.broker.deprovision(ctx, inst.instanceID, svc.ID, p.ID)
		if err != nil {
			return err
		}
		if gone {
			return errors.New("the broker answered 410 Gone: it lost the instance the tests created")
		}
		r.forget(inst)
		return nil
	})
}

// cleanUp deletes what the run left, newest first, retrying each instance's
// delete until ctx ends. It returns what it could not delete.
func (r *runner) cleanUp(ctx context.Context) []string {
	var left []string
	for _, res := range slices.Backward(r.created) {
		if res.bindingID != "" {
			// One try: deleting the instance, next, deletes its bindings
			// too, so the retries are spent there.
			if err := r.broker.unbind(ctx, res.instanceID, res.bindingID, res.serviceID, res.planID); err != nil {
				r.printf("cleanup: deleting %s failed (deleting its instance removes it): %v", res, err)
			} else {
				r.printf("cleanup: deleted %s", res)
			}
			continue
		}
		delay := 500 * time.Millisecond
		for {
			gone, err := r.broker.deprovision(ctx, res.instanceID, res.serviceID, res.planID)
			if err == nil && gone {
				r.printf("cleanup: %s is gone: the broker does not know it", res)
				break
			}
			if err == nil {
				r.printf("cleanup: deleted %s", res)
				break
			}
			if ctx.Err() != nil {
				r.printf("cleanup: LEFT BEHIND %s: %v", res, err)
				left = append(left, res.String())
				break
			}
			r.printf("cleanup: deleting %s failed, retrying: %v", res, err)
			select {
			case <-ctx.Done():
			case <-time.After(delay):
			}
			delay = min(2*delay, 5*time.Second)
		}
	}
	r.created = nil
	if len(left) > 0 {
		r.printf("cleanup: delete what is left behind through the broker's API (DELETE /v2/service_instances/ID?service_id=...&plan_id=...) once it is healthy")
	}
	return left
}
