// Command vcap-services prints the VCAP_SERVICES an app bound to one
// instance would see on Cloud Foundry, from the broker's catalog and the
// binding's OSB response: scripts/run-local starts the example app with it.
// Both documents come from the environment (CATALOG, BINDING), as the
// binding holds a password that a command line would show to every user of
// the machine.
//
//	CATALOG=... BINDING=... vcap-services -plan-id ID -instance NAME -binding-guid GUID
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

func main() { os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr)) }

func run(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("vcap-services", flag.ContinueOnError)
	fs.SetOutput(stderr)
	planID := fs.String("plan-id", "", "id of the instance's plan in the catalog")
	instance := fs.String("instance", "", "the instance's name and guid")
	bindingGUID := fs.String("binding-guid", "", "the binding's guid")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	out, err := vcapServices([]byte(getenv("CATALOG")), []byte(getenv("BINDING")), *planID, *instance, *bindingGUID)
	if err != nil {
		fmt.Fprintln(stderr, "vcap-services:", err)
		return 1
	}
	fmt.Fprintln(stdout, string(out))
	return 0
}

// vcapServices builds VCAP_SERVICES in Cloud Foundry's shape: an object
// keyed by the service's label holding the bound instance.
func vcapServices(catalogJSON, bindingJSON []byte, planID, instance, bindingGUID string) ([]byte, error) {
	var catalog struct {
		Services []struct {
			Name  string   `json:"name"`
			Tags  []string `json:"tags"`
			Plans []struct {
				ID   string `json:"id"`
				Name string `json:"name"`
			} `json:"plans"`
		} `json:"services"`
	}
	if err := json.Unmarshal(catalogJSON, &catalog); err != nil {
		return nil, fmt.Errorf("reading the catalog (CATALOG): %w", err)
	}
	var binding struct {
		Credentials json.RawMessage `json:"credentials"`
	}
	if err := json.Unmarshal(bindingJSON, &binding); err != nil {
		return nil, fmt.Errorf("reading the binding (BINDING): %w", err)
	}
	if len(binding.Credentials) == 0 {
		return nil, errors.New("the binding (BINDING) has no credentials")
	}
	for _, svc := range catalog.Services {
		for _, plan := range svc.Plans {
			if plan.ID != planID {
				continue
			}
			return json.Marshal(map[string]any{svc.Name: []map[string]any{{
				"label": svc.Name, "provider": nil, "plan": plan.Name, "name": instance,
				"tags": svc.Tags, "instance_guid": instance, "instance_name": instance,
				"binding_guid": bindingGUID, "binding_name": nil, "credentials": binding.Credentials,
				"syslog_drain_url": nil, "volume_mounts": []any{},
			}}})
		}
	}
	return nil, fmt.Errorf("the catalog has no plan %q", planID)
}
