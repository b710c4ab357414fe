// Package registrar registers the service broker with Cloud Controller and
// opens its plans to orgs (the broker-registrar errand), and removes it
// again (the broker-deregistrar errand). Both are idempotent: a second run
// finds what the first did and changes only what differs.
package registrar

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/cf-redis/redis-for-cf/src/internal/ccapi"
)

// Register creates the broker of cfg in Cloud Controller, or updates it when
// one of its name exists (Cloud Controller reads its catalog again either
// way), then gives the configured orgs access to its plans. It reports each
// step on out; the broker's password is never written.
func Register(ctx context.Context, cc *ccapi.Client, cfg *Config, out io.Writer) error {
	if err := login(ctx, cc, out); err != nil {
		return err
	}

	reg := ccapi.BrokerRegistration{Name: cfg.Broker.Name, URL: cfg.Broker.URL, Username: cfg.Broker.Username, Password: cfg.Broker.Password}
	existing, err := cc.ServiceBrokerByName(ctx, cfg.Broker.Name)
	if err != nil {
		return fmt.Errorf("looking up service broker %q: %w", cfg.Broker.Name, err)
	}
	var warnings []string
	if existing == nil {
		fmt.Fprintf(out, "creating service broker %q at %s\n", reg.Name, reg.URL)
		warnings, err = cc.CreateServiceBroker(ctx, reg)
		if err != nil {
			return fmt.Errorf("creating service broker %q: %w", reg.Name, err)
		}
		fmt.Fprintf(out, "service broker %q created; Cloud Controller read its catalog\n", reg.Name)
	} else {
		fmt.Fprintf(out, "updating service broker %q (guid %s) to %s\n", reg.Name, existing.GUID, reg.URL)
		warnings, err = cc.UpdateServiceBroker(ctx, existing.GUID, reg)
		if err != nil {
			return fmt.Errorf("updating service broker %q: %w", reg.Name, err)
		}
		fmt.Fprintf(out, "service broker %q updated; Cloud Controller read its catalog again\n", reg.Name)
	}
	for _, w := range warnings {
		fmt.Fprintf(out, "warning from Cloud Controller: %s\n", w)
	}

	broker, err := cc.ServiceBrokerByName(ctx, cfg.Broker.Name)
	if err != nil {
		return fmt.Errorf("looking up service broker %q: %w", cfg.Broker.Name, err)
	}
	if broker == nil {
		return fmt.Errorf("service broker %q is gone right after it was registered", cfg.Broker.Name)
	}
	plans, err := cc.ServicePlans(ctx, broker.GUID)
	if err != nil {
		return fmt.Errorf("listing the plans of service broker %q: %w", broker.Name, err)
	}
	if len(plans) == 0 {
		return fmt.Errorf("service broker %q offers no plans", broker.Name)
	}
	return enableAccess(ctx, cc, cfg, plans, out)
}

// enableAccess makes every plan public, or visible to the configured orgs.
// Orgs are added to those that see a plan already (an admin may have added
// some with cf enable-service-access), except that a public plan is narrowed
// to the orgs: that is the operator's change from public to orgs.
func enableAccess(ctx context.Context, cc *ccapi.Client, cfg *Config, plans []ccapi.ServicePlan, out io.Writer) error {
	switch cfg.ServiceAccess {
	case AccessNone:
		for _, p := range plans {
			fmt.Fprintf(out, "plan %s: access left as it is (%s)\n", p.Name, p.VisibilityType)
		}
		return nil
	case AccessPublic:
		for _, p := range plans {
			if p.VisibilityType == ccapi.VisibilityPublic {
				fmt.Fprintf(out, "plan %s: public already\n", p.Name)
				continue
			}
			if err := cc.ApplyVisibility(ctx, p.GUID, ccapi.Visibility{Type: ccapi.VisibilityPublic}); err != nil {
				return fmt.Errorf("making plan %s public: %w", p.Name, err)
			}
			fmt.Fprintf(out, "plan %s: public (was %s)\n", p.Name, p.VisibilityType)
		}
		return nil
	}
	orgs, err := cc.Organizations(ctx, cfg.Orgs)
	if err != nil {
		return fmt.Errorf("looking up orgs %s: %w", strings.Join(cfg.Orgs, ", "), err)
	}
	var guids, missing []string
	for _, name := range cfg.Orgs {
		i := slices.IndexFunc(orgs, func(o ccapi.Organization) bool { return o.Name == name })
		if i < 0 {
			missing = append(missing, name)
			continue
		}
		guids = append(guids, orgs[i].GUID)
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: %s (create them first, or take them out of the org list)", ErrNoSuchOrg, strings.Join(missing, ", "))
	}
	v := ccapi.Visibility{Type: ccapi.VisibilityOrganization, OrgGUIDs: guids}
	for _, p := range plans {
		if p.VisibilityType == ccapi.VisibilityPublic {
			err = cc.ReplaceVisibility(ctx, p.GUID, v)
		} else {
			err = cc.ApplyVisibility(ctx, p.GUID, v)
		}
		if err != nil {
			return fmt.Errorf("giving orgs %s access to plan %s: %w", strings.Join(cfg.Orgs, ", "), p.Name, err)
		}
		fmt.Fprintf(out, "plan %s: visible to orgs %s (was %s)\n", p.Name, strings.Join(cfg.Orgs, ", "), p.VisibilityType)
	}
	return nil
}

// ErrNoSuchOrg means an org of the org list does not exist.
var ErrNoSuchOrg = errors.New("no such org")

// ErrInstancesExist means the broker to remove still has service
// instances, and purging was not asked for.
var ErrInstancesExist = errors.New("service instances exist")

// Deregister removes the broker named in cfg from Cloud Controller. While
// its plans have service instances it refuses, unless cfg.Purge is set:
// then each of its service offerings is purged first, as cf
// purge-service-offering does (the offering, its plans, their instances,
// bindings and keys leave Cloud Controller's records without a call to the
// broker). A broker that is not registered is not an error.
func Deregister(ctx context.Context, cc *ccapi.Client, cfg *DeregisterConfig, out io.Writer) error {
	if err := login(ctx, cc, out); err != nil {
		return err
	}
	broker, err := cc.ServiceBrokerByName(ctx, cfg.BrokerName)
	if err != nil {
		return fmt.Errorf("looking up service broker %q: %w", cfg.BrokerName, err)
	}
	if broker == nil {
		fmt.Fprintf(out, "no service broker %q is registered: nothing to do\n", cfg.BrokerName)
		return nil
	}
	plans, err := cc.ServicePlans(ctx, broker.GUID)
	if err != nil {
		return fmt.Errorf("listing the plans of service broker %q: %w", broker.Name, err)
	}
	var planGUIDs []string
	offeringOf := map[string]string{} // plan guid to offering guid
	for _, p := range plans {
		planGUIDs = append(planGUIDs, p.GUID)
		offeringOf[p.GUID] = p.Relationships.ServiceOffering.Data.GUID
	}
	instances, err := cc.ServiceInstances(ctx, planGUIDs)
	if err != nil {
		return fmt.Errorf("listing the service instances of broker %q: %w", broker.Name, err)
	}
	if len(instances) > 0 && !cfg.Purge {
		return fmt.Errorf("%w: service broker %q still has %d service instance(s): %s. Delete them with cf delete-service, "+
			"or set purge to remove them from Cloud Controller with the service offering (cf purge-service-offering), "+
			"without asking the broker (their data is then left on the VMs)",
			ErrInstancesExist, broker.Name, len(instances), names(instances))
	}
	if len(instances) > 0 {
		offerings, err := cc.ServiceOfferings(ctx, broker.GUID)
		if err != nil {
			return fmt.Errorf("listing the service offerings of broker %q: %w", broker.Name, err)
		}
		for _, o := range offerings {
			var of []ccapi.ServiceInstance
			for _, inst := range instances {
				if offeringOf[inst.Relationships.ServicePlan.Data.GUID] == o.GUID {
					of = append(of, inst)
				}
			}
			if len(of) == 0 {
				continue
			}
			if err := cc.PurgeServiceOffering(ctx, o.GUID); err != nil {
				return fmt.Errorf("purging service offering %s (%s): %w", o.Name, o.GUID, err)
			}
			fmt.Fprintf(out, "purged service offering %s (guid %s) with its plans and %d service instance(s): %s\n", o.Name, o.GUID, len(of), names(of))
		}
	}
	fmt.Fprintf(out, "deleting service broker %q (guid %s)\n", broker.Name, broker.GUID)
	warnings, err := cc.DeleteServiceBroker(ctx, broker.GUID)
	for _, w := range warnings {
		fmt.Fprintf(out, "warning from Cloud Controller: %s\n", w)
	}
	if err != nil {
		return fmt.Errorf("deleting service broker %q: %w", broker.Name, err)
	}
	fmt.Fprintf(out, "service broker %q deleted\n", broker.Name)
	return nil
}

// names lists instance names, the first ten of them.
func names(instances []ccapi.ServiceInstance) string {
	var n []string
	for i, inst := range instances {
		if i == 10 {
			n = append(n, fmt.Sprintf("and %d more", len(instances)-10))
			break
		}
		n = append(n, inst.Name)
	}
	return strings.Join(n, ", ")
}

// login finds Cloud Controller's UAA and authenticates there, saying where
// and as whom on out.
func login(ctx context.Context, cc *ccapi.Client, out io.Writer) error {
	if cc.SkipsVerification() {
		fmt.Fprintln(out, "WARNING: skip_ssl_validation is set: Cloud Controller's and UAA's certificates are not verified")
	}
	info, err := cc.Info(ctx)
	if err != nil {
		return err
	}
	who, err := cc.Authenticate(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "Cloud Controller %s, UAA %s, as %s\n", cc.URL(), info.UAA, who)
	return nil
}
