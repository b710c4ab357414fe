package localbosh

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// OSBCycle is deploy-local's own smoke test, for a release without a
// smoke-tests errand: for every plan of the catalog it provisions an
// instance, binds it, writes and reads a key with the binding's credentials
// from the apps' namespace, checks that an admin command is refused,
// unbinds and deprovisions, printing each step. It stops at the first
// failure, after deleting what it made.
func (d *Director) OSBCycle(ctx context.Context) (err error) {
	b, err := d.Broker()
	if err != nil {
		return err
	}
	svc, err := b.Catalog(ctx)
	if err != nil {
		return err
	}
	d.printf("  broker %s: service %s, plans %s\n", b.URL, svc.Name, planNames(svc))
	for _, p := range svc.Plans {
		if err := d.cyclePlan(ctx, b, svc.ID, p); err != nil {
			return fmt.Errorf("plan %s: %w", p.Name, err)
		}
	}
	return nil
}

func planNames(s Service) string {
	var names []string
	for _, p := range s.Plans {
		names = append(names, p.Name)
	}
	return strings.Join(names, ", ")
}

func (d *Director) cyclePlan(ctx context.Context, b *Broker, serviceID string, p Plan) (err error) {
	suffix := fmt.Sprintf("%d", time.Now().UnixNano())
	id, bindingID := "smoke-"+p.Name+"-"+suffix, "smoke-binding-"+suffix
	step := func(format string, args ...any) { d.printf("    %s: %s\n", p.Name, fmt.Sprintf(format, args...)) }
	t := time.Now()
	if err := b.Provision(ctx, id, serviceID, p.ID, nil); err != nil {
		return err
	}
	step("provisioned %s (%.1fs)", id, time.Since(t).Seconds())
	defer func() {
		cleanup := context.WithoutCancel(ctx)
		if derr := b.Deprovision(cleanup, id, serviceID, p.ID); derr != nil {
			err = errors.Join(err, derr)
			return
		}
		if err == nil {
			step("deprovisioned")
		}
	}()
	creds, err := b.Bind(ctx, id, bindingID, serviceID, p.ID)
	if err != nil {
		return err
	}
	step("bound: user %s at %s", creds.Username, creds.Addr())
	r := d.Redis(creds)
	defer r.Close()
	if err := r.Set(ctx, "smoke", suffix, 0).Err(); err != nil {
		return fmt.Errorf("SET with the binding's credentials: %w", err)
	}
	got, err := r.Get(ctx, "smoke").Result()
	if err != nil || got != suffix {
		return fmt.Errorf("GET with the binding's credentials: %q, %v", got, err)
	}
	step("wrote and read a key from %s", AppsIP)
	if err := r.Do(ctx, "CONFIG", "SET", "maxmemory", "1").Err(); err == nil {
		return errors.New("CONFIG SET succeeded for an app's user")
	}
	step("CONFIG SET refused, as it must be")
	r.Close()
	if err := b.Unbind(ctx, id, bindingID, serviceID, p.ID); err != nil {
		return err
	}
	step("unbound")
	return nil
}
